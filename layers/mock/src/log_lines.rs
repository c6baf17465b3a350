//! A `log` logger that counts the lines logged on each thread, per level, keeps the
//! text of every line at warn or above, and records the [`Event::Closed`] reasons the
//! event hook sees: what a test of the quiet layer (or of a server over it) asserts on.
//!
//! It is installed as the process's logger and event hook the first time
//! [`start_counting`] runs: a test binary that uses it must install no other.
//!
//! ```
//! use tcp_layers_mock::log_lines::{lines, start_counting};
//!
//! start_counting();
//! log::warn!("slot 3: local error");
//! log::trace!("closed");
//! let seen = lines();
//! assert_eq!((seen.warn_or_above(), seen.trace), (1, 1));
//! assert_eq!(seen.loud, ["WARN slot 3: local error"]);
//! ```
use std::cell::RefCell;
use std::sync::Once;

use log::{Level, LevelFilter, Log, Metadata, Record};
use tcp_layers_core::CloseReason;
use tcp_layers_core::event::{self, Event};

/// Lines logged on this thread, per level, plus the text of every line at warn or above.
/// Per thread: the test harness runs tests in parallel threads and a simulation runs on
/// the thread that called `run`.
#[derive(Clone, Debug, Default)]
pub struct Lines {
    /// Lines at error.
    pub error: usize,
    /// Lines at warn.
    pub warn: usize,
    /// Lines at info.
    pub info: usize,
    /// Lines at debug.
    pub debug: usize,
    /// Lines at trace.
    pub trace: usize,
    /// Every line at warn or above, as `"LEVEL text"`.
    pub loud: Vec<String>,
    /// `Event::Closed` reasons seen by the event hook, in order.
    pub closed_events: Vec<CloseReason>,
}

impl Lines {
    /// Lines at warn or above.
    pub fn warn_or_above(&self) -> usize {
        self.error + self.warn
    }
}

thread_local! {
    static LINES: RefCell<Lines> = RefCell::new(Lines::default());
}

struct CountingLogger;

impl Log for CountingLogger {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &Record<'_>) {
        LINES.with(|l| {
            let mut l = l.borrow_mut();
            match record.level() {
                Level::Error => l.error += 1,
                Level::Warn => l.warn += 1,
                Level::Info => l.info += 1,
                Level::Debug => l.debug += 1,
                Level::Trace => l.trace += 1,
            }
            if record.level() <= Level::Warn {
                l.loud.push(format!("{} {}", record.level(), record.args()));
            }
        });
    }
    fn flush(&self) {}
}

static LOGGER: CountingLogger = CountingLogger;
static INIT: Once = Once::new();

fn on_event(e: &Event) {
    if let Event::Closed { reason, .. } = e {
        LINES.with(|l| l.borrow_mut().closed_events.push(*reason));
    }
}

/// Installs the counting logger and the event hook (once per process) and clears this
/// thread's counts.
pub fn start_counting() {
    INIT.call_once(|| {
        log::set_logger(&LOGGER).expect("no other logger in this test binary");
        log::set_max_level(LevelFilter::Trace);
        event::set_hook(on_event);
    });
    LINES.with(|l| *l.borrow_mut() = Lines::default());
}

/// This thread's counts since [`start_counting`].
pub fn lines() -> Lines {
    LINES.with(|l| l.borrow().clone())
}
