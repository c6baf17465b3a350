//! `serve`: per-connection workers for embassy-net, so one slow download never blocks
//! another client.
//!
//! embassy-net has no listener and no backlog: a server holds as many connections as
//! it has sockets in `accept()`, and a server with one accept loop and one handler
//! serves one client at a time while the next SYNs are reset. [`serve`] runs one accept
//! loop per socket, all in one future (no allocation, no executor of its own: spawn it
//! as one task or await it), wraps every accepted connection in the given layers and
//! hands it to the handler. It is an accept-loop helper, not an HTTP server: the
//! handler may be picoserve's, edge-http's or hand-written code.
use embassy_net::Stack;
use embassy_net::tcp::TcpSocket;
use tcp_layers_core::{CloseReason, Connection, Layer, TcpState};
use tcp_layers_limit::{AcceptLoop, Backoff};

/// Where and how [`serve`] listens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServeConfig {
    /// The TCP port every socket listens on.
    pub port: u16,
    /// The wait after a failed accept (default 10 ms doubling to 1 s; see
    /// [`Backoff`]).
    pub backoff: Backoff,
}

impl ServeConfig {
    /// Listens on `port` with the default backoff.
    pub const fn new(port: u16) -> Self {
        Self {
            port,
            backoff: Backoff::DEFAULT,
        }
    }

    /// The same with another accept backoff.
    pub const fn with_backoff(self, backoff: Backoff) -> Self {
        Self { backoff, ..self }
    }
}

/// The receive and transmit buffers of the `N` sockets of [`serve`], in bytes.
///
/// A `static` (e.g. in a `StaticCell`) or a local of the task that awaits `serve`:
/// `N x (RX + TX)` bytes in all. On an ESP32, RX 1536 (one MSS and a request head)
/// and TX 4096 (a few segments in flight) suit a small web UI.
pub type Buffers<const N: usize, const RX: usize, const TX: usize> = [([u8; RX], [u8; TX]); N];

/// Serves `N` connections at once on `stack`: one socket per buffer pair, each in its
/// own accept loop, all joined in this future, which never returns.
///
/// Every accepted connection is wrapped by `layer` (a [`ConnectionBuilder`](crate::ConnectionBuilder)
/// or any [`Layer`]), passed to `handler`, and ended when the handler returns if the
/// handler left it open: with the reason a layer recorded (`close_reason()`), else
/// `LocalClose`. The wrapper is dropped before the socket accepts again, so budget
/// permits return at once. Accept errors back off and retry (see
/// [`AcceptLoop::accept_socket`]); the loops never exit.
///
/// Size `N` to the `LimitLayer` layer's budget total, and include the timewait layer: a
/// FIN to a peer that vanished is otherwise never acknowledged and holds the socket.
///
/// ```no_run
/// use tcp_layers::prelude::*;
/// use tcp_layers::{Buffers, ServeConfig, serve};
///
/// static BUDGET: Budget<6> = Budget::new(profile::ESP32);
///
/// async fn web_server(stack: embassy_net::Stack<'static>) -> ! {
///     let layers = ConnectionBuilder::new()
///         .layer(LimitLayer::new(&BUDGET))
///         .layer(TimeWaitLayer::new())
///         .layer(NoDelayLayer::new());
///     let mut buffers: Buffers<6, 1536, 4096> = [([0; 1536], [0; 4096]); 6];
///     serve(stack, ServeConfig::new(80), &mut buffers, &layers, async |conn| {
///         my_http_handler(conn).await;
///     })
///     .await
/// }
/// # async fn my_http_handler(conn: &mut impl Connection) {
/// #     let _ = conn.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await;
/// # }
/// ```
pub async fn serve<'b, L, H, const N: usize, const RX: usize, const TX: usize>(
    stack: Stack<'b>,
    config: ServeConfig,
    buffers: &'b mut Buffers<N, RX, TX>,
    layer: &L,
    handler: H,
) -> !
where
    L: for<'c> Layer<&'c mut TcpSocket<'b>>,
    for<'c> <L as Layer<&'c mut TcpSocket<'b>>>::Service: Connection,
    H: for<'c> AsyncFn(&mut <L as Layer<&'c mut TcpSocket<'b>>>::Service),
{
    let handler = &handler;
    let loops = buffers
        .each_mut()
        .map(|(rx, tx)| accept_loop(stack, config, rx, tx, layer, handler));
    embassy_futures::join::join_array(loops).await;
    unreachable!("accept loops never return")
}

/// One socket's loop: accept (with backoff), wrap, handle, end, again.
async fn accept_loop<'b, L, H>(
    stack: Stack<'b>,
    config: ServeConfig,
    rx: &'b mut [u8],
    tx: &'b mut [u8],
    layer: &L,
    handler: &H,
) where
    L: for<'c> Layer<&'c mut TcpSocket<'b>>,
    for<'c> <L as Layer<&'c mut TcpSocket<'b>>>::Service: Connection,
    H: for<'c> AsyncFn(&mut <L as Layer<&'c mut TcpSocket<'b>>>::Service),
{
    let mut socket = TcpSocket::new(stack, rx, tx);
    let mut accepts = AcceptLoop::new(config.backoff);
    loop {
        accepts.accept_socket(&mut socket, config.port).await;
        let mut conn = layer.layer(&mut socket);
        handler(&mut conn).await;
        if matches!(
            conn.state(),
            TcpState::SynReceived | TcpState::Established | TcpState::CloseWait
        ) {
            let reason = conn.end_reason(CloseReason::LocalClose);
            conn.end(reason).await;
        }
        // The wrapper (and any permit it holds) is dropped here, before the next accept.
    }
}
