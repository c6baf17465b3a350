//! The budget shared by every server socket: a fixed table of connection slots behind a
//! critical section.
use core::cell::RefCell;
use core::task::Waker;

use critical_section::Mutex;
use embassy_time::Duration;
use tcp_layers_core::event::{self, Event};
use tcp_layers_core::{ClassFull, ConnectionClass};

use crate::BudgetConfig;

/// What a slot of the table holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SlotUse {
    Free,
    /// A request connection reading a request: no byte of its response written yet.
    /// Not `admitted`: it waits for a request slot (its peer is at its share, or the
    /// requests are at their cap); the server may read its request, and its response
    /// waits until a slot is given to it.
    Head {
        admitted: bool,
    },
    /// Not admitted, and the server wants to write its response: queued for a request
    /// slot, woken when one is given to it.
    Queued,
    /// A request connection writing its response.
    Responding,
    /// A request connection between keep-alive requests: its response is written, a
    /// read is pending and no byte of the next request has arrived. Evictable.
    Idle,
    /// A stream (SSE, WebSocket, long poll): never evicted, never displaced.
    Stream,
    /// Told to close (evicted, displaced or refused after queueing): counts against no
    /// class, holds its socket until dropped.
    Evicted,
}

impl SlotUse {
    /// Holds one of the request slots.
    const fn is_request(self) -> bool {
        matches!(
            self,
            Self::Head { admitted: true } | Self::Responding | Self::Idle
        )
    }

    /// Waits for a request slot.
    const fn is_waiting(self) -> bool {
        matches!(self, Self::Head { admitted: false } | Self::Queued)
    }
}

struct Slot {
    use_: SlotUse,
    /// The remote address, folded to 32 bits; 0 when the stack did not say.
    peer: u32,
    /// When the slot entered its use, in milliseconds (wrapping): the age of a request
    /// head.
    since_ms: u32,
    /// The table's sequence number when the slot entered its use: orders idle
    /// connections (least recently active first) and the queue (first come, first
    /// served) even within one millisecond.
    order: u32,
    /// The pending read (or, when `Queued`, write) to wake when the budget decides for
    /// this connection.
    waker: Option<Waker>,
}

impl Slot {
    const FREE: Slot = Slot {
        use_: SlotUse::Free,
        peer: 0,
        since_ms: 0,
        order: 0,
        waker: None,
    };
}

/// Counters of a budget since it was created. Read with [`Budget::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct BudgetStats {
    /// Connections admitted (given a request slot, at accept or from the queue).
    pub admitted: u32,
    /// Connections refused: at accept (their peer held its whole share of sockets, or
    /// no slot was left), or after waiting in the queue past the bound.
    pub refused: u32,
    /// Idle keep-alive connections evicted.
    pub evictions: u32,
    /// Connections that waited for a request slot (their peer was at its share or the
    /// requests at their cap).
    pub queued: u32,
    /// Connections still reading their request head, displaced when every socket was
    /// taken.
    pub displaced: u32,
    /// Promotions to `Stream` refused (the stream cap was reached).
    pub stream_refusals: u32,
    /// Times the exhaustion threshold started being held.
    pub exhaustion_entered: u32,
}

/// Why a connection was refused, for the log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Its peer already held `per_peer` sockets: fairness, not overload.
    PeerShare,
    /// No slot was left (more sockets than the budget's total).
    Full,
    /// It waited for a request slot longer than the queue bound.
    QueueTimeout,
}

/// One log line per window for refusals: the first refusal of a window is logged, the
/// rest are counted and summed up in the next line.
const REFUSAL_LOG_WINDOW_MS: u32 = 10_000;

/// The slot table. The slots are the last field and unsized in the methods (`Table`
/// is `Table<[Slot]>`): the logic is compiled once, whatever `N`, over a slice whose
/// length the optimiser does not unroll loops for.
struct Table<S: ?Sized = [Slot]> {
    /// Counts state changes; the smallest `order` is the oldest.
    clock: u32,
    exhausted: bool,
    /// Wrappers alive, admitted or refused.
    wrappers: u16,
    stats: BudgetStats,
    /// Start of the current refusal log window, if one is open.
    refusal_window_ms: Option<u32>,
    /// Refusals not logged in the current window.
    refusals_unlogged: u16,
    slots: S,
}

