//! The log policy: a level per close reason, and the rate limit on warnings.
use bitflags::bitflags;
use embassy_time::Duration;
use tcp_layers_core::CloseReason;

bitflags! {
    /// A set of [`CloseReason`]s, to give several reasons one log level in one call:
    /// `QuietConfig::new().warn_on(Reasons::CLIENT_CANCELLED | Reasons::PEER_RESET)`.
    ///
    /// Bit `i` is the reason at [`CloseReason::index`] `i`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct Reasons: u16 {
        /// [`CloseReason::PeerClosed`]: the peer's FIN between requests.
        const PEER_CLOSED = 1 << 0;
        /// [`CloseReason::ClientCancelled`]: the peer left while a response was in flight.
        const CLIENT_CANCELLED = 1 << 1;
        /// [`CloseReason::PeerReset`]: the peer's RST (or a stack timeout) while idle.
        const PEER_RESET = 1 << 2;
        /// [`CloseReason::LocalClose`]: the server closed the connection itself.
        const LOCAL_CLOSE = 1 << 3;
        /// `CloseReason::Reaped(Deadline::FirstByte)`.
        const REAPED_FIRST_BYTE = 1 << 4;
        /// `CloseReason::Reaped(Deadline::Idle)`.
        const REAPED_IDLE = 1 << 5;
        /// `CloseReason::Reaped(Deadline::Request)`.
        const REAPED_REQUEST = 1 << 6;
        /// `CloseReason::Reaped(Deadline::RequestTooLarge)`.
        const REAPED_REQUEST_TOO_LARGE = 1 << 7;
        /// `CloseReason::Reaped(Deadline::Stall)`.
        const REAPED_STALL = 1 << 8;
        /// `CloseReason::Reaped(Deadline::Keepalive)`: a stream's peer vanished.
        const REAPED_KEEPALIVE = 1 << 9;
        /// [`CloseReason::Evicted`].
        const EVICTED = 1 << 10;
        /// [`CloseReason::OverBudget`].
        const OVER_BUDGET = 1 << 11;
        /// [`CloseReason::LocalError`].
        const LOCAL_ERROR = 1 << 12;

        /// Every deadline of the reaper.
        const REAPED = Self::REAPED_FIRST_BYTE.bits()
            | Self::REAPED_IDLE.bits()
            | Self::REAPED_REQUEST.bits()
            | Self::REAPED_REQUEST_TOO_LARGE.bits()
            | Self::REAPED_STALL.bits()
            | Self::REAPED_KEEPALIVE.bits();
        /// The ends the peer caused ([`CloseReason::is_peer_caused`]).
        const PEER_CAUSED = Self::PEER_CLOSED.bits()
            | Self::CLIENT_CANCELLED.bits()
            | Self::PEER_RESET.bits();
    }
}

impl Reasons {
    /// The set holding only `reason`.
    pub const fn of(reason: CloseReason) -> Self {
        Self::from_bits_retain(1 << reason.index())
    }
}

/// How loud one close is. `Off` logs nothing (the close is still counted and still
/// reported through the event path).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Level {
    /// Not logged.
    Off,
    /// `trace!`
    Trace,
    /// `debug!`
    Debug,
    /// `info!`
    Info,
    /// `warn!` (rate-limited)
    Warn,
    /// `error!` (rate-limited)
    Error,
}

impl Level {
    /// True for the levels the [`RateLimit`] applies to (`Warn`, `Error`).
    pub const fn is_rate_limited(self) -> bool {
        matches!(self, Self::Warn | Self::Error)
    }
}

/// At most `lines` log lines at warn or above per `window`; the lines beyond are
/// dropped, counted, and announced by one "suppressed" line once the window is over.
///
/// The window opens at the first warning, so the first warning always prints: a flood
/// of repeats cannot hide the fault that started it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    lines: u16,
    window: Duration,
}

impl RateLimit {
    /// The default: 5 lines per 10 s. Five lines show the first fault and whether it
    /// repeats; beyond that, one line every 2 s on average keeps a 115 200 baud console
    /// (about 11 kB/s, ~140 lines/s) free for everything else even in a fault storm.
    pub const DEFAULT: Self = Self::new(5, Duration::from_secs(10));

    /// No limit: every warning prints.
    pub const UNLIMITED: Self = Self {
        lines: u16::MAX,
        window: Duration::from_ticks(0),
    };

    /// At most `lines` warn-or-above lines per `window` (virtual time in tests, the
    /// embassy-time clock on the device). `lines` is at least 1: the first warning of a
    /// window always prints.
    pub const fn new(lines: u16, window: Duration) -> Self {
        Self {
            lines: if lines == 0 { 1 } else { lines },
            window,
        }
    }

