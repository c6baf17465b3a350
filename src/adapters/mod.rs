//! Adapters that hand a layered connection to an HTTP server that already exists.
//!
//! - [`picoserve`] (feature `picoserve`): [`picoserve::PicoserveSocket`] makes any
//!   layered [`Connection`](crate::Connection) a `picoserve::io::Socket`, and marks
//!   the requests for the paths it is given as streams.
//! - [`edge_nal`] (feature `edge-nal`): [`edge_nal::LayeredAcceptor`] is an
//!   `edge_nal::TcpAccept` over embassy-net that edge-http's `Server::run` takes as it is,
//!   with the same stream paths.
//!
//! # What the server reads after a layer ended the connection
//!
//! A layer that ends a connection itself (the reaper's deadline, the budget's eviction
//! or refusal, a refused stream) decides its [`CloseReason`]; the connection's reads
//! then fail or end. The adapters hand the server the end of the stream (`Ok(0)`) in
//! that case, the form every server handles quietly as a finished connection: picoserve
//! returns `Read(ConnectionReset)` from `serve` for a read error (a firmware counts it
//! as a server error) and edge-http logs every I/O error at WARN. A read error on a
//! connection that no layer ended (the peer's reset, a fault of the stack) stays an
//! error: "ended by a layer" means a close reason that is neither caused by the peer
//! ([`CloseReason::is_peer_caused`]) nor [`CloseReason::LocalError`], since the quiet
//! layer answers those from its own classification of the failure.
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

/// True when a layer of the stack ended `conn` and decided why (see the
/// [module docs](self)).
pub(crate) fn ended_by_layer(conn: &impl Connection) -> bool {
    conn.close_reason()
        .is_some_and(|r| !r.is_peer_caused() && r != CloseReason::LocalError)
}

/// A read's result as the server should see it: the end of the stream instead of an
/// error once a layer ended the connection (see the [module docs](self)).
pub(crate) fn quiet_read<C: Connection>(
    conn: &C,
    result: Result<usize, C::Error>,
) -> Result<usize, C::Error> {
    match result {
        Err(_) if ended_by_layer(conn) => Ok(0),
        other => other,
    }
}