/// The slots counted in one pass over the table.
#[derive(Clone, Copy)]
struct Tally {
    /// Not free.
    occupied: u16,
    /// Occupied and not told to close: the sockets that will not come back by themselves.
    live: u16,
    /// Holding a request slot.
    requests: u16,
    streams: u16,
    /// Request slots the peer asked about holds (0 for an unknown peer).
    peer_requests: u16,
    /// Live sockets the peer asked about holds (0 for an unknown peer).
    peer_sockets: u16,
}

impl Tally {
    /// Listeners free once every evicted connection has closed.
    fn free_listeners(&self, config: &BudgetConfig) -> u16 {
        u16::from(config.total).saturating_sub(self.live)
    }

    /// A request of the peer fits: the requests are under their cap and the peer
    /// under its share of them.
    fn fits(&self, config: &BudgetConfig) -> bool {
        self.requests < u16::from(config.request)
            && self.peer_requests < u16::from(config.peer_request_share())
    }
}

/// Events decided inside the critical section, emitted after it (the hook runs
/// outside any critical section).
#[derive(Default)]
struct Outcome {
    /// Wakers of connections the budget decided for (evicted, displaced, admitted).
    wake: [Option<Waker>; 2],
    evictions: u8,
    displaced: bool,
    exhaustion: Option<(bool, u16)>,
    stream_refused: bool,
    /// A refusal to log, and how many went unlogged before it.
    refusal: Option<(Refusal, u16)>,
}

impl Outcome {
    fn wake(&mut self, waker: Option<Waker>) {
        let Some(waker) = waker else { return };
        match self.wake.iter_mut().find(|w| w.is_none()) {
            Some(free) => *free = Some(waker),
            // More decisions in one step than places: wake at once (a spurious early
            // poll inside the critical section is harmless; wakers only schedule).
            None => waker.wake(),
        }
    }

    // One copy for every caller: the lines and events are rare, the calls many.
    #[inline(never)]
    fn emit(self) {
        for waker in self.wake.into_iter().flatten() {
            waker.wake();
        }
        for _ in 0..self.evictions {
            debug!("limit: evicted the least recently active idle connection");
            event::emit(Event::Evicted);
        }
        if self.displaced {
            debug!("limit: every socket taken, closed the connection longest in its request head");
        }
        if let Some((held, active)) = self.exhaustion {
            info!(
                "limit: exhaustion {}, {} connections",
                if held { "held" } else { "cleared" },
                // As u32: integer formatting code is per type, u32's is linked anyway.
                u32::from(active)
            );
            event::emit(Event::Exhaustion { held, active });
        }
        if self.stream_refused {
            info!("limit: stream refused, stream budget full");
            event::emit(Event::StreamRefused);
        }
        if let Some((why, unlogged)) = self.refusal {
            let unlogged = u32::from(unlogged);
            match why {
                Refusal::PeerShare => info!(
                    "limit: closed a connection from a peer holding its share of sockets ({} more since the last line)",
                    unlogged
                ),
                Refusal::Full => warn!(
                    "limit: refused a connection, no slot left ({} more since the last line)",
                    unlogged
                ),
                Refusal::QueueTimeout => warn!(
                    "limit: refused a request that waited too long for a slot ({} more since the last line)",
                    unlogged
                ),
            }
        }
    }
}

/// Milliseconds on the embassy-time clock, wrapping: only differences are used.
fn now_ms() -> u32 {
    embassy_time::Instant::now().as_millis() as u32
}

/// Keeps `waker` in `slot`, unless the one there already wakes the same task.
fn register(slot: &mut Option<Waker>, waker: &Waker) {
    match slot {
        Some(w) if w.will_wake(waker) => {}
        other => *other = Some(waker.clone()),
    }
}

impl Table {
    /// Puts slot `index` in `use_` from `now` on.
    fn enter(&mut self, index: usize, use_: SlotUse, now: u32) {
        self.clock = self.clock.wrapping_add(1);
        let clock = self.clock;
        if let Some(slot) = self.slots.get_mut(index) {
            slot.use_ = use_;
            slot.since_ms = now;
            slot.order = clock;
        }
    }

