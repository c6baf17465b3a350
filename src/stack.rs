//! The default stack: every connection layer in the order that makes them compose.
use tcp_layers_chunked::ChunkedLayer;
use tcp_layers_core::{Identity, Stack};
use tcp_layers_limit::{Budget, LimitLayer};
use tcp_layers_nodelay::NoDelayLayer;
use tcp_layers_quiet::{Counters, QuietLayer};
use tcp_layers_reaper::ReaperLayer;
use tcp_layers_timewait::TimeWaitLayer;

use crate::ConnectionBuilder;

/// The type of [`default_stack`], for a budget of `N` slots.
pub type DefaultStack<const N: usize> = ConnectionBuilder<
    Stack<
        NoDelayLayer,
        Stack<
            ChunkedLayer,
            Stack<
                TimeWaitLayer,
                Stack<ReaperLayer, Stack<LimitLayer<N>, Stack<QuietLayer, Identity>>>,
            >,
        >,
    >,
>;

/// Every connection layer with its documented defaults, outermost first:
///
/// 1. [`QuietLayer`]: sees how every connection ended, counts it into `counters`, logs it at
///    the reason's level (a browser cancel is trace, a local fault warn).
/// 2. [`LimitLayer`]: admits into `budget`, evicts the least recently active idle keep-alive
///    connection when listeners run short, caps streams.
/// 3. [`ReaperLayer`] (HTTP): first-byte, idle, head and write-stall deadlines, 4 KiB heads.
/// 4. [`TimeWaitLayer`]: ends with FIN, a bounded linger, then RST, so the slot is free at
///    once instead of in TIME_WAIT or FIN_WAIT behind a vanished peer.
/// 5. [`ChunkedLayer`]: writes of at most 4096 bytes, a yield between pieces.
/// 6. [`NoDelayLayer`]: Nagle off when the connection is wrapped.
///
/// Why this order: the logger must see the reason any inner layer decided; the budget
/// must see the idle reads before the reaper's deadlines; the reaper ends connections
/// through the close discipline below it; pieces and nodelay act on the socket.
///
/// ```no_run
/// # #[cfg(feature = "embassy-net")]
/// # async fn accept_loop(stack: embassy_net::Stack<'static>) {
/// use tcp_layers::prelude::*;
///
/// static COUNTERS: Counters = Counters::new();
/// static BUDGET: Budget<8> = Budget::new(profile::ESP32_S3);
///
/// let layers = default_stack(&COUNTERS, &BUDGET);
/// let (mut rx, mut tx) = ([0u8; 2048], [0u8; 8192]);
/// let mut socket = embassy_net::tcp::TcpSocket::new(stack, &mut rx, &mut tx);
/// loop {
///     if socket.accept(80).await.is_err() { continue; }
///     let mut conn = layers.wrap(&mut socket);
///     // serve HTTP on `conn` exactly as on the socket, then:
///     conn.end(CloseReason::LocalClose).await;
/// }
/// # }
/// ```
pub fn default_stack<const N: usize>(
    counters: &'static Counters,
    budget: &'static Budget<N>,
) -> DefaultStack<N> {
    ConnectionBuilder::new()
        .layer(QuietLayer::new(counters))
        .layer(LimitLayer::new(budget))
        .layer(ReaperLayer::http())
        .layer(TimeWaitLayer::new())
        .layer(ChunkedLayer::new())
        .layer(NoDelayLayer::new())
}

/// Bytes the default stack adds to each connection on a 32-bit device (ESP32 family),
/// beyond the `&mut TcpSocket` it wraps: checked when the facade is built for a 32-bit
/// target with `embassy-net`, so a layer that grows past the budget fails the build.
#[cfg(all(feature = "embassy-net", target_pointer_width = "32"))]
pub const DEFAULT_STACK_BYTES_PER_CONNECTION: usize = {
    type Socket<'a> = &'a mut embassy_net::tcp::TcpSocket<'static>;
    type Layered<'a> = <DefaultStack<8> as tcp_layers_core::Layer<Socket<'a>>>::Service;
    let bytes = core::mem::size_of::<Layered<'static>>() - core::mem::size_of::<Socket<'static>>();
    assert!(
        bytes <= 64,
        "the default stack adds more than 64 bytes per connection on a 32-bit device"
    );
    bytes
};
