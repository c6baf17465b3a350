//! The HTTP server: accept, serve with picoserve, close, repeat, on every socket.
//!
//! The accept loops are tcp-layers' `serve` and every connection goes through the
//! layer stack of [`serve_layered`]. [`serve_unlayered`] is the same server with an
//! empty stack (same accept loops, adapter, buffers, routes and counters): the
//! firmware built with it measures the layers' code size, and the host binary runs it
//! as the comparison a real client sees.
use embassy_net::Stack;
use embassy_time::Duration;
use picoserve::{Config, Timeouts};
use tcp_layers::{
    Budget, BudgetConfig, Buffers, ChunkedLayer, ConnectionBuilder, Counters, DefaultStack,
    LimitLayer, NoDelayLayer, Pool, QuietLayer, ReaperConfig, ReaperLayer, ServeConfig,
    TimeWaitLayer, serve,
};
use tcp_layers_picoserve::PicoserveSocket;

use crate::{routes, stats, ws_echo};

/// Receive buffer per HTTP socket, bytes: a browser's request head is 400-800 bytes;
/// 2 kB holds one with its cookies and a pipelined second one.
pub const TCP_RX_BYTES: usize = 2048;
/// Transmit buffer per HTTP socket, bytes: about three 1460-byte segments in flight,
/// enough to keep a Wi-Fi link busy without costing 8 sockets too much RAM.
pub const TCP_TX_BYTES: usize = 4096;
/// picoserve's buffer per connection, bytes: holds the request head being parsed.
pub const HTTP_BUFFER_BYTES: usize = 2048;

/// picoserve's timeouts (the hand-written server of the feature `servers` waits as long
/// at the same four points), each a second longer than the reaper's matching deadline
/// (`ReaperConfig::http()`: first byte 3 s, idle 5 s, head 4 s and at most 8 s for a
/// long head, write stall 5 s), so that with the layers the reaper acts first and the
/// close is counted and logged as the deadline it is. picoserve's own defaults (1 s to
/// write, 1 s for the next keep-alive request) are tuned for small responses on a quiet
/// LAN; a 128 kB frame to a phone on a busy network needs longer.
pub(crate) const TIMEOUTS: Timeouts = Timeouts {
    start_read_request: Duration::from_secs(4),
    persistent_start_read_request: Duration::from_secs(6),
    read_request: Duration::from_secs(9),
    write: Duration::from_secs(6),
};

/// Keep-alive on: the page fetches frames back to back on one connection.
static CONFIG: Config = Config::new(TIMEOUTS).keep_connection_alive();

/// The layers of [`serve_layered`] (and of every layered server), shown in the boot log.
pub const LAYERS: &str =
    "quiet, limit, reaper, timewait, chunked, nodelay; /events and /ws as streams";

/// How connections ended, per reason; `/stats` shows them (via the event hook).
static CLOSES: Counters = Counters::new();
/// Deadlines for idle, slow and stalled clients: the HTTP defaults.
static DEADLINES: ReaperConfig = ReaperConfig::http();
/// The paths the app streams (Server-Sent Events): the adapter (picoserve's here,
/// edge-http's in the feature `servers`) asks the budget for the stream class when a
/// request is for one of them, since a handler cannot reach the connection; past the
/// stream cap the adapter answers the request itself. Without layers nothing caps
/// streams and the paths change nothing.
pub(crate) static STREAM_PATHS: [&str; 1] = ["/events"];

/// The state the server shares between its `N` sockets: the connection budget and
/// picoserve's request buffers (the other servers' request head buffers). A `static`
/// of the firmware or the host binary, since `N` is the chip's socket count.
pub struct Resources<const N: usize> {
    pub(crate) budget: Budget<N>,
    /// One request buffer per connection being served: taken after the accept and
    /// returned when the connection ends, however it ends. The accept loops share one
    /// handler, so the buffer cannot belong to a loop.
    pub(crate) http_buffers: Pool<N, HTTP_BUFFER_BYTES>,
}

