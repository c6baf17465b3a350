//! [`Sweeper`]: aborts connections that an application still holds in a closing state
//! for longer than a limit.
use embassy_time::{Duration, Instant};
use tcp_layers_core::{Connection, SocketAddr, TcpState};

/// What [`Sweeper::observe`] decided for a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Leave it: not closing, or not closing for long enough yet.
    Keep,
    /// It has been closing for at least the limit: abort it.
    Abort,
}

/// The first time a sweep saw a slot closing, and which peer it was then.
#[derive(Clone, Copy, Debug)]
struct Closing {
    since: Instant,
    /// Tells a socket that closed, was freed and closes again between two sweeps from
    /// one that stayed closing all along.
    remote_port: Option<u16>,
}

/// Watches up to `N` connection slots across sweeps and aborts the ones that stay in a
/// closing state after our FIN (`FinWait1`, `FinWait2`, `Closing`, `LastAck`,
/// `TimeWait`) for at least the limit. RAM: 16 bytes per slot.
///
/// # Where it applies
///
/// A sweep can only reach a connection through a handle the application still holds,
/// so it helps in exactly two situations:
/// - an embassy-net server whose sockets sit in one place a sweeping task can reach (an
///   array of sockets served by one task, a table of connections) and that closes them
///   with `close()` but no bounded wait, so they stay in FIN_WAIT_2 behind a silent
///   peer or in FIN_WAIT_1/LAST_ACK behind a vanished one (smoltcp retransmits the FIN
///   without end unless the socket has a timeout);
/// - an lwIP (ESP-IDF) or host server that shut down the write half of streams it still
///   holds.
///
/// It does not reach a socket that a task owns and keeps inside an `accept()` loop (no
/// other task can borrow it: wrap it in [`TimeWaitLayer`](crate::TimeWaitLayer) instead), nor a
/// socket the application already closed on lwIP or a host OS: after `close()` the PCB
/// in TIME_WAIT belongs to the stack and only `SO_LINGER 0` at close (the timewait
/// layer's `end` through the tokio adapter) avoids it.
///
/// `CLOSE_WAIT` (the peer closed, we did not) is not swept: a server may still be
/// sending a response to a client that half-closed after its request.
///
/// ```no_run
/// use embassy_net::tcp::TcpSocket;
/// use embassy_time::Timer;
/// use embedded_io_async::Write;
/// use tcp_layers_timewait::Sweeper;
///
/// // sockets: [TcpSocket; 4] or [&mut TcpSocket; 4], slot i always at index i
/// async fn sweep_task(sockets: &mut [TcpSocket<'_>; 4]) -> ! {
///     let mut sweeper = Sweeper::<4>::new();
///     loop {
///         if sweeper.sweep(sockets) > 0 {
///             for s in sockets.iter_mut() {
///                 let _ = s.flush().await; // the RSTs leave with the next poll
///             }
///         }
///         Timer::after(Sweeper::<4>::DEFAULT_INTERVAL).await;
///     }
/// }
/// ```
#[derive(Clone, Debug)]
pub struct Sweeper<const N: usize> {
    limit: Duration,
    seen: [Option<Closing>; N],
}

impl<const N: usize> Sweeper<N> {
    /// How often to sweep: 30 s, as long as the default limit, so a stuck slot is
    /// aborted at most 60 s after it started closing. A sweep is a few comparisons per
    /// slot, so the interval only sets how late a stuck slot comes back.
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);

    /// How long a slot may stay closing before it is aborted: 30 s. Three times
    /// smoltcp's 10 s TIME_WAIT, half Linux's 60 s FIN_WAIT_2 timeout: a slot closing
    /// that long is stuck behind a silent or vanished peer, not finishing a close.
    pub const DEFAULT_LIMIT: Duration = Duration::from_secs(30);

    /// A sweeper with the default limit ([`Sweeper::DEFAULT_LIMIT`], 30 s).
    pub const fn new() -> Self {
        Self::with_limit(Self::DEFAULT_LIMIT)
    }

    /// A sweeper that aborts slots seen closing for at least `limit`.
    pub const fn with_limit(limit: Duration) -> Self {
        Self {
            limit,
            seen: [None; N],
        }
    }

    /// The limit this sweeper applies.
    pub const fn limit(&self) -> Duration {
        self.limit
    }

    /// Slots currently seen closing (watched, not yet aborted).
    pub fn watched(&self) -> usize {
        self.seen.iter().filter(|s| s.is_some()).count()
    }

    /// Records what slot `slot` holds at `now` and says whether to abort it: a slot
    /// seen in a closing state, with the same peer, since at least `limit` ago. The
    /// time counted is from the first sweep that saw it closing, so with a sweep every
    /// `interval` a slot is aborted after it lingered between `limit` and
    /// `limit + interval`. Slots at or beyond `N` are always kept.
    ///
    /// Use this form when the sockets are not [`Connection`]s in one slice (a callback
    /// per slot, another stack's handles); [`Sweeper::sweep`] does it for a slice.
    pub fn observe(
        &mut self,
        slot: usize,
        state: TcpState,
        remote: Option<SocketAddr>,
        now: Instant,
    ) -> Verdict {
        let Some(seen) = self.seen.get_mut(slot) else {
            return Verdict::Keep;
        };
        if !lingers(state) {
            *seen = None;
            return Verdict::Keep;
        }
        let remote_port = remote.map(|r| r.port());
        match *seen {
            Some(closing)
                if closing.remote_port == remote_port
                    && now.saturating_duration_since(closing.since) >= self.limit =>
            {
                *seen = None;
                Verdict::Abort
            }
            Some(closing) if closing.remote_port == remote_port => Verdict::Keep,
            _ => {
                *seen = Some(Closing {
                    since: now,
                    remote_port,
                });
                Verdict::Keep
            }
        }
    }

    /// Sweeps the first `N` connections of `conns` (slot `i` is `conns[i]`, so keep the
    /// order from one sweep to the next) and aborts each that has been closing for at
    /// least the limit. Returns how many it aborted.
    ///
    /// `abort` only marks the connection: on embassy-net the RST leaves with the next
    /// poll of the stack, while the socket still exists (flush it, or keep it until
    /// its owner accepts on it again).
    pub fn sweep<C: Connection>(&mut self, conns: &mut [C]) -> usize {
        let now = Instant::now();
        let mut aborted = 0;
        for (slot, conn) in conns.iter_mut().enumerate().take(N) {
            if self.observe(slot, conn.state(), conn.remote(), now) == Verdict::Abort {
                debug!("timewait: sweep aborts slot {} stuck closing", slot);
                conn.abort();
                aborted += 1;
            }
        }
        aborted
    }
}

