#![doc = include_str!("../README.md")]
#![no_std]
#![deny(missing_docs)]
#![deny(unsafe_code)]

use core::future::Future;
use core::pin::{Pin, pin};
use core::task::{Context, Poll};

use embassy_futures::yield_now;
use tcp_layers_core::{
    CloseReason, Connection, ErrorType, Exchange, Layer, Read, Write, delegate_connection,
};

// The logging macros, `defmt` or `log` as the features say.
mod fmt;

/// The default piece size, in bytes: 4096.
///
/// About three segments of 1460 bytes (the MSS of a 1500-byte MTU, as on ESP32 Wi-Fi):
/// large enough that the stack fills whole segments and keeps a typical 4-8 KiB TX
/// buffer topped up between two turns of the task, small enough that other tasks run
/// every few segments instead of once per response.
pub const DEFAULT_CHUNK_SIZE: usize = 4096;

/// One TCP segment on a 1500-byte MTU link, in bytes (1500 - 20 IPv4 - 20 TCP): the
/// piece size to choose when each write should be exactly one segment, and the
/// coalescing buffer size that turns a short head and the start of the body into one
/// full segment, which Nagle's algorithm never holds back.
pub const ONE_SEGMENT: usize = 1460;

/// The layer: a `Copy` config value. `COALESCE` is the size in bytes of the
/// coalescing buffer each connection carries (0, the default, turns coalescing off).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "a layer does nothing until it wraps a connection"]
pub struct ChunkedLayer<const COALESCE: usize = 0> {
    chunk_size: u16,
}

impl ChunkedLayer<0> {
    /// Pieces of [`DEFAULT_CHUNK_SIZE`] (4096) bytes, no coalescing.
    pub const fn new() -> Self {
        Self {
            chunk_size: DEFAULT_CHUNK_SIZE as u16,
        }
    }
}

impl Default for ChunkedLayer<0> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const COALESCE: usize> ChunkedLayer<COALESCE> {
    /// Pieces of at most `bytes` bytes, clamped to 1..=65535 (a piece larger than a
    /// TX buffer gains nothing). [`ONE_SEGMENT`] (1460) makes each write one segment.
    pub const fn with_chunk_size(self, bytes: usize) -> Self {
        let clamped = if bytes == 0 {
            1
        } else if bytes > u16::MAX as usize {
            u16::MAX
        } else {
            bytes as u16
        };
        Self {
            chunk_size: clamped,
        }
    }

    /// Turns on a coalescing buffer of `N` bytes (at most 65535) per connection.
    ///
    /// A write shorter than the space left in the buffer is held (and reported as
    /// written); the next write that does not fit fills the buffer with its start and
    /// the whole buffer goes to the stack as one piece. Held bytes are also sent by
    /// `flush`, by `read` (so a response is never stuck behind the next request) and by
    /// an orderly `end`; `abort` and `close_write` drop them, so flush before
    /// `close_write` as embedded-io's buffering contract asks.
    ///
    /// For stacks that cannot turn Nagle off: with `N` = [`ONE_SEGMENT`], a head and the
    /// start of the body leave as one full segment instead of a lone head followed by a
    /// body that waits for the delayed ACK of the head. Costs `N` bytes of RAM per
    /// connection; leave it off where the nodelay layer works.
    pub const fn coalesce<const N: usize>(self) -> ChunkedLayer<N> {
        ChunkedLayer {
            chunk_size: self.chunk_size,
        }
    }

    /// The largest piece one `write()` passes down, in bytes.
    pub const fn chunk_size(&self) -> usize {
        self.chunk_size as usize
    }
}

impl<C: Connection, const COALESCE: usize> Layer<C> for ChunkedLayer<COALESCE> {
    type Service = Chunked<C, COALESCE>;

    fn layer(&self, inner: C) -> Self::Service {
        const {
            assert!(
                COALESCE <= u16::MAX as usize,
                "the coalescing buffer holds at most 65535 bytes"
            )
        };
        Chunked {
            inner,
            chunk_size: self.chunk_size,
            unyielded: 0,
            held_len: 0,
            exchange: Exchange::Fresh,
            length: Length::PerWrite,
            sent: 0,
            expected: 0,
            held: [0; COALESCE],
        }
    }
}

/// How far the current response got: "sent X of Y".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ResponseProgress {
    /// Bytes of the current response handed to the connection below (saturates at
    /// `u32::MAX`).
    pub sent: u32,
    /// The size the response should reach: the total announced with
    /// [`Chunked::expect_response_len`], or else the end of a write that was cut short
    /// (an error, a dropped `write_all`). `None` when nothing more was expected.
    pub expected: Option<u32>,
}

impl ResponseProgress {
    /// True when a known size was not reached: the response was cut short.
    pub fn is_cut_short(&self) -> bool {
        self.expected.is_some_and(|total| self.sent < total)
    }
}

