//! The budget shared by every server socket: a fixed table of connection slots behind a
//! critical section.
use core::cell::RefCell;
use core::task::Waker;

use critical_section::Mutex;
use tcp_layers_core::event::{self, Event};
use tcp_layers_core::{ClassFull, ConnectionClass};

use crate::BudgetConfig;

/// What a slot of the table holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SlotUse {
    Free,
    /// A request connection reading a request or writing a response.
    Busy,
    /// A request connection between keep-alive requests: its response is written, a
    /// read is pending and no byte of the next request has arrived. Evictable.
    Idle,
    /// A stream (SSE, WebSocket, long poll): never evicted.
    Stream,
    /// Told to close; counts against no class, holds its socket until dropped.
    Evicted,
}

struct Slot {
    use_: SlotUse,
    /// The activity clock when the connection last became idle: the smallest is the
    /// least recently active.
    idle_since: u32,
    /// The pending read of an idle connection, woken on eviction.
    waker: Option<Waker>,
}

impl Slot {
    const FREE: Slot = Slot {
        use_: SlotUse::Free,
        idle_since: 0,
        waker: None,
    };
}

/// Counters of a budget since it was created. Read with [`Budget::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BudgetStats {
    /// Connections admitted.
    pub admitted: u32,
    /// Connections refused at accept because no slot of their class was left
    /// (closed with `CloseReason::OverBudget`).
    pub refused: u32,
    /// Idle keep-alive connections evicted.
    pub evictions: u32,
    /// Promotions to `Stream` refused (cap reached or exhausted).
    pub stream_refusals: u32,
    /// Times the exhaustion threshold started being held.
    pub exhaustion_entered: u32,
}

struct Table<const N: usize> {
    slots: [Slot; N],
    /// Counts idle transitions; orders idle connections by age without a timer.
    clock: u32,
    exhausted: bool,
    /// Wrappers alive, admitted or refused.
    wrappers: u16,
    stats: BudgetStats,
}

/// Events decided inside the critical section, emitted after it (the hook runs
/// outside any critical section).
#[derive(Default)]
struct Outcome {
    evicted: Option<Waker>,
    eviction: bool,
    exhaustion: Option<(bool, u16)>,
    stream_refused: bool,
}

impl Outcome {
    fn emit(self) {
        if let Some(waker) = self.evicted {
            waker.wake();
        }
        if self.eviction {
            tcp_layers_core::emit_log!(
                debug,
                "limit: evicted the least recently active idle connection"
            );
            event::emit(Event::Evicted);
        }
        if let Some((held, active)) = self.exhaustion {
            if held {
                tcp_layers_core::emit_log!(warn, "limit: exhaustion held, {} connections", active);
            } else {
                tcp_layers_core::emit_log!(
                    info,
                    "limit: exhaustion cleared, {} connections",
                    active
                );
            }
            event::emit(Event::Exhaustion { held, active });
        }
        if self.stream_refused {
            tcp_layers_core::emit_log!(info, "limit: stream refused, stream budget full");
            event::emit(Event::StreamRefused);
        }
    }
}

impl<const N: usize> Table<N> {
    fn count(&self, pred: impl Fn(SlotUse) -> bool) -> u16 {
        self.slots.iter().filter(|s| pred(s.use_)).count() as u16
    }

    fn occupied(&self) -> u16 {
        self.count(|u| u != SlotUse::Free)
    }

    /// Occupied and not told to close: the sockets that will not come back by themselves.
    fn live(&self) -> u16 {
        self.count(|u| !matches!(u, SlotUse::Free | SlotUse::Evicted))
    }

    /// Listeners free once every evicted connection has closed.
    fn free_listeners(&self, config: &BudgetConfig) -> u16 {
        u16::from(config.total).saturating_sub(self.live())
    }

    fn requests(&self) -> u16 {
        self.count(|u| matches!(u, SlotUse::Busy | SlotUse::Idle))
    }

