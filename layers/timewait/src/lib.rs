//! A closed connection must give its socket back. On an embedded stack it often does
//! not: after the server's FIN, smoltcp (embassy-net) keeps the socket in FIN_WAIT_2 for
//! as long as the peer stays silent and `close(); flush().await` never returns to a
//! peer that vanished; lwIP (ESP-IDF) keeps every closed PCB in TIME_WAIT for 120 s, of
//! 16. A device with 4 to 8 sockets loses a slot per such close, and the next client
//! gets an RST or hangs.
//!
//! [`TimeWait`] wraps a connection so that [`Connection::end`] closes with a bounded
//! linger:
//!
//! 1. for an orderly reason ([`CloseReason::is_orderly`]): the orderly end of the layers
//!    below (on a socket: FIN, then a flush that returns once the peer acknowledged
//!    every byte and the FIN), then read and discard what the peer still sends until
//!    its own FIN, all within the linger (default 2 s, see [`TimeWait::DEFAULT_LINGER`]);
//! 2. then, and for any other reason at once: RST and flush, so the socket is free
//!    (`Closed`) when `end` returns, instead of sitting in TIME_WAIT or FIN_WAIT.
//!
//! The RST leaves once the peer acknowledged everything and closed its side (so its
//! application has read the response), or when the linger expires. Only then can it
//! cost bytes: those still unacknowledged after the whole linger, which takes a peer
//! that vanished, or a link slower than the transmit buffer per linger (8 KiB in 2 s:
//! 32 kbit/s). A peer that acknowledged everything but never closes loses nothing.
//!
//! ```ignore
//! use tcp_layers_core::{CloseReason, Connection, Layer};
//! use tcp_layers_timewait::TimeWait;
//!
//! let mut conn = TimeWait::new().layer(&mut socket);
//! // ... serve the request ...
//! conn.end(CloseReason::LocalClose).await; // socket is Closed here, ready for accept()
//! ```
//!
//! What dropping the wrapper does without `end` is documented on [`TimeWaitConnection`];
//! the [`Sweeper`] aborts connections an application holds in a closing state for
//! too long (the seed: every 30 s).
#![no_std]
#![deny(missing_docs)]
#![deny(unsafe_code)]

use core::future::poll_fn;
use core::pin::{Pin, pin};
use core::task::Poll;

use embassy_time::{Duration, Instant, Timer};
use tcp_layers_core::{CloseReason, Connection, Layer, emit_log};

mod sweep;
pub use sweep::{Sweeper, Verdict};

/// The timewait layer: a `Copy` config value; [`Layer::layer`] wraps a connection in a
/// [`TimeWaitConnection`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeWait {
    linger_ms: u32,
}

impl TimeWait {
    /// The default linger: 2 s.
    ///
    /// nginx lingers 5 s (`lingering_timeout`) on a server with thousands of sockets; a
    /// device has 4 to 8, so the bound is shorter. It still covers a live peer with room
    /// to spare: the FIN is acknowledged within one round trip (20 ms on a good WiFi
    /// link, a few hundred ms on a bad one), a browser closes its side as soon as it
    /// reads the FIN, and one lost final segment or FIN is retransmitted after smoltcp's
    /// minimum retransmission timeout of 1 s and still acknowledged in time.
    pub const DEFAULT_LINGER: Duration = Duration::from_secs(2);

    /// The layer with the default linger ([`TimeWait::DEFAULT_LINGER`], 2 s).
    pub const fn new() -> Self {
        Self::with_linger(Self::DEFAULT_LINGER)
    }

    /// The layer with a linger of `linger` (millisecond resolution, at most about 49
    /// days). `Duration::from_millis(0)` aborts at once, like `SO_LINGER 0`: unacknowledged
    /// data is lost.
    pub const fn with_linger(linger: Duration) -> Self {
        let ms = linger.as_millis();
        let linger_ms = if ms > u32::MAX as u64 {
            u32::MAX
        } else {
            ms as u32
        };
        Self { linger_ms }
    }

    /// The linger this layer applies.
    pub const fn linger(&self) -> Duration {
        Duration::from_millis(self.linger_ms as u64)
    }
}

impl Default for TimeWait {
    fn default() -> Self {
        Self::new()
    }
}

impl<C: Connection> Layer<C> for TimeWait {
    type Service = TimeWaitConnection<C>;

    fn layer(&self, inner: C) -> TimeWaitConnection<C> {
        TimeWaitConnection {
            inner,
            linger_ms: self.linger_ms,
        }
    }
}

