//! embassy-executor's own executor, driven by the simulation: firmware tasks
//! (`#[embassy_executor::task]` functions spawned with a [`Spawner`]) run unchanged
//! beside the simulation's own tasks, in the same virtual time.
//!
//! embassy-executor without a `platform-*` feature leaves the pender to the user: the
//! function it calls when a task is woken. The pender here only raises a flag; the
//! simulation's loop polls the raw executor when the flag is up, and jumps the clock
//! only when neither its own queue nor the raw executor has work.
#![allow(unsafe_code)]

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

use embassy_executor::{Spawner, raw};

/// Raised by the pender when a task of the raw executor is woken, lowered when the
/// simulation polls it. One flag for the process: simulations run one at a time, and a
/// spurious poll only finds an empty queue.
static PENDED: AtomicBool = AtomicBool::new(false);

/// embassy-executor's pender (`__pender`), called from any waker of one of its tasks.
/// It must not poll (the executor may be polling right now): it asks for a poll.
#[unsafe(no_mangle)]
fn __pender(_context: *mut ()) {
    PENDED.store(true, Ordering::Release);
}

/// The raw executor of one run, made on the first [`spawner`](crate::spawner) call.
pub(crate) struct EmbassyExecutor {
    raw: Cell<Option<&'static raw::Executor>>,
}

impl EmbassyExecutor {
    pub(crate) fn new() -> Self {
        PENDED.store(false, Ordering::Release);
        Self {
            raw: Cell::new(None),
        }
    }

    /// The run's spawner. The raw executor is leaked (three words): its tasks live in
    /// `static` pools, which outlive any run, and a `Spawner` needs `&'static`.
    pub(crate) fn spawner(&self) -> Spawner {
        let raw = match self.raw.get() {
            Some(raw) => raw,
            None => {
                let raw: &'static raw::Executor =
                    Box::leak(Box::new(raw::Executor::new(std::ptr::null_mut())));
                self.raw.set(Some(raw));
                raw
            }
        };
        raw.spawner()
    }

    /// Polls every ready task of the raw executor if the pender asked for it; true if
    /// it did.
    pub(crate) fn poll_if_pended(&self) -> bool {
        let Some(raw) = self.raw.get() else {
            return false;
        };
        if !PENDED.swap(false, Ordering::AcqRel) {
            return false;
        }
        // SAFETY: `poll` must not run reentrantly and must run on the thread that made
        // the executor. The executor belongs to the run that made it, whose loop (on
        // that thread, the run's executor being thread-local) is the only caller; the
        // pender above never polls, so no task's poll can reach this call.
        unsafe { raw.poll() };
        true
    }
}
