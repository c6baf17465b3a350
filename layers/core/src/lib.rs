#![doc = include_str!("../README.md")]
#![cfg_attr(not(feature = "tokio"), no_std)]
#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod event;
pub mod exchange;

#[cfg(feature = "embassy-net")]
mod embassy;
#[cfg(feature = "tokio")]
pub mod tokio_stream;

pub use core::net::SocketAddr;
pub use embedded_io_async::{ErrorKind, ErrorType, Read, Write};
mod layer;
pub use exchange::Exchange;
pub use layer::{Identity, Layer, Stack};

/// The state of a TCP connection, as RFC 793 names it.
///
/// This is the state the local stack reports. Stacks that do not expose it (a tokio
/// stream) report what the adapter knows from the calls made on it; see
/// [`Connection::state`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum TcpState {
    /// No connection, and the socket is not listening.
    Closed,
    /// Waiting for a SYN (an `accept()` in progress).
    Listen,
    /// SYN sent, waiting for SYN-ACK.
    SynSent,
    /// SYN received, waiting for the final ACK of the handshake.
    SynReceived,
    /// Data flows both ways.
    Established,
    /// We sent FIN; waiting for its ACK.
    FinWait1,
    /// Our FIN is acknowledged; waiting for the peer's FIN.
    FinWait2,
    /// The peer sent FIN; we may still send.
    CloseWait,
    /// Both sides sent FIN at once; waiting for the ACK of ours.
    Closing,
    /// The peer closed first, we sent FIN after; waiting for its ACK.
    LastAck,
    /// Both FINs exchanged; the socket lingers (10 s on smoltcp, 120 s on lwIP).
    TimeWait,
}

impl TcpState {
    /// True while the peer may still send us data (`Established`, `FinWait1`, `FinWait2`).
    pub const fn may_recv(self) -> bool {
        matches!(self, Self::Established | Self::FinWait1 | Self::FinWait2)
    }

    /// True while we may still send data (`Established`, `CloseWait`).
    pub const fn may_send(self) -> bool {
        matches!(self, Self::Established | Self::CloseWait)
    }

    /// True when the socket holds no connection (`Closed` or `Listen`): the slot is free.
    pub const fn is_free(self) -> bool {
        matches!(self, Self::Closed | Self::Listen)
    }

    /// True in the states that follow a local or remote FIN and precede `Closed`:
    /// the ones that hold a slot after the application is done with it.
    pub const fn is_closing(self) -> bool {
        matches!(
            self,
            Self::FinWait1
                | Self::FinWait2
                | Self::CloseWait
                | Self::Closing
                | Self::LastAck
                | Self::TimeWait
        )
    }
}

/// The stack cannot do what was asked (a socket option it does not have).
///
/// Layers that meet it report it once through the [`event`] path and carry on: an
/// unsupported option never fails a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Unsupported;

impl core::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("operation not supported by this TCP stack")
    }
}

impl core::error::Error for Unsupported {}

/// Which deadline ended a connection. A request is the unit a request/response
/// protocol reads before it answers (for HTTP, the request head).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Deadline {
    /// A new connection sent no byte in time.
    FirstByte,
    /// A connection between requests sent no byte of the next one in time.
    Idle,
    /// A request was started but not completed in time (a slow sender, slowloris).
    Request,
    /// A request grew beyond the allowed size before it was complete.
    RequestTooLarge,
    /// A response made no send progress in time (slow reader or vanished peer).
    Stall,
    /// A long-lived stream's peer showed no sign of life (a pong, any frame, the
    /// acknowledgement of a keepalive) within the keepalive deadline: it vanished
    /// without a FIN or RST (power loss, Wi-Fi out of range, a killed tab behind NAT).
    Keepalive,
}

impl Deadline {
    /// A short, stable name (`"first_byte"`, `"idle"`, `"request"`,
    /// `"request_too_large"`, `"stall"`, `"keepalive"`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::FirstByte => "first_byte",
            Self::Idle => "idle",
            Self::Request => "request",
            Self::RequestTooLarge => "request_too_large",
            Self::Stall => "stall",
            Self::Keepalive => "keepalive",
        }
    }
}

