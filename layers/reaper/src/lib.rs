#![doc = include_str!("../README.md")]
#![no_std]
#![deny(missing_docs)]
#![deny(unsafe_code)]

use core::future::Future;
use core::pin::{Pin, pin};
use core::task::{Context, Poll};

use embassy_time::{Duration, Instant, Timer};
use tcp_layers_core::{
    ClassFull, CloseReason, Connection, ConnectionClass, Deadline, ErrorType, Layer, Read, Write,
};

// First: the logging macros are visible in the modules declared after it.
mod fmt;

use tcp_layers_http::head::{self, HeadScanner, Scan};
use tcp_layers_http::response::{ResponseKind, response_kind};

pub use tcp_layers_http::reply::REPLY_431;

/// The protocol a connection speaks, which decides the deadlines that apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Protocol {
    /// HTTP/1: first-byte, head, idle and stall deadlines and the head size cap, per
    /// request.
    Http,
    /// Anything else (MQTT, Modbus/TCP, a line protocol): a read waits at most `idle`,
    /// a write or flush at most `stall`; no head is looked for.
    Raw,
}

/// What the reaper does with a request head longer than `max_head`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Oversize {
    /// Send these bytes (a complete response, e.g. [`REPLY_431`]), wait until they are
    /// acknowledged (at most `stall`), then end the connection. The read returns the
    /// error after that.
    Reply(&'static [u8]),
    /// End the connection at once; the client gets an RST (or the close discipline of
    /// the layer below).
    Reset,
    /// Leave the answer to the server: the read returns the error and
    /// [`Connection::close_reason`] answers `Reaped(RequestTooLarge)`, but the connection
    /// is not ended yet; writes still pass (bounded by `stall`), so the server can send
    /// its own 431 and then call [`Connection::end`]. Further reads fail.
    LeaveToServer,
}

/// A time limit of the configuration, in milliseconds; `u32::MAX` is "never".
const NEVER_MS: u32 = u32::MAX;

/// Milliseconds of `d`, saturating; [`Duration::MAX`] (and anything from `u32::MAX` ms,
/// about 49 days, up) means "never".
const fn to_ms(d: Duration) -> u32 {
    let ms = d.as_millis();
    if ms >= NEVER_MS as u64 {
        NEVER_MS
    } else {
        ms as u32
    }
}

/// The deadlines of the reaper. Build one in a `static` with the `const fn`s below and
/// pass a reference to [`ReaperLayer::new`]; connections keep only the reference.
///
/// Every time limit has millisecond resolution; [`Duration::MAX`] turns it off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReaperConfig {
    protocol: Protocol,
    first_byte_ms: u32,
    idle_ms: u32,
    head_ms: u32,
    head_max_ms: u32,
    head_rate: u16,
    max_head: u16,
    stall_ms: u32,
    keepalive_ms: u32,
    oversize: Oversize,
}

impl ReaperConfig {
    /// First byte of a new connection: 3 s.
    ///
    /// A browser sends its request in the segment right after the handshake; 3 s still
    /// covers two retransmissions of that segment at a 1 s retransmission timeout. A
    /// connection a browser opened speculatively ("preconnect", kept unused up to
    /// 10 s by Chrome) is given back after 3 s instead of holding a slot.
    pub const DEFAULT_FIRST_BYTE: Duration = Duration::from_secs(3);

    /// Idle keep-alive, between a response and the next request's first byte: 5 s.
    ///
    /// picoserve closes after 1 s, esp_http_server after 5 s, nginx after 75 s. 75 s
    /// lets one browser's six idle sockets hold most slots of a device for a minute.
    /// 1 s is shorter than the polling interval of a typical device dashboard (1-2 s
    /// plus jitter), so every poll would race the close and reconnect (a handshake, and
    /// a socket in TIME_WAIT, per poll). 5 s keeps a page's connections for its
    /// follow-up requests and a 1-4 s poller on one connection, and a limit layer can
    /// still evict idle connections earlier when slots run out.
    pub const DEFAULT_IDLE: Duration = Duration::from_secs(5);