    fn streams(&self) -> u16 {
        self.count(|u| u == SlotUse::Stream)
    }

    /// Marks the least recently active idle connection evicted.
    fn evict_lru(&mut self, out: &mut Outcome) -> bool {
        let clock = self.clock;
        let oldest = self
            .slots
            .iter_mut()
            .filter(|s| s.use_ == SlotUse::Idle)
            .max_by_key(|s| clock.wrapping_sub(s.idle_since));
        match oldest {
            Some(slot) => {
                slot.use_ = SlotUse::Evicted;
                out.evicted = slot.waker.take();
                out.eviction = true;
                self.stats.evictions += 1;
                true
            }
            None => false,
        }
    }

    fn update_exhaustion(&mut self, config: &BudgetConfig, out: &mut Outcome) {
        let active = self.occupied();
        let held = active >= u16::from(config.exhaustion_at);
        if held != self.exhausted {
            self.exhausted = held;
            if held {
                self.stats.exhaustion_entered += 1;
            }
            out.exhaustion = Some((held, active));
        }
    }
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
    table: Mutex<RefCell<Table<N>>>,
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
                    stream_refusals: 0,
                    exhaustion_entered: 0,
                },
            })),
        }
    }

    /// The numbers this budget was built with.
    pub const fn config(&self) -> &BudgetConfig {
        &self.config
    }

    fn with<R>(&self, f: impl FnOnce(&mut Table<N>) -> R) -> R {
        critical_section::with(|cs| f(&mut self.table.borrow_ref_mut(cs)))
    }

    /// Connections admitted and not yet dropped: the sockets this budget counts as
    /// taken (an evicted connection counts until its wrapper is dropped).
    pub fn active(&self) -> u16 {
        self.with(|t| t.occupied())
    }

    /// Connections of `class` counted against its cap (evicted ones count in neither).
    pub fn active_of(&self, class: ConnectionClass) -> u16 {
        self.with(|t| match class {
            ConnectionClass::Request => t.requests(),
            ConnectionClass::Stream => t.streams(),
        })
    }

    /// Request connections idle between keep-alive requests, evictable.
    pub fn idle(&self) -> u16 {
        self.with(|t| t.count(|u| u == SlotUse::Idle))
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
        })
    }

    /// Admits a connection that was just accepted: takes a slot for it as `Request`,
    /// evicting the least recently active idle connection when the request cap is
    /// reached, when fewer than `reserve` listeners stay free, or while exhausted.
    /// Returns the slot, or `None` if the connection is refused.
    pub(crate) fn admit(&self) -> Option<u8> {
        let mut out = Outcome::default();
        let admission = self.with(|t| {
            t.wrappers += 1;
            let total = u16::from(self.config.total);
            let mut evicted = false;
            if t.occupied() >= total {
                // More sockets than slots: only a dropped connection frees one.
                t.evict_lru(&mut out);
                t.stats.refused += 1;
                return None;
            }
            if t.requests() >= u16::from(self.config.request) {
                evicted = t.evict_lru(&mut out);
                if !evicted {
                    t.stats.refused += 1;
                    return None;
                }
            }
            // occupied < total <= N, so a free slot exists.
            let index = t.slots.iter().position(|s| s.use_ == SlotUse::Free)?;
            t.slots[index].use_ = SlotUse::Busy;
            t.stats.admitted += 1;
            let free_listeners = t.free_listeners(&self.config);
            t.update_exhaustion(&self.config, &mut out);
            if !evicted && (free_listeners < u16::from(self.config.reserve) || t.exhausted) {
                t.evict_lru(&mut out);
            }
            Some(index as u8)
        });
        out.emit();
        admission
    }

    /// A wrapper is dropped: its slot (if it was admitted) is free again.
    pub(crate) fn release(&self, slot: Option<u8>) {
        let mut out = Outcome::default();
        self.with(|t| {
            t.wrappers -= 1;
            if let Some(index) = slot {
                t.slots[usize::from(index)] = Slot::FREE;
                t.update_exhaustion(&self.config, &mut out);
            }
        });
        out.emit();
    }
}

