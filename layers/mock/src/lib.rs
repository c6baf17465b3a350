//! Test support for the tcp-layers crates: the one mock [`Connection`] the layers' tests
//! run against, its error type, a seeded generator, poll helpers and a log line counter.
//!
//! [`Mock`] plays the stack below the layer under test. A test configures what the
//! peer does (what reads return and when, how much a write takes, when data and our
//! FIN are acknowledged, when the peer resets) and afterwards reads what the layer did
//! (the bytes written, every call in order, how the connection was ended). `Mock` is a
//! handle: a clone shares the same connection, so a test keeps one to inspect while the
//! layer owns the other.
//!
//! ```
//! use tcp_layers_core::{CloseReason, Connection, Read, TcpState, Write};
//! use tcp_layers_mock::{Mock, Op};
//!
//! let mock = Mock::new().with_read(b"GET / HTTP/1.1\r\n\r\n").with_fin();
//! let mut conn = mock.clone(); // a layer would own this one
//! tcp_layers_sim::run(async move {
//!     let mut buf = [0u8; 64];
//!     assert_eq!(conn.read(&mut buf).await, Ok(18));
//!     assert_eq!(conn.read(&mut buf).await, Ok(0), "the peer's FIN");
//!     conn.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await.unwrap();
//!     conn.end(CloseReason::LocalClose).await;
//! });
//! assert_eq!(mock.written(), b"HTTP/1.1 204 No Content\r\n\r\n");
//! assert_eq!(mock.ops(), [Op::Read(18), Op::Read(0), Op::Write(27), Op::End(CloseReason::LocalClose)]);
//! // The peer closed first; our FIN was acknowledged: LAST_ACK, then CLOSED.
//! assert_eq!(mock.state(), TcpState::Closed);
//! ```
//!
//! Timed behaviour (reads that arrive later, acknowledgements that take a while, a
//! slow `end`) runs on the simulator's virtual clock: use it inside
//! [`tcp_layers_sim::run`]. Everything else also works under any executor or with the
//! [`poll`] helpers.
#![deny(missing_docs)]
#![deny(unsafe_code)]

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use tcp_layers_core::{
    ClassFull, CloseReason, Connection, ConnectionClass, ErrorType, Read, TcpState, Unsupported,
    Write,
};
use tcp_layers_sim::{Duration, Instant, Timer};

mod error;
pub mod log_lines;
pub mod poll;
mod rng;

pub use error::MockError;
pub use rng::Rng;

/// One step of what the peer sends, in the order reads meet them.
///
/// With no step left a read waits (for [`Mock::push_read`]), unless the peer answers
/// our FIN ([`PeerFin::Answer`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadStep {
    /// Bytes that are there now. A read returns bytes of one step at most (and at most
    /// [`Mock::with_max_read`]); what it leaves stays for the next read.
    Data(Vec<u8>),
    /// Reads wait until this instant of the virtual clock.
    At(Instant),
    /// `len` bytes (zeros) every `every`, forever, the first `every` after a read first
    /// meets this step: a peer that keeps sending.
    Every {
        /// The period.
        every: Duration,
        /// Bytes per period.
        len: usize,
    },
    /// The peer's FIN: this and every later read return `Ok(0)`. The state moves on
    /// (`Established` → `CloseWait`, `FinWait1`/`FinWait2` → `TimeWait`).
    Fin,
    /// One read fails with this error.
    Error(MockError),
    /// One poll of a read returns `Pending` (and wakes its task at once).
    Pending,
}

