//! How a close is classified from what the connection saw: where the exchange stood,
//! the first failure, the TCP state and the send queue.
//!
//! embassy-net answers a peer's RST, a retransmission timeout and a local abort alike
//! with `ConnectionReset`, and an RST empties the send queue and answers a pending
//! `flush()` with `Ok`. So the error value says little; the state says whether the
//! stack still holds the connection (then the failure was not the peer's), and the
//! exchange says whether a response was in flight.
use embedded_io_async::ErrorKind;
use tcp_layers_core::{CloseReason, Exchange, TcpState};

/// The first thing that went wrong, as the wrapper saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// A read returned 0 bytes for a non-empty buffer: the peer's FIN.
    Eof,
    /// A read failed.
    Read(ErrorKind),
    /// A write or a flush failed.
    Write(ErrorKind),
    /// A flush returned `Ok` while a response was in flight but the socket had already
    /// lost the connection: embassy-net's answer to an RST that arrived mid-response.
    LostInFlush,
}

/// The reason for `failure`, seen with the exchange at `exchange`, with the stack now in `state` and
/// `unacked` bytes in its send queue (`None` where the stack does not tell).
pub(crate) fn classify(
    failure: Failure,
    exchange: Exchange,
    state: TcpState,
    unacked: Option<usize>,
) -> CloseReason {
    match failure {
        // The stack still holds the connection open in the direction that failed, so
        // the peer did not cause it: a layer, an adapter or an injected fault did.
        Failure::Read(_) if state.may_recv() => CloseReason::LocalError,
        Failure::Write(_) if state.may_send() => CloseReason::LocalError,
        Failure::Read(kind) | Failure::Write(kind) if !is_peer_kind(kind) => {
            CloseReason::LocalError
        }
        Failure::Write(_) | Failure::LostInFlush => CloseReason::ClientCancelled,
        Failure::Eof | Failure::Read(_) => {
            if response_in_flight(exchange, state, unacked) {
                CloseReason::ClientCancelled
            } else if failure == Failure::Eof {
                CloseReason::PeerClosed
            } else {
                CloseReason::PeerReset
            }
        }
    }
}

/// The reason for a connection dropped without `end()` and without a failure seen.
pub(crate) fn classify_drop(
    exchange: Exchange,
    state: TcpState,
    unacked: Option<usize>,
) -> CloseReason {
    match state {
        // The connection is gone and nobody read the error: a reset or a timeout.
        TcpState::Closed | TcpState::Listen => {
            if response_in_flight(exchange, state, unacked) {
                CloseReason::ClientCancelled
            } else {
                CloseReason::PeerReset
            }
        }
        // The peer's FIN arrived first.
        TcpState::CloseWait | TcpState::LastAck => {
            if response_in_flight(exchange, state, unacked) {
                CloseReason::ClientCancelled
            } else {
                CloseReason::PeerClosed
            }
        }
        // Alive, or closing after our own FIN: the server let go of it.
        _ => CloseReason::LocalClose,
    }
}

/// True when the peer had not received the whole response (or had a request pending)
/// at the moment it left.
fn response_in_flight(exchange: Exchange, state: TcpState, unacked: Option<usize>) -> bool {
    // An RST empties the send queue, so the queue proves delivery only while the
    // stack still holds the connection.
    let queue_known = !state.is_free();
    match exchange {
        Exchange::Fresh => false,
        // A request was being read and got no answer: the client gave up on it.
        Exchange::Request => true,
        Exchange::Response => !(queue_known && unacked == Some(0)),
        Exchange::Responded => queue_known && unacked.is_some_and(|n| n > 0),
    }
}

/// Error kinds that mean "the peer or the path went away", as opposed to a local fault.
fn is_peer_kind(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::BrokenPipe
            | ErrorKind::NotConnected
            | ErrorKind::TimedOut
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use CloseReason::*;
    use ErrorKind::ConnectionReset as Reset;
    use TcpState::*;

    #[test]
    fn a_reset_mid_response_is_a_cancel_even_after_the_queue_was_cleared() {
        // embassy-net: write fails with ConnectionReset, state Closed.
        assert_eq!(
            classify(Failure::Write(Reset), Exchange::Response, Closed, Some(0)),
            ClientCancelled
        );
        // The RST landed during flush: Ok, but the socket is gone.
        assert_eq!(
            classify(Failure::LostInFlush, Exchange::Response, Closed, Some(0)),
            ClientCancelled
        );
        // The server read before flushing; the RST emptied the queue.
        assert_eq!(
            classify(Failure::Read(Reset), Exchange::Response, Closed, Some(0)),
            ClientCancelled
        );
    }

    #[test]
    fn fin_at_a_request_boundary_is_a_peer_close() {
        assert_eq!(
            classify(Failure::Eof, Exchange::Responded, CloseWait, Some(0)),
            PeerClosed
        );
        assert_eq!(
            classify(Failure::Eof, Exchange::Fresh, CloseWait, Some(0)),
            PeerClosed
        );
        // Written without flush, but every byte acknowledged before the FIN.
        assert_eq!(
            classify(Failure::Eof, Exchange::Response, CloseWait, Some(0)),
            PeerClosed
        );
    }

    #[test]
    fn fin_with_bytes_unacknowledged_or_a_request_pending_is_a_cancel() {
        assert_eq!(
            classify(Failure::Eof, Exchange::Response, CloseWait, Some(900)),
            ClientCancelled
        );
        assert_eq!(
            classify(Failure::Eof, Exchange::Request, CloseWait, Some(0)),
            ClientCancelled
        );
    }

    #[test]
    fn a_reset_while_idle_is_a_peer_reset() {
        assert_eq!(
            classify(Failure::Read(Reset), Exchange::Responded, Closed, Some(0)),
            PeerReset
        );
        assert_eq!(
            classify(Failure::Read(Reset), Exchange::Fresh, Closed, None),
            PeerReset
        );
    }

    #[test]
    fn a_failure_while_the_stack_holds_the_connection_is_local() {
        // An injected write fault: the socket is still established.
        assert_eq!(
            classify(
                Failure::Write(Reset),
                Exchange::Response,
                Established,
                Some(10)
            ),
            LocalError
        );
        assert_eq!(
            classify(
                Failure::Read(Reset),
                Exchange::Responded,
                Established,
                Some(0)
            ),
            LocalError
        );
        // An error that no peer produces.
        assert_eq!(
            classify(
                Failure::Write(ErrorKind::OutOfMemory),
                Exchange::Response,
                Closed,
                None
            ),
            LocalError
        );
    }

    #[test]
    fn a_drop_is_classified_from_the_state() {
        assert_eq!(
            classify_drop(Exchange::Responded, Established, Some(0)),
            LocalClose
        );
        assert_eq!(
            classify_drop(Exchange::Responded, TimeWait, Some(0)),
            LocalClose
        );
        assert_eq!(
            classify_drop(Exchange::Responded, CloseWait, Some(0)),
            PeerClosed
        );
        assert_eq!(
            classify_drop(Exchange::Response, Closed, Some(0)),
            ClientCancelled
        );
        assert_eq!(
            classify_drop(Exchange::Responded, Closed, Some(0)),
            PeerReset
        );
    }
}
