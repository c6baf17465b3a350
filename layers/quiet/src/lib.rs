#![doc = include_str!("../README.md")]
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]
#![deny(unsafe_code)]

// First: the logging macros are visible in the modules declared after it.
mod fmt;

mod classify;
mod config;
mod counters;

pub use config::{Level, QuietConfig, RateLimit, Reasons};
pub use counters::{CounterSnapshot, Counters};

use embassy_time::Instant;
use embedded_io_async::Error as _;
use tcp_layers_core::event::{self, Event};
use tcp_layers_core::{
    ClassFull, CloseReason, Connection, ConnectionClass, ErrorType, Exchange, Layer, Read,
    SocketAddr, Write,
};

use classify::{Failure, classify, classify_drop};

/// The quiet-close layer: wraps a connection in a [`Quiet`] that reports to
/// `counters`. The log policy is the one in the counters ([`Counters::with_config`]).
#[derive(Clone, Copy)]
pub struct QuietLayer {
    counters: &'static Counters,
}

impl QuietLayer {
    /// A layer reporting to `counters`.
    pub const fn new(counters: &'static Counters) -> Self {
        Self { counters }
    }

    /// The counters this layer reports to.
    pub const fn counters(&self) -> &'static Counters {
        self.counters
    }
}

impl<C: Connection> Layer<C> for QuietLayer {
    type Service = Quiet<C>;

    /// Counts the connection as accepted and active.
    fn layer(&self, inner: C) -> Quiet<C> {
        self.counters.opened();
        Quiet {
            inner,
            counters: self.counters,
            bytes_in: 0,
            bytes_out: 0,
            exchange: Exchange::Fresh,
            outcome: Outcome::Open,
        }
    }
}

/// What is known about the end of the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// Nothing went wrong yet.
    Open,
    /// The first failure (or the server's own close) was seen and classified; not yet
    /// counted.
    Seen(CloseReason),
    /// Counted, logged and reported, once.
    Counted(CloseReason),
}

/// A connection whose close is classified, counted and logged once: at [`Connection::end`]
/// or, if the server never calls it, when the wrapper is dropped.
pub struct Quiet<C: Connection> {
    inner: C,
    counters: &'static Counters,
    /// Saturating at 4 GiB: a per-connection figure for the close line; the shared
    /// counters are 64-bit.
    bytes_in: u32,
    bytes_out: u32,
    exchange: Exchange,
    outcome: Outcome,
}

impl<C: Connection> Quiet<C> {
    /// The wrapped connection.
    pub fn get_ref(&self) -> &C {
        &self.inner
    }

    /// The wrapped connection, mutably. I/O done on it directly is not counted.
    pub fn get_mut(&mut self) -> &mut C {
        &mut self.inner
    }

    /// The wrapped connection. Its close is counted and logged now, as a drop of the
    /// wrapper would (the connection itself stays open): the counters stay balanced.
    pub fn into_inner(self) -> C {
        let mut this = core::mem::ManuallyDrop::new(self);
        this.count_on_drop();
        #[allow(unsafe_code)]
        // SAFETY: `this` is never used or dropped after this read, so `inner` is moved
        // out exactly once; the other fields own nothing (references and plain values).
        unsafe {
            core::ptr::read(&this.inner)
        }
    }

    /// Bytes read through this wrapper (saturating at `u32::MAX`).
    pub fn bytes_in(&self) -> u32 {
        self.bytes_in
    }

    /// Bytes written through this wrapper (saturating at `u32::MAX`).
    pub fn bytes_out(&self) -> u32 {
        self.bytes_out
    }

    /// Records the first failure; later ones are consequences of it.
    fn saw(&mut self, failure: Failure) {
        if self.outcome == Outcome::Open {
            let reason = classify(
                failure,
                self.exchange,
                self.inner.state(),
                self.inner.send_queue(),
            );
            self.outcome = Outcome::Seen(reason);
        }
    }

    /// Records that the server itself ended the connection, unless a failure came first.
    fn saw_local_close(&mut self) {
        if self.outcome == Outcome::Open {
            self.outcome = Outcome::Seen(CloseReason::LocalClose);
        }
    }

    fn own_reason(&self) -> Option<CloseReason> {
        match self.outcome {
            Outcome::Open => None,
            Outcome::Seen(r) | Outcome::Counted(r) => Some(r),
        }
    }

    /// Counts, logs and reports the close once.
    fn count_close(&mut self, reason: CloseReason) {
        if let Outcome::Counted(_) = self.outcome {
            return;
        }
        self.outcome = Outcome::Counted(reason);
        let rest = (unshared(self.bytes_in), unshared(self.bytes_out));
        let log = self.counters.closed(reason, rest, Instant::now());
        if let Some(lines) = log.announce_suppressed {
            counters::announce(lines);
        }
        log_close(
            log.level,
            reason,
            self.inner.remote(),
            self.bytes_in,
            self.bytes_out,
        );
        event::emit(Event::Closed {
            reason,
            bytes_in: self.bytes_in.into(),
            bytes_out: self.bytes_out.into(),
        });
    }
}