    fn count(&self, pred: impl Fn(&Slot) -> bool) -> u16 {
        self.slots.iter().filter(|s| pred(s)).count() as u16
    }

    /// Every count the decisions need, for `peer` (0: none), in one pass.
    #[inline(never)]
    fn tally(&self, peer: u32) -> Tally {
        let mut t = Tally {
            occupied: 0,
            live: 0,
            requests: 0,
            streams: 0,
            peer_requests: 0,
            peer_sockets: 0,
        };
        for s in &self.slots {
            let ours = peer != 0 && s.peer == peer;
            let live = !matches!(s.use_, SlotUse::Free | SlotUse::Evicted);
            let request = s.use_.is_request();
            t.occupied += u16::from(s.use_ != SlotUse::Free);
            t.live += u16::from(live);
            t.requests += u16::from(request);
            t.streams += u16::from(s.use_ == SlotUse::Stream);
            t.peer_requests += u16::from(ours && request);
            t.peer_sockets += u16::from(ours && live);
        }
        t
    }

    fn occupied(&self) -> u16 {
        self.tally(0).occupied
    }

    /// A request of `peer` fits: the requests are under their cap and the peer under
    /// its share of them.
    fn fits(&self, config: &BudgetConfig, peer: u32) -> bool {
        self.tally(peer).fits(config)
    }

    /// Evicts idle connections until a request of `peer` fits: first the peer's own
    /// least recently active one if it is at its share, then the least recently active
    /// of all if the requests are at their cap. Returns whether it fits.
    fn make_room(&mut self, config: &BudgetConfig, peer: u32, out: &mut Outcome) -> bool {
        if peer != 0
            && self.tally(peer).peer_requests >= u16::from(config.peer_request_share())
            && !self.evict_lru(Some(peer), out)
        {
            return false;
        }
        if self.tally(0).requests >= u16::from(config.request) && !self.evict_lru(None, out) {
            return false;
        }
        self.fits(config, peer)
    }

    /// The index of the slot that `key` ranks highest among those it gives a rank
    /// (`None`: not a candidate); the last of equals, as `max_by_key` picks.
    fn pick(&self, key: impl Fn(usize, &Slot) -> Option<u64>) -> Option<usize> {
        let mut best: Option<(usize, u64)> = None;
        for (i, s) in self.slots.iter().enumerate() {
            if let Some(k) = key(i, s)
                && best.is_none_or(|(_, b)| k >= b)
            {
                best = Some((i, k));
            }
        }
        best.map(|(i, _)| i)
    }

    /// Marks the slot `index` told to close and wakes its pending call.
    fn close_slot(&mut self, index: usize, out: &mut Outcome) {
        if let Some(slot) = self.slots.get_mut(index) {
            slot.use_ = SlotUse::Evicted;
            out.wake(slot.waker.take());
        }
    }

    /// Marks the least recently active idle connection (of `peer`, if given) evicted.
    fn evict_lru(&mut self, peer: Option<u32>, out: &mut Outcome) -> bool {
        let clock = self.clock;
        let oldest = self.pick(|_, s| {
            (s.use_ == SlotUse::Idle && peer.is_none_or(|p| s.peer == p))
                .then(|| u64::from(clock.wrapping_sub(s.order)))
        });
        let Some(index) = oldest else { return false };
        self.close_slot(index, out);
        out.evictions = out.evictions.saturating_add(1);
        self.stats.evictions = self.stats.evictions.saturating_add(1);
        true
    }

