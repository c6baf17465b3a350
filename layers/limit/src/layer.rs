//! The layer and its wrapper: admission at wrap, idle tracking in `read`, the class
//! switch and the eviction signal.
use core::future::{Future, poll_fn};
use core::pin::{Pin, pin};
use core::task::Poll;

use tcp_layers_core::{
    ClassFull, CloseReason, Connection, ConnectionClass, Deadline, ErrorType, Layer, Read, Write,
};

use embassy_time::Timer;

use crate::Budget;
use crate::budget::{Admission, ResponseSlot, Ticket};

/// The admission layer: every connection it wraps takes a slot of `budget` until the
/// wrapper is dropped.
///
/// ```
/// use tcp_layers_limit::{Budget, LimitLayer, profile};
/// static BUDGET: Budget<6> = Budget::new(profile::ESP32);
/// let limit = LimitLayer::new(&BUDGET);
/// # let _ = limit;
/// ```
#[derive(Clone, Copy)]
pub struct LimitLayer<const N: usize> {
    budget: &'static Budget<N>,
}

impl<const N: usize> LimitLayer<N> {
    /// A layer admitting connections into `budget`.
    pub const fn new(budget: &'static Budget<N>) -> Self {
        Self { budget }
    }

    /// The budget this layer admits into.
    pub const fn budget(&self) -> &'static Budget<N> {
        self.budget
    }
}

impl<C: Connection, const N: usize> Layer<C> for LimitLayer<N> {
    type Service = Limit<C, N>;

    /// Admits `inner` (a connection just accepted), keyed by its remote address. A
    /// connection refused here (its peer holds its share of sockets and none idle, or
    /// no slot is left) reads as ended (`Ok(0)`, what a server handles quietly) and
    /// fails every write with `ended_error(CloseReason::OverBudget)`; its `end` resets
    /// it, so the socket is free at once.
    fn layer(&self, inner: C) -> Limit<C, N> {
        let (slot, phase) = match self.budget.admit(peer_key(inner.remote())) {
            Admission::Slot(slot) => (Some(slot), Phase::Request),
            Admission::Refused => (None, Phase::Refused),
        };
        Limit {
            inner,
            permit: Permit {
                budget: self.budget,
                slot,
                phase,
                class: ConnectionClass::Request,
            },
        }
    }
}

/// The remote address folded to the budget's 32-bit peer key; 0 when unknown.
fn peer_key(remote: Option<core::net::SocketAddr>) -> u32 {
    let key = match remote.map(|addr| addr.ip()) {
        Some(core::net::IpAddr::V4(ip)) => u32::from(ip),
        Some(core::net::IpAddr::V6(ip)) => {
            let o = ip.octets();
            let word = |i: usize| u32::from_be_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
            word(0) ^ word(4) ^ word(8) ^ word(12)
        }
        None => return 0,
    };
    // 0 means "unknown"; an address that folds to it still counts as a peer.
    key.max(1)
}

/// Where the connection is in its keep-alive cycle, inferred from its I/O.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Reading a request (or waiting for the first one): busy.
    Request,
    /// Something was written since the last read returned data: the next read that
    /// has to wait is the idle wait between keep-alive requests.
    Response,
    /// The budget told it to close: reads give `Ok(0)`, writes fail.
    Evicted,
    /// Every socket was taken and it had been reading its request head the longest:
    /// closed for a newcomer. Reads give `Ok(0)`, writes fail.
    Displaced,
    /// Not admitted at accept (no slot): reads give `Ok(0)`, writes fail.
    Refused,
    /// Waited too long for a request slot: answered with the refusal reply; reads
    /// give `Ok(0)`, writes fail. Holds its slot until dropped.
    QueueTimedOut,
}

/// A connection admitted by a [`LimitLayer`] layer.
///
/// Admission: the connection takes a slot at accept. Its peer (remote address) may hold
/// `per_peer` sockets and be served `peer_request_share()` requests at once; a request
/// that does not fit is read as usual, and its response (the first write) waits until
/// a request slot is given to it, at most `queue_wait`, after which the connection
/// is refused: `refusal_reply` is written, the write fails and `end` sends a FIN.
/// Streams are a reservation: `set_class(Stream)` within the stream cap succeeds
/// whatever the requests hold.
///
/// Idle is inferred from the I/O: a read that has to wait after something was written
/// since the last request byte. A server that pushes a stream (SSE, WebSocket) must
/// call [`Connection::set_class`] with `Stream` before it starts, or the reads it waits
/// on between two events look like keep-alive idleness and the stream may be evicted.
///
/// Eviction: while the connection is idle (its response written, a read pending, no
/// byte of the next request arrived) the budget may tell it to close. The pending read
/// then returns `Ok(0)`, as if the peer had closed, so a server loop written for the
/// raw socket ends it the way it ends any finished keep-alive connection; later reads
/// return `Ok(0)`, writes fail with `ended_error(CloseReason::Evicted)`, and
/// [`Connection::close_reason`] answers `Evicted`, which [`Connection::end`] uses.
/// `Evicted` is an orderly reason: the default `end` sends a FIN and flushes, because
/// the last response may still sit unacknowledged in the send buffer and an RST would
/// drop it; with the timewait layer below, the linger after that FIN is bounded.
pub struct Limit<C, const N: usize> {
    inner: C,
    permit: Permit<N>,
}