/// One close line at `level`: `connection from 192.168.1.20:51234 closed:
/// client_cancelled (in 412 B, out 65536 B)`, without the address when the stack no
/// longer knows it (after an RST on embassy-net).
///
/// Each log call costs code, so with `log` the line is one call at a level chosen at
/// run time; `defmt` has no such call, but its calls are small (an index and the
/// arguments), so each level gets its own.
fn log_close(
    level: Level,
    reason: CloseReason,
    remote: Option<SocketAddr>,
    bytes_in: u32,
    bytes_out: u32,
) {
    #[cfg(feature = "log")]
    {
        let level = match level {
            Level::Off => None,
            Level::Trace => Some(log::Level::Trace),
            Level::Debug => Some(log::Level::Debug),
            Level::Info => Some(log::Level::Info),
            Level::Warn => Some(log::Level::Warn),
            Level::Error => Some(log::Level::Error),
        };
        if let Some(level) = level {
            log::log!(
                level,
                "connection {}closed: {} (in {} B, out {} B)",
                Peer(remote),
                reason.as_str(),
                bytes_in,
                bytes_out
            );
        }
    }
    #[cfg(feature = "defmt")]
    {
        // An IPv4 address as its octets: no `defmt::Format` for `SocketAddr` needed (a
        // defmt feature the application may not enable). 0.0.0.0:0 when unknown.
        let (ip, port) = match remote {
            Some(SocketAddr::V4(peer)) => (peer.ip().octets(), peer.port()),
            _ => ([0; 4], 0),
        };
        let [a, b, c, d] = ip;
        let reason = reason.as_str();
        match level {
            Level::Off => {}
            Level::Trace => defmt::trace!(
                "connection from {}.{}.{}.{}:{} closed: {} (in {} B, out {} B)",
                a,
                b,
                c,
                d,
                port,
                reason,
                bytes_in,
                bytes_out
            ),
            Level::Debug => defmt::debug!(
                "connection from {}.{}.{}.{}:{} closed: {} (in {} B, out {} B)",
                a,
                b,
                c,
                d,
                port,
                reason,
                bytes_in,
                bytes_out
            ),
            Level::Info => defmt::info!(
                "connection from {}.{}.{}.{}:{} closed: {} (in {} B, out {} B)",
                a,
                b,
                c,
                d,
                port,
                reason,
                bytes_in,
                bytes_out
            ),
            Level::Warn => defmt::warn!(
                "connection from {}.{}.{}.{}:{} closed: {} (in {} B, out {} B)",
                a,
                b,
                c,
                d,
                port,
                reason,
                bytes_in,
                bytes_out
            ),
            Level::Error => defmt::error!(
                "connection from {}.{}.{}.{}:{} closed: {} (in {} B, out {} B)",
                a,
                b,
                c,
                d,
                port,
                reason,
                bytes_in,
                bytes_out
            ),
        }
    }
    #[cfg(not(any(feature = "log", feature = "defmt")))]
    let _ = (level, reason, remote, bytes_in, bytes_out);
}

/// `from <IPv4 address>:<port> ` of a close line, or nothing when the address is not
/// known: core's `Ipv4Addr` formatting, which a firmware that logs its own address
/// links anyway.
#[cfg(feature = "log")]
struct Peer(Option<SocketAddr>);

#[cfg(feature = "log")]
impl core::fmt::Display for Peer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            // The port as u32: integer formatting code is per type, and u32's is linked
            // anyway.
            Some(SocketAddr::V4(peer)) => {
                write!(f, "from {}:{} ", peer.ip(), u32::from(peer.port()))
            }
            _ => Ok(()),
        }
    }
}

impl<C: Connection> Drop for Quiet<C> {
    /// A server that never called `end` still gets its close counted and logged (no I/O
    /// here: the socket's own drop decides what goes on the wire).
    fn drop(&mut self) {
        self.count_on_drop();
    }
}

impl<C: Connection> Quiet<C> {
    fn count_on_drop(&mut self) {
        if let Outcome::Counted(_) = self.outcome {
            return;
        }
        let reason = self.close_reason().unwrap_or_else(|| {
            classify_drop(self.exchange, self.inner.state(), self.inner.send_queue())
        });
        self.count_close(reason);
    }
}

/// The shared counters take a connection's bytes in steps of this many (per direction)
/// and the rest when it closes: a lock per 16 KiB rather than per read or write, and a
/// live connection's bytes show up in a snapshot at most 16 KiB late.
const SHARED_STEP: u32 = 16 * 1024;

