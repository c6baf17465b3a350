//! The shared static: counters every task can read, the log policy, and the window of
//! the warning rate limit.
use core::cell::RefCell;
use core::fmt;

use critical_section::Mutex;
use embassy_time::Instant;
use tcp_layers_core::CloseReason;

use crate::config::{Level, QuietConfig, RateLimit};

const REASONS: usize = CloseReason::ALL.len();

/// What every quiet connection reports to: the counters (accepted, active, closed per
/// reason, bytes in and out), the [`QuietConfig`] and the state of the warning rate
/// limit. Put one in a `static`; any task can [`snapshot`](Counters::snapshot) it.
///
/// Shared state sits behind a `critical-section` mutex, not atomics: the ESP32-C3
/// (riscv32imc) has no atomic compare-and-swap. A connection takes the lock when it
/// opens, once per 16 KiB it reads or writes, and when it closes.
///
/// ```
/// use tcp_layers_quiet::Counters;
/// static COUNTERS: Counters = Counters::new();
/// let s = COUNTERS.snapshot();
/// assert_eq!(s.closed_total(), 0);
/// ```
pub struct Counters {
    shared: Mutex<RefCell<Shared>>,
}

struct Shared {
    counts: CounterSnapshot,
    config: QuietConfig,
    window: LogWindow,
}

impl Counters {
    /// Zero counters and the default [`QuietConfig`].
    pub const fn new() -> Self {
        Self::with_config(QuietConfig::new())
    }

    /// Zero counters and `config`.
    pub const fn with_config(config: QuietConfig) -> Self {
        Self {
            shared: Mutex::new(RefCell::new(Shared {
                counts: CounterSnapshot::ZERO,
                config,
                window: LogWindow::new(),
            })),
        }
    }

    /// A copy of every counter, taken at one instant.
    pub fn snapshot(&self) -> CounterSnapshot {
        critical_section::with(|cs| self.shared.borrow_ref(cs).counts)
    }

    /// The log policy in force.
    pub fn config(&self) -> QuietConfig {
        critical_section::with(|cs| self.shared.borrow_ref(cs).config)
    }

    /// Replaces the log policy; connections already open use it from their next close
    /// (e.g. turn cancels up to info from a debug page, without a rebuild).
    pub fn set_config(&self, config: QuietConfig) {
        critical_section::with(|cs| self.shared.borrow_ref_mut(cs).config = config);
    }

    /// Starts a new counting period: every count goes to zero except `active`, and
    /// `accepted` restarts at `active` (the connections still open count as accepted in
    /// the new period), so [`CounterSnapshot::is_balanced`] stays true. The rate-limit
    /// window restarts too. For a status page's "since" figure, and for tests that reuse
    /// one static.
    pub fn reset(&self) {
        critical_section::with(|cs| {
            let mut s = self.shared.borrow_ref_mut(cs);
            let active = s.counts.active;
            s.counts = CounterSnapshot {
                accepted: u64::from(active),
                active,
                ..CounterSnapshot::ZERO
            };
            s.window = LogWindow::new();
        });
    }

    /// Prints the "suppressed" line of a finished rate-limit window now, instead of at
    /// the next close. Call it from a periodic task if warnings may stop for a long time
    /// after a flood; without it nothing is lost, the line only comes later.
    pub fn announce_suppressed(&self) {
        let now = Instant::now();
        let announced = critical_section::with(|cs| {
            let mut s = self.shared.borrow_ref_mut(cs);
            let limit = s.config.limit();
            s.window.finish_expired(limit, now)
        });
        if let Some(lines) = announced {
            announce(lines);
        }
    }

    pub(crate) fn opened(&self) {
        critical_section::with(|cs| {
            let counts = &mut self.shared.borrow_ref_mut(cs).counts;
            counts.accepted = counts.accepted.saturating_add(1);
            counts.active = counts.active.saturating_add(1);
        });
    }

    pub(crate) fn add_bytes(&self, bytes_in: u64, bytes_out: u64) {
        critical_section::with(|cs| {
            let counts = &mut self.shared.borrow_ref_mut(cs).counts;
            counts.bytes_in = counts.bytes_in.saturating_add(bytes_in);
            counts.bytes_out = counts.bytes_out.saturating_add(bytes_out);
        });
    }

