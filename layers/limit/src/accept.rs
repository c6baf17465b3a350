//! An accept loop that never exits and never spins: failed accepts back off
//! exponentially, are counted and reported, and the loop tries again.
use embassy_time::{Duration, Timer};
use tcp_layers_core::event::{self, Event};

/// The wait after a failed accept: `first` after the first failure, doubling with
/// each failure in a row, never more than `cap`. A success starts over.
///
/// Default 10 ms to 1 s: 10 ms lets a transient error (a socket still closing, a
/// short buffer shortage) clear at once; 1 s bounds how long a healed stack waits for
/// the loop, while a permanent error costs one wake-up a second.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The wait after the first failure (at least 1 ms).
    pub first: Duration,
    /// The longest wait.
    pub cap: Duration,
}

impl Backoff {
    /// 10 ms doubling up to 1 s.
    pub const DEFAULT: Backoff = Backoff::new(Duration::from_millis(10), Duration::from_secs(1));

    /// `first` doubling up to `cap`.
    ///
    /// # Panics
    /// At compile time in a `const` if `first` is under 1 ms (a loop that never waits
    /// spins) or `cap < first`.
    pub const fn new(first: Duration, cap: Duration) -> Self {
        assert!(
            first.as_millis() >= 1,
            "backoff rule: first must be at least 1 ms"
        );
        assert!(
            cap.as_ticks() >= first.as_ticks(),
            "backoff rule: cap must be >= first"
        );
        Self { first, cap }
    }