/// Adds `n` bytes to a connection's count `total` (saturating at 4 GiB) and returns how
/// many bytes to add to the shared counters now: the steps of [`SHARED_STEP`] the count
/// went past. Once the count saturates, every byte not yet shared is shared at once,
/// so the 64-bit shared counters stay exact beyond 4 GiB.
fn count(total: &mut u32, n: usize) -> u64 {
    let before = *total;
    if before == u32::MAX {
        return n as u64;
    }
    let after = u64::from(before) + n as u64;
    if after < u64::from(u32::MAX) {
        *total = after as u32;
        u64::from((after as u32) / SHARED_STEP - before / SHARED_STEP) * u64::from(SHARED_STEP)
    } else {
        *total = u32::MAX;
        after - u64::from(before - before % SHARED_STEP)
    }
}

/// The bytes of a connection's count `total` that the shared counters have not taken
/// yet: what [`count`] kept back below the last step.
fn unshared(total: u32) -> u64 {
    if total == u32::MAX {
        0
    } else {
        u64::from(total % SHARED_STEP)
    }
}

impl<C: Connection> ErrorType for Quiet<C> {
    type Error = C::Error;
}

impl<C: Connection> Read for Quiet<C> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, C::Error> {
        let result = self.inner.read(buf).await;
        match &result {
            Ok(0) if !buf.is_empty() => self.saw(Failure::Eof),
            Ok(0) => {}
            Ok(n) => {
                let shared = count(&mut self.bytes_in, *n);
                if shared > 0 {
                    self.counters.add_bytes(shared, 0);
                }
                self.exchange = self.exchange.after_read(*n);
            }
            Err(e) => self.saw(Failure::Read(e.kind())),
        }
        result
    }
}

impl<C: Connection> Write for Quiet<C> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, C::Error> {
        let result = self.inner.write(buf).await;
        match &result {
            Ok(0) => {}
            Ok(n) => {
                let shared = count(&mut self.bytes_out, *n);
                if shared > 0 {
                    self.counters.add_bytes(0, shared);
                }
                self.exchange = self.exchange.after_write(*n);
            }
            Err(e) => self.saw(Failure::Write(e.kind())),
        }
        result
    }

    async fn flush(&mut self) -> Result<(), C::Error> {
        let result = self.inner.flush().await;
        match &result {
            Ok(()) if self.exchange == Exchange::Response => {
                if self.inner.state().is_free() {
                    self.saw(Failure::LostInFlush);
                } else {
                    self.exchange = self.exchange.after_flush();
                }
            }
            Ok(()) => {}
            Err(e) => self.saw(Failure::Write(e.kind())),
        }
        result
    }
}

impl<C: Connection> Connection for Quiet<C> {
    tcp_layers_core::delegate_connection!(inner; state, set_nodelay, remote, local,
        send_queue, recv_queue, ended_error);

    /// The server's own FIN: a local close, unless a failure was seen first.
    fn close_write(&mut self) {
        self.saw_local_close();
        self.inner.close_write();
    }

    /// The server's own RST: a local close, unless a failure was seen first.
    fn abort(&mut self) {
        self.saw_local_close();
        self.inner.abort();
    }

    /// An inner layer's reason first (it ended the connection), then this layer's
    /// classification of the first failure.
    fn close_reason(&self) -> Option<CloseReason> {
        self.inner.close_reason().or(self.own_reason())
    }

    fn set_class(&mut self, class: ConnectionClass) -> Result<(), ClassFull> {
        self.inner.set_class(class)
    }

    /// Counts and logs the close (before the inner `end`, so a dropped `end` future
    /// loses nothing), then passes the classified reason inward.
    async fn end(&mut self, reason: CloseReason) {
        let reason = self.end_reason(reason);
        self.count_close(reason);
        self.inner.end(reason).await;
    }
}

#[cfg(test)]
mod tests {
    use super::{SHARED_STEP, count, unshared};

    /// Shared in steps plus the rest at the close is every byte, also past 4 GiB, and a
    /// live count is never more than a step behind.
    #[test]
    fn shared_steps_and_the_rest_add_up_to_every_byte() {
        let mut total = 0u32;
        let mut shared = 0u64;
        let mut exact = 0u64;
        let mut locks = 0u32;
        for n in [100, 4096, 4096, 1460, 2920, 70_000, 3, 16 * 1024, 1] {
            let now = count(&mut total, n);
            locks += u32::from(now > 0);
            shared += now;
            exact += n as u64;
            assert!(exact - shared < u64::from(SHARED_STEP), "{exact} {shared}");
        }
        println!("{exact} bytes in 9 writes: {locks} shared additions");
        assert_eq!(shared + unshared(total), exact);
        assert!(locks < 9);

        // Near 4 GiB: the count saturates, the shared counters stay exact.
        let mut total = u32::MAX - 10_000;
        let mut shared = 0u64;
        let start = u64::from(total) - u64::from(total % SHARED_STEP);
        for n in [5_000, 5_000, 5_000, 70_000] {
            shared += count(&mut total, n);
        }
        assert_eq!(total, u32::MAX);
        assert_eq!(
            shared + unshared(total) + start,
            u64::from(u32::MAX) - 10_000 + 85_000
        );
    }
}