/// How a connection ended. The quiet-close logger picks a log level per reason and the
/// counters count per reason.
///
/// Embassy-net reports a peer's RST, a keep-alive timeout and a local abort all as
/// `ConnectionReset`; the classification therefore comes from the layer that ended the
/// connection ([`Connection::close_reason`]) or, failing that, from the TCP state and
/// whether a response was in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum CloseReason {
    /// The peer closed (FIN) between requests: the normal end of a keep-alive connection.
    PeerClosed,
    /// The peer closed or reset while a response was being sent: a browser cancel
    /// (image swap, tab close, navigation). Not a fault of the device.
    ClientCancelled,
    /// The peer reset the connection while no response was in flight.
    PeerReset,
    /// The server ended the connection itself after it was done with it.
    LocalClose,
    /// A deadline passed (the reaper's, or one the wrapped server enforces).
    Reaped(Deadline),
    /// Closed to free a slot for a new connection: the least recently active idle
    /// keep-alive connection.
    Evicted,
    /// Refused because the budget of its class (request or stream) was full.
    OverBudget,
    /// An error that the peer did not cause: the stack failed, the server's handler
    /// failed, a write was injected to fail.
    LocalError,
}

impl CloseReason {
    /// Every reason, in declaration order (each deadline listed once).
    pub const ALL: [CloseReason; 13] = [
        Self::PeerClosed,
        Self::ClientCancelled,
        Self::PeerReset,
        Self::LocalClose,
        Self::Reaped(Deadline::FirstByte),
        Self::Reaped(Deadline::Idle),
        Self::Reaped(Deadline::Request),
        Self::Reaped(Deadline::RequestTooLarge),
        Self::Reaped(Deadline::Stall),
        Self::Reaped(Deadline::Keepalive),
        Self::Evicted,
        Self::OverBudget,
        Self::LocalError,
    ];

    /// The position of this reason in [`CloseReason::ALL`]: a dense index for counter
    /// arrays.
    pub const fn index(self) -> usize {
        match self {
            Self::PeerClosed => 0,
            Self::ClientCancelled => 1,
            Self::PeerReset => 2,
            Self::LocalClose => 3,
            Self::Reaped(Deadline::FirstByte) => 4,
            Self::Reaped(Deadline::Idle) => 5,
            Self::Reaped(Deadline::Request) => 6,
            Self::Reaped(Deadline::RequestTooLarge) => 7,
            Self::Reaped(Deadline::Stall) => 8,
            Self::Reaped(Deadline::Keepalive) => 9,
            Self::Evicted => 10,
            Self::OverBudget => 11,
            Self::LocalError => 12,
        }
    }

    /// A short, stable name, e.g. `"client_cancelled"` or `"reaped_stall"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::PeerClosed => "peer_closed",
            Self::ClientCancelled => "client_cancelled",
            Self::PeerReset => "peer_reset",
            Self::LocalClose => "local_close",
            Self::Reaped(Deadline::FirstByte) => "reaped_first_byte",
            Self::Reaped(Deadline::Idle) => "reaped_idle",
            Self::Reaped(Deadline::Request) => "reaped_request",
            Self::Reaped(Deadline::RequestTooLarge) => "reaped_request_too_large",
            Self::Reaped(Deadline::Stall) => "reaped_stall",
            Self::Reaped(Deadline::Keepalive) => "reaped_keepalive",
            Self::Evicted => "evicted",
            Self::OverBudget => "over_budget",
            Self::LocalError => "local_error",
        }
    }

    /// True when the reason is an orderly end, where a FIN is the right way to finish:
    /// `PeerClosed`, `LocalClose` and `Evicted`. An evicted connection is an idle
    /// keep-alive one whose last response may still be unacknowledged (eviction can come
    /// right after the response when a burst arrives, and a server that flushes into the
    /// send buffer does not wait for the ACK): an RST would drop that tail, while a
    /// browser answers a FIN within a round trip. For every other reason the default
    /// [`Connection::end`] aborts, since the peer is gone, hostile or not worth a linger
    /// (`Reaped(Idle)` included: after seconds of silence nothing is in flight, and a
    /// silent peer would hold a FIN-closed socket in FIN_WAIT_2).
    pub const fn is_orderly(self) -> bool {
        matches!(self, Self::PeerClosed | Self::LocalClose | Self::Evicted)
    }

    /// True when the peer caused the end (a cancel, a reset, a clean close): nothing the
    /// device did wrong, so not worth an error line.
    pub const fn is_peer_caused(self) -> bool {
        matches!(
            self,
            Self::PeerClosed | Self::ClientCancelled | Self::PeerReset
        )
    }
}

