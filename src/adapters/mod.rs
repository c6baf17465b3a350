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

use tcp_layers_core::{CloseReason, TcpState};

/// The reason to end with when no layer of the stack knows better (layers answer
/// [`Connection::close_reason`] and prefer it over this guess).
pub(crate) fn guess_reason(state: TcpState, orderly: bool) -> CloseReason {
    match state {
        TcpState::CloseWait | TcpState::LastAck | TcpState::TimeWait => CloseReason::PeerClosed,
        TcpState::Closed if !orderly => CloseReason::PeerReset,
        _ if orderly => CloseReason::LocalClose,
        _ => CloseReason::LocalError,
    }
}