/// A connection's place in the budget, given back when it is dropped: RAII, so a
/// dropped future or a panic in the handler leaks no slot.
struct Permit<const N: usize> {
    budget: &'static Budget<N>,
    /// The slot in the budget's table; `None` when refused at accept.
    slot: Option<u8>,
    phase: Phase,
    class: ConnectionClass,
}

impl<const N: usize> Drop for Permit<N> {
    fn drop(&mut self) {
        self.budget.release(self.slot);
    }
}

impl<C, const N: usize> Limit<C, N> {
    /// The budget's handle on this connection's slot; `None` for a connection refused
    /// at accept, which holds none.
    fn ticket(&self) -> Option<Ticket<N>> {
        let budget = self.permit.budget;
        self.permit.slot.map(|slot| Ticket { budget, slot })
    }
}

// The per-connection cost: a budget reference, the slot, two one-byte enums.
const _: () = assert!(core::mem::size_of::<Limit<(), 1>>() <= 2 * core::mem::size_of::<usize>());

impl<C, const N: usize> Limit<C, N> {
    /// The wrapped connection.
    pub fn get_ref(&self) -> &C {
        &self.inner
    }

    /// The wrapped connection, mutably.
    pub fn get_mut(&mut self) -> &mut C {
        &mut self.inner
    }

    /// The wrapped connection; its slot goes back to the budget.
    pub fn into_inner(self) -> C {
        self.inner
    }

    /// The class this connection counts in.
    pub fn class(&self) -> ConnectionClass {
        self.permit.class
    }
}

/// Marks the connection idle for as long as an idle read is pending; on drop (the read
/// returned or was cancelled) marks it busy again and notes an eviction.
struct IdleRead<'a, const N: usize> {
    ticket: Ticket<N>,
    phase: &'a mut Phase,
}

impl<const N: usize> Drop for IdleRead<'_, N> {
    fn drop(&mut self) {
        if self.ticket.end_idle() {
            *self.phase = Phase::Evicted;
        }
    }
}

impl<C: Connection, const N: usize> ErrorType for Limit<C, N> {
    type Error = C::Error;
}

impl<C: Connection, const N: usize> Read for Limit<C, N> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        match self.permit.phase {
            // What a server handles quietly: the end of the connection, as far as it
            // knows. The reason is in `close_reason()`.
            Phase::Refused | Phase::QueueTimedOut | Phase::Evicted | Phase::Displaced => {
                return Ok(0);
            }
            _ if self.permit.class == ConnectionClass::Stream => return self.inner.read(buf).await,
            Phase::Request => return self.read_request(buf).await,
            Phase::Response => {}
        }
        let Some(ticket) = self.ticket() else {
            return Ok(0);
        };
        let idle = IdleRead {
            ticket,
            phase: &mut self.permit.phase,
        };
        let mut grace = Some(Timer::after(idle.ticket.idle_grace()));
        let result = {
            let mut read = pin!(self.inner.read(buf));
            poll_fn(|cx| {
                // Evicted wins over data arriving in the same instant: the connection is
                // being closed either way.
                if idle.ticket.wait_idle(cx.waker()) {
                    return Poll::Ready(None);
                }
                if let Poll::Ready(r) = read.as_mut().poll(cx) {
                    return Poll::Ready(Some(r));
                }
                if let Some(timer) = &mut grace
                    && Pin::new(timer).poll(cx).is_ready()
                {
                    // Once: afterwards only an accept can ask for an eviction.
                    grace = None;
                    if idle.ticket.shed_after_grace() {
                        return Poll::Ready(None);
                    }
                }
                Poll::Pending
            })
            .await
        };
        drop(idle);
        match result {
            _ if self.permit.phase == Phase::Evicted => Ok(0),
            None => Ok(0),
            Some(Ok(n)) => {
                if n > 0 {
                    self.permit.phase = Phase::Request;
                }
                Ok(n)
            }
            Some(Err(e)) => Err(e),
        }
    }
}