impl core::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a connection is used for, so a budget can cap each kind separately.
///
/// Every connection starts as [`ConnectionClass::Request`]. A server that turns one into
/// a long-lived stream (SSE, WebSocket, long poll) calls [`Connection::set_class`] first,
/// so streams cannot take the slots page loads need.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ConnectionClass {
    /// A page, an asset or an API call: short, request then response.
    #[default]
    Request,
    /// A long-lived stream: SSE, WebSocket, long poll.
    Stream,
}

/// The budget of the asked class is full: the connection keeps its old class, and the
/// server refuses what it was about to start (for HTTP, a `503` or, for an event
/// stream, a `retry:` answer; see the adapters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ClassFull {
    /// The class that was asked for.
    pub class: ConnectionClass,
}

impl core::fmt::Display for ClassFull {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.class {
            ConnectionClass::Request => f.write_str("request budget full"),
            ConnectionClass::Stream => f.write_str("stream budget full"),
        }
    }
}

impl core::error::Error for ClassFull {}

/// A TCP connection that layers can wrap: the I/O of embedded-io-async plus what a
/// layer needs from the stack.
///
/// Every wrapper in this project implements `Connection` by delegating what it does
/// not change to the connection it wraps, so `Quiet<Reaper<Chunked<TcpSocket>>>` is a
/// `Connection` like the socket itself, and so is `&mut` of any connection.
///
/// Methods with a default answer "not supported" or "not known"; an implementation
/// overrides what its stack can do.
#[allow(async_fn_in_trait)] // embassy-net sockets are !Send; a Send bound would only exclude them
pub trait Connection: Read + Write {
    /// The TCP state as the local stack sees it.
    fn state(&self) -> TcpState;

    /// Turns Nagle's algorithm off (`true`, TCP_NODELAY) or on (`false`).
    ///
    /// Nagle holds a small segment back until the previous one is acknowledged: a
    /// response written as head then body waits one delayed ACK (10 ms on smoltcp,
    /// 40-200 ms on desktop peers) before its body leaves.
    fn set_nodelay(&mut self, on: bool) -> Result<(), Unsupported> {
        let _ = on;
        Err(Unsupported)
    }

    /// Closes the write half: queued data is still sent, the last segment carries FIN.
    /// Reads go on until the peer closes too.
    fn close_write(&mut self);

    /// Resets the connection: queued data is dropped and an RST is sent. On embassy-net
    /// the RST leaves with the next poll of the stack, so follow it with
    /// [`Write::flush`] before the socket is reused or dropped.
    fn abort(&mut self);

    /// The peer's address, while connected.
    fn remote(&self) -> Option<SocketAddr> {
        None
    }

    /// Our own address, while connected.
    fn local(&self) -> Option<SocketAddr> {
        None
    }

    /// Bytes written but not yet acknowledged by the peer, where the stack tells.
    fn send_queue(&self) -> Option<usize> {
        None
    }

    /// Bytes received and not yet read, where the stack tells.
    fn recv_queue(&self) -> Option<usize> {
        None
    }

    /// The error value an operation returns after a layer ended the connection for
    /// `reason`. Layers keep the error type of the connection they wrap (so a wrapped
    /// socket fits code written for the socket) and learn the precise reason from
    /// [`Connection::close_reason`].
    fn ended_error(&self, reason: CloseReason) -> Self::Error;

    /// Why the connection ended, if a layer in the stack ended it or decided how it
    /// ended. `None` while it is alive or when no layer knows.
    ///
    /// The rule every layer follows: a layer that ends a connection itself (a deadline,
    /// an eviction) remembers its reason, answers it here, and its `end` uses it instead
    /// of the caller's guess; every other layer delegates inward, and in its own `end`
    /// takes [`Connection::end_reason`] of the `reason` it was given. So the reason the
    /// deepest layer knows wins, whatever the order of the stack.
    fn close_reason(&self) -> Option<CloseReason> {
        None
    }