    /// Gives request slots to waiting connections, first come first served. A
    /// connection still reading its head only takes a slot that is free; one whose
    /// response is ready (`Queued`, so its request is complete) may evict idle
    /// connections for it.
    fn admit_waiting(&mut self, config: &BudgetConfig, now: u32, out: &mut Outcome) {
        loop {
            let clock = self.clock;
            let next = self.pick(|_, s| {
                (s.use_ == SlotUse::Queued
                    || (s.use_ == (SlotUse::Head { admitted: false }) && self.fits(config, s.peer)))
                .then(|| u64::from(clock.wrapping_sub(s.order)))
            });
            let Some((index, peer)) = next.and_then(|i| Some((i, self.slots.get(i)?.peer))) else {
                return;
            };
            if !self.make_room(config, peer, out) {
                // The oldest waiter cannot be served yet; later ones wait behind it.
                return;
            }
            let Some(slot) = self.slots.get_mut(index) else {
                return;
            };
            // A head keeps its age (for displacement); a queued response starts now.
            let (use_, since) = match slot.use_ {
                SlotUse::Queued => (SlotUse::Responding, now),
                _ => (SlotUse::Head { admitted: true }, slot.since_ms),
            };
            out.wake(slot.waker.take());
            self.enter(index, use_, since);
            self.stats.admitted = self.stats.admitted.saturating_add(1);
        }
    }

    /// Every socket is taken: closes the connection that has been reading its request
    /// head the longest, if longer than the configured minimum, so a new connection is
    /// not starved by clients that send their heads slowly. `except` is the newcomer.
    fn displace_slowest_head(
        &mut self,
        config: &BudgetConfig,
        except: usize,
        now: u32,
        out: &mut Outcome,
    ) {
        // Once, not per slot: a u64 division on a 32-bit core.
        let displace_after_ms =
            u32::try_from(config.displace_after.as_millis()).unwrap_or(u32::MAX);
        let oldest = self.pick(|i, s| {
            let age = now.wrapping_sub(s.since_ms);
            (i != except && matches!(s.use_, SlotUse::Head { .. }) && age >= displace_after_ms)
                // The longest in its head; of equals, the first to enter it.
                .then(|| (u64::from(age) << 32) | u64::from(u32::MAX - s.order))
        });
        if let Some(index) = oldest {
            self.close_slot(index, out);
            out.displaced = true;
            self.stats.displaced = self.stats.displaced.saturating_add(1);
        }
    }

    fn update_exhaustion(&mut self, config: &BudgetConfig, out: &mut Outcome) {
        let active = self.occupied();
        let held = active >= u16::from(config.exhaustion_at);
        if held != self.exhausted {
            self.exhausted = held;
            if held {
                self.stats.exhaustion_entered = self.stats.exhaustion_entered.saturating_add(1);
            }
            out.exhaustion = Some((held, active));
        }
    }

    /// Counts a refusal and decides whether it gets a log line.
    fn refuse(&mut self, why: Refusal, now: u32, out: &mut Outcome) {
        self.stats.refused = self.stats.refused.saturating_add(1);
        match self.refusal_window_ms {
            Some(start) if now.wrapping_sub(start) < REFUSAL_LOG_WINDOW_MS => {
                self.refusals_unlogged = self.refusals_unlogged.saturating_add(1);
            }
            _ => {
                out.refusal = Some((why, self.refusals_unlogged));
                self.refusal_window_ms = Some(now);
                self.refusals_unlogged = 0;
            }
        }
    }
}

/// How [`Budget::admit`] took a new connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// It has a slot (a request slot, or a place in the queue for one).
    Slot(u8),
    /// Refused: it gets no slot and ends at once.
    Refused,
}

/// The connection budget: a `static` shared by every server socket.
///
/// `N` is the capacity of its slot table and must be at least the config's `total`
/// (checked when the `static` is built). Each wrapped connection takes a slot from
/// accept to drop, so the budget knows which connections are idle and how many
/// listeners are left.
///
/// ```
/// use tcp_layers_limit::{Budget, BudgetConfig};
/// static BUDGET: Budget<8> = Budget::new(BudgetConfig::new(8, 2, 6));
/// assert_eq!(BUDGET.active(), 0);
/// ```
///
/// ```compile_fail,E0080
/// use tcp_layers_limit::{Budget, BudgetConfig};
/// // A table of 4 slots cannot hold a budget of 8: does not compile.
/// static BUDGET: Budget<4> = Budget::new(BudgetConfig::new(8, 2, 6));
/// ```
///
/// Tests that need a fresh budget declare their own `static` (each test its own:
/// tests run in parallel threads); [`Budget::reset`] clears one between runs.
pub struct Budget<const N: usize> {
    config: BudgetConfig,
    table: Mutex<RefCell<Table<[Slot; N]>>>,
}