    /// Counts one close, with the connection's bytes (in, out) not yet counted, and
    /// decides how loud it is. The caller logs outside the lock.
    pub(crate) fn closed(&self, reason: CloseReason, bytes: (u64, u64), now: Instant) -> CloseLog {
        critical_section::with(|cs| {
            let mut s = self.shared.borrow_ref_mut(cs);
            let s = &mut *s;
            s.counts.active = s.counts.active.saturating_sub(1);
            s.counts.bytes_in = s.counts.bytes_in.saturating_add(bytes.0);
            s.counts.bytes_out = s.counts.bytes_out.saturating_add(bytes.1);
            s.counts.closed[reason.index()] = s.counts.closed[reason.index()].saturating_add(1);
            let limit = s.config.limit();
            let announce_suppressed = s.window.finish_expired(limit, now);
            let mut level = s.config.level_of(reason);
            if level.is_rate_limited() && !s.window.admit(limit, now) {
                level = Level::Off;
                s.counts.suppressed_lines = s.counts.suppressed_lines.saturating_add(1);
            }
            CloseLog {
                level,
                announce_suppressed,
            }
        })
    }
}

impl Default for Counters {
    fn default() -> Self {
        Self::new()
    }
}

/// How to log one close: decided under the lock, printed after it.
pub(crate) struct CloseLog {
    /// The level of the close line (`Off` when not printed or suppressed).
    pub(crate) level: Level,
    /// Lines suppressed in a window that just ended: print the summary first.
    pub(crate) announce_suppressed: Option<u32>,
}

/// Prints the summary of a rate-limit window that dropped `lines` lines.
pub(crate) fn announce(lines: u32) {
    warn!(
        "tcp-layers-quiet: {} more warning lines suppressed by the rate limit",
        lines
    );
}

/// The current window of the warning rate limit.
struct LogWindow {
    opened_at: Option<Instant>,
    printed: u16,
    suppressed: u32,
}

impl LogWindow {
    const fn new() -> Self {
        Self {
            opened_at: None,
            printed: 0,
            suppressed: 0,
        }
    }

    /// Closes the window if it is over; returns how many lines it suppressed, if any.
    fn finish_expired(&mut self, limit: RateLimit, now: Instant) -> Option<u32> {
        let opened_at = self.opened_at?;
        if now.saturating_duration_since(opened_at) < limit.window() {
            return None;
        }
        let suppressed = self.suppressed;
        *self = Self::new();
        (suppressed > 0).then_some(suppressed)
    }

    /// True when one more warn-or-above line may print now; counts it either way.
    fn admit(&mut self, limit: RateLimit, now: Instant) -> bool {
        if limit.is_unlimited() {
            return true;
        }
        if self.opened_at.is_none() {
            self.opened_at = Some(now);
        }
        if self.printed < limit.lines() {
            self.printed += 1;
            true
        } else {
            self.suppressed = self.suppressed.saturating_add(1);
            false
        }
    }
}

/// A copy of the [`Counters`] at one instant. `Copy`; its `Display` is a one-line status:
/// `accepted=12 active=1 closed=11 (peer_closed=9 client_cancelled=2) in=1200B out=340000B`
/// (reasons with a zero count are left out).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct CounterSnapshot {
    /// Connections wrapped since start (or since [`Counters::reset`]).
    pub accepted: u64,
    /// Connections wrapped and not yet closed.
    pub active: u32,
    /// Closed connections per reason, indexed by [`CloseReason::index`]; see
    /// [`CounterSnapshot::closed`].
    pub closed: [u64; REASONS],
    /// Bytes read by the server, in all: every byte of the closed connections, and
    /// those of an open connection in steps of 16 KiB (the rest when it closes).
    pub bytes_in: u64,
    /// Bytes written by the server, in all, counted as `bytes_in` is.
    pub bytes_out: u64,
    /// Warn-or-above lines the rate limit dropped.
    pub suppressed_lines: u64,
}

impl CounterSnapshot {
    /// All zero.
    pub const ZERO: Self = Self {
        accepted: 0,
        active: 0,
        closed: [0; REASONS],
        bytes_in: 0,
        bytes_out: 0,
        suppressed_lines: 0,
    };

    /// Connections closed for `reason`.
    pub const fn closed(&self, reason: CloseReason) -> u64 {
        self.closed[reason.index()]
    }