    /// Request head, from its first byte to its terminator: 4 s to start with.
    ///
    /// Apache's mod_reqtimeout default is `header=20-40,MinRate=500`: 20 s, extended
    /// by 1 s per 500 bytes received, at most 40 s. A device serves a LAN, not the
    /// internet, with a few sockets instead of hundreds, so the times are divided by 5
    /// (4 s up to 8 s) and the rate is kept: a client slower than 500 B/s is broken or
    /// hostile, whatever the server. A browser's head (0.5-2 kB) arrives in one or two
    /// segments, within one round trip.
    pub const DEFAULT_HEAD: Duration = Duration::from_secs(4);

    /// The most the head's deadline grows to with [`Self::DEFAULT_HEAD_RATE`]: 8 s.
    pub const DEFAULT_HEAD_MAX: Duration = Duration::from_secs(8);

    /// Bytes per second of head that extend the head deadline by 1 s: 500.
    pub const DEFAULT_HEAD_RATE: u16 = 500;

    /// The largest request head accepted, terminator included: 4096 bytes.
    ///
    /// A browser's head with cookies is 0.5-2 kB; servers for devices buffer the head
    /// in 1-4 kB (picoserve's default request buffer is 2 kB); a longer head is an
    /// attack or a bug and would only grow the server's buffers.
    pub const DEFAULT_MAX_HEAD: u16 = 4096;

    /// Send stall: a write or flush that makes no progress for 5 s.
    ///
    /// esp_http_server's `send_wait_timeout` is 5 s. A live reader, even a slow one over
    /// a bad link, takes some data within 5 s; a client that stopped reading (its
    /// window is closed) or vanished (no ACK ever comes) does not.
    pub const DEFAULT_STALL: Duration = Duration::from_secs(5);

    /// A stream's sign of life: a write or flush of a stream (SSE, WebSocket) that
    /// makes no progress for 5 s ends it as `Reaped(Keepalive)`.
    ///
    /// A stream sends on its own schedule (an event per second, or a keepalive comment
    /// or ping every 15-30 s when it has nothing to say), and a flush completes when
    /// the peer acknowledged it: a live peer does within a round trip plus its delayed
    /// ACK, even after a retransmission or two at a 1 s timeout. A peer that vanished
    /// without a FIN or RST (power lost, out of Wi-Fi range) never does, and without
    /// this the stream holds its slot for as long as the stack retransmits. A vanished
    /// peer's slot is back at most one keepalive interval plus this deadline after it
    /// vanished.
    pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(5);

    /// HTTP with every default.
    pub const HTTP: Self = Self {
        protocol: Protocol::Http,
        first_byte_ms: to_ms(Self::DEFAULT_FIRST_BYTE),
        idle_ms: to_ms(Self::DEFAULT_IDLE),
        head_ms: to_ms(Self::DEFAULT_HEAD),
        head_max_ms: to_ms(Self::DEFAULT_HEAD_MAX),
        head_rate: Self::DEFAULT_HEAD_RATE,
        max_head: Self::DEFAULT_MAX_HEAD,
        stall_ms: to_ms(Self::DEFAULT_STALL),
        keepalive_ms: to_ms(Self::DEFAULT_KEEPALIVE),
        oversize: Oversize::Reply(REPLY_431),
    };

    /// Raw mode (see [`Protocol::Raw`]) with the default `idle` and `stall`.
    pub const RAW: Self = Self::HTTP.with_protocol(Protocol::Raw);

    /// HTTP with every default ([`Self::HTTP`]).
    pub const fn http() -> Self {
        Self::HTTP
    }

    /// Raw mode with the default `idle` and `stall` ([`Self::RAW`]).
    pub const fn raw() -> Self {
        Self::RAW
    }