/// A view of one admitted connection's slot, made on the fly by the wrapper (which
/// keeps only the budget reference and the index, and returns the slot on drop).
#[derive(Clone, Copy)]
pub(crate) struct Ticket<const N: usize> {
    pub(crate) budget: &'static Budget<N>,
    pub(crate) slot: u8,
}

impl<const N: usize> Budget<N> {
    /// A budget with `config`, every slot free.
    ///
    /// # Panics
    /// At compile time in a `static` if `config.total > N` or `N > 255`.
    pub const fn new(config: BudgetConfig) -> Self {
        assert!(
            config.total as usize <= N,
            "budget rule: the slot table (N) is smaller than total"
        );
        assert!(N <= 255, "budget rule: at most 255 slots");
        Self {
            config: config.validated(),
            table: Mutex::new(RefCell::new(Table {
                slots: [const { Slot::FREE }; N],
                clock: 0,
                exhausted: false,
                wrappers: 0,
                stats: BudgetStats {
                    admitted: 0,
                    refused: 0,
                    evictions: 0,
                    queued: 0,
                    displaced: 0,
                    stream_refusals: 0,
                    exhaustion_entered: 0,
                },
                refusal_window_ms: None,
                refusals_unlogged: 0,
            })),
        }
    }

    /// The numbers this budget was built with.
    pub const fn config(&self) -> &BudgetConfig {
        &self.config
    }

    fn with<R>(&self, f: impl FnOnce(&mut Table) -> R) -> R {
        critical_section::with(|cs| f(&mut *self.table.borrow_ref_mut(cs)))
    }

    /// Connections admitted and not yet dropped: the sockets this budget counts as
    /// taken (an evicted connection counts until its wrapper is dropped).
    pub fn active(&self) -> u16 {
        self.with(|t| t.occupied())
    }

    /// Connections of `class` counted against its cap (evicted and waiting ones count
    /// in neither).
    pub fn active_of(&self, class: ConnectionClass) -> u16 {
        self.with(|t| match class {
            ConnectionClass::Request => t.tally(0).requests,
            ConnectionClass::Stream => t.tally(0).streams,
        })
    }

    /// Request connections idle between keep-alive requests, evictable.
    pub fn idle(&self) -> u16 {
        self.with(|t| t.count(|s| s.use_ == SlotUse::Idle))
    }

    /// Connections waiting for a request slot.
    pub fn waiting(&self) -> u16 {
        self.with(|t| t.count(|s| s.use_.is_waiting()))
    }

    /// Wrappers alive, admitted or refused: 0 once every wrapped connection is dropped.
    pub fn permits_outstanding(&self) -> u16 {
        self.with(|t| t.wrappers)
    }

    /// True while the exhaustion threshold is held.
    pub fn is_exhausted(&self) -> bool {
        self.with(|t| t.exhausted)
    }

    /// The counters so far.
    pub fn stats(&self) -> BudgetStats {
        self.with(|t| t.stats)
    }

    /// Frees every slot and zeroes the counters, for a test that reuses a `static`.
    /// Wrappers still alive keep working but are no longer counted; call it only when
    /// none is.
    pub fn reset(&self) {
        self.with(|t| {
            for slot in &mut t.slots {
                *slot = Slot::FREE;
            }
            t.clock = 0;
            t.exhausted = false;
            t.wrappers = 0;
            t.stats = BudgetStats::default();
            t.refusal_window_ms = None;
            t.refusals_unlogged = 0;
        })
    }

    /// Takes a connection that was just accepted from `peer` (0: unknown).
    ///
    /// Refused when its peer already holds its share of sockets (`per_peer`) and has
    /// no idle connection to give up for it, or when no slot is left. Otherwise it
    /// gets a slot: admitted as a request if one fits (the requests under their cap,
    /// the peer under its share of them), else waiting for one. Then, as before any
    /// accept: an idle connection is evicted if fewer listeners than the reserve are
    /// free (or while exhausted), and if every socket is now taken, the connection
    /// longest in its request head is displaced.
    pub(crate) fn admit(&self, peer: u32) -> Admission {
        let mut out = Outcome::default();
        let admission = self.with(|t| t.admit(&self.config, peer, &mut out));
        out.emit();
        admission
    }

