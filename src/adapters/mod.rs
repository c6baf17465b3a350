//! Adapters that hand a layered connection to an HTTP server that already exists.
//!
//! - [`picoserve`] (feature `picoserve`): [`picoserve::PicoserveSocket`] makes any
//!   layered [`Connection`](crate::Connection) a `picoserve::io::Socket`, and marks
//!   the requests for the paths it is given as streams.
//! - [`edge_nal`] (feature `edge-nal`): [`edge_nal::LayeredAcceptor`] is an
//!   `edge_nal::TcpAccept` over embassy-net that edge-http's `Server::run` takes as it is.
#[cfg(feature = "edge-nal")]
pub mod edge_nal;
#[cfg(feature = "picoserve")]
pub mod picoserve;
mod split;
mod stream_routes;

use tcp_layers_core::{CloseReason, Connection, TcpState};

/// How the server asked to end the connection.
#[derive(Clone, Copy)]
pub(crate) enum Ending {
    /// A graceful shutdown: the server is done with the connection.
    Shutdown,
    /// An abort: the server gave up on it.
    Abort,
}

/// The reason to end `conn` with: the one a layer of the stack knows
/// ([`Connection::close_reason`]) or, failing that, a guess from the TCP state and how
/// the server asked to end it.
pub(crate) fn end_reason(conn: &impl Connection, ending: Ending) -> CloseReason {
    conn.close_reason()
        .unwrap_or_else(|| match (conn.state(), ending) {
            (TcpState::CloseWait | TcpState::LastAck | TcpState::TimeWait, _) => {
                CloseReason::PeerClosed
            }
            (TcpState::Closed, Ending::Abort) => CloseReason::PeerReset,
            (_, Ending::Shutdown) => CloseReason::LocalClose,
            (_, Ending::Abort) => CloseReason::LocalError,
        })
}
