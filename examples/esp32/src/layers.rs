//! The HTTP server: accept, serve with picoserve, close, repeat, on every socket. The
//! accept loops are tcp-layers' `serve` and every connection goes through the layer
//! stack; with the feature `no-layers` the stack is empty and nothing else changes, so
//! the two builds differ by exactly the layers' code (what CI measures).
use embassy_executor::Spawner;
use embassy_net::Stack;
use embassy_time::Duration;
use log::debug;
use picoserve::{Config, Timeouts};
#[cfg(not(feature = "no-layers"))]
use tcp_layers::{
    Budget, BudgetConfig, Counters, Limit, NoDelay, Quiet, Reaper, ReaperConfig, TimeWait,
    chunked::ChunkedLayer, limit::StackServices, profile,
};
use tcp_layers::{
    Buffers, ConnectionBuilder, Pool, ServeConfig, adapters::picoserve::PicoserveSocket, serve,
};

#[cfg(not(feature = "no-layers"))]
use crate::STACK_SOCKETS;
use crate::{HTTP_PORT, HTTP_SOCKETS, app, stats};

/// Receive buffer per HTTP socket, bytes: a browser's request head is 400-800 bytes;
/// 2 kB holds one with its cookies and a pipelined second one.
const TCP_RX_BYTES: usize = 2048;
/// Transmit buffer per HTTP socket, bytes: about three 1460-byte segments in flight,
/// enough to keep a Wi-Fi link busy without costing 8 sockets too much RAM.
const TCP_TX_BYTES: usize = 4096;
/// picoserve's buffer per connection, bytes: holds the request head being parsed.
const HTTP_BUFFER_BYTES: usize = 2048;

/// picoserve's timeouts. Its defaults (1 s to write, 1 s for the next keep-alive
/// request) are tuned for small responses on a quiet LAN; a 128 kB frame to a phone on
/// a busy network needs longer, and the browser asks for the next frame only after it
/// has decoded the previous one. (With the layers the reaper's deadlines act first.)
const TIMEOUTS: Timeouts = Timeouts {
    start_read_request: Duration::from_secs(5),
    persistent_start_read_request: Duration::from_secs(5),
    read_request: Duration::from_secs(3),
    write: Duration::from_secs(5),
};

/// Keep-alive on: the page fetches frames back to back on one connection.
static CONFIG: Config = Config::new(TIMEOUTS).keep_connection_alive();

/// Shown in the boot log.
#[cfg(not(feature = "no-layers"))]
pub const DESCRIPTION: &str =
    "layers: quiet, limit, reaper, timewait, chunked, nodelay; /events as a stream";
/// Shown in the boot log.
#[cfg(feature = "no-layers")]
pub const DESCRIPTION: &str = "no layers";

/// The chip's budget: total, stream and request slots.
#[cfg(all(feature = "esp32s3", not(feature = "no-layers")))]
const PROFILE: BudgetConfig = profile::ESP32_S3;
#[cfg(all(feature = "esp32c3", not(feature = "no-layers")))]
const PROFILE: BudgetConfig = profile::ESP32_C3;
#[cfg(all(feature = "esp32c6", not(feature = "no-layers")))]
const PROFILE: BudgetConfig = profile::ESP32_C6;

/// The connection budget; `fits_stack` fails the build if embassy-net's
/// `StackResources` has no room for it beside the DHCP client.
#[cfg(not(feature = "no-layers"))]
static BUDGET: Budget<HTTP_SOCKETS> =
    Budget::new(PROFILE.fits_stack(STACK_SOCKETS, StackServices::Dhcp));
/// How connections ended, per reason; `/stats` shows them (via the event hook).
#[cfg(not(feature = "no-layers"))]
static CLOSES: Counters = Counters::new();
/// Deadlines for idle, slow and stalled clients: the HTTP defaults.
#[cfg(not(feature = "no-layers"))]
static DEADLINES: ReaperConfig = ReaperConfig::http();
/// The paths picoserve streams (Server-Sent Events): the adapter asks the budget for
/// the stream class when a request is for one of them, since a picoserve handler cannot
/// reach the connection; past the stream cap the request gets a 503. Without layers
/// nothing caps streams and the paths change nothing.
static STREAM_PATHS: [&str; 1] = ["/events"];
/// picoserve's request buffers, one per connection being served: taken after the
/// accept and returned when the connection ends, however it ends. The accept loops
/// share one handler, so the buffer cannot belong to a loop.
static HTTP_BUFFERS: Pool<HTTP_SOCKETS, HTTP_BUFFER_BYTES> = Pool::new();

/// Starts the HTTP server: one task holding every socket's accept loop.
pub fn start(spawner: &Spawner, stack: Stack<'static>) {
    spawner.spawn(http_task(stack).expect("one HTTP task"));
}

#[embassy_executor::task]
async fn http_task(stack: Stack<'static>) {
    let app = app::router();
    // The layer stack, outermost first: one line per layer.
    #[cfg(not(feature = "no-layers"))]
    let layers = ConnectionBuilder::new()
        .layer(Quiet::new(&CLOSES)) // one log line per close at its level; counters
        .layer(Limit::new(&BUDGET)) // budget per class, evicts idle keep-alive
        .layer(Reaper::new(&DEADLINES)) // idle, slowloris, stalled readers
        .layer(TimeWait::new()) // bounded close, then RST: no lingering slots
        .layer(ChunkedLayer::new()) // a frame leaves in 4 KiB pieces, others run between
        .layer(NoDelay::new()); // Nagle off: the body follows the head at once
    // The same server on the bare socket: what the layers cost is the difference.
    #[cfg(feature = "no-layers")]
    let layers = ConnectionBuilder::new();
    let mut buffers: Buffers<HTTP_SOCKETS, TCP_RX_BYTES, TCP_TX_BYTES> =
        [([0; TCP_RX_BYTES], [0; TCP_TX_BYTES]); HTTP_SOCKETS];
    // One accept loop per socket; accept errors back off, the loops never exit.
    serve(
        stack,
        ServeConfig::new(HTTP_PORT),
        &mut buffers,
        &layers,
        async |conn| {
            let _open = stats::OpenConnection::new();
            let mut http_buffer = HTTP_BUFFERS.take().await;
            // picoserve ends the connection through the stack (`Connection::end`);
            // the quiet layer has logged how, at the right level, so the result
            // here is only a debug line.
            let socket = PicoserveSocket::new(conn).with_stream_paths(&STREAM_PATHS);
            match picoserve::Server::new(&app, &CONFIG, &mut http_buffer[..])
                .serve(socket)
                .await
            {
                Ok(done) => debug!("http: {} requests", done.handled_requests_count),
                Err(err) => {
                    stats::server_error();
                    debug!("http: ended: {:?}", err);
                }
            }
        },
    )
    .await
}