/// When the peer acknowledges what was written: when a flush returns, and how the
/// send queue figure ([`Connection::send_queue`]) moves.
///
/// Writes do not change the send queue figure: a test sets it
/// ([`Mock::with_send_queue`]) and the plan empties it. A flush on a connection whose
/// state is free (`Closed`, `Listen`) returns at once, whatever the plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Acks {
    /// At once: a flush returns at its first poll and empties the send queue.
    #[default]
    Immediately,
    /// This long after the first flush (kept in the mock, as a socket keeps it: a flush
    /// dropped and started again waits for the same moment); then the queue is empty.
    After(Duration),
    /// The send queue shrinks by `step` bytes every `every` from the first flush on; a
    /// flush returns when it is empty.
    Drain {
        /// The period.
        every: Duration,
        /// Bytes acknowledged per period.
        step: usize,
    },
    /// Never: a flush waits until the connection is aborted. A vanished peer.
    Never,
    /// Everything while the peer's window has room ([`Mock::with_room`]), nothing once
    /// it is closed: a flush waits while the room is 0 and the send queue reads 1, else
    /// 0 (when a queue is reported at all).
    WhileWindowOpen,
}

/// What the peer does with our FIN.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PeerFin {
    /// It acknowledges our FIN with our data (see [`Acks`]): once a flush or an orderly
    /// `end` completes, `FinWait1` becomes `FinWait2`, `LastAck` and `Closing` end. It
    /// sends no FIN of its own (an idle browser): reads with no step left wait.
    #[default]
    Acknowledge,
    /// It answers our FIN with its own, which is also its acknowledgement: the state stays
    /// in `FinWait1` (or `LastAck`) until a read returns that FIN. Once we have sent our
    /// FIN, a read with no step left returns `Ok(0)` as for [`ReadStep::Fin`].
    Answer,
}

/// A call the mock saw, in [`Mock::ops`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// A read returned this many bytes (0: the peer's FIN).
    Read(usize),
    /// A write accepted this many bytes.
    Write(usize),
    /// A flush returned `Ok`.
    Flush,
    /// `close_write` was called.
    CloseWrite,
    /// `abort` was called.
    Abort,
    /// `set_nodelay` was called, on a mock that supports it.
    SetNodelay(bool),
    /// `set_class` was called.
    SetClass(ConnectionClass),
    /// `end` was called (logged when it starts; [`Mock::ends`] has the ones that
    /// finished).
    End(CloseReason),
}

/// How a write fault ends the writes.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// The peer resets: the state becomes `Closed`.
    Reset,
    /// A local failure: writes fail with this error, the state is unchanged.
    Error(MockError),
}

struct State {
    state: TcpState,
    reads: VecDeque<ReadStep>,
    max_read: usize,
    /// The next instant a `ReadStep::Every` delivers.
    every_next: Option<Instant>,
    peer_fin: PeerFin,
    written: Vec<u8>,
    max_write: usize,
    room: Option<usize>,
    write_fault: Option<(usize, Fault)>,
    random_write_pending: Option<Rng>,
    yield_reads: bool,
    yield_writes: bool,
    yield_flushes: bool,
    acks: Acks,
    /// `Acks::After`: when everything is acknowledged; `Acks::Drain`: the next step.
    acks_at: Option<Instant>,
    send_queue: Option<usize>,
    end_delay: Duration,
    nodelay: bool,
    remote: Option<SocketAddr>,
    local: Option<SocketAddr>,
    close_reason: Option<CloseReason>,
    class: ConnectionClass,
    ops: Vec<Op>,
    ends: Vec<CloseReason>,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
}

impl Default for State {
    fn default() -> Self {
        Self {
            state: TcpState::Established,
            reads: VecDeque::new(),
            max_read: usize::MAX,
            every_next: None,
            peer_fin: PeerFin::Acknowledge,
            written: Vec::new(),
            max_write: usize::MAX,
            room: None,
            write_fault: None,
            random_write_pending: None,
            yield_reads: false,
            yield_writes: false,
            yield_flushes: false,
            acks: Acks::Immediately,
            acks_at: None,
            send_queue: Some(0),
            end_delay: Duration::from_ticks(0),
            nodelay: true,
            remote: None,
            local: None,
            close_reason: None,
            class: ConnectionClass::Request,
            ops: Vec::new(),
            ends: Vec::new(),
            read_waker: None,
            write_waker: None,
        }
    }
}

