//! The layer and its wrapper: admission at wrap, idle tracking in `read`, the class
//! switch and the eviction signal.
use core::future::{Future, poll_fn};
use core::pin::{Pin, pin};
use core::task::Poll;

use tcp_layers_core::{
    ClassFull, CloseReason, Connection, ConnectionClass, Deadline, ErrorType, Exchange, Layer,
    Read, Write,
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
        let (slot, standing) = match self.budget.admit(peer_key(inner.remote())) {
            Admission::Slot(slot) => (Some(slot), Standing::Admitted(Exchange::Fresh)),
            Admission::Refused => (None, Standing::Refused),
        };
        Limit {
            inner,
            permit: Permit {
                budget: self.budget,
                slot,
                standing,
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

/// Where the connection stands with the budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Standing {
    /// Admitted. While its exchange has not [`answered`](Exchange::answered) it reads
    /// a request (or waits for the first one): busy. Once answered, the next read that
    /// has to wait is the idle wait between keep-alive requests.
    Admitted(Exchange),
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
    standing: Standing,
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
    standing: &'a mut Standing,
}

impl<const N: usize> Drop for IdleRead<'_, N> {
    fn drop(&mut self) {
        if self.ticket.end_idle() {
            *self.standing = Standing::Evicted;
        }
    }
}

impl<C: Connection, const N: usize> ErrorType for Limit<C, N> {
    type Error = C::Error;
}

impl<C: Connection, const N: usize> Read for Limit<C, N> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        match self.permit.standing {
            // What a server handles quietly: the end of the connection, as far as it
            // knows. The reason is in `close_reason()`.
            Standing::Refused
            | Standing::QueueTimedOut
            | Standing::Evicted
            | Standing::Displaced => {
                return Ok(0);
            }
            _ if self.permit.class == ConnectionClass::Stream => return self.inner.read(buf).await,
            Standing::Admitted(exchange) if !exchange.answered() => {
                return self.read_request(buf).await;
            }
            Standing::Admitted(_) => {}
        }
        let Some(ticket) = self.ticket() else {
            return Ok(0);
        };
        let idle = IdleRead {
            ticket,
            standing: &mut self.permit.standing,
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
            _ if self.permit.standing == Standing::Evicted => Ok(0),
            None => Ok(0),
            Some(Ok(n)) => {
                if let Standing::Admitted(exchange) = &mut self.permit.standing {
                    *exchange = exchange.after_read(n);
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
                self.permit.standing = Standing::Displaced;
                Ok(0)
            }
        }
    }

    /// Before the first byte of a response: the connection needs a request slot. An
    /// admitted one has it; a waiting one waits for it, at most the queue bound. True
    /// when the response may go; false when it may not (the queue bound passed, or the
    /// budget closed the connection meanwhile).
    async fn begin_response(&mut self, ticket: Ticket<N>) -> bool {
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
            // The response starts: the exchange has answered from its first byte on.
            self.permit.standing = Standing::Admitted(Exchange::Response);
        }
        granted
    }
}

impl<C: Connection, const N: usize> Write for Limit<C, N> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        let (bytes, refused) = match self.permit.standing {
            Standing::Refused | Standing::QueueTimedOut => {
                return Err(self.inner.ended_error(CloseReason::OverBudget));
            }
            Standing::Evicted => return Err(self.inner.ended_error(CloseReason::Evicted)),
            Standing::Displaced => {
                return Err(self
                    .inner
                    .ended_error(CloseReason::Reaped(Deadline::Request)));
            }
            Standing::Admitted(exchange) if exchange.answered() => (buf, false),
            Standing::Admitted(_) => {
                let Some(ticket) = self.ticket() else {
                    return Err(self.inner.ended_error(CloseReason::OverBudget));
                };
                match self.begin_response(ticket).await {
                    true => (buf, false),
                    false => {
                        // Refused after waiting: the refusal reply, then the write fails.
                        self.permit.standing = Standing::QueueTimedOut;
                        (ticket.refusal_reply(), true)
                    }
                }
            }
        };
        // One write below for the response and for the refusal reply: each await of it
        // would hold a whole write of the layers below in this state machine. The reply
        // is best effort, one write: the send buffer is empty, nothing of the response
        // went out, and a reply that does not fit is not worth holding the socket.
        let written = match (refused, bytes.is_empty()) {
            (true, true) => Ok(0),
            _ => self.inner.write(bytes).await,
        };
        match refused {
            false => written,
            true => Err(self.inner.ended_error(CloseReason::OverBudget)),
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
        match self.permit.standing {
            Standing::Evicted => Some(CloseReason::Evicted),
            Standing::Displaced => Some(CloseReason::Reaped(Deadline::Request)),
            Standing::Refused | Standing::QueueTimedOut => Some(CloseReason::OverBudget),
            Standing::Admitted(_) => self.inner.close_reason(),
        }
    }

    /// Promotes the connection to `Stream` (or back to `Request`). Refused with
    /// [`ClassFull`] when the cap of `class` is reached, or once the connection was
    /// told to close; it then keeps its class. A stream within its cap is admitted
    /// even while every request slot is taken or the budget is exhausted.
    fn set_class(&mut self, class: ConnectionClass) -> Result<(), ClassFull> {
        match self.permit.standing {
            Standing::Evicted
            | Standing::Displaced
            | Standing::Refused
            | Standing::QueueTimedOut => Err(ClassFull { class }),
            Standing::Admitted(_) => {
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
        let reason = match (self.permit.standing, self.end_reason(reason)) {
            (Standing::QueueTimedOut, _) => CloseReason::LocalClose,
            (_, reason) => reason,
        };
        self.inner.end(reason)
    }
}
