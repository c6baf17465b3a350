//! Test helpers: a logger that counts lines per level, the "naive" logging users write
//! today (the layer-off baseline), and a seeded generator.
#![allow(dead_code)] // each test binary uses a different part

use std::cell::RefCell;
use std::sync::Once;

use log::{Level, LevelFilter, Log, Metadata, Record};
use tcp_layers_core::event::{self, Event};
use tcp_layers_core::{CloseReason, Connection, ErrorType, Read, Write};

/// Lines logged on this thread, per level, plus the text of every line at warn or above.
/// Per thread: the test harness runs tests in parallel threads and a simulation runs on
/// the thread that called `run`.
#[derive(Clone, Debug, Default)]
pub struct Lines {
    pub error: usize,
    pub warn: usize,
    pub info: usize,
    pub debug: usize,
    pub trace: usize,
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

/// Installs the counting logger and the event hook (once per binary) and clears this
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

/// The baseline: what a hand-written server does today, `error!` on every failed read,
/// write or flush, and nothing else.
pub struct NaiveLog<C> {
    pub inner: C,
}

impl<C: Connection> ErrorType for NaiveLog<C> {
    type Error = C::Error;
}

impl<C: Connection> Read for NaiveLog<C> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, C::Error> {
        let r = self.inner.read(buf).await;
        if let Err(e) = &r {
            log::error!("read failed: {e:?}");
        }
        r
    }
}

impl<C: Connection> Write for NaiveLog<C> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, C::Error> {
        let r = self.inner.write(buf).await;
        if let Err(e) = &r {
            log::error!("write failed: {e:?}");
        }
        r
    }
    async fn flush(&mut self) -> Result<(), C::Error> {
        let r = self.inner.flush().await;
        if let Err(e) = &r {
            log::error!("flush failed: {e:?}");
        }
        r
    }
}

impl<C: Connection> Connection for NaiveLog<C> {
    tcp_layers_core::delegate_connection!(inner; state, set_nodelay, close_write, abort, remote,
        local, send_queue, recv_queue, ended_error, close_reason, set_class, end);
}

/// A connection wrapper that plays an inner layer which ended the connection itself
/// (as the reaper does): it answers `reason` from `close_reason()` and ends with it.
pub struct EndedBy<C> {
    pub inner: C,
    pub reason: CloseReason,
}

impl<C: Connection> ErrorType for EndedBy<C> {
    type Error = C::Error;
}
impl<C: Connection> Read for EndedBy<C> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, C::Error> {
        self.inner.read(buf).await
    }
}
impl<C: Connection> Write for EndedBy<C> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, C::Error> {
        self.inner.write(buf).await
    }
    async fn flush(&mut self) -> Result<(), C::Error> {
        self.inner.flush().await
    }
}
impl<C: Connection> Connection for EndedBy<C> {
    tcp_layers_core::delegate_connection!(inner; state, set_nodelay, close_write, abort,
        remote, local, send_queue, recv_queue, ended_error, set_class);
    fn close_reason(&self) -> Option<CloseReason> {
        Some(self.reason)
    }
    async fn end(&mut self, _reason: CloseReason) {
        self.inner.end(self.reason).await
    }
}

/// splitmix64: a fixed seed gives the same offsets on every run.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// Hides the inner layers' `close_reason()`: the quiet layer must then classify from
/// the TCP state alone (a fault in a stack or adapter that reports no reason).
pub struct HideReason<C> {
    pub inner: C,
}

impl<C: Connection> ErrorType for HideReason<C> {
    type Error = C::Error;
}
impl<C: Connection> Read for HideReason<C> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, C::Error> {
        self.inner.read(buf).await
    }
}
impl<C: Connection> Write for HideReason<C> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, C::Error> {
        self.inner.write(buf).await
    }
    async fn flush(&mut self) -> Result<(), C::Error> {
        self.inner.flush().await
    }
}
impl<C: Connection> Connection for HideReason<C> {
    tcp_layers_core::delegate_connection!(inner; state, set_nodelay, close_write, abort,
        remote, local, send_queue, recv_queue, ended_error, set_class, end);
    fn close_reason(&self) -> Option<CloseReason> {
        None
    }
}
