//! How one accepted connection is served: through the layer stack, or (feature
//! `no-layers`) on the bare socket, which is what CI compares to measure the layers'
//! code size.
use embassy_net::tcp::TcpSocket;
use embassy_time::Duration;
use log::{debug, info};
use picoserve::{Config, Router, Timeouts, routing::PathRouter};

use crate::stats;

/// picoserve's timeouts. Its defaults (1 s to write, 1 s for the next keep-alive
/// request) are tuned for small responses on a quiet LAN; a 128 kB frame to a phone on
/// a busy network needs longer, and the browser sends the next frame request only
/// after it has decoded the previous one.
const TIMEOUTS: Timeouts = Timeouts {
    start_read_request: Duration::from_secs(5),
    persistent_start_read_request: Duration::from_secs(5),
    read_request: Duration::from_secs(3),
    write: Duration::from_secs(5),
};

/// Keep-alive on: the page fetches frames back to back on one connection.
static CONFIG: Config = Config::new(TIMEOUTS).keep_connection_alive();

#[cfg(not(feature = "no-layers"))]
pub use layered::{DESCRIPTION, serve};
#[cfg(feature = "no-layers")]
pub use plain::{DESCRIPTION, serve};

#[cfg(not(feature = "no-layers"))]
mod layered {
    use super::*;
    use tcp_layers::ConnectionBuilder;

    /// Shown in the boot log.
    pub const DESCRIPTION: &str = "tcp-layers on";

    /// Serves one accepted connection through the layers.
    pub async fn serve(
        id: usize,
        mut socket: TcpSocket<'_>,
        app: &Router<impl PathRouter>,
        http_buffer: &mut [u8],
    ) {
        // The layer stack, outermost first. Each layer is one line.
        let layers = ConnectionBuilder::new();
        let _ = layers.wrap(&mut socket);
        super::serve_plain(id, socket, app, http_buffer).await
    }
}

#[cfg(feature = "no-layers")]
mod plain {
    /// Shown in the boot log.
    pub const DESCRIPTION: &str = "no layers";

    pub use super::serve_plain as serve;
}

/// Serves one connection on the bare socket, the way picoserve's own accept loop does.
pub async fn serve_plain(
    id: usize,
    socket: TcpSocket<'_>,
    app: &Router<impl PathRouter>,
    http_buffer: &mut [u8],
) {
    let remote = socket.remote_endpoint();
    match picoserve::Server::new(app, &CONFIG, http_buffer)
        .serve(socket)
        .await
    {
        Ok(done) => debug!(
            "http[{}]: {} requests from {:?}",
            id, done.handled_requests_count, remote
        ),
        Err(err) => {
            stats::server_error();
            info!("http[{}]: {:?} ended: {:?}", id, remote, err);
        }
    }
}
