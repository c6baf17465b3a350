#![doc = include_str!("../README.md")]
#![no_std]
#![deny(missing_docs)]
#![deny(unsafe_code)]

use core::future::Future;
use core::pin::{Pin, pin};
use core::task::{Context, Poll};

use embassy_time::{Duration, Instant, Timer};
use tcp_layers_core::{CloseReason, Connection, Layer, TcpState};

// First: the logging macros are visible in the modules declared after it.
mod fmt;
mod sweep;
pub use sweep::{Sweeper, Verdict};

/// The timewait layer: a `Copy` config value; [`Layer::layer`] wraps a connection in a
/// [`TimeWait`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeWaitLayer {
    linger_ms: u32,
}

impl TimeWaitLayer {
    /// The default linger: 2 s.
    ///
    /// nginx lingers 5 s (`lingering_timeout`) on a server with thousands of sockets; a
    /// device has 4 to 8, so the bound is shorter. It is spent only while bytes of ours
    /// are unacknowledged, and still covers a live peer with room to spare: the last
    /// segments and the FIN are acknowledged within one round trip (20 ms on a good WiFi
    /// link, a few hundred ms on a bad one), and one lost final segment or FIN is
    /// retransmitted after smoltcp's minimum retransmission timeout of 1 s and still
    /// acknowledged in time.
    pub const DEFAULT_LINGER: Duration = Duration::from_secs(2);

    /// The layer with the default linger ([`TimeWaitLayer::DEFAULT_LINGER`], 2 s).
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

impl Default for TimeWaitLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<C: Connection> Layer<C> for TimeWaitLayer {
    type Service = TimeWait<C>;

    fn layer(&self, inner: C) -> TimeWait<C> {
        TimeWait {
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
pub struct TimeWait<C: Connection> {
    inner: C,
    linger_ms: u32,
}

/// How the linger of an orderly close finished (for the log line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LingerEnd {
    /// The peer acknowledged every byte and our FIN.
    Acknowledged,
    /// The peer closed its side, or the stack ended the connection on its own (the
    /// peer's RST): what a stack that does not report its send queue waits for.
    PeerDone,
    /// The linger expired first.
    Expired,
}

/// Reads at most this many times per poll while discarding the peer's data, then lets
/// the other tasks run: 16 reads of 64 bytes cover a 1 KiB burst per turn.
const DISCARD_READS_PER_POLL: u8 = 16;

/// Flushes `conn` while reading and discarding what the peer sends, until the flush
/// returns (on embassy-net: the peer acknowledged every byte written) or the connection
/// ends (the peer's RST). Without `flush`, only reads and discards until the peer's FIN
/// or the end of the connection.
///
/// A connection's `read` and `flush` both borrow it mutably, so the two cannot be
/// pending at once. Each poll creates a fresh flush and, while it is pending, fresh
/// reads, polls them and drops them: every read and flush of embassy-net and of the
/// layers of this project is cancel-safe (no byte is lost, the progress is kept in the
/// connection), and the wakers they registered stay with the socket, so the task is
/// woken by the peer's next ACK or data. A read or flush below that always waits one
/// poll before it finishes (an `embassy_time::Timer` does, even when already expired)
/// is never seen to finish here: then the linger bounds the wait.
///
/// Both waits of [`TimeWaitConnection::end`] are this one future: one copy of its code
/// in the firmware.
struct FlushDiscarding<'c, C> {
    conn: &'c mut C,
    /// Wait for the flush; else for the peer's FIN.
    flush: bool,
    /// The peer's FIN was read: its later reads return 0 at once.
    peer_closed: bool,
}

impl<C: Connection> Future for FlushDiscarding<'_, C> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        if this.flush && pin!(this.conn.flush()).poll(cx).is_ready() {
            return Poll::Ready(());
        }
        let mut discard = [0u8; 64];
        for _ in 0..DISCARD_READS_PER_POLL {
            if this.peer_closed {
                return Poll::Pending;
            }
            match pin!(this.conn.read(&mut discard)).poll(cx) {
                Poll::Ready(Ok(0)) if !this.flush => return Poll::Ready(()),
                Poll::Ready(Ok(0)) => this.peer_closed = true,
                Poll::Ready(Ok(_)) => {}
                // The connection is gone: nothing waits for an acknowledgement any more.
                Poll::Ready(Err(_)) => return Poll::Ready(()),
                Poll::Pending => return Poll::Pending,
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Runs `fut` until `deadline` (`None`: without a limit); `None` when the deadline
/// came first.
///
/// A future of its own that holds the pinned future by reference, rather than an
/// `async fn` around it: no second state machine per call.
fn before<F: Future>(deadline: Option<Instant>, fut: Pin<&mut F>) -> Before<'_, F> {
    Before {
        fut,
        timer: deadline.map(Timer::at),
    }
}

/// The future of [`before`].
struct Before<'a, F> {
    fut: Pin<&'a mut F>,
    timer: Option<Timer>,
}

impl<F: Future> Future for Before<'_, F> {
    type Output = Option<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if let Poll::Ready(out) = this.fut.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        match &mut this.timer {
            Some(timer) => Pin::new(timer).poll(cx).map(|()| None),
            None => Poll::Pending,
        }
    }
}