    /// Lines allowed per window.
    pub const fn lines(self) -> u16 {
        self.lines
    }

    /// The window length.
    pub const fn window(self) -> Duration {
        self.window
    }

    /// True when this limit never suppresses a line.
    pub const fn is_unlimited(self) -> bool {
        self.window.as_ticks() == 0
    }
}

impl Default for RateLimit {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The log policy of the quiet layer: which level each [`CloseReason`] is logged at, and
/// the [`RateLimit`] on warnings. It lives in the shared [`Counters`](crate::Counters)
/// static, so it costs no RAM per connection and can be changed at run time.
///
/// Defaults ([`QuietConfig::new`]):
/// - trace: `PeerClosed`, `ClientCancelled`, `PeerReset`, `LocalClose`: the peer left or
///   the server closed as it meant to; a browser cancels every swapped image and every
///   closed tab, none of it is a fault of the device. `Reaped(Keepalive)` too: a
///   stream's peer that vanished without a word is a peer leaving, like a cancel.
/// - debug: every other `Reaped(_)`, `Evicted`, `OverBudget`: the layers protecting the
///   device did their job; worth seeing while tuning, not in production.
/// - warn: `LocalError`: the device itself failed; this is the line to find.
/// - rate limit: [`RateLimit::DEFAULT`].
///
/// The common change is one line:
/// ```
/// use tcp_layers_quiet::{Counters, QuietConfig, Reasons};
/// static COUNTERS: Counters =
///     Counters::with_config(QuietConfig::new().info_on(Reasons::CLIENT_CANCELLED));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuietConfig {
    trace: Reasons,
    debug: Reasons,
    info: Reasons,
    warn: Reasons,
    error: Reasons,
    rate_limit: RateLimit,
}

impl QuietConfig {
    /// The defaults listed on [`QuietConfig`].
    pub const fn new() -> Self {
        Self {
            trace: Reasons::PEER_CAUSED
                .union(Reasons::LOCAL_CLOSE)
                .union(Reasons::REAPED_KEEPALIVE),
            debug: Reasons::REAPED
                .difference(Reasons::REAPED_KEEPALIVE)
                .union(Reasons::EVICTED)
                .union(Reasons::OVER_BUDGET),
            info: Reasons::empty(),
            warn: Reasons::LOCAL_ERROR,
            error: Reasons::empty(),
            rate_limit: RateLimit::DEFAULT,
        }
    }

    /// Logs `reasons` at `level` (moving them out of whatever level they had).
    pub const fn level(mut self, reasons: Reasons, level: Level) -> Self {
        let keep = reasons.complement();
        self.trace = self.trace.intersection(keep);
        self.debug = self.debug.intersection(keep);
        self.info = self.info.intersection(keep);
        self.warn = self.warn.intersection(keep);
        self.error = self.error.intersection(keep);
        match level {
            Level::Off => {}
            Level::Trace => self.trace = self.trace.union(reasons),
            Level::Debug => self.debug = self.debug.union(reasons),
            Level::Info => self.info = self.info.union(reasons),
            Level::Warn => self.warn = self.warn.union(reasons),
            Level::Error => self.error = self.error.union(reasons),
        }
        self
    }

    /// Logs `reasons` at trace.
    pub const fn trace_on(self, reasons: Reasons) -> Self {
        self.level(reasons, Level::Trace)
    }

    /// Logs `reasons` at debug.
    pub const fn debug_on(self, reasons: Reasons) -> Self {
        self.level(reasons, Level::Debug)
    }

    /// Logs `reasons` at info.
    pub const fn info_on(self, reasons: Reasons) -> Self {
        self.level(reasons, Level::Info)
    }

    /// Logs `reasons` at warn.
    pub const fn warn_on(self, reasons: Reasons) -> Self {
        self.level(reasons, Level::Warn)
    }

    /// Logs `reasons` at error.
    pub const fn error_on(self, reasons: Reasons) -> Self {
        self.level(reasons, Level::Error)
    }

    /// Does not log `reasons` at all (they are still counted).
    pub const fn silence(self, reasons: Reasons) -> Self {
        self.level(reasons, Level::Off)
    }

    /// Replaces the rate limit on warn-or-above lines.
    pub const fn rate_limit(mut self, limit: RateLimit) -> Self {
        self.rate_limit = limit;
        self
    }

    /// The level `reason` is logged at.
    pub const fn level_of(&self, reason: CloseReason) -> Level {
        let bit = Reasons::of(reason);
        if self.error.contains(bit) {
            Level::Error
        } else if self.warn.contains(bit) {
            Level::Warn
        } else if self.info.contains(bit) {
            Level::Info
        } else if self.debug.contains(bit) {
            Level::Debug
        } else if self.trace.contains(bit) {
            Level::Trace
        } else {
            Level::Off
        }
    }