    /// The same configuration for another protocol.
    pub const fn with_protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = protocol;
        self
    }

    /// The time a new connection has to send its first byte (HTTP only).
    pub const fn with_first_byte(mut self, limit: Duration) -> Self {
        self.first_byte_ms = to_ms(limit);
        self
    }

    /// The time a keep-alive connection may idle between requests; in raw mode, the
    /// longest a read waits.
    pub const fn with_idle(mut self, limit: Duration) -> Self {
        self.idle_ms = to_ms(limit);
        self
    }

    /// The head deadline: `base` from the head's first byte, plus 1 s for every
    /// `rate` bytes received (`rate` 0: no extension), at most `max`.
    pub const fn with_head(mut self, base: Duration, max: Duration, rate: u16) -> Self {
        self.head_ms = to_ms(base);
        self.head_max_ms = to_ms(max);
        self.head_rate = rate;
        self
    }

    /// The largest head accepted, in bytes, terminator included; at most
    /// [`MAX_HEAD_LIMIT`](head::MAX_HEAD_LIMIT) (16383), a larger value is taken as
    /// that.
    pub const fn with_max_head(mut self, bytes: u16) -> Self {
        self.max_head = if bytes > head::MAX_HEAD_LIMIT {
            head::MAX_HEAD_LIMIT
        } else {
            bytes
        };
        self
    }

    /// The longest a write or flush (and a read of a request body) waits without
    /// progress.
    pub const fn with_stall(mut self, limit: Duration) -> Self {
        self.stall_ms = to_ms(limit);
        self
    }

    /// The longest a stream's write or flush waits without progress before the stream
    /// is taken for a vanished peer (`Reaped(Keepalive)`).
    pub const fn with_keepalive(mut self, limit: Duration) -> Self {
        self.keepalive_ms = to_ms(limit);
        self
    }

    /// What to do with a head longer than `max_head`.
    pub const fn with_oversize(mut self, oversize: Oversize) -> Self {
        self.oversize = oversize;
        self
    }

    /// The protocol.
    pub const fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// The first-byte limit.
    pub const fn first_byte(&self) -> Duration {
        from_ms(self.first_byte_ms)
    }

    /// The idle limit.
    pub const fn idle(&self) -> Duration {
        from_ms(self.idle_ms)
    }

    /// The head deadline's base, its maximum and the bytes per second that extend it.
    pub const fn head(&self) -> (Duration, Duration, u16) {
        (
            from_ms(self.head_ms),
            from_ms(self.head_max_ms),
            self.head_rate,
        )
    }

    /// The largest head accepted.
    pub const fn max_head(&self) -> u16 {
        self.max_head
    }

    /// The send stall limit.
    pub const fn stall(&self) -> Duration {
        from_ms(self.stall_ms)
    }

    /// The stream keepalive limit.
    pub const fn keepalive(&self) -> Duration {
        from_ms(self.keepalive_ms)
    }

    /// What happens to a head longer than `max_head`.
    pub const fn oversize(&self) -> Oversize {
        self.oversize
    }

    /// The head deadline for a head that has `len` bytes so far, in ms.
    fn head_budget_ms(&self, len: u16) -> u32 {
        if self.head_ms == NEVER_MS {
            return NEVER_MS;
        }
        let extension = match self.head_rate {
            0 => 0,
            rate => u32::from(len) * 1000 / u32::from(rate),
        };
        self.head_ms
            .saturating_add(extension)
            .min(self.head_max_ms.max(self.head_ms))
    }
}

const fn from_ms(ms: u32) -> Duration {
    if ms == NEVER_MS {
        Duration::MAX
    } else {
        Duration::from_millis(ms as u64)
    }
}

impl Default for ReaperConfig {
    fn default() -> Self {
        Self::HTTP
    }
}