/// True when the peer has acknowledged every byte we wrote and our FIN, or the
/// connection is gone: on embassy-net, FIN_WAIT_2 or TIME_WAIT (or CLOSING: the peer's
/// FIN crossed ours, it sends no more) with an empty send queue. False where the stack
/// does not report its send queue.
fn acknowledged<C: Connection>(conn: &C) -> bool {
    let state = conn.state();
    conn.send_queue() == Some(0)
        && (state.is_free()
            || matches!(
                state,
                TcpState::FinWait2 | TcpState::Closing | TcpState::TimeWait
            ))
}

impl<C: Connection> TimeWait<C> {
    /// The wrapped connection.
    pub fn get_ref(&self) -> &C {
        &self.inner
    }

    /// The wrapped connection, mutably. Ending it through this reference bypasses the
    /// linger.
    pub fn get_mut(&mut self) -> &mut C {
        &mut self.inner
    }

    /// The wrapped connection, without the close a drop of the wrapper would send:
    /// ending it is the caller's.
    pub fn into_inner(self) -> C {
        let this = core::mem::ManuallyDrop::new(self);
        #[allow(unsafe_code)]
        // SAFETY: `this` is never used or dropped after this read, so `inner` is moved
        // out exactly once; the other fields are plain values.
        unsafe {
            core::ptr::read(&this.inner)
        }
    }

    /// The linger this connection applies.
    pub fn linger(&self) -> Duration {
        Duration::from_millis(self.linger_ms as u64)
    }
}

impl<C: Connection> Drop for TimeWait<C> {
    fn drop(&mut self) {
        if self.inner.state().is_free() {
            return;
        }
        let acked = self.inner.send_queue() == Some(0);
        trace!(
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

tcp_layers_core::delegate_io!(TimeWait, inner);

impl<C: Connection> Connection for TimeWait<C> {
    tcp_layers_core::delegate_connection!(inner;
        state, set_nodelay, close_write, abort, remote, local, send_queue, recv_queue,
        ended_error, close_reason, set_class);

    /// Ends the connection. For an orderly reason, within the linger: a flush until the
    /// peer acknowledged every byte written, the peer's data read and discarded
    /// meanwhile; then the orderly `end` of the layers below (on a socket: FIN, then a
    /// flush until it is acknowledged); then, at once, RST and flush. Where the stack
    /// does not report its send queue, the RST waits for the peer's FIN (its data
    /// discarded up to it) instead. When the linger expires first: RST, then the `end`
    /// of the layers below, which only sends it. For any other reason, or a zero
    /// linger: RST, then the `end` of the layers below. The reason a layer below already
    /// recorded ([`Connection::close_reason`]) wins over `reason`. When this returns the
    /// socket holds no connection.
    async fn end(&mut self, reason: CloseReason) {
        let reason = self.inner.end_reason(reason);
        let started = Instant::now();
        let deadline =
            (reason.is_orderly() && self.linger_ms != 0).then(|| started + self.linger());
        let mut how = None;
        if deadline.is_some() {
            let flushed = FlushDiscarding {
                conn: &mut self.inner,
                flush: true,
                peer_closed: false,
            };
            if before(deadline, pin!(flushed)).await.is_none() {
                how = Some(LingerEnd::Expired);
            }
        }
        let aborted = deadline.is_none() || how.is_some();
        if aborted {
            // Nothing (more) to wait for: the layers below see the end of an aborted
            // connection (a logger below records the reason), their flush sends the RST.
            self.inner.abort();
        }
        // The one call of the inner `end` (each call site costs the firmware a copy of
        // its state machine). A layer that holds bytes back (a coalescing buffer) wrote
        // them in the flush above; the socket sends its FIN.
        let ended = before(deadline.filter(|_| !aborted), pin!(self.inner.end(reason))).await;
        let Some(deadline) = deadline else {
            return;
        };
        let how = match (how, ended) {
            (Some(how), _) => how,
            (None, None) => LingerEnd::Expired,
            (None, Some(())) if acknowledged(&self.inner) => LingerEnd::Acknowledged,
            (None, Some(())) => {
                // No proof that the peer has everything: its FIN is one.
                let peer_done = FlushDiscarding {
                    conn: &mut self.inner,
                    flush: false,
                    peer_closed: false,
                };
                match before(Some(deadline), pin!(peer_done)).await {
                    Some(()) => LingerEnd::PeerDone,
                    None => LingerEnd::Expired,
                }
            }
        };
        let waited_ms = started.elapsed().as_millis();
        match how {
            LingerEnd::Expired => {
                debug!("timewait: linger expired after {} ms, RST", waited_ms)
            }
            LingerEnd::Acknowledged | LingerEnd::PeerDone => trace!(
                "timewait: {} after {} ms, RST",
                if how == LingerEnd::Acknowledged {
                    "all acknowledged"
                } else {
                    "peer done"
                },
                waited_ms
            ),
        }
        if aborted {
            return;
        }
        // The RST frees the socket at once; the peer has acknowledged everything (or
        // closed), or took no data for the whole linger. On embassy-net it leaves with
        // the flush.
        self.inner.abort();
        let _ = self.inner.flush().await;
    }
}