    /// The reasons logged at `level` (for `Level::Off`: the silenced ones).
    pub const fn reasons_at(&self, level: Level) -> Reasons {
        match level {
            Level::Off => self
                .trace
                .union(self.debug)
                .union(self.info)
                .union(self.warn)
                .union(self.error)
                .complement(),
            Level::Trace => self.trace,
            Level::Debug => self.debug,
            Level::Info => self.info,
            Level::Warn => self.warn,
            Level::Error => self.error,
        }
    }

    /// The rate limit on warn-or-above lines.
    pub const fn limit(&self) -> RateLimit {
        self.rate_limit
    }
}

impl Default for QuietConfig {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tcp_layers_core::Deadline;

    #[test]
    fn each_flag_is_the_bit_of_its_reason() {
        let named = [
            (CloseReason::PeerClosed, Reasons::PEER_CLOSED),
            (CloseReason::ClientCancelled, Reasons::CLIENT_CANCELLED),
            (CloseReason::PeerReset, Reasons::PEER_RESET),
            (CloseReason::LocalClose, Reasons::LOCAL_CLOSE),
            (
                CloseReason::Reaped(Deadline::FirstByte),
                Reasons::REAPED_FIRST_BYTE,
            ),
            (CloseReason::Reaped(Deadline::Idle), Reasons::REAPED_IDLE),
            (
                CloseReason::Reaped(Deadline::Request),
                Reasons::REAPED_REQUEST,
            ),
            (
                CloseReason::Reaped(Deadline::RequestTooLarge),
                Reasons::REAPED_REQUEST_TOO_LARGE,
            ),
            (CloseReason::Reaped(Deadline::Stall), Reasons::REAPED_STALL),
            (
                CloseReason::Reaped(Deadline::Keepalive),
                Reasons::REAPED_KEEPALIVE,
            ),
            (CloseReason::Evicted, Reasons::EVICTED),
            (CloseReason::OverBudget, Reasons::OVER_BUDGET),
            (CloseReason::LocalError, Reasons::LOCAL_ERROR),
        ];
        assert_eq!(named.len(), CloseReason::ALL.len());
        for (reason, flag) in named {
            assert_eq!(Reasons::of(reason), flag, "{reason}");
        }
    }

    #[test]
    fn defaults_match_the_documented_levels() {
        let c = QuietConfig::new();
        for reason in CloseReason::ALL {
            let expected = match reason {
                CloseReason::LocalError => Level::Warn,
                CloseReason::Reaped(Deadline::Keepalive) => Level::Trace,
                CloseReason::Reaped(_) | CloseReason::Evicted | CloseReason::OverBudget => {
                    Level::Debug
                }
                _ => Level::Trace,
            };
            assert_eq!(c.level_of(reason), expected, "{reason}");
        }
        assert_eq!(c.reasons_at(Level::Off), Reasons::empty());
    }

    #[test]
    fn a_level_change_moves_the_reasons_and_nothing_else() {
        let c = QuietConfig::new()
            .warn_on(Reasons::CLIENT_CANCELLED | Reasons::REAPED_STALL)
            .silence(Reasons::PEER_CLOSED);
        assert_eq!(c.level_of(CloseReason::ClientCancelled), Level::Warn);
        assert_eq!(
            c.level_of(CloseReason::Reaped(Deadline::Stall)),
            Level::Warn
        );
        assert_eq!(
            c.level_of(CloseReason::Reaped(Deadline::Idle)),
            Level::Debug
        );
        assert_eq!(c.level_of(CloseReason::PeerClosed), Level::Off);
        assert_eq!(c.level_of(CloseReason::PeerReset), Level::Trace);
        assert_eq!(c.level_of(CloseReason::LocalError), Level::Warn);
        assert_eq!(c.reasons_at(Level::Off), Reasons::PEER_CLOSED);
        // Every reason sits at exactly one level.
        let levels = [
            Level::Off,
            Level::Trace,
            Level::Debug,
            Level::Info,
            Level::Warn,
            Level::Error,
        ];
        for reason in CloseReason::ALL {
            let at = levels
                .iter()
                .filter(|l| c.reasons_at(**l).contains(Reasons::of(reason)))
                .count();
            assert_eq!(at, 1, "{reason}");
        }
    }

    #[test]
    fn a_rate_limit_always_lets_the_first_line_through() {
        assert_eq!(RateLimit::new(0, Duration::from_secs(1)).lines(), 1);
        assert!(RateLimit::UNLIMITED.is_unlimited());
        assert!(!RateLimit::DEFAULT.is_unlimited());
    }
}