impl<C: Connection, const N: usize> Limit<C, N> {
    /// A read while a request is being read: the budget may displace the connection
    /// (every socket taken, and this head the slowest), which ends the read.
    async fn read_request(&mut self, buf: &mut [u8]) -> Result<usize, C::Error> {
        let Some(ticket) = self.ticket() else {
            return Ok(0);
        };
        let result = {
            let mut read = pin!(self.inner.read(buf));
            poll_fn(|cx| {
                if ticket.watch(cx.waker()) {
                    return Poll::Ready(None);
                }
                read.as_mut().poll(cx).map(Some)
            })
            .await
        };
        match result {
            Some(r) => r,
            None => {
                self.permit.phase = Phase::Displaced;
                Ok(0)
            }
        }
    }

    /// Before the first byte of a response: the connection needs a request slot. An
    /// admitted one has it; a waiting one waits for it, at most the queue bound, after
    /// which the refusal reply is written and the write fails.
    async fn begin_response(&mut self) -> Result<(), C::Error> {
        let Some(ticket) = self.ticket() else {
            return Err(self.inner.ended_error(CloseReason::OverBudget));
        };
        let mut bound = Timer::after(ticket.queue_wait());
        let granted = poll_fn(|cx| match ticket.begin_response(cx.waker()) {
            ResponseSlot::Granted => Poll::Ready(true),
            ResponseSlot::Closed => Poll::Ready(false),
            ResponseSlot::Waiting => {
                if Pin::new(&mut bound).poll(cx).is_ready() && ticket.give_up_waiting() {
                    return Poll::Ready(false);
                }
                Poll::Pending
            }
        })
        .await;
        if granted {
            self.permit.phase = Phase::Response;
            return Ok(());
        }
        if self.permit.phase == Phase::Request {
            self.permit.phase = Phase::QueueTimedOut;
            let reply = ticket.refusal_reply();
            // Best effort, one write: the send buffer is empty, nothing of the response
            // went out, and a reply that does not fit is not worth holding the socket.
            if !reply.is_empty() {
                let _ = self.inner.write(reply).await;
            }
        }
        Err(self.inner.ended_error(CloseReason::OverBudget))
    }
}

impl<C: Connection, const N: usize> Write for Limit<C, N> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        match self.permit.phase {
            Phase::Refused | Phase::QueueTimedOut => {
                Err(self.inner.ended_error(CloseReason::OverBudget))
            }
            Phase::Evicted => Err(self.inner.ended_error(CloseReason::Evicted)),
            Phase::Displaced => Err(self
                .inner
                .ended_error(CloseReason::Reaped(Deadline::Request))),
            Phase::Request => {
                self.begin_response().await?;
                self.inner.write(buf).await
            }
            Phase::Response => self.inner.write(buf).await,
        }
    }

    fn flush(&mut self) -> impl Future<Output = Result<(), Self::Error>> {
        self.inner.flush()
    }
}

impl<C: Connection, const N: usize> Connection for Limit<C, N> {
    tcp_layers_core::delegate_connection!(
        inner;
        state,
        set_nodelay,
        close_write,
        abort,
        remote,
        local,
        send_queue,
        recv_queue,
        ended_error,
    );

    fn close_reason(&self) -> Option<CloseReason> {
        match self.permit.phase {
            Phase::Evicted => Some(CloseReason::Evicted),
            Phase::Displaced => Some(CloseReason::Reaped(Deadline::Request)),
            Phase::Refused | Phase::QueueTimedOut => Some(CloseReason::OverBudget),
            Phase::Request | Phase::Response => self.inner.close_reason(),
        }
    }

    /// Promotes the connection to `Stream` (or back to `Request`). Refused with
    /// [`ClassFull`] when the cap of `class` is reached, or once the connection was
    /// told to close; it then keeps its class. A stream within its cap is admitted
    /// even while every request slot is taken or the budget is exhausted.
    fn set_class(&mut self, class: ConnectionClass) -> Result<(), ClassFull> {
        match self.permit.phase {
            Phase::Evicted | Phase::Displaced | Phase::Refused | Phase::QueueTimedOut => {
                Err(ClassFull { class })
            }
            Phase::Request | Phase::Response => {
                let ticket = self.ticket().ok_or(ClassFull { class })?;
                ticket.set_class(class)?;
                if let Err(full) = self.inner.set_class(class) {
                    // Another budget further in said no: give this one its slot back.
                    let _ = ticket.set_class(self.permit.class);
                    return Err(full);
                }
                self.permit.class = class;
                Ok(())
            }
        }
    }

    // The inner future itself: no state machine of this layer's own. A request
    // refused after waiting ends with a FIN, like an orderly close, so the refusal reply
    // reaches the peer; a connection refused at accept (its peer already holds its
    // share) is reset, which frees the socket at once for another device.
    fn end(&mut self, reason: CloseReason) -> impl Future<Output = ()> {
        let reason = match (self.permit.phase, self.end_reason(reason)) {
            (Phase::QueueTimedOut, _) => CloseReason::LocalClose,
            (_, reason) => reason,
        };
        self.inner.end(reason)
    }
}