impl core::fmt::Display for ResponseProgress {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.expected {
            Some(total) => write!(f, "sent {} of {} bytes", self.sent, total),
            None => write!(f, "sent {} bytes", self.sent),
        }
    }
}

/// What the layer knows of the current response's length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Length {
    /// Only the writes so far: the end of the latest write call is what is expected.
    PerWrite,
    /// The server announced the total ([`Chunked::expect_response_len`]).
    Announced,
}

/// A connection whose writes go out in pieces of at most the layer's chunk size. Made
/// by [`ChunkedLayer`]; 16 bytes beyond the wrapped connection, plus `COALESCE`.
#[derive(Debug)]
pub struct Chunked<C, const COALESCE: usize = 0> {
    inner: C,
    chunk_size: u16,
    /// Bytes passed down since this task last yielded (saturating).
    unyielded: u16,
    /// Bytes at the start of `held` that callers were told are written and that are
    /// not yet passed down. `held[held_len..]` is scratch: a merge copies the start of
    /// the next write there, and it only counts once the write below returns, so a
    /// dropped merge leaves nothing behind.
    held_len: u16,
    /// A response starts at the first write after a read that returned data.
    exchange: Exchange,
    length: Length,
    sent: u32,
    /// The announced total, or the end (in response bytes) of the latest write call.
    expected: u32,
    held: [u8; COALESCE],
}

impl<C, const COALESCE: usize> Chunked<C, COALESCE> {
    /// The wrapped connection.
    pub fn get_ref(&self) -> &C {
        &self.inner
    }

    /// The wrapped connection, mutably. Writing to it directly bypasses the piece
    /// count and any held bytes.
    pub fn get_mut(&mut self) -> &mut C {
        &mut self.inner
    }

    /// Unwraps the connection. Held bytes (coalescing) are lost: flush first.
    pub fn into_inner(self) -> C {
        self.inner
    }

    /// How far the current (or last) response got.
    pub fn progress(&self) -> ResponseProgress {
        let accepted = self.sent.saturating_add(u32::from(self.held_len));
        let announced = self.exchange.answered() && self.length == Length::Announced;
        let expected = match announced {
            true => Some(self.expected),
            false if self.expected > accepted => Some(self.expected),
            false => None,
        };
        ResponseProgress {
            sent: self.sent,
            expected,
        }
    }

    /// Announces the total length of the response that starts now (head and body, in
    /// bytes), so a close mid-response reports "sent X of Y" against the whole
    /// response rather than the write in progress. Call it before the response's first
    /// write; it starts the count of a new response.
    pub fn expect_response_len(&mut self, total: usize) {
        self.begin_response();
        self.length = Length::Announced;
        self.expected = saturate(total);
    }

    /// Bytes held by the coalescing buffer, not yet passed down.
    pub fn held(&self) -> usize {
        usize::from(self.held_len)
    }

    fn begin_response(&mut self) {
        self.exchange = Exchange::Response;
        self.length = Length::PerWrite;
        self.sent = 0;
        self.expected = 0;
        self.unyielded = 0;
    }

    /// Counts `n` bytes passed down; `waited` when the write below had to wait, which
    /// means this task already gave the executor a turn.
    fn count_sent(&mut self, n: usize, waited: bool) {
        self.sent = self.sent.saturating_add(saturate(n));
        self.unyielded = if waited {
            0
        } else {
            self.unyielded
                .saturating_add(n.min(u16::MAX as usize) as u16)
        };
    }

    /// Bytes the caller has been told are written, for this response.
    fn accepted(&self) -> u32 {
        self.sent.saturating_add(u32::from(self.held_len))
    }

    /// Drops the first `n` held bytes, which have gone down.
    fn consume_held(&mut self, n: usize) {
        let len = usize::from(self.held_len);
        self.held.copy_within(n..len, 0);
        self.held_len = (len - n) as u16;
    }
}

/// Polls a write to the connection below and notes whether it returned `Pending` on
/// the way (the socket's buffer was full): then the task has already yielded and needs
/// no extra yield. Output: the write's result and that note.
///
/// A future of its own that holds the pinned write by reference, rather than an
/// `async fn` around it: the write's future is not moved into a second state machine
/// on every write.
struct WriteDown<'a, F> {
    write: Pin<&'a mut F>,
    waited: bool,
}

fn write_down<F>(write: Pin<&mut F>) -> WriteDown<'_, F> {
    WriteDown {
        write,
        waited: false,
    }
}

impl<F: Future> Future for WriteDown<'_, F> {
    type Output = (F::Output, bool);

    #[inline(always)]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        match this.write.as_mut().poll(cx) {
            Poll::Ready(out) => Poll::Ready((out, this.waited)),
            Poll::Pending => {
                this.waited = true;
                Poll::Pending
            }
        }
    }
}