    /// A wrapper is dropped: its slot (if it had one) is free again, and the waiting
    /// connections may take what it held.
    pub(crate) fn release(&self, slot: Option<u8>) {
        let mut out = Outcome::default();
        self.with(|t| t.release(&self.config, slot, &mut out));
        out.emit();
    }
}

// The entry points below are kept out of line: inlined into the connection's futures
// (the accept loop, reads, writes, drops), each would be one more copy in the firmware.
impl Table {
    /// [`Budget::admit`] inside the critical section.
    #[inline(never)]
    fn admit(&mut self, config: &BudgetConfig, peer: u32, out: &mut Outcome) -> Admission {
        self.wrappers = self.wrappers.saturating_add(1);
        let now = now_ms();
        let tally = self.tally(peer);
        if tally.occupied >= u16::from(config.total) {
            // More sockets than slots: only a dropped connection frees one.
            self.evict_lru(None, out);
            self.refuse(Refusal::Full, now, out);
            return Admission::Refused;
        }
        if peer != 0
            && tally.peer_sockets >= u16::from(config.per_peer)
            && !self.evict_lru(Some(peer), out)
        {
            self.refuse(Refusal::PeerShare, now, out);
            return Admission::Refused;
        }
        let Some(index) = self.slots.iter().position(|s| s.use_ == SlotUse::Free) else {
            self.refuse(Refusal::Full, now, out);
            return Admission::Refused;
        };
        let admitted = self.fits(config, peer);
        if let Some(slot) = self.slots.get_mut(index) {
            slot.peer = peer;
            slot.waker = None;
        }
        self.enter(index, SlotUse::Head { admitted }, now);
        let counter = if admitted {
            &mut self.stats.admitted
        } else {
            &mut self.stats.queued
        };
        *counter = counter.saturating_add(1);
        self.update_exhaustion(config, out);
        if self.tally(0).free_listeners(config) < u16::from(config.reserve) || self.exhausted {
            self.evict_lru(None, out);
        }
        if self.tally(0).live >= u16::from(config.total) {
            self.displace_slowest_head(config, index, now, out);
        }
        Admission::Slot(index as u8)
    }

    /// [`Budget::release`] inside the critical section.
    #[inline(never)]
    fn release(&mut self, config: &BudgetConfig, slot: Option<u8>, out: &mut Outcome) {
        self.wrappers = self.wrappers.saturating_sub(1);
        let Some(slot) = slot.and_then(|i| self.slots.get_mut(usize::from(i))) else {
            return;
        };
        *slot = Slot::FREE;
        self.update_exhaustion(config, out);
        self.admit_waiting(config, now_ms(), out);
    }

    /// [`Ticket::watch`] for slot `i`.
    #[inline(never)]
    fn watch(&mut self, i: usize, waker: &Waker) -> bool {
        let Some(slot) = self.slots.get_mut(i) else {
            return false;
        };
        match slot.use_ {
            SlotUse::Evicted => true,
            SlotUse::Free | SlotUse::Stream => false,
            _ => {
                register(&mut slot.waker, waker);
                false
            }
        }
    }

    /// [`Ticket::wait_idle`] for slot `i`.
    #[inline(never)]
    fn wait_idle(
        &mut self,
        config: &BudgetConfig,
        i: usize,
        waker: &Waker,
        out: &mut Outcome,
    ) -> bool {
        let Some(slot) = self.slots.get_mut(i) else {
            return false;
        };
        match slot.use_ {
            SlotUse::Evicted => return true,
            SlotUse::Responding | SlotUse::Head { admitted: true } => {
                register(&mut slot.waker, waker);
                let now = now_ms();
                self.enter(i, SlotUse::Idle, now);
                // A queued response may take this connection's place now.
                self.admit_waiting(config, now, out);
            }
            SlotUse::Idle => register(&mut slot.waker, waker),
            SlotUse::Head { admitted: false }
            | SlotUse::Queued
            | SlotUse::Stream
            | SlotUse::Free => {}
        }
        self.is_evicted(i)
    }