/// Registers `cx`'s waker with the virtual clock for `at`.
fn wake_at(at: Instant, cx: &Context<'_>) {
    embassy_time_driver::schedule_wake(at.as_ticks(), cx.waker());
}

impl State {
    fn wake_all(&mut self) {
        if let Some(w) = self.read_waker.take() {
            w.wake();
        }
        if let Some(w) = self.write_waker.take() {
            w.wake();
        }
    }

    /// The peer's FIN arrives.
    fn peer_fin_arrives(&mut self) {
        self.state = match self.state {
            TcpState::Established => TcpState::CloseWait,
            TcpState::FinWait1 | TcpState::FinWait2 => TcpState::TimeWait,
            other => other,
        };
    }

    /// Our FIN leaves.
    fn send_fin(&mut self) {
        self.state = match self.state {
            TcpState::Established => TcpState::FinWait1,
            TcpState::CloseWait => TcpState::LastAck,
            other => other,
        };
        self.wake_all();
    }

    /// Our RST leaves: the connection is gone, what it received with it.
    fn send_rst(&mut self) {
        self.state = TcpState::Closed;
        self.reads.clear();
        self.wake_all();
    }

    fn poll_read(&mut self, buf: &mut [u8], cx: &Context<'_>) -> Poll<Result<usize, MockError>> {
        loop {
            if self.state.is_free() {
                return Poll::Ready(Err(MockError::RESET));
            }
            match self.reads.front_mut() {
                Some(ReadStep::Data(bytes)) => {
                    if bytes.is_empty() {
                        self.reads.pop_front();
                        continue;
                    }
                    let n = buf.len().min(bytes.len()).min(self.max_read);
                    buf[..n].copy_from_slice(&bytes[..n]);
                    bytes.drain(..n);
                    if bytes.is_empty() {
                        self.reads.pop_front();
                    }
                    self.ops.push(Op::Read(n));
                    return Poll::Ready(Ok(n));
                }
                Some(ReadStep::At(at)) => {
                    let at = *at;
                    if Instant::now() < at {
                        wake_at(at, cx);
                        return Poll::Pending;
                    }
                    self.reads.pop_front();
                }
                Some(ReadStep::Every { every, len }) => {
                    let (every, len) = (*every, *len);
                    let now = Instant::now();
                    let at = *self.every_next.get_or_insert(now + every);
                    if now < at {
                        wake_at(at, cx);
                        return Poll::Pending;
                    }
                    self.every_next = Some(at + every);
                    self.reads.push_front(ReadStep::Data(vec![0; len]));
                }
                Some(ReadStep::Fin) => {
                    self.peer_fin_arrives();
                    self.ops.push(Op::Read(0));
                    return Poll::Ready(Ok(0));
                }
                Some(ReadStep::Error(e)) => {
                    let e = *e;
                    self.reads.pop_front();
                    return Poll::Ready(Err(e));
                }
                Some(ReadStep::Pending) => {
                    self.reads.pop_front();
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                None => {
                    if self.peer_fin == PeerFin::Answer && !self.state.may_send() {
                        self.peer_fin_arrives();
                        self.ops.push(Op::Read(0));
                        return Poll::Ready(Ok(0));
                    }
                    self.read_waker = Some(cx.waker().clone());
                    return Poll::Pending;
                }
            }
        }
    }

    fn poll_write(&mut self, buf: &[u8], cx: &Context<'_>) -> Poll<Result<usize, MockError>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if let Some(rng) = &mut self.random_write_pending
            && rng.below(3) == 0
        {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        if !self.state.may_send() {
            return Poll::Ready(Err(MockError::RESET));
        }
        let mut n = buf.len().min(self.max_write);
        if let Some((after, fault)) = self.write_fault {
            let taken = self.written.len();
            if taken >= after {
                return Poll::Ready(Err(match fault {
                    Fault::Reset => {
                        self.send_rst();
                        MockError::RESET
                    }
                    Fault::Error(e) => e,
                }));
            }
            n = n.min(after - taken);
        }
        if let Some(room) = &mut self.room {
            if *room == 0 {
                self.write_waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
            n = n.min(*room);
            *room -= n;
        }
        self.written.extend_from_slice(&buf[..n]);
        self.ops.push(Op::Write(n));
        Poll::Ready(Ok(n))
    }

    /// Applies the acknowledgements that are due by now.
    fn settle(&mut self) {
        match self.acks {
            Acks::After(_) => {
                if self.acks_at.is_some_and(|at| Instant::now() >= at) {
                    self.send_queue = self.send_queue.map(|_| 0);
                }
            }
            Acks::Drain { every, step } => {
                while let (Some(at), Some(queued)) = (self.acks_at, self.send_queue) {
                    if queued == 0 || Instant::now() < at {
                        break;
                    }
                    self.send_queue = Some(queued.saturating_sub(step));
                    self.acks_at = Some(at + every);
                }
            }
            Acks::Immediately | Acks::Never | Acks::WhileWindowOpen => {}
        }
    }

    fn send_queue(&mut self) -> Option<usize> {
        self.settle();
        match self.acks {
            Acks::WhileWindowOpen => self.send_queue.map(|_| usize::from(self.room == Some(0))),
            _ => self.send_queue,
        }
    }

    /// Ready once the peer acknowledged everything written (and our FIN, if it was sent).
    fn poll_acked(&mut self, cx: &Context<'_>) -> Poll<()> {
        if self.state.is_free() {
            return Poll::Ready(());
        }
        self.settle();
        let done = match self.acks {
            Acks::Immediately => true,
            Acks::After(after) => {
                let at = *self.acks_at.get_or_insert_with(|| Instant::now() + after);
                if Instant::now() < at {
                    wake_at(at, cx);
                }
                Instant::now() >= at
            }
            Acks::Drain { every, .. } => {
                if self.send_queue.unwrap_or(0) == 0 {
                    true
                } else {
                    let at = *self.acks_at.get_or_insert_with(|| Instant::now() + every);
                    wake_at(at, cx);
                    false
                }
            }
            Acks::Never => {
                self.write_waker = Some(cx.waker().clone());
                false
            }
            Acks::WhileWindowOpen => {
                let open = self.room != Some(0);
                if !open {
                    self.write_waker = Some(cx.waker().clone());
                }
                open
            }
        };
        if !done {
            return Poll::Pending;
        }
        if self.acks != Acks::WhileWindowOpen {
            self.send_queue = self.send_queue.map(|_| 0);
        }
        if self.peer_fin == PeerFin::Acknowledge {
            self.state = match self.state {
                TcpState::FinWait1 => TcpState::FinWait2,
                TcpState::LastAck => TcpState::Closed,
                TcpState::Closing => TcpState::TimeWait,
                other => other,
            };
        }
        Poll::Ready(())
    }

    fn available(&self) -> usize {
        self.reads
            .iter()
            .map_while(|step| match step {
                ReadStep::Data(bytes) => Some(bytes.len()),
                _ => None,
            })
            .sum()
    }
}

/// A scripted connection: see the [crate docs](crate).
///
/// Built with the `with_*` methods; the defaults are an `Established` connection whose
/// peer sends nothing (reads wait), takes every write whole, acknowledges at once,
/// reports a send queue of 0, supports `set_nodelay`, has no addresses and no close
/// reason, and whose `end` is a socket's (FIN and the wait for its acknowledgement for
/// an orderly reason, RST for any other).
#[derive(Clone, Default)]
pub struct Mock(Rc<RefCell<State>>);

impl core::fmt::Debug for Mock {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let s = self.0.borrow();
        f.debug_struct("Mock")
            .field("state", &s.state)
            .field("written", &s.written.len())
            .field("ops", &s.ops.len())
            .finish_non_exhaustive()
    }
}

impl Mock {
    /// An `Established` connection with the defaults listed on [`Mock`].
    pub fn new() -> Self {
        Self::default()
    }

    fn with(self, f: impl FnOnce(&mut State)) -> Self {
        f(&mut self.0.borrow_mut());
        self
    }

    // --- the peer's side of the reads ---

    /// Appends a step to the read script.
    pub fn with_read_step(self, step: ReadStep) -> Self {
        self.with(|s| s.reads.push_back(step))
    }

    /// Appends bytes that are there at once ([`ReadStep::Data`]).
    pub fn with_read(self, bytes: &[u8]) -> Self {
        self.with_read_step(ReadStep::Data(bytes.to_vec()))
    }

    /// Appends bytes that arrive `at` after the start of the simulation (the virtual
    /// clock starts at 0 in every [`tcp_layers_sim::run`]).
    pub fn with_read_at(self, at: Duration, bytes: &[u8]) -> Self {
        self.with_read_step(ReadStep::At(Instant::from_ticks(0) + at))
            .with_read(bytes)
    }

    /// Appends the peer's FIN ([`ReadStep::Fin`]).
    pub fn with_fin(self) -> Self {
        self.with_read_step(ReadStep::Fin)
    }

    /// At most `n` bytes per read, however large the buffer.
    pub fn with_max_read(self, n: usize) -> Self {
        self.with(|s| s.max_read = n)
    }

    /// What the peer does with our FIN (default [`PeerFin::Acknowledge`]).
    pub fn with_peer_fin(self, peer_fin: PeerFin) -> Self {
        self.with(|s| s.peer_fin = peer_fin)
    }

    /// Every read returns `Pending` once before it acts (and wakes its task): each read
    /// is an await point of the layers above.
    pub fn with_yield_before_reads(self) -> Self {
        self.with(|s| s.yield_reads = true)
    }

    // --- what writes take ---

    /// At most `n` bytes per write (a transmit buffer with little room).
    pub fn with_max_write(self, n: usize) -> Self {
        self.with(|s| s.max_write = n)
    }

    /// The peer's window takes `n` more bytes in all; then writes wait (until
    /// [`Mock::set_room`] opens it). Without it, writes never wait for room.
    pub fn with_room(self, n: usize) -> Self {
        self.with(|s| s.room = Some(n))
    }

    /// Once `n` bytes were written, writes fail with `error` (a local fault: the state
    /// does not change). Writes take at most up to `n`.
    pub fn with_write_error_after(self, n: usize, error: MockError) -> Self {
        self.with(|s| s.write_fault = Some((n, Fault::Error(error))))
    }

    /// Once `n` bytes were written, the peer resets: the next write fails with
    /// [`MockError::RESET`] and the state becomes `Closed`. Writes take at most up to `n`.
    pub fn with_reset_after(self, n: usize) -> Self {
        self.with(|s| s.write_fault = Some((n, Fault::Reset)))
    }

    /// Each poll of a write is `Pending` one time in three, as `rng` draws (and wakes
    /// its task at once).
    pub fn with_random_write_pending(self, rng: Rng) -> Self {
        self.with(|s| s.random_write_pending = Some(rng))
    }

    /// Every write returns `Pending` once before it acts (and wakes its task), as into
    /// a transmit buffer that is full until the stack runs.
    pub fn with_yield_before_writes(self) -> Self {
        self.with(|s| s.yield_writes = true)
    }

    // --- acknowledgements and the end ---

    /// When the peer acknowledges (default [`Acks::Immediately`]).
    pub fn with_acks(self, acks: Acks) -> Self {
        self.with(|s| s.acks = acks)
    }

    /// The send queue figure (`None`: the stack does not tell); default `Some(0)`.
    pub fn with_send_queue(self, queued: Option<usize>) -> Self {
        self.with(|s| s.send_queue = queued)
    }

    /// Every flush, and the wait in `end`, returns `Pending` once before it acts (and
    /// wakes its task).
    pub fn with_yield_before_flushes(self) -> Self {
        self.with(|s| s.yield_flushes = true)
    }

    /// `end` waits this long before it acts (a layer below that takes its time); an
    /// `end` dropped in the wait did nothing.
    pub fn with_end_delay(self, delay: Duration) -> Self {
        self.with(|s| s.end_delay = delay)
    }

    // --- what the connection reports ---

    /// The TCP state it starts in (default `Established`).
    pub fn with_state(self, state: TcpState) -> Self {
        self.with(|s| s.state = state)
    }

    /// `set_nodelay` answers [`Unsupported`] (a stack without the option).
    pub fn without_nodelay(self) -> Self {
        self.with(|s| s.nodelay = false)
    }

    /// The peer's address.
    pub fn with_remote(self, addr: SocketAddr) -> Self {
        self.with(|s| s.remote = Some(addr))
    }

    /// Our own address.
    pub fn with_local(self, addr: SocketAddr) -> Self {
        self.with(|s| s.local = Some(addr))
    }

    /// What `close_reason` answers: a layer below that already decided how the
    /// connection ends.
    pub fn with_close_reason(self, reason: CloseReason) -> Self {
        self.with(|s| s.close_reason = Some(reason))
    }

    // --- changes while the test runs ---

    /// The peer sends `bytes` now: appended to the read script, a waiting read is woken.
    pub fn push_read(&self, bytes: &[u8]) {
        let mut s = self.0.borrow_mut();
        s.reads.push_back(ReadStep::Data(bytes.to_vec()));
        s.wake_all();
    }

    /// Sets the room of the peer's window (`None`: unlimited); a waiting write is woken.
    pub fn set_room(&self, room: Option<usize>) {
        let mut s = self.0.borrow_mut();
        s.room = room;
        s.wake_all();
    }

    /// Replaces the generator of [`Mock::with_random_write_pending`] (`None`: writes
    /// no longer wait at random).
    pub fn set_random_write_pending(&self, rng: Option<Rng>) {
        let mut s = self.0.borrow_mut();
        s.random_write_pending = rng;
        s.wake_all();
    }

    // --- what the layer did ---

    /// Every byte written, in order.
    pub fn written(&self) -> Vec<u8> {
        self.0.borrow().written.clone()
    }

    /// The size of every write that took bytes, in order.
    pub fn write_sizes(&self) -> Vec<usize> {
        self.0
            .borrow()
            .ops
            .iter()
            .filter_map(|op| match op {
                Op::Write(n) => Some(*n),
                _ => None,
            })
            .collect()
    }

    /// Every call, in order (see [`Op`]).
    pub fn ops(&self) -> Vec<Op> {
        self.0.borrow().ops.clone()
    }

    fn count(&self, which: Op) -> usize {
        self.0
            .borrow()
            .ops
            .iter()
            .filter(|op| **op == which)
            .count()
    }

    /// Flushes that returned `Ok`.
    pub fn flushes(&self) -> usize {
        self.count(Op::Flush)
    }

    /// Calls of `close_write`.
    pub fn close_writes(&self) -> usize {
        self.count(Op::CloseWrite)
    }

    /// Calls of `abort`.
    pub fn aborts(&self) -> usize {
        self.count(Op::Abort)
    }

    /// The argument of every `set_nodelay` call that succeeded, in order.
    pub fn nodelay_calls(&self) -> Vec<bool> {
        self.0
            .borrow()
            .ops
            .iter()
            .filter_map(|op| match op {
                Op::SetNodelay(on) => Some(*on),
                _ => None,
            })
            .collect()
    }

    /// The reason of every `end` that finished, in order.
    pub fn ends(&self) -> Vec<CloseReason> {
        self.0.borrow().ends.clone()
    }

    /// The reason of the last `end` that finished.
    pub fn ended(&self) -> Option<CloseReason> {
        self.0.borrow().ends.last().copied()
    }

    /// The class the last `set_class` asked for (`Request` before any).
    pub fn class(&self) -> ConnectionClass {
        self.0.borrow().class
    }

    /// The TCP state now (as [`Connection::state`]).
    pub fn state(&self) -> TcpState {
        self.0.borrow().state
    }

    /// Waits until the peer acknowledged everything; `log` records it as a flush.
    async fn acked(&self, log: bool) {
        if self.0.borrow().yield_flushes {
            embassy_futures::yield_now().await;
        }
        poll_fn(|cx| self.0.borrow_mut().poll_acked(cx)).await;
        if log {
            self.0.borrow_mut().ops.push(Op::Flush);
        }
    }
}

impl ErrorType for Mock {
    type Error = MockError;
}

impl Read for Mock {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, MockError> {
        if self.0.borrow().yield_reads {
            embassy_futures::yield_now().await;
        }
        poll_fn(|cx| self.0.borrow_mut().poll_read(buf, cx)).await
    }
}

impl Write for Mock {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, MockError> {
        if self.0.borrow().yield_writes {
            embassy_futures::yield_now().await;
        }
        poll_fn(|cx| self.0.borrow_mut().poll_write(buf, cx)).await
    }

    /// Returns when the peer acknowledged everything (see [`Acks`]).
    async fn flush(&mut self) -> Result<(), MockError> {
        self.acked(true).await;
        Ok(())
    }
}

impl Connection for Mock {
    fn state(&self) -> TcpState {
        self.0.borrow().state
    }

    fn set_nodelay(&mut self, on: bool) -> Result<(), Unsupported> {
        let mut s = self.0.borrow_mut();
        if !s.nodelay {
            return Err(Unsupported);
        }
        s.ops.push(Op::SetNodelay(on));
        Ok(())
    }

    /// `Established` → `FinWait1`, `CloseWait` → `LastAck`.
    fn close_write(&mut self) {
        let mut s = self.0.borrow_mut();
        s.ops.push(Op::CloseWrite);
        s.send_fin();
    }

    /// `Closed`; what was not read yet is dropped.
    fn abort(&mut self) {
        let mut s = self.0.borrow_mut();
        s.ops.push(Op::Abort);
        s.send_rst();
    }

    fn remote(&self) -> Option<SocketAddr> {
        self.0.borrow().remote
    }

    fn local(&self) -> Option<SocketAddr> {
        self.0.borrow().local
    }

    fn send_queue(&self) -> Option<usize> {
        self.0.borrow_mut().send_queue()
    }

    /// The bytes of the read steps that are there now.
    fn recv_queue(&self) -> Option<usize> {
        Some(self.0.borrow().available())
    }

    /// [`MockError::ended`] with `reason`.
    fn ended_error(&self, reason: CloseReason) -> MockError {
        MockError::ended(reason)
    }

    fn close_reason(&self) -> Option<CloseReason> {
        self.0.borrow().close_reason
    }

    fn set_class(&mut self, class: ConnectionClass) -> Result<(), ClassFull> {
        let mut s = self.0.borrow_mut();
        s.ops.push(Op::SetClass(class));
        s.class = class;
        Ok(())
    }

    /// A socket's end: logs [`Op::End`], waits [`Mock::with_end_delay`], then for an
    /// orderly reason on a live connection sends FIN and waits for its acknowledgement
    /// (see [`Acks`] and [`PeerFin`]; forever, to a peer that never acknowledges), for
    /// any other reason resets. Recorded in [`Mock::ends`] when it finishes.
    async fn end(&mut self, reason: CloseReason) {
        let delay = {
            let mut s = self.0.borrow_mut();
            s.ops.push(Op::End(reason));
            s.end_delay
        };
        if delay.as_ticks() > 0 {
            Timer::after(delay).await;
        }
        {
            let mut s = self.0.borrow_mut();
            if reason.is_orderly() && !s.state.is_free() {
                s.send_fin();
            } else {
                s.send_rst();
            }
        }
        self.acked(false).await;
        self.0.borrow_mut().ends.push(reason);
    }
}

/// `len` bytes of the deterministic body pattern the simulated network's responder
/// also sends (byte `i` is `i % 251`), so a byte out of place shows.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}