impl<const N: usize> Resources<N> {
    /// Resources for `N` sockets under the chip's budget (`profile::ESP32_S3` and its
    /// siblings; check it against `StackResources` with `fits_stack`). A request the
    /// budget refuses is answered `503 Service Unavailable`.
    pub const fn new(profile: BudgetConfig) -> Self {
        Self {
            budget: Budget::new(profile.with_refusal_reply(tcp_layers::http::reply::REPLY_503)),
            http_buffers: Pool::new(),
        }
    }
}

/// Serves the camera app on `port` with `N` sockets, every connection wrapped in the
/// layer stack. Never returns.
pub async fn serve_layered<const N: usize>(
    stack: Stack<'static>,
    port: u16,
    resources: &'static Resources<N>,
) -> ! {
    serve_with!(stack, port, layers(resources), resources)
}

/// The layer stack of every layered server of the app (picoserve here; the
/// hand-written and edge-http servers of the feature `servers`).
pub(crate) fn layers<const N: usize>(resources: &'static Resources<N>) -> DefaultStack<N> {
    // Outermost first: one line per layer.
    ConnectionBuilder::new()
        .layer(QuietLayer::new(&CLOSES)) // one log line per close at its level; counters
        .layer(LimitLayer::new(&resources.budget)) // budget per class, evicts idle keep-alive
        .layer(ReaperLayer::new(&DEADLINES)) // idle, slowloris, stalled readers
        .layer(TimeWaitLayer::new()) // bounded close, then RST: no lingering slots
        .layer(ChunkedLayer::new()) // a frame leaves in 4 KiB pieces, others run between
        .layer(NoDelayLayer::new()) // Nagle off: the body follows the head at once
}

/// The same server on the bare socket: what the layers change is the difference.
pub async fn serve_unlayered<const N: usize>(
    stack: Stack<'static>,
    port: u16,
    resources: &'static Resources<N>,
) -> ! {
    serve_with!(stack, port, ConnectionBuilder::new(), resources)
}

/// The accept loops and the picoserve handler, for one concrete layer stack: a macro
/// rather than a function generic over the stack, since picoserve's `serve` needs the
/// connection type's lifetimes, which a higher-ranked bound over every layer cannot
/// state.
macro_rules! serve_with {
    ($stack:expr, $port:expr, $layers:expr, $resources:expr) => {{
        let app = routes::router();
        let layers = $layers;
        let http_buffers = &$resources.http_buffers;
        let mut buffers: Buffers<N, TCP_RX_BYTES, TCP_TX_BYTES> =
            [([0; TCP_RX_BYTES], [0; TCP_TX_BYTES]); N];
        // One accept loop per socket; accept errors back off, the loops never exit.
        serve(
            $stack,
            ServeConfig::new($port),
            &mut buffers,
            &layers,
            async |conn| {
                let _open = stats::OpenConnection::accepted();
                let mut http_buffer = http_buffers.take().await;
                let Some(conn) = ws_echo::upgrade_or_http(conn, &mut http_buffer[..]).await else {
                    return; // a WebSocket, served and ended
                };
                // picoserve ends the connection through the stack (`Connection::end`);
                // the quiet layer has logged how, at the right level, so the result
                // here is only a debug line.
                let socket = PicoserveSocket::new(conn).with_stream_paths(&STREAM_PATHS);
                match picoserve::Server::new(&app, &CONFIG, &mut http_buffer[..])
                    .serve(socket)
                    .await
                {
                    Ok(done) => {
                        #[cfg(feature = "log")]
                        log::debug!("http: {} requests", done.handled_requests_count);
                        #[cfg(feature = "defmt")]
                        defmt::debug!("http: {} requests", done.handled_requests_count);
                        let _ = done;
                    }
                    Err(err) => {
                        stats::server_error();
                        #[cfg(feature = "log")]
                        log::debug!("http: ended: {:?}", err);
                        #[cfg(feature = "defmt")]
                        defmt::debug!("http: ended: {:?}", err);
                        let _ = err;
                    }
                }
            },
        )
        .await
    }};
}
use serve_with;
