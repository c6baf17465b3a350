//! What the showcase measures on the host rather than in the simulated network: the CPU
//! time the server side spends, and the log lines the server writes.
use std::cell::Cell;
use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

/// Nanoseconds of CPU time this thread has used so far.
///
/// Thread CPU time, not wall time: the machine running the showcase may be busy with
/// other work, and time spent descheduled must not count against a variant.
#[cfg(unix)]
fn thread_cpu_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable `timespec` that outlives the call, and
    // CLOCK_THREAD_CPUTIME_ID is a clock id every supported unix defines; the call writes
    // only into `now`.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// Elsewhere: wall time, which counts time spent descheduled too (noisier, not wrong
/// on an idle machine).
#[cfg(not(unix))]
fn thread_cpu_ns() -> u64 {
    use std::sync::OnceLock;
    use std::time::Instant;
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// How many futures can be metered apart: one per server variant.
pub const CHANNELS: usize = 4;

thread_local! {
    /// Per channel, CPU time spent inside metered polls since the last
    /// [`CpuMeter::start`].
    static METERED_NS: Cell<[u64; CHANNELS]> = const { Cell::new([0; CHANNELS]) };
    /// Per channel, metered polls since the last [`CpuMeter::start`].
    static METERED_POLLS: Cell<[u64; CHANNELS]> = const { Cell::new([0; CHANNELS]) };
}

/// CPU time of the futures run through [`metered`], per channel, minus what reading
/// the clock costs.
pub struct CpuMeter {
    /// What one metered poll adds by reading the clock twice, in ns.
    clock_cost_ns: u64,
}

impl CpuMeter {
    /// Zeroes the totals and measures the cost of the clock reads (the median of
    /// 2001 back-to-back pairs), which is subtracted per poll: a variant that polls
    /// more often must not pay for the measurement.
    pub fn start() -> Self {
        let mut pairs: Vec<u64> = (0..2001)
            .map(|_| {
                let t0 = thread_cpu_ns();
                thread_cpu_ns() - t0
            })
            .collect();
        pairs.sort_unstable();
        METERED_NS.with(|c| c.set([0; CHANNELS]));
        METERED_POLLS.with(|c| c.set([0; CHANNELS]));
        Self {
            clock_cost_ns: pairs[pairs.len() / 2],
        }
    }

    /// CPU time of every poll metered on `channel` since [`CpuMeter::start`], in ns.
    pub fn total_ns(&self, channel: usize) -> u64 {
        let polls = METERED_POLLS.with(Cell::get)[channel];
        let raw = METERED_NS.with(Cell::get)[channel];
        raw.saturating_sub(polls * self.clock_cost_ns)
    }
}

/// Runs `future`, adding the thread CPU time of each of its polls to `channel`.
pub async fn metered<F: Future>(channel: usize, future: F) -> F::Output {
    let mut future = pin!(future);
    poll_fn(|cx| {
        let t0 = thread_cpu_ns();
        let poll = poll_server(future.as_mut(), cx);
        let spent = thread_cpu_ns() - t0;
        METERED_NS.with(|c| {
            let mut ns = c.get();
            ns[channel] += spent;
            c.set(ns);
        });
        METERED_POLLS.with(|c| {
            let mut polls = c.get();
            polls[channel] += 1;
            c.set(polls);
        });
        poll
    })
    .await
}

/// One poll of a metered future: the server side's work, and nothing else.
///
/// Never inlined, so that it is one function in a profile: `examples/showcase/
/// callgrind.sh` counts the instructions executed inside it (callgrind's
/// `--toggle-collect=*probes::poll_server*`), which leaves out the clock reads around
/// it, the simulated network, the clients and the executor.
#[inline(never)]
fn poll_server<F: Future>(future: Pin<&mut F>, cx: &mut Context<'_>) -> Poll<F::Output> {
    future.poll(cx)
}

/// Counts the log lines of the run by level: the layers log through the `log` crate,
/// and the showcase's plain variants log their errors the way hand-written servers do.
struct LineCounter;

static WARN_OR_ABOVE: AtomicU64 = AtomicU64::new(0);
static BELOW_WARN: AtomicU64 = AtomicU64::new(0);
/// The first few warn-or-above lines since the last reset, to show what they say.
static SAMPLES: Mutex<Vec<String>> = Mutex::new(Vec::new());
const SAMPLES_KEPT: usize = 3;

impl log::Log for LineCounter {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        if record.level() <= log::Level::Warn {
            WARN_OR_ABOVE.fetch_add(1, Ordering::Relaxed);
            let mut samples = SAMPLES.lock().unwrap_or_else(|e| e.into_inner());
            if samples.len() < SAMPLES_KEPT {
                samples.push(format!("{} {}", record.level(), record.args()));
            }
        } else {
            BELOW_WARN.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn flush(&self) {}
}

static LOGGER: LineCounter = LineCounter;

/// Installs the line counter as the process's logger, every level enabled (so the
/// trace lines of a quiet close are produced, and counted, as on a device that logs
/// everything). Installing twice is harmless.
pub fn install_logger() {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Trace);
    }
}

/// Log lines counted since the last [`reset_lines`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lines {
    /// Lines at warn or error.
    pub warn_or_above: u64,
    /// Lines at info, debug or trace.
    pub below_warn: u64,
    /// The first few warn-or-above lines.
    pub samples: Vec<String>,
}

/// Starts counting from zero.
pub fn reset_lines() {
    WARN_OR_ABOVE.store(0, Ordering::Relaxed);
    BELOW_WARN.store(0, Ordering::Relaxed);
    SAMPLES.lock().unwrap_or_else(|e| e.into_inner()).clear();
}

/// The lines counted so far.
pub fn lines() -> Lines {
    Lines {
        warn_or_above: WARN_OR_ABOVE.load(Ordering::Relaxed),
        below_warn: BELOW_WARN.load(Ordering::Relaxed),
        samples: SAMPLES.lock().unwrap_or_else(|e| e.into_inner()).clone(),
    }
}