    /// Slot `i` was told to close.
    fn is_evicted(&self, i: usize) -> bool {
        self.slots
            .get(i)
            .is_some_and(|s| s.use_ == SlotUse::Evicted)
    }

    /// [`Ticket::end_idle`] for slot `i`.
    #[inline(never)]
    fn end_idle(&mut self, i: usize) -> bool {
        let Some(slot) = self.slots.get_mut(i) else {
            return false;
        };
        slot.waker = None;
        match slot.use_ {
            SlotUse::Idle => {
                self.enter(i, SlotUse::Head { admitted: true }, now_ms());
                false
            }
            other => other == SlotUse::Evicted,
        }
    }

    /// [`Ticket::begin_response`] for slot `i`.
    #[inline(never)]
    fn begin_response(
        &mut self,
        config: &BudgetConfig,
        i: usize,
        waker: &Waker,
        out: &mut Outcome,
    ) -> ResponseSlot {
        let Some(slot) = self.slots.get_mut(i) else {
            return ResponseSlot::Closed;
        };
        match slot.use_ {
            SlotUse::Head { admitted: true } => {
                slot.waker = None;
                self.enter(i, SlotUse::Responding, now_ms());
                ResponseSlot::Granted
            }
            SlotUse::Responding | SlotUse::Idle | SlotUse::Stream => ResponseSlot::Granted,
            SlotUse::Evicted | SlotUse::Free => ResponseSlot::Closed,
            SlotUse::Head { admitted: false } | SlotUse::Queued => {
                let now = now_ms();
                slot.waker = Some(waker.clone());
                if slot.use_ != SlotUse::Queued {
                    self.enter(i, SlotUse::Queued, now);
                }
                // First come, first served: this response goes when the queue reaches it.
                self.admit_waiting(config, now, out);
                let Some(slot) = self.slots.get_mut(i) else {
                    return ResponseSlot::Closed;
                };
                match slot.use_ {
                    SlotUse::Responding => {
                        slot.waker = None;
                        ResponseSlot::Granted
                    }
                    SlotUse::Evicted => ResponseSlot::Closed,
                    _ => ResponseSlot::Waiting,
                }
            }
        }
    }

    /// [`Ticket::give_up_waiting`] for slot `i`.
    #[inline(never)]
    fn give_up_waiting(&mut self, i: usize, out: &mut Outcome) -> bool {
        let Some(slot) = self.slots.get_mut(i) else {
            return false;
        };
        if !slot.use_.is_waiting() {
            return slot.use_ == SlotUse::Evicted;
        }
        slot.use_ = SlotUse::Evicted;
        slot.waker = None;
        self.refuse(Refusal::QueueTimeout, now_ms(), out);
        true
    }

    /// [`Ticket::shed_after_grace`] for slot `i`.
    #[inline(never)]
    fn shed_after_grace(&mut self, config: &BudgetConfig, i: usize, out: &mut Outcome) -> bool {
        if self.tally(0).free_listeners(config) < u16::from(config.reserve) || self.exhausted {
            self.evict_lru(None, out);
        }
        self.is_evicted(i)
    }

    /// [`Ticket::set_class`] for slot `i`.
    #[inline(never)]
    fn set_class(
        &mut self,
        config: &BudgetConfig,
        i: usize,
        class: ConnectionClass,
        out: &mut Outcome,
    ) -> Result<(), ClassFull> {
        let Some(slot) = self.slots.get(i) else {
            return Err(ClassFull { class });
        };
        let (use_, peer) = (slot.use_, slot.peer);
        match (use_, class) {
            (SlotUse::Stream, ConnectionClass::Stream) => Ok(()),
            (SlotUse::Evicted | SlotUse::Free, _) => Err(ClassFull { class }),
            (_, ConnectionClass::Stream) => {
                if self.tally(0).streams >= u16::from(config.stream) {
                    self.stats.stream_refusals = self.stats.stream_refusals.saturating_add(1);
                    out.stream_refused = true;
                    return Err(ClassFull { class });
                }
                // A response queued behind the request cap may go on now, as a stream.
                if let Some(slot) = self.slots.get_mut(i) {
                    out.wake(slot.waker.take());
                }
                let now = now_ms();
                self.enter(i, SlotUse::Stream, now);
                self.admit_waiting(config, now, out);
                Ok(())
            }
            (SlotUse::Stream, ConnectionClass::Request) => {
                if self.fits(config, peer) {
                    self.enter(i, SlotUse::Responding, now_ms());
                    Ok(())
                } else {
                    Err(ClassFull { class })
                }
            }
            (_, ConnectionClass::Request) => Ok(()),
        }
    }
}