/// The reaper layer: a `Copy` reference to a static [`ReaperConfig`];
/// [`Layer::layer`] wraps a connection in a [`Reaper`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReaperLayer {
    config: &'static ReaperConfig,
}

impl ReaperLayer {
    /// The layer with the given deadlines.
    pub const fn new(config: &'static ReaperConfig) -> Self {
        Self { config }
    }

    /// HTTP with every default ([`ReaperConfig::HTTP`]).
    pub const fn http() -> Self {
        Self::new(&ReaperConfig::HTTP)
    }

    /// Raw mode with the default `idle` and `stall` ([`ReaperConfig::RAW`]).
    pub const fn raw() -> Self {
        Self::new(&ReaperConfig::RAW)
    }

    /// The deadlines this layer applies.
    pub const fn config(&self) -> &'static ReaperConfig {
        self.config
    }
}

impl Default for ReaperLayer {
    fn default() -> Self {
        Self::http()
    }
}

impl<C: Connection> Layer<C> for ReaperLayer {
    type Service = Reaper<C>;

    fn layer(&self, inner: C) -> Reaper<C> {
        Reaper::new(inner, self.config)
    }
}

/// Where a connection is in its request cycle, as the reaper infers it from the I/O.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Phase {
    /// Accepted, no byte received yet (`first_byte` applies).
    Fresh,
    /// Part of a request head received (`head` and `max_head` apply).
    Head,
    /// The head is complete and nothing was written yet: reads are body reads
    /// (`stall` applies).
    Request,
    /// A `1xx` status was written (`100 Continue`): the request goes on.
    Interim,
    /// The response is being written (`stall` applies).
    Response,
    /// The response is done; waiting for the next request (`idle` applies).
    Idle,
    /// A stream (SSE, WebSocket): reads wait without a deadline, writes and flushes
    /// under `keepalive`.
    Stream,
    /// Not HTTP ([`Protocol::Raw`]): `idle` for reads, `stall` for writes.
    Raw,
    /// The connection was ended (by a deadline or by [`Connection::end`]).
    Ended,
}

/// A connection under the reaper's deadlines. See the crate docs for the phases.
pub struct Reaper<C> {
    inner: C,
    config: &'static ReaperConfig,
    /// When the phase started, in ms (wrapping): the deadlines of `Fresh`, `Head` and
    /// `Idle` run from there. The other phases give each wait its own deadline from
    /// the moment it has to wait.
    mark_ms: u32,
    head: HeadScanner,
    phase: Phase,
    reaped: Option<Deadline>,
}

/// How long a wait may take, decided when the wait is known to be needed.
#[derive(Clone, Copy)]
enum Budget {
    /// `limit_ms` from `mark_ms`.
    Since { mark_ms: u32, limit_ms: u32 },
    /// `limit_ms` from the moment the call has to wait.
    FromNow { limit_ms: u32 },
    /// No limit.
    Never,
}

impl Budget {
    /// The deadline of a wait that starts at `now`; `None` for no limit.
    fn deadline(self, now: Instant) -> Option<Instant> {
        let left_ms = match self {
            Budget::Since {
                limit_ms: NEVER_MS, ..
            }
            | Budget::FromNow { limit_ms: NEVER_MS }
            | Budget::Never => return None,
            Budget::Since { mark_ms, limit_ms } => {
                let elapsed = (now.as_millis() as u32).wrapping_sub(mark_ms);
                limit_ms.saturating_sub(elapsed)
            }
            Budget::FromNow { limit_ms } => limit_ms,
        };
        Some(now + Duration::from_millis(u64::from(left_ms)))
    }
}

/// The clock in milliseconds, wrapping after 49 days: phases are far shorter, and
/// differences are taken with wrapping arithmetic.
fn now_ms() -> u32 {
    Instant::now().as_millis() as u32
}