impl<const N: usize> Default for Sweeper<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// The states after our FIN that hold a slot until the peer acts (or TIME_WAIT ends).
const fn lingers(state: TcpState) -> bool {
    matches!(
        state,
        TcpState::FinWait1
            | TcpState::FinWait2
            | TcpState::Closing
            | TcpState::LastAck
            | TcpState::TimeWait
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEER: Option<SocketAddr> = Some(SocketAddr::V4(core::net::SocketAddrV4::new(
        core::net::Ipv4Addr::new(10, 0, 0, 2),
        49152,
    )));
    const OTHER_PEER: Option<SocketAddr> = Some(SocketAddr::V4(core::net::SocketAddrV4::new(
        core::net::Ipv4Addr::new(10, 0, 0, 2),
        49153,
    )));

    fn at(s: u64) -> Instant {
        Instant::from_secs(s)
    }

    #[test]
    fn aborts_a_slot_closing_for_the_limit() {
        let mut sw = Sweeper::<2>::new();
        assert_eq!(
            sw.observe(0, TcpState::FinWait2, PEER, at(0)),
            Verdict::Keep
        );
        assert_eq!(
            sw.observe(0, TcpState::FinWait2, PEER, at(29)),
            Verdict::Keep
        );
        assert_eq!(
            sw.observe(0, TcpState::FinWait2, PEER, at(30)),
            Verdict::Abort
        );
        assert_eq!(sw.watched(), 0);
    }

    #[test]
    fn a_slot_that_recovered_starts_over() {
        let mut sw = Sweeper::<1>::new();
        sw.observe(0, TcpState::TimeWait, PEER, at(0));
        sw.observe(0, TcpState::Listen, None, at(10));
        assert_eq!(
            sw.observe(0, TcpState::LastAck, PEER, at(20)),
            Verdict::Keep
        );
        assert_eq!(
            sw.observe(0, TcpState::LastAck, PEER, at(45)),
            Verdict::Keep
        );
        assert_eq!(
            sw.observe(0, TcpState::LastAck, PEER, at(50)),
            Verdict::Abort
        );
    }

    #[test]
    fn a_new_peer_in_the_same_slot_starts_over() {
        let mut sw = Sweeper::<1>::new();
        sw.observe(0, TcpState::FinWait2, PEER, at(0));
        assert_eq!(
            sw.observe(0, TcpState::FinWait2, OTHER_PEER, at(30)),
            Verdict::Keep
        );
        assert_eq!(
            sw.observe(0, TcpState::FinWait2, OTHER_PEER, at(60)),
            Verdict::Abort
        );
    }

    #[test]
    fn open_and_half_closed_by_peer_are_never_swept() {
        let mut sw = Sweeper::<1>::with_limit(Duration::from_secs(1));
        for state in [TcpState::Established, TcpState::CloseWait, TcpState::Listen] {
            for s in 0..5 {
                assert_eq!(sw.observe(0, state, PEER, at(s * 10)), Verdict::Keep);
            }
        }
        assert_eq!(sw.watched(), 0);
    }

    #[test]
    fn sixteen_bytes_per_slot() {
        let per_slot =
            (core::mem::size_of::<Sweeper<8>>() - core::mem::size_of::<Sweeper<0>>()) / 8;
        assert_eq!(per_slot, 16);
    }

    #[test]
    fn slots_beyond_capacity_are_kept() {
        let mut sw = Sweeper::<1>::with_limit(Duration::from_secs(0));
        assert_eq!(
            sw.observe(1, TcpState::FinWait2, PEER, at(0)),
            Verdict::Keep
        );
        assert_eq!(
            sw.observe(1, TcpState::FinWait2, PEER, at(9)),
            Verdict::Keep
        );
    }
}
