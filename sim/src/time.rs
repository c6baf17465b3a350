//! The virtual clock: an `embassy_time_driver::Driver` whose time only moves when the
//! executor jumps it to the next due timer.
//!
//! embassy-time's own `mock-driver` cannot tell when its next alarm is due, so an
//! executor on it must advance in fixed steps: slow, and imprecise (1 ms steps make a
//! 20 ms round trip 5 % wrong). This driver keeps the registered wake-ups in a min-heap
//! ordered by (due tick, registration order), so the executor can jump straight to the
//! earliest one and the order of wake-ups is the same on every run.
//!
//! It keeps one wake-up per waker, the earliest, as a device's timer queue does (see
//! the crate docs); a registration that changes nothing is a lookup, no new entry.
//! Futures that wait re-register at every poll, as `embassy_time::Timer` does, so a
//! wake-up superseded by an earlier one is registered again once that one has fired.
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::Mutex;
use std::task::Waker;

use embassy_time_driver::Driver;

/// One registered wake-up. Ordered by `(at, seq)` only; the waker is payload.
struct TimerEntry {
    at: u64,
    seq: u64,
    waker: Waker,
}

impl PartialEq for TimerEntry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for TimerEntry {}
impl PartialOrd for TimerEntry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for TimerEntry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

struct ClockState {
    now: u64,
    seq: u64,
    timers: BinaryHeap<Reverse<TimerEntry>>,
    /// The pending wake-up of each waker (by identity): its due tick. A heap entry whose
    /// tick is not the one here was superseded by an earlier instant and wakes nothing.
    pending: BTreeMap<(usize, usize), u64>,
}

impl ClockState {
    /// The tick of the earliest live wake-up. Superseded entries on top of the heap are
    /// dropped first, so the clock never jumps to an instant that wakes nothing.
    fn earliest(&mut self) -> Option<u64> {
        while let Some(Reverse(t)) = self.timers.peek() {
            if self.pending.get(&waker_key(&t.waker)) == Some(&t.at) {
                return Some(t.at);
            }
            self.timers.pop();
        }
        None
    }
}

/// What `Waker::will_wake` compares: the data pointer and the vtable.
fn waker_key(waker: &Waker) -> (usize, usize) {
    (waker.data() as usize, waker.vtable() as *const _ as usize)
}

/// The driver value registered with `time_driver_impl!`. A `Mutex` (not a `RefCell`)
/// because the driver trait requires `Send + Sync`; only the thread holding the
/// simulation lock ever touches it.
pub(crate) struct VirtualClock {
    state: Mutex<ClockState>,
}

impl VirtualClock {
    const fn new() -> Self {
        Self {
            state: Mutex::new(ClockState {
                now: 0,
                seq: 0,
                timers: BinaryHeap::new(),
                pending: BTreeMap::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ClockState> {
        // A test that panicked while holding the lock leaves it poisoned; the state is
        // reset at the start of every run, so the data is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Driver for VirtualClock {
    fn now(&self) -> u64 {
        self.lock().now
    }

    fn schedule_wake(&self, at: u64, waker: &Waker) {
        let mut s = self.lock();
        if at <= s.now {
            drop(s);
            waker.wake_by_ref();
            return;
        }
        let key = waker_key(waker);
        if s.pending.get(&key).is_some_and(|&earlier| earlier <= at) {
            return;
        }
        s.pending.insert(key, at);
        let seq = s.seq;
        s.seq += 1;
        s.timers.push(Reverse(TimerEntry {
            at,
            seq,
            waker: waker.clone(),
        }));
    }
}

embassy_time_driver::time_driver_impl!(static CLOCK: VirtualClock = VirtualClock::new());

/// Sets the clock to 0 and forgets every timer (the start of a run).
pub(crate) fn reset() {
    let mut s = CLOCK.lock();
    s.now = 0;
    s.seq = 0;
    s.timers.clear();
    s.pending.clear();
}

/// The current virtual time in ticks.
pub(crate) fn now_ticks() -> u64 {
    CLOCK.lock().now
}

/// The tick of the earliest pending timer, if any.
pub(crate) fn next_due() -> Option<u64> {
    CLOCK.lock().earliest()
}

/// Moves the clock to the earliest pending timer (never backwards) and wakes every timer
/// due by then, in (due, registration) order. Returns false when no timer is pending.
pub(crate) fn advance_to_next() -> bool {
    let due: Vec<Waker> = {
        let mut s = CLOCK.lock();
        let Some(at) = s.earliest() else {
            return false;
        };
        if at > s.now {
            s.now = at;
        }
        let now = s.now;
        let mut due = Vec::new();
        while s.earliest().is_some_and(|at| at <= now) {
            let Reverse(t) = s.timers.pop().expect("earliest is on top");
            s.pending.remove(&waker_key(&t.waker));
            due.push(t.waker);
        }
        due
    };
    // Wake outside the lock: a waker may re-register a timer.
    for w in due {
        w.wake();
    }
    true
}

/// Sets the clock to `tick` without waking anything (used to stop at a time limit).
pub(crate) fn set_now(tick: u64) {
    let mut s = CLOCK.lock();
    if tick > s.now {
        s.now = tick;
    }
}