/// Runs `fut`; if it does not complete at its first poll, reads the clock once, arms a
/// timer for the deadline `budget` gives and gives up (`None`) when the deadline passes
/// first. A call that completes at once costs no clock read and no timer; what the
/// timers of waits that end early cost is in the crate docs.
///
/// A future of its own rather than an `async fn`: it holds the pinned call by
/// reference, so the call's future is not moved into a second state machine on every
/// read and write.
fn within<F: Future>(fut: Pin<&mut F>, budget: Budget) -> Within<'_, F> {
    Within {
        fut,
        budget,
        timer: None,
    }
}

/// The future of [`within`].
struct Within<'a, F> {
    fut: Pin<&'a mut F>,
    budget: Budget,
    /// `None` until the call first has to wait; then its deadline's timer (`None` for
    /// no limit).
    timer: Option<Option<Timer>>,
}

impl<F: Future> Future for Within<'_, F> {
    type Output = Option<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if let Poll::Ready(out) = this.fut.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        let budget = this.budget;
        let timer = this
            .timer
            .get_or_insert_with(|| budget.deadline(Instant::now()).map(Timer::at));
        match timer {
            Some(timer) => Pin::new(timer).poll(cx).map(|()| None),
            None => Poll::Pending,
        }
    }
}

/// The phase after a response's first write.
fn phase_after(first_write: &[u8]) -> Phase {
    match response_kind(first_write) {
        ResponseKind::SwitchingProtocols => Phase::Stream,
        ResponseKind::Interim => Phase::Interim,
        ResponseKind::Final => Phase::Response,
    }
}

impl<C: Connection> Reaper<C> {
    /// Wraps `inner` with the deadlines of `config`; the first-byte deadline starts now.
    pub fn new(inner: C, config: &'static ReaperConfig) -> Self {
        let phase = match config.protocol {
            Protocol::Http => Phase::Fresh,
            Protocol::Raw => Phase::Raw,
        };
        Self {
            inner,
            config,
            mark_ms: now_ms(),
            head: HeadScanner::new(),
            phase,
            reaped: None,
        }
    }

    /// The wrapped connection.
    pub fn get_ref(&self) -> &C {
        &self.inner
    }

    /// The wrapped connection, mutably. I/O through it escapes the deadlines.
    pub fn get_mut(&mut self) -> &mut C {
        &mut self.inner
    }

    /// The wrapped connection, free of the deadlines.
    pub fn into_inner(self) -> C {
        self.inner
    }