/// What [`Ticket::begin_response`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ResponseSlot {
    /// The response may be written.
    Granted,
    /// Queued: wait for the waker.
    Waiting,
    /// The connection was told to close.
    Closed,
}

impl<const N: usize> Ticket<N> {
    /// The budget's idle grace.
    pub(crate) fn idle_grace(&self) -> Duration {
        self.budget.config.idle_grace
    }

    /// How long a response may wait for a request slot.
    pub(crate) fn queue_wait(&self) -> Duration {
        self.budget.config.queue_wait
    }

    /// The bytes a connection refused after queueing is answered with.
    pub(crate) fn refusal_reply(&self) -> &'static [u8] {
        self.budget.config.refusal_reply
    }

    /// Runs `f` on the table, the budget's config and the index of this ticket's slot,
    /// then emits what it decided.
    fn with_slot<R>(
        &self,
        f: impl FnOnce(&mut Table, &BudgetConfig, usize, &mut Outcome) -> R,
    ) -> R {
        let index = usize::from(self.slot);
        let config = &self.budget.config;
        let mut out = Outcome::default();
        let result = self.budget.with(|t| f(t, config, index, &mut out));
        out.emit();
        result
    }

    /// A read of a request connection is pending: `waker` is woken if the budget closes
    /// the connection (an eviction or a displacement). Returns true once it has.
    pub(crate) fn watch(&self, waker: &Waker) -> bool {
        self.with_slot(|t, _, i, _| t.watch(i, waker))
    }

    /// A read is pending after a response and no byte has arrived: the connection is
    /// idle and may be evicted; `waker` is woken if it is. Returns true if it already
    /// was evicted.
    pub(crate) fn wait_idle(&self, waker: &Waker) -> bool {
        self.with_slot(|t, config, i, out| t.wait_idle(config, i, waker, out))
    }

    /// The idle read ended (data, error or cancelled): reading a request again unless
    /// evicted. Returns true if it was evicted.
    pub(crate) fn end_idle(&self) -> bool {
        self.with_slot(|t, _, i, _| t.end_idle(i))
    }

    /// The server is about to write a response. Granted at once to an admitted
    /// connection; a waiting one takes a request slot if one can be made (evicting an
    /// idle connection of its peer, or the least recently active of all), else it is
    /// queued and `waker` is woken when a slot is given to it.
    pub(crate) fn begin_response(&self, waker: &Waker) -> ResponseSlot {
        self.with_slot(|t, config, i, out| t.begin_response(config, i, waker, out))
    }

    /// A queued response waited longer than the bound: the connection is refused.
    /// Returns false if a slot was given to it in the meantime.
    pub(crate) fn give_up_waiting(&self) -> bool {
        self.with_slot(|t, _, i, out| t.give_up_waiting(i, out))
    }

    /// The connection has been idle for the grace period: if fewer listeners than the
    /// reserve are free (or the budget is exhausted), evict the least recently active
    /// idle connection. Returns true if that was this one.
    pub(crate) fn shed_after_grace(&self) -> bool {
        self.with_slot(|t, config, i, out| t.shed_after_grace(config, i, out))
    }

    /// Moves the connection to `class` if its cap allows. A stream is a reservation:
    /// within the stream cap it is admitted whatever the requests hold, and it gives
    /// back the request slot (or the place in the queue) it had.
    pub(crate) fn set_class(&self, class: ConnectionClass) -> Result<(), ClassFull> {
        self.with_slot(|t, config, i, out| t.set_class(config, i, class, out))
    }
}