    /// The reason an end asked for with `proposed` goes by: the reason a layer of the
    /// stack already decided ([`Connection::close_reason`]), else `proposed`. Every
    /// layer's `end` passes its reason through this, so the deepest layer's reason wins
    /// whatever the order of the stack. Not meant to be overridden.
    fn end_reason(&self, proposed: CloseReason) -> CloseReason {
        self.close_reason().unwrap_or(proposed)
    }

    /// Moves the connection to another [`ConnectionClass`]. Without a budget layer in the
    /// stack every class is admitted. A budget layer answers [`ClassFull`] when the cap
    /// of `class` is reached; the connection then keeps its class.
    fn set_class(&mut self, class: ConnectionClass) -> Result<(), ClassFull> {
        let _ = class;
        Ok(())
    }

    /// Ends the connection for `reason` and waits until the stack has acted on it.
    ///
    /// The default is what a careful embassy-net server does by hand: for an orderly
    /// reason, FIN then flush (which does not finish while the peer withholds its ACK:
    /// a vanished peer holds the socket, see the timewait layer); for any other reason,
    /// RST then flush, which finishes as soon as the RST is out. Layers override it: the
    /// quiet logger records the reason, the timewait layer bounds the linger and aborts.
    async fn end(&mut self, reason: CloseReason) {
        if reason.is_orderly() {
            self.close_write();
        } else {
            self.abort();
        }
        let _ = self.flush().await;
    }
}

impl<C: Connection + ?Sized> Connection for &mut C {
    fn state(&self) -> TcpState {
        (**self).state()
    }
    fn set_nodelay(&mut self, on: bool) -> Result<(), Unsupported> {
        (**self).set_nodelay(on)
    }
    fn close_write(&mut self) {
        (**self).close_write()
    }
    fn abort(&mut self) {
        (**self).abort()
    }
    fn remote(&self) -> Option<SocketAddr> {
        (**self).remote()
    }
    fn local(&self) -> Option<SocketAddr> {
        (**self).local()
    }
    fn send_queue(&self) -> Option<usize> {
        (**self).send_queue()
    }
    fn recv_queue(&self) -> Option<usize> {
        (**self).recv_queue()
    }
    fn ended_error(&self, reason: CloseReason) -> Self::Error {
        (**self).ended_error(reason)
    }
    fn close_reason(&self) -> Option<CloseReason> {
        (**self).close_reason()
    }
    fn set_class(&mut self, class: ConnectionClass) -> Result<(), ClassFull> {
        (**self).set_class(class)
    }
    fn end(&mut self, reason: CloseReason) -> impl core::future::Future<Output = ()> {
        (**self).end(reason)
    }
}

