//! The HTTP server: accept, serve with picoserve, close, repeat, on every socket. With
//! the layers (the default) the accept loops are tcp-layers' `serve` and every
//! connection goes through the layer stack; with the feature `no-layers` it is one task
//! per socket running the plain loop of picoserve's own `listen_and_serve`, which is
//! what CI compares to measure the layers' code size.
use embassy_net::Stack;
#[cfg(feature = "no-layers")]
use embassy_net::tcp::TcpSocket;
use embassy_time::Duration;
use picoserve::{Config, Timeouts};

use crate::{HTTP_PORT, stats};

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

#[cfg(not(feature = "no-layers"))]
pub use layered::{DESCRIPTION, start};
#[cfg(feature = "no-layers")]
pub use plain::{DESCRIPTION, start};

#[cfg(not(feature = "no-layers"))]
mod layered {
    use embassy_executor::Spawner;
    use log::debug;
    use tcp_layers::{
        Budget, BudgetConfig, Buffers, ConnectionBuilder, Counters, Limit, NoDelay, Pool, Quiet,
        Reaper, ReaperConfig, ServeConfig, TimeWait, adapters::picoserve::PicoserveSocket,
        chunked::ChunkedLayer, limit::StackServices, profile, serve,
    };

    use super::*;
    use crate::{HTTP_SOCKETS, STACK_SOCKETS, app, stream_routes::StreamRoutes};

    /// Shown in the boot log.
    pub const DESCRIPTION: &str =
        "layers: quiet, stream routes, limit, reaper, timewait, chunked, nodelay";

    /// The chip's budget: total, stream and request slots.
    #[cfg(feature = "esp32s3")]
    const PROFILE: BudgetConfig = profile::ESP32_S3;
    #[cfg(feature = "esp32c3")]
    const PROFILE: BudgetConfig = profile::ESP32_C3;
    #[cfg(feature = "esp32c6")]
    const PROFILE: BudgetConfig = profile::ESP32_C6;

    /// The connection budget; `fits_stack` fails the build if embassy-net's
    /// `StackResources` has no room for it beside the DHCP client.
    static BUDGET: Budget<HTTP_SOCKETS> =
        Budget::new(PROFILE.fits_stack(STACK_SOCKETS, StackServices::Dhcp));
    /// How connections ended, per reason; `/stats` shows them (via the event hook).
    static CLOSES: Counters = Counters::new();
    /// Deadlines for idle, slow and stalled clients: the HTTP defaults.
    static DEADLINES: ReaperConfig = ReaperConfig::http();
    /// picoserve's request buffers, one per connection being served: taken after the
    /// accept and returned when the connection ends, however it ends. The accept loops
    /// share one handler, so the buffer cannot belong to a loop.
    static HTTP_BUFFERS: Pool<HTTP_SOCKETS, HTTP_BUFFER_BYTES> = Pool::new();
    /// The paths picoserve streams: Server-Sent Events.
    static STREAM_PATHS: [&str; 1] = ["/events"];

    /// Starts the HTTP server: one task holding every socket's accept loop.
    pub fn start(spawner: &Spawner, stack: Stack<'static>) {
        spawner.spawn(http_task(stack).expect("one HTTP task"));
    }

    #[embassy_executor::task]
    async fn http_task(stack: Stack<'static>) {
        let app = app::router();
        // The layer stack, outermost first: one line per layer.
        let layers = ConnectionBuilder::new()
            .layer(Quiet::new(&CLOSES)) // one log line per close at its level; counters
            .layer(StreamRoutes::new(&STREAM_PATHS)) // /events counts as a stream
            .layer(Limit::new(&BUDGET)) // budget per class, evicts idle keep-alive
            .layer(Reaper::new(&DEADLINES)) // idle, slowloris, stalled readers
            .layer(TimeWait::new()) // bounded close, then RST: no lingering slots
            .layer(ChunkedLayer::new()) // a frame leaves in 4 KiB pieces, others run between
            .layer(NoDelay::new()); // Nagle off: the body follows the head at once
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
                match picoserve::Server::new(&app, &CONFIG, &mut http_buffer[..])
                    .serve(PicoserveSocket::new(conn))
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
}

#[cfg(feature = "no-layers")]
mod plain {
    use embassy_executor::Spawner;
    use embassy_time::Timer;
    use log::{debug, error, warn};

    use super::*;
    use crate::{HTTP_SOCKETS, app};

    /// Shown in the boot log.
    pub const DESCRIPTION: &str = "no layers";

    /// Starts the HTTP server: one task per socket, as picoserve's examples do.
    pub fn start(spawner: &Spawner, stack: Stack<'static>) {
        for id in 0..HTTP_SOCKETS {
            spawner.spawn(http_task(id, stack).expect("pool sized for HTTP_SOCKETS"));
        }
    }

    /// One socket's accept loop, as picoserve's `listen_and_serve` writes it.
    #[embassy_executor::task(pool_size = HTTP_SOCKETS)]
    async fn http_task(id: usize, stack: Stack<'static>) {
        let app = app::router();
        let mut rx = [0; TCP_RX_BYTES];
        let mut tx = [0; TCP_TX_BYTES];
        let mut http_buffer = [0; HTTP_BUFFER_BYTES];
        loop {
            let mut socket = TcpSocket::new(stack, &mut rx, &mut tx);
            if let Err(err) = socket.accept(HTTP_PORT).await {
                warn!("http[{}]: accept failed: {:?}", id, err);
                Timer::after(Duration::from_millis(100)).await;
                continue;
            }
            let _open = stats::OpenConnection::new();
            socket.set_keep_alive(Some(Duration::from_secs(30)));
            socket.set_timeout(Some(Duration::from_secs(45)));
            match picoserve::Server::new(&app, &CONFIG, &mut http_buffer)
                .serve(socket)
                .await
            {
                Ok(done) => debug!("http[{}]: {} requests", id, done.handled_requests_count),
                Err(err) => {
                    stats::server_error();
                    // What picoserve's own loop does: every browser cancel lands here.
                    error!("http[{}]: {:?}", id, err);
                }
            }
        }
    }
}