    /// The deadlines this connection applies.
    pub fn config(&self) -> &'static ReaperConfig {
        self.config
    }

    /// Where the connection is in its request cycle.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The deadline that ended the connection, if one did. With
    /// [`Oversize::LeaveToServer`], `Some(RequestTooLarge)` here (or in
    /// [`Connection::close_reason`]) is the server's cue to send its 431.
    pub fn reaped(&self) -> Option<Deadline> {
        self.reaped
    }

    /// The deadline a read started now waits under.
    fn read_budget(&self) -> (Deadline, Budget) {
        let c = self.config;
        let since = |limit_ms| Budget::Since {
            mark_ms: self.mark_ms,
            limit_ms,
        };
        match self.phase {
            Phase::Fresh => (Deadline::FirstByte, since(c.first_byte_ms)),
            Phase::Idle => (Deadline::Idle, since(c.idle_ms)),
            Phase::Head => (Deadline::Request, since(c.head_budget_ms(self.head.len()))),
            Phase::Raw => (
                Deadline::Idle,
                Budget::FromNow {
                    limit_ms: c.idle_ms,
                },
            ),
            Phase::Stream => (Deadline::Idle, Budget::Never),
            Phase::Request | Phase::Interim | Phase::Response | Phase::Ended => (
                Deadline::Stall,
                Budget::FromNow {
                    limit_ms: c.stall_ms,
                },
            ),
        }
    }

    /// The deadline a write or flush started now waits under.
    fn send_budget(&self) -> Budget {
        let limit_ms = match self.phase {
            Phase::Stream => self.config.keepalive_ms,
            _ => self.config.stall_ms,
        };
        Budget::FromNow { limit_ms }
    }

    /// Follows the request head through the bytes a read returned; true when the head
    /// grew past `max_head`.
    fn track_head(&mut self, bytes: &[u8]) -> bool {
        match self.phase {
            Phase::Fresh | Phase::Idle => {
                self.phase = Phase::Head;
                self.mark_ms = now_ms();
                self.head = HeadScanner::new();
            }
            Phase::Head => {}
            _ => return false,
        }
        match self.head.feed(bytes, self.config.max_head) {
            Scan::Partial => false,
            Scan::Complete { .. } => {
                self.phase = Phase::Request;
                false
            }
            Scan::TooLarge => true,
        }
    }

    /// Ends the connection for the deadline `which` (the first deadline that passed
    /// wins) and gives the error the waiting call returns.
    async fn reap(&mut self, which: Deadline) -> C::Error {
        let which = self.note_reaped(which);
        if which == Deadline::RequestTooLarge {
            match self.config.oversize {
                Oversize::LeaveToServer => {
                    return self.inner.ended_error(CloseReason::Reaped(which));
                }
                Oversize::Reply(reply) => self.send_reply(reply).await,
                Oversize::Reset => {}
            }
        }
        let reason = CloseReason::Reaped(which);
        self.inner.end(reason).await;
        self.phase = Phase::Ended;
        self.inner.ended_error(reason)
    }

    /// [`Self::reap`] for a write's or a flush's stall, which needs no answer: apart so
    /// that the state machine of every write holds the end of the layers below, not
    /// also the answer to an oversized head (a `write_all` of the connection below).
    /// On a stream, no progress is no sign of life from the peer: `Keepalive`.
    async fn reap_stall(&mut self) -> C::Error {
        let which = match self.phase {
            Phase::Stream => Deadline::Keepalive,
            _ => Deadline::Stall,
        };
        let reason = CloseReason::Reaped(self.note_reaped(which));
        self.inner.end(reason).await;
        self.phase = Phase::Ended;
        self.inner.ended_error(reason)
    }

    /// Records the deadline `which` unless one passed before (the first wins), logs
    /// it; the deadline that ends the connection.
    fn note_reaped(&mut self, which: Deadline) -> Deadline {
        let which = *self.reaped.get_or_insert(which);
        debug!(
            "reaper: {} deadline passed, ending the connection",
            which.as_str()
        );
        which
    }

    /// Sends `reply` and waits for its acknowledgement, each at most `stall`; a failure
    /// only means the peer does not get it.
    async fn send_reply(&mut self, reply: &[u8]) {
        let stall = Budget::FromNow {
            limit_ms: self.config.stall_ms,
        };
        let sent = within(pin!(self.inner.write_all(reply)), stall).await;
        if let Some(Ok(())) = sent {
            let _ = within(pin!(self.inner.flush()), stall).await;
        }
    }

    /// The error for a write on a connection the reaper already ended; writes still pass
    /// while the server answers an oversized head itself.
    fn refusal(&self) -> Option<C::Error> {
        let which = self.reaped?;
        let answering = which == Deadline::RequestTooLarge && self.phase != Phase::Ended;
        (!answering).then(|| self.inner.ended_error(CloseReason::Reaped(which)))
    }

    /// What a read returns once a deadline passed: the end of the stream, except while
    /// an oversized head waits for the server's own answer ([`Oversize::LeaveToServer`]):
    /// then the error, the server's cue to answer rather than a peer's close.
    fn read_after_reap(&self) -> Result<usize, C::Error> {
        match self.reaped {
            Some(which @ Deadline::RequestTooLarge) if self.phase != Phase::Ended => {
                Err(self.inner.ended_error(CloseReason::Reaped(which)))
            }
            _ => Ok(0),
        }
    }
}