/// A connection whose [`Connection::end`] lingers at most the configured time and
/// then resets, so the socket is free when `end` returns. Reads and writes pass through
/// untouched. Per-connection state: the linger, 4 bytes.
///
/// # Dropping it without `end`
///
/// `Drop` cannot wait, so it does the one thing that loses no data:
/// - the connection holds nothing (`Closed`, `Listen`): nothing;
/// - the peer acknowledged every byte written (`send_queue() == Some(0)`): `abort()`,
///   an RST;
/// - otherwise (bytes in flight, or a stack that does not tell, such as the tokio
///   adapter): `close_write()`, a FIN after the queued bytes. The socket then closes the
///   way the stack closes it, lingering included.
///
/// On embassy-net both leave with the next poll of the stack, and only if the socket
/// still exists then: wrap `&mut socket` and let the accept loop keep the socket. A
/// `TcpSocket` dropped together with the wrapper is removed from the stack at once and
/// sends nothing at all, whatever this `Drop` asked (the peer learns of it from an RST
/// to its next segment). An `accept()` before the next poll resets the socket without
/// sending the RST, with the same effect for the peer.
///
/// Drop therefore frees the slot, but `end` is the way to close: it is the only one
/// that waits for the peer's acknowledgement and sends the RST for sure.
///
/// An `end` future dropped half-way (a server that gives up on the linger) leaves
/// nothing behind: the layer holds no permit, buffer or counter, and dropping the
/// wrapper afterwards applies the rules above (after the FIN was acknowledged, an RST).
pub struct TimeWaitConnection<C: Connection> {
    inner: C,
    linger_ms: u32,
}

/// How the linger of an orderly close finished (for the log line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LingerEnd {
    /// The peer acknowledged everything and closed its side (or the stack ended the
    /// connection on its own, e.g. the peer's RST).
    PeerDone,
    /// The linger expired first.
    Expired,
}

impl<C: Connection> TimeWaitConnection<C> {
    /// The wrapped connection.
    pub fn get_ref(&self) -> &C {
        &self.inner
    }

    /// The wrapped connection, mutably. Ending it through this reference bypasses the
    /// linger.
    pub fn get_mut(&mut self) -> &mut C {
        &mut self.inner
    }

    /// The linger this connection applies.
    pub fn linger(&self) -> Duration {
        Duration::from_millis(self.linger_ms as u64)
    }

    /// The end of the layers below; with a `linger`, then the peer's side read to its
    /// FIN and discarded, all within the linger. Without one (after an abort) the end
    /// of the layers below only sends the RST and runs unbounded. One function for both
    /// ways, so the firmware holds one copy of the inner `end`.
    async fn end_below(&mut self, reason: CloseReason, linger: Option<Duration>) -> LingerEnd {
        let mut timer = linger.map(Timer::after);
        let inner = &mut self.inner;
        let peer_done = async move {
            // The layers below finish their part first: one that holds bytes back (a
            // coalescing buffer) writes them before the FIN.
            inner.end(reason).await;
            // An RST that reaches the peer before its application read the response can
            // cost it the response on some stacks: wait until the peer closes too.
            let mut discard = [0u8; 64];
            while linger.is_some()
                && let Ok(n) = inner.read(&mut discard).await
            {
                if n == 0 {
                    break;
                }
            }
        };
        let mut peer_done = pin!(peer_done);
        poll_fn(|cx| {
            if peer_done.as_mut().poll(cx).is_ready() {
                return Poll::Ready(LingerEnd::PeerDone);
            }
            match &mut timer {
                Some(timer) => Pin::new(timer).poll(cx).map(|()| LingerEnd::Expired),
                None => Poll::Pending,
            }
        })
        .await
    }
}

impl<C: Connection> Drop for TimeWaitConnection<C> {
    fn drop(&mut self) {
        if self.inner.state().is_free() {
            return;
        }
        let acked = self.inner.send_queue() == Some(0);
        emit_log!(
            trace,
            "timewait: dropped without end, {}",
            if acked {
                "all data acked: RST"
            } else {
                "data in flight: FIN"
            }
        );
        if acked {
            self.inner.abort();
        } else {
            self.inner.close_write();
        }
    }
}

tcp_layers_core::delegate_io!(TimeWaitConnection, inner);

impl<C: Connection> Connection for TimeWaitConnection<C> {
    tcp_layers_core::delegate_connection!(inner;
        state, set_nodelay, close_write, abort, remote, local, send_queue, recv_queue,
        ended_error, close_reason, set_class);

    /// Ends the connection. For an orderly reason: the orderly `end` of the layers
    /// below (on a socket: FIN, then flush until everything is acknowledged), then the
    /// peer's data read and discarded up to its FIN, both within the linger; then RST
    /// and flush. For any other reason, or a zero linger: RST, then the `end` of the
    /// layers below. The reason a layer below already recorded
    /// ([`Connection::close_reason`]) wins over `reason`. When this returns the socket
    /// holds no connection.
    async fn end(&mut self, reason: CloseReason) {
        let reason = self.inner.close_reason().unwrap_or(reason);
        let linger = (reason.is_orderly() && self.linger_ms != 0).then(|| self.linger());
        if linger.is_none() {
            // Nothing to wait for: the layers below see the end of an aborted
            // connection (a logger below records the reason), their flush sends the RST.
            self.inner.abort();
        }
        let started = Instant::now();
        let how = self.end_below(reason, linger).await;
        if linger.is_none() {
            return;
        }
        let waited_ms = started.elapsed().as_millis();
        match how {
            LingerEnd::PeerDone => {
                emit_log!(trace, "timewait: peer done after {} ms, RST", waited_ms)
            }
            LingerEnd::Expired => {
                emit_log!(
                    debug,
                    "timewait: linger expired after {} ms, RST",
                    waited_ms
                )
            }
        }
        // The RST frees the socket at once; after a completed linger the peer has
        // everything and has closed, after an expired one it took no data for the
        // whole linger. On embassy-net it leaves with the flush.
        self.inner.abort();
        let _ = self.inner.flush().await;
    }
}