impl<const N: usize> Ticket<N> {
    /// The budget's idle grace.
    pub(crate) fn idle_grace_ms(&self) -> u32 {
        self.budget.config.idle_grace_ms
    }

    /// Runs `f` on the table and the index of this ticket's slot.
    fn with_slot<R>(&self, f: impl FnOnce(&mut Table<N>, usize) -> R) -> R {
        let index = usize::from(self.slot);
        self.budget.with(|t| f(t, index))
    }

    /// A read is pending after a response and no byte has arrived: the connection is
    /// idle and may be evicted; `waker` is woken if it is. Returns true if it already
    /// was evicted.
    pub(crate) fn wait_idle(&self, waker: &Waker) -> bool {
        self.with_slot(|t, i| {
            let clock = t.clock.wrapping_add(1);
            let slot = &mut t.slots[i];
            match slot.use_ {
                SlotUse::Evicted => return true,
                SlotUse::Busy => {
                    slot.use_ = SlotUse::Idle;
                    slot.idle_since = clock;
                    slot.waker = Some(waker.clone());
                    t.clock = clock;
                }
                SlotUse::Idle => match &mut slot.waker {
                    Some(w) if w.will_wake(waker) => {}
                    other => *other = Some(waker.clone()),
                },
                SlotUse::Stream | SlotUse::Free => {}
            }
            false
        })
    }

    /// The idle read ended (data, error or cancelled): busy again unless evicted.
    /// Returns true if it was evicted.
    pub(crate) fn end_idle(&self) -> bool {
        self.with_slot(|t, i| {
            let slot = &mut t.slots[i];
            slot.waker = None;
            match slot.use_ {
                SlotUse::Idle => {
                    slot.use_ = SlotUse::Busy;
                    false
                }
                other => other == SlotUse::Evicted,
            }
        })
    }

    /// The connection has been idle for the grace period: if fewer listeners than the
    /// reserve are free (or the budget is exhausted), evict the least recently active
    /// idle connection. Returns true if that was this one.
    pub(crate) fn shed_after_grace(&self) -> bool {
        let config = self.budget.config;
        let mut out = Outcome::default();
        let evicted = self.with_slot(|t, i| {
            if t.free_listeners(&config) < u16::from(config.reserve) || t.exhausted {
                t.evict_lru(&mut out);
            }
            t.slots[i].use_ == SlotUse::Evicted
        });
        out.emit();
        evicted
    }

    /// Moves the connection to `class` if its cap allows and, for a stream, the budget
    /// is not exhausted.
    pub(crate) fn set_class(&self, class: ConnectionClass) -> Result<(), ClassFull> {
        let config = self.budget.config;
        let mut out = Outcome::default();
        let result = self.with_slot(|t, i| match (t.slots[i].use_, class) {
            (SlotUse::Stream, ConnectionClass::Stream)
            | (SlotUse::Busy | SlotUse::Idle, ConnectionClass::Request) => Ok(()),
            (SlotUse::Busy | SlotUse::Idle, ConnectionClass::Stream) => {
                if t.exhausted || t.streams() >= u16::from(config.stream) {
                    t.stats.stream_refusals += 1;
                    out.stream_refused = true;
                    Err(ClassFull { class })
                } else {
                    t.slots[i].use_ = SlotUse::Stream;
                    t.slots[i].waker = None;
                    Ok(())
                }
            }
            (SlotUse::Stream, ConnectionClass::Request) => {
                if t.requests() >= u16::from(config.request) {
                    Err(ClassFull { class })
                } else {
                    t.slots[i].use_ = SlotUse::Busy;
                    Ok(())
                }
            }
            (SlotUse::Evicted | SlotUse::Free, _) => Err(ClassFull { class }),
        });
        out.emit();
        result
    }
}