impl<C: Connection> ErrorType for Reaper<C> {
    type Error = C::Error;
}

impl<C: Connection> Read for Reaper<C> {
    /// Reads under the deadline of the phase. Once a deadline passed: `Ok(0)`, see the
    /// [crate docs](crate).
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        if self.reaped.is_some() {
            return self.read_after_reap();
        }
        // An empty read returns at once and changes no phase: no deadline.
        let (which, budget) = if buf.is_empty() {
            (Deadline::Stall, Budget::Never)
        } else {
            match self.phase {
                // A read after writes: the response is complete.
                Phase::Response => {
                    self.phase = Phase::Idle;
                    self.mark_ms = now_ms();
                }
                // After `100 Continue` the client sends the body.
                Phase::Interim => self.phase = Phase::Request,
                _ => {}
            }
            self.read_budget()
        };
        // One await on the read and one on `reap`: every await site costs flash in the
        // state machine, so the two ways to fail share the second.
        let result = within(pin!(self.inner.read(buf)), budget).await;
        let which = match result {
            Some(Ok(n)) if n > 0 && self.track_head(&buf[..n]) => Deadline::RequestTooLarge,
            Some(result) => return result,
            None => which,
        };
        self.reap(which).await;
        self.read_after_reap()
    }
}

impl<C: Connection> Write for Reaper<C> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        if let Some(err) = self.refusal() {
            return Err(err);
        }
        if matches!(
            self.phase,
            Phase::Fresh | Phase::Head | Phase::Request | Phase::Interim | Phase::Idle
        ) && !buf.is_empty()
        {
            self.phase = phase_after(buf);
        }
        let stall = self.send_budget();
        let result = within(pin!(self.inner.write(buf)), stall).await;
        match result {
            Some(result) => result,
            None => Err(self.reap_stall().await),
        }
    }

    /// Waits until the peer acknowledged everything written. A flush that waits longer
    /// than `stall` goes on as long as the stack's send queue shrank in that time (a
    /// slow but live reader), and ends the connection when it did not.
    async fn flush(&mut self) -> Result<(), Self::Error> {
        if let Some(err) = self.refusal() {
            return Err(err);
        }
        let stall = self.send_budget();
        loop {
            let queued = self.inner.send_queue();
            let result = within(pin!(self.inner.flush()), stall).await;
            if let Some(result) = result {
                return result;
            }
            match (queued, self.inner.send_queue()) {
                (Some(before), Some(after)) if after < before => continue,
                _ => return Err(self.reap_stall().await),
            }
        }
    }
}

impl<C: Connection> Connection for Reaper<C> {
    tcp_layers_core::delegate_connection!(inner;
        state, set_nodelay, close_write, abort, remote, local, send_queue, recv_queue,
        ended_error);

    /// `Reaped(which)` once a deadline ended the connection, else what the layers below
    /// know.
    fn close_reason(&self) -> Option<CloseReason> {
        self.reaped
            .map(CloseReason::Reaped)
            .or_else(|| self.inner.close_reason())
    }

    /// A connection that becomes a [`ConnectionClass::Stream`] (SSE, WebSocket) leaves
    /// the request cycle: its reads wait without a deadline, its writes and flushes
    /// under `keepalive`.
    fn set_class(&mut self, class: ConnectionClass) -> Result<(), ClassFull> {
        self.inner.set_class(class)?;
        if class == ConnectionClass::Stream && self.phase != Phase::Ended {
            self.phase = Phase::Stream;
        }
        Ok(())
    }

    /// Ends the connection, once: after a deadline ended it this returns at once. The
    /// reason of the deadline (or of a layer below) wins over `reason`.
    async fn end(&mut self, reason: CloseReason) {
        if self.phase == Phase::Ended {
            return;
        }
        let reason = self.end_reason(reason);
        self.inner.end(reason).await;
        self.phase = Phase::Ended;
    }
}