fn saturate(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl<C: Connection, const COALESCE: usize> Chunked<C, COALESCE> {
    /// Passes every held byte down, in pieces of at most the chunk size.
    async fn drain_held(&mut self) -> Result<(), C::Error> {
        // Folds the body away without coalescing: the callers' await on it stays in
        // their state machines, but costs next to nothing.
        if COALESCE == 0 {
            return Ok(());
        }
        while self.held_len > 0 {
            let piece = usize::from(self.held_len).min(usize::from(self.chunk_size));
            let (result, waited) = write_down(pin!(self.inner.write(&self.held[..piece]))).await;
            let n = result?;
            if n == 0 {
                return Err(self.inner.ended_error(CloseReason::LocalError));
            }
            self.count_sent(n, waited);
            self.consume_held(n);
        }
        Ok(())
    }
}

impl<C: Connection, const COALESCE: usize> ErrorType for Chunked<C, COALESCE> {
    type Error = C::Error;
}

impl<C: Connection, const COALESCE: usize> Read for Chunked<C, COALESCE> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        // The peer may be waiting for held bytes before it sends what we read next.
        if COALESCE > 0 {
            self.drain_held().await?;
        }
        let n = self.inner.read(buf).await?;
        self.exchange = self.exchange.after_read(n);
        Ok(n)
    }
}

impl<C: Connection, const COALESCE: usize> Write for Chunked<C, COALESCE> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        if buf.is_empty() {
            return Ok(0);
        }
        match (self.exchange.answered(), self.length) {
            (false, _) => {
                self.begin_response();
                self.expected = self.accepted().saturating_add(saturate(buf.len()));
            }
            (true, Length::PerWrite) => {
                self.expected = self.accepted().saturating_add(saturate(buf.len()));
            }
            (true, Length::Announced) => {}
        }
        if self.unyielded >= self.chunk_size {
            yield_now().await;
            self.unyielded = 0;
        }
        if COALESCE > 0 && usize::from(self.held_len) + buf.len() < COALESCE {
            let start = usize::from(self.held_len);
            self.held[start..start + buf.len()].copy_from_slice(buf);
            self.held_len += buf.len() as u16;
            return Ok(buf.len());
        }
        // One write below, in a loop: while bytes are held (coalescing), the held bytes
        // topped up with the start of `buf`; then a piece of `buf`. A second await of a
        // write below would hold a second write future in this state machine.
        let chunk = usize::from(self.chunk_size);
        loop {
            let held = usize::from(self.held_len);
            let piece = if COALESCE > 0 && held > 0 {
                let take = (COALESCE - held).min(buf.len());
                // Scratch beyond held_len: counted only once the write below returns.
                self.held[held..held + take].copy_from_slice(&buf[..take]);
                &self.held[..(held + take).min(chunk)]
            } else {
                &buf[..buf.len().min(chunk)]
            };
            let (result, waited) = write_down(pin!(self.inner.write(piece))).await;
            let n = result?;
            if held == 0 {
                self.count_sent(n, waited);
                return Ok(n);
            }
            if n == 0 {
                return Ok(0);
            }
            self.count_sent(n, waited);
            if n >= held {
                self.held_len = 0;
                if n > held {
                    return Ok(n - held);
                }
            } else {
                self.consume_held(n);
            }
        }
    }

    async fn flush(&mut self) -> Result<(), Self::Error> {
        if COALESCE > 0 {
            self.drain_held().await?;
        }
        self.inner.flush().await
    }
}

impl<C: Connection, const COALESCE: usize> Connection for Chunked<C, COALESCE> {
    delegate_connection!(inner;
        state, set_nodelay, remote, local, send_queue, recv_queue, ended_error,
        close_reason, set_class);

    fn close_write(&mut self) {
        if self.held_len > 0 {
            warn!(
                "chunked: close_write without flush dropped {} held bytes",
                // As u32: integer formatting code is per type, u32's is linked anyway.
                u32::from(self.held_len)
            );
            self.held_len = 0;
        }
        self.inner.close_write()
    }

    fn abort(&mut self) {
        self.held_len = 0;
        self.inner.abort()
    }

    async fn end(&mut self, reason: CloseReason) {
        let reason = self.end_reason(reason);
        // Without coalescing nothing is held: no drain code in the firmware.
        if COALESCE > 0 && reason.is_orderly() {
            // Best effort: a peer that is gone fails the write, and the end goes on.
            let _ = self.drain_held().await;
        }
        self.held_len = 0;
        trace!(
            "chunked: ended ({}), response {}",
            reason.as_str(),
            self.progress()
        );
        self.inner.end(reason).await
    }
}