    /// The wait after `consecutive` failures in a row (1 = the first).
    pub const fn delay(&self, consecutive: u32) -> Duration {
        let doublings = if consecutive == 0 { 0 } else { consecutive - 1 };
        if doublings >= 32 {
            return self.cap;
        }
        let delay = self.first.as_ticks().saturating_mul(1 << doublings);
        if delay > self.cap.as_ticks() {
            self.cap
        } else {
            Duration::from_ticks(delay)
        }
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The state of one accept loop: its backoff and its failure counts.
///
/// ```no_run
/// # #[cfg(feature = "embassy-net")]
/// # async fn serve(mut socket: embassy_net::tcp::TcpSocket<'_>) {
/// use tcp_layers_limit::{AcceptLoop, Backoff};
/// let mut accepts = AcceptLoop::new(Backoff::DEFAULT);
/// loop {
///     accepts.accept_socket(&mut socket, 80).await; // returns only with a connection
///     // ... serve the connection, then end it
/// #   socket.close();
/// }
/// # }
/// ```
#[derive(Clone, Copy, Debug)]
pub struct AcceptLoop {
    backoff: Backoff,
    consecutive: u32,
    failures: u32,
}

impl AcceptLoop {
    /// A loop that backs off as `backoff` says.
    pub const fn new(backoff: Backoff) -> Self {
        Self {
            backoff,
            consecutive: 0,
            failures: 0,
        }
    }

    /// Failed accepts since the loop was created.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Failed accepts since the last success.
    pub fn consecutive(&self) -> u32 {
        self.consecutive
    }

    /// Counts a failed accept, logs it (the 1st, 2nd, 4th, 8th... in a row, so a stack
    /// that fails for good logs a line every few minutes at the 1 s cap, not every
    /// second), emits [`Event::AcceptError`] and returns how long to wait before the
    /// next try. For an accept loop of its own; [`AcceptLoop::accept`] calls it.
    pub fn failed(&mut self, error: &impl core::fmt::Debug) -> Duration {
        self.consecutive = self.consecutive.saturating_add(1);
        self.failures = self.failures.saturating_add(1);
        let backoff = self.backoff.delay(self.consecutive);
        if self.consecutive.is_power_of_two() {
            #[cfg(any(feature = "log", feature = "defmt"))]
            let backoff_ms = backoff.as_millis();
            // `E` is only `Debug`: defmt gets it formatted on the device (a rare line).
            #[cfg(feature = "log")]
            log::warn!(
                "accept failed: {:?} ({} in a row), retrying in {} ms",
                error,
                self.consecutive,
                backoff_ms
            );
            #[cfg(feature = "defmt")]
            defmt::warn!(
                "accept failed: {:?} ({} in a row), retrying in {} ms",
                defmt::Debug2Format(error),
                self.consecutive,
                backoff_ms
            );
        }
        let _ = error;
        event::emit(Event::AcceptError {
            consecutive: self.consecutive,
            backoff: core::time::Duration::from_micros(backoff.as_micros()),
        });
        backoff
    }

    /// Counts a successful accept: the backoff starts over.
    pub fn succeeded(&mut self) {
        self.consecutive = 0;
    }

    /// Calls `accept` until it succeeds and returns its value. After each failure it
    /// counts and logs it ([`AcceptLoop::failed`]), yields, waits the backoff and tries
    /// again; a success resets the backoff.
    ///
    /// Cancel-safe as far as `accept` is: the counts are updated before each wait.
    pub async fn accept<T, E: core::fmt::Debug>(
        &mut self,
        mut accept: impl AsyncFnMut() -> Result<T, E>,
    ) -> T {
        loop {
            match accept().await {
                Ok(value) => {
                    self.succeeded();
                    return value;
                }
                Err(error) => {
                    let backoff = self.failed(&error);
                    // Yield even if the timer were already due: other tasks run first.
                    embassy_futures::yield_now().await;
                    Timer::after(backoff).await;
                }
            }
        }
    }

    /// Puts `socket` in accept on `endpoint` until a connection arrives, backing off
    /// on errors. Use one `AcceptLoop` per socket.
    ///
    /// A socket that still holds a connection the caller did not end (any state but
    /// `Closed`, `Listen` and `TimeWait`, which `accept` resets itself) is aborted
    /// first: otherwise every accept would fail with `InvalidState` for good. The same
    /// abort follows an `InvalidState` error (e.g. a socket left listening on another
    /// endpoint).
    ///
    /// A handshake is bounded by [`HANDSHAKE_TIMEOUT`]: smoltcp keeps a socket in
    /// SYN-RECEIVED for as long as the peer stays silent, so a client whose SYN-ACK was
    /// lost (its retransmitted SYN completed on another socket) and which then vanished
    /// would hold this socket forever. The bound is the socket's timeout during
    /// `accept`; it is cleared once a connection is established, so set your own
    /// `set_timeout` after this returns. A handshake that times out counts as a failed
    /// accept (backoff, [`Event::AcceptError`]).
    ///
    /// Cancel-safe: embassy-net does not undo a `listen` when its `accept` future is
    /// dropped, so a socket nobody serves would go on completing handshakes and leave
    /// clients hanging. Dropping this future mid-accept aborts the socket instead (no
    /// longer listening; an RST for a handshake in progress leaves with the stack's
    /// next poll).
    #[cfg(feature = "embassy-net")]
    pub async fn accept_socket(
        &mut self,
        socket: &mut embassy_net::tcp::TcpSocket<'_>,
        endpoint: impl Into<embassy_net::IpListenEndpoint> + Copy,
    ) {
        use embassy_net::tcp::{AcceptError, State};
        self.accept(async || {
            if !matches!(
                socket.state(),
                State::Closed | State::Listen | State::TimeWait
            ) {
                socket.abort();
                let _ = socket.flush().await;
            }
            let mut listening = StopListeningOnDrop {
                socket: &mut *socket,
                armed: true,
            };
            listening.socket.set_timeout(Some(HANDSHAKE_TIMEOUT));
            let result = listening.socket.accept(endpoint).await;
            listening.armed = false;
            drop(listening);
            socket.set_timeout(None);
            match result {
                Err(AcceptError::InvalidState) => {
                    socket.abort();
                    let _ = socket.flush().await;
                    Err(AcceptFailure::Stack(AcceptError::InvalidState))
                }
                Err(e) => Err(AcceptFailure::Stack(e)),
                // The handshake timed out: the socket was reset to Closed.
                Ok(()) if socket.state() == State::Closed => Err(AcceptFailure::HandshakeTimedOut),
                Ok(()) => Ok(()),
            }
        })
        .await
    }
}

/// How long a handshake may take before [`AcceptLoop::accept_socket`] gives the socket
/// back to `accept`: 10 s. A live client's SYN-ACK retransmissions (1 s, 2 s, 4 s on
/// smoltcp) finish well within it; a peer still silent after 10 s is gone.
#[cfg(feature = "embassy-net")]
pub const HANDSHAKE_TIMEOUT: embassy_time::Duration = embassy_time::Duration::from_secs(10);

/// Why one accept failed.
#[cfg(feature = "embassy-net")]
#[derive(Debug)]
enum AcceptFailure {
    /// embassy-net refused to listen.
    // Read by the warn line through `Debug`, which dead-code analysis does not count.
    #[allow(dead_code)]
    Stack(embassy_net::tcp::AcceptError),
    /// The handshake did not complete within [`HANDSHAKE_TIMEOUT`].
    HandshakeTimedOut,
}

/// Aborts a socket whose accept was cancelled, so it stops listening.
#[cfg(feature = "embassy-net")]
struct StopListeningOnDrop<'a, 's> {
    socket: &'a mut embassy_net::tcp::TcpSocket<'s>,
    armed: bool,
}

#[cfg(feature = "embassy-net")]
impl Drop for StopListeningOnDrop<'_, '_> {
    fn drop(&mut self) {
        if self.armed {
            self.socket.abort();
        }
    }
}

impl Default for AcceptLoop {
    fn default() -> Self {
        Self::new(Backoff::DEFAULT)
    }
}
