//! For adapters that hand a layered connection to an HTTP server that already exists
//! (picoserve, edge-http): read and write halves that take turns on one connection,
//! the read result a server handles quietly, and the close reason of a server's
//! shutdown or abort.
//!
//! # What the server reads after a layer ended the connection
//!
//! A layer that ends a connection itself (the reaper's deadline, the budget's eviction
//! or refusal, a refused stream) decides its [`CloseReason`]; the connection's reads
//! then fail or end. An adapter hands the server the end of the stream (`Ok(0)`) in
//! that case ([`quiet_read`]), the form every server handles quietly as a finished
//! connection: picoserve returns `Read(ConnectionReset)` from `serve` for a read error
//! (a firmware counts it as a server error) and edge-http logs every I/O error at WARN.
//! A read error on a connection that no layer ended (the peer's reset, a fault of the
//! stack) stays an error: "ended by a layer" means a close reason that is neither
//! caused by the peer ([`CloseReason::is_peer_caused`]) nor [`CloseReason::LocalError`],
//! since the quiet layer answers those from its own classification of the failure.
use tcp_layers_core::{CloseReason, Connection, TcpState};

mod split;
pub use split::{ReadHalf, Split, WriteHalf};

/// How the server asked to end the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// A graceful shutdown: the server is done with the connection.
    Shutdown,
    /// An abort: the server gave up on it.
    Abort,
}

/// The reason to end `conn` with: the one a layer of the stack knows
/// ([`Connection::close_reason`]) or, failing that, a guess from the TCP state and how
/// the server asked to end it.
pub fn server_end_reason(conn: &impl Connection, ending: Ending) -> CloseReason {
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
pub fn ended_by_layer(conn: &impl Connection) -> bool {
    conn.close_reason()
        .is_some_and(|r| !r.is_peer_caused() && r != CloseReason::LocalError)
}

/// A read's result as the server should see it: the end of the stream instead of an
/// error once a layer ended the connection (see the [module docs](self)).
pub fn quiet_read<C: Connection>(
    conn: &C,
    result: Result<usize, C::Error>,
) -> Result<usize, C::Error> {
    match result {
        Err(_) if ended_by_layer(conn) => Ok(0),
        other => other,
    }
}
