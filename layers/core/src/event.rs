//! The event path: things a layer wants the application to know, delivered to one hook.
//!
//! Layers never fail a connection over an option the stack lacks, and never decide on
//! their own to restart the device; they report. The application installs one plain
//! `fn` (no allocation, no `dyn`) with [`set_hook`] and acts on what it cares about:
//! the exhaustion event, for instance, is the natural trigger for a soft restart of the
//! HTTP task.
//!
//! ```
//! use tcp_layers_core::event::{self, Event};
//!
//! fn on_event(e: &Event) {
//!     if let Event::Exhaustion { held: true, .. } = e {
//!         // e.g. schedule a soft restart of the HTTP task
//!     }
//! }
//! event::set_hook(on_event);
//! event::emit(Event::NodelayUnsupported);
//! ```
use core::cell::Cell;

use critical_section::Mutex;

use crate::CloseReason;

/// Something a layer reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Event {
    /// The stack cannot turn Nagle off (reported once per process by the nodelay layer).
    NodelayUnsupported,
    /// A connection ended (the quiet layer reports every close).
    Closed {
        /// Why it ended.
        reason: CloseReason,
        /// Bytes the connection read in all.
        bytes_in: u64,
        /// Bytes the connection wrote in all.
        bytes_out: u64,
    },
    /// The budget's exhaustion threshold started (`held: true`) or stopped being held.
    Exhaustion {
        /// True when entering exhaustion, false when leaving it.
        held: bool,
        /// Slots in use when it changed.
        active: u16,
    },
    /// An `accept()` failed; the loop backs off and retries.
    AcceptError {
        /// Consecutive failures so far, this one included.
        consecutive: u32,
        /// How long the loop waits before the next try.
        backoff: core::time::Duration,
    },
    /// A connection asked to become a stream and the stream cap was reached.
    StreamRefused,
    /// An idle keep-alive connection was told to close to free a slot.
    Evicted,
}

/// The application's event handler: a plain function, so no allocation and no `dyn`.
pub type Hook = fn(&Event);

static HOOK: Mutex<Cell<Option<Hook>>> = Mutex::new(Cell::new(None));

/// Installs the function every [`Event`] is passed to, replacing the previous one.
/// The hook runs in the emitting task, outside any critical section: keep it short.
pub fn set_hook(hook: Hook) {
    critical_section::with(|cs| HOOK.borrow(cs).set(Some(hook)));
}

/// Removes the hook; events are dropped until a new one is set.
pub fn clear_hook() {
    critical_section::with(|cs| HOOK.borrow(cs).set(None));
}

/// Passes `event` to the hook, if one is installed.
pub fn emit(event: Event) {
    let hook = critical_section::with(|cs| HOOK.borrow(cs).get());
    if let Some(hook) = hook {
        hook(&event);
    }
}