    /// Connections closed for any reason.
    pub fn closed_total(&self) -> u64 {
        self.closed.iter().sum()
    }

    /// True when every accepted connection is either active or counted once as closed.
    pub fn is_balanced(&self) -> bool {
        self.accepted == self.closed_total() + u64::from(self.active)
    }
}

impl Default for CounterSnapshot {
    fn default() -> Self {
        Self::ZERO
    }
}

impl fmt::Display for CounterSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "accepted={} active={} closed={}",
            self.accepted,
            self.active,
            self.closed_total()
        )?;
        let mut open = " (";
        for reason in CloseReason::ALL {
            let n = self.closed(reason);
            if n > 0 {
                write!(f, "{open}{reason}={n}")?;
                open = " ";
            }
        }
        if open == " " {
            f.write_str(")")?;
        }
        write!(f, " in={}B out={}B", self.bytes_in, self.bytes_out)?;
        if self.suppressed_lines > 0 {
            write!(f, " suppressed={}", self.suppressed_lines)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embassy_time::Duration;

    fn at(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    #[test]
    fn the_window_prints_n_lines_then_counts_and_announces_once() {
        let limit = RateLimit::new(3, Duration::from_secs(10));
        let mut w = LogWindow::new();
        let printed: usize = (0..100).filter(|i| w.admit(limit, at(*i))).count();
        assert_eq!(printed, 3);
        assert_eq!(
            w.finish_expired(limit, at(9_999)),
            None,
            "window still open"
        );
        assert_eq!(w.finish_expired(limit, at(10_000)), Some(97));
        assert_eq!(w.finish_expired(limit, at(20_000)), None, "announced once");
        assert!(w.admit(limit, at(20_001)), "a new window prints again");
    }

    #[test]
    fn a_window_without_suppressed_lines_ends_silently() {
        let limit = RateLimit::new(3, Duration::from_secs(1));
        let mut w = LogWindow::new();
        assert!(w.admit(limit, at(0)));
        assert_eq!(w.finish_expired(limit, at(5_000)), None);
        assert!(w.opened_at.is_none());
    }

    #[test]
    fn unlimited_never_suppresses() {
        let mut w = LogWindow::new();
        assert!((0..10_000).all(|i| w.admit(RateLimit::UNLIMITED, at(i))));
    }

    #[test]
    fn closes_balance_and_display_reads_as_one_line() {
        static COUNTERS: Counters = Counters::new();
        COUNTERS.opened();
        COUNTERS.opened();
        COUNTERS.add_bytes(10, 2000);
        let log = COUNTERS.closed(CloseReason::ClientCancelled, (0, 0), at(0));
        assert_eq!(log.level, Level::Trace);
        let s = COUNTERS.snapshot();
        assert!(s.is_balanced());
        assert_eq!(s.closed(CloseReason::ClientCancelled), 1);
        let line = s.to_string();
        println!("status line: {line}");
        assert_eq!(
            line,
            "accepted=2 active=1 closed=1 (client_cancelled=1) in=10B out=2000B"
        );
        COUNTERS.reset();
        let s = COUNTERS.snapshot();
        assert_eq!((s.accepted, s.active, s.closed_total()), (1, 1, 0));
        assert!(s.is_balanced());
    }

    #[test]
    fn the_limit_applies_to_warnings_only() {
        static COUNTERS: Counters = Counters::with_config(
            QuietConfig::new().rate_limit(RateLimit::new(1, Duration::from_secs(10))),
        );
        let levels: [Level; 4] = [
            COUNTERS
                .closed(CloseReason::LocalError, (0, 0), at(0))
                .level,
            COUNTERS
                .closed(CloseReason::LocalError, (0, 0), at(1))
                .level,
            COUNTERS.closed(CloseReason::PeerReset, (0, 0), at(2)).level,
            COUNTERS
                .closed(CloseReason::LocalError, (0, 0), at(3))
                .level,
        ];
        assert_eq!(levels, [Level::Warn, Level::Off, Level::Trace, Level::Off]);
        assert_eq!(COUNTERS.snapshot().suppressed_lines, 2);
        let next = COUNTERS.closed(CloseReason::PeerReset, (0, 0), at(10_000));
        assert_eq!(next.announce_suppressed, Some(2));
    }
}