/// Delegates every [`Connection`] method but the ones listed to a field, for wrapper
/// types whose layer changes only a few of them.
///
/// ```
/// use tcp_layers_core::{CloseReason, Connection, delegate_connection, delegate_io};
///
/// /// Counts the connections that ended.
/// struct Counted<C> {
///     inner: C,
///     ended: u32,
/// }
/// delegate_io!(Counted, inner); // reads and writes pass through unchanged
///
/// impl<C: Connection> Connection for Counted<C> {
///     delegate_connection!(inner; state, close_write, abort, ended_error);
///     // ... the methods this layer changes
///     async fn end(&mut self, reason: CloseReason) {
///         self.ended += 1;
///         self.inner.end(self.end_reason(reason)).await
///     }
/// }
/// ```
/// Each name after `;` is delegated to `self.$field`. Names: `state`, `set_nodelay`,
/// `close_write`, `abort`, `remote`, `local`, `send_queue`, `recv_queue`,
/// `ended_error`, `close_reason`, `set_class`, `end`.
#[macro_export]
macro_rules! delegate_connection {
    ($field:ident; $($method:ident),* $(,)?) => {
        $( $crate::__delegate_one!($field, $method); )*
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __delegate_one {
    ($f:ident, state) => {
        fn state(&self) -> $crate::TcpState {
            self.$f.state()
        }
    };
    ($f:ident, set_nodelay) => {
        fn set_nodelay(&mut self, on: bool) -> Result<(), $crate::Unsupported> {
            self.$f.set_nodelay(on)
        }
    };
    ($f:ident, close_write) => {
        fn close_write(&mut self) {
            self.$f.close_write()
        }
    };
    ($f:ident, abort) => {
        fn abort(&mut self) {
            self.$f.abort()
        }
    };
    ($f:ident, remote) => {
        fn remote(&self) -> Option<$crate::SocketAddr> {
            self.$f.remote()
        }
    };
    ($f:ident, local) => {
        fn local(&self) -> Option<$crate::SocketAddr> {
            self.$f.local()
        }
    };
    ($f:ident, send_queue) => {
        fn send_queue(&self) -> Option<usize> {
            self.$f.send_queue()
        }
    };
    ($f:ident, recv_queue) => {
        fn recv_queue(&self) -> Option<usize> {
            self.$f.recv_queue()
        }
    };
    ($f:ident, ended_error) => {
        fn ended_error(&self, reason: $crate::CloseReason) -> Self::Error {
            self.$f.ended_error(reason)
        }
    };
    ($f:ident, close_reason) => {
        fn close_reason(&self) -> Option<$crate::CloseReason> {
            self.$f.close_reason()
        }
    };
    ($f:ident, set_class) => {
        fn set_class(&mut self, class: $crate::ConnectionClass) -> Result<(), $crate::ClassFull> {
            self.$f.set_class(class)
        }
    };
    ($f:ident, end) => {
        // The inner future itself, not an `async` block around it: one state machine
        // less per layer in the firmware.
        fn end(&mut self, reason: $crate::CloseReason) -> impl ::core::future::Future<Output = ()> {
            self.$f.end(reason)
        }
    };
}

/// Implements `embedded_io_async::{ErrorType, Read, Write}` for a wrapper by passing
/// every call to a field unchanged; for layers that only change the [`Connection`]
/// side. `Wrapper<C>` must have one type parameter `C: Connection`.
#[macro_export]
macro_rules! delegate_io {
    ($wrapper:ident, $field:ident) => {
        impl<C: $crate::Connection> $crate::ErrorType for $wrapper<C> {
            type Error = C::Error;
        }
        // The inner futures themselves, not `async` blocks around them: no state
        // machine of its own per layer and call.
        impl<C: $crate::Connection> $crate::Read for $wrapper<C> {
            fn read(
                &mut self,
                buf: &mut [u8],
            ) -> impl ::core::future::Future<Output = Result<usize, Self::Error>> {
                self.$field.read(buf)
            }
        }
        impl<C: $crate::Connection> $crate::Write for $wrapper<C> {
            fn write(
                &mut self,
                buf: &[u8],
            ) -> impl ::core::future::Future<Output = Result<usize, Self::Error>> {
                self.$field.write(buf)
            }
            fn flush(&mut self) -> impl ::core::future::Future<Output = Result<(), Self::Error>> {
                self.$field.flush()
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_index_matches_all() {
        for (i, r) in CloseReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i, "{r}");
        }
        let mut names: [&str; CloseReason::ALL.len()] = CloseReason::ALL.map(|r| r.as_str());
        names.sort_unstable();
        assert!(names.windows(2).all(|w| w[0] != w[1]), "names are unique");
    }

    #[test]
    fn orderly_and_peer_caused_are_disjoint_where_they_should_be() {
        assert!(CloseReason::PeerClosed.is_orderly() && CloseReason::PeerClosed.is_peer_caused());
        assert!(!CloseReason::ClientCancelled.is_orderly());
        assert!(CloseReason::Evicted.is_orderly());
        assert!(!CloseReason::Reaped(Deadline::Idle).is_orderly());
        assert!(!CloseReason::Reaped(Deadline::Stall).is_orderly());
        assert!(!CloseReason::Reaped(Deadline::Stall).is_peer_caused());
        assert!(!CloseReason::LocalError.is_peer_caused());
    }

    #[test]
    fn states_that_hold_a_slot() {
        assert!(TcpState::Listen.is_free() && TcpState::Closed.is_free());
        assert!(!TcpState::TimeWait.is_free() && TcpState::TimeWait.is_closing());
        assert!(TcpState::Established.may_send() && TcpState::Established.may_recv());
        assert!(!TcpState::FinWait2.may_send());
    }
}
