//! An in-memory `Connection` for unit tests: it records every write it is handed and
//! can accept short writes, stay pending, or fail, so cancellation can be exercised.
#![allow(dead_code)]

use core::future::Future;
use core::pin::pin;
use core::task::{Context, Poll, Waker};
use std::future::poll_fn;

use tcp_layers_core::{CloseReason, Connection, ErrorKind, ErrorType, Read, TcpState, Write};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MockError(pub CloseReason);

impl core::fmt::Display for MockError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "mock error: {}", self.0)
    }
}

impl core::error::Error for MockError {}

impl embedded_io_async::Error for MockError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::ConnectionReset
    }
}

/// A tiny xorshift so randomised tests are the same on every run.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Default)]
pub struct MockConn {
    /// Everything passed down, in order.
    pub written: Vec<u8>,
    /// The length of every write call that was accepted.
    pub pieces: Vec<usize>,
    /// Bytes one write accepts at most (a TX buffer with little room).
    pub accept_limit: Option<usize>,
    /// Every write poll stays pending while set.
    pub blocked: bool,
    /// Every write poll stays pending once this many pieces were accepted.
    pub block_after_pieces: Option<usize>,
    /// Each write call is pending on its first poll (a TX buffer that is full until
    /// the stack runs).
    pub pend_first_poll: bool,
    /// With this seed, a write poll is pending one time in three.
    pub random_pending: Option<Rng>,
    /// Writes fail once this many bytes were accepted.
    pub fail_after: Option<usize>,
    pub to_read: Vec<u8>,
    pub flushes: usize,
    pub aborted: bool,
    pub closed_write: bool,
    pub close_reason: Option<CloseReason>,
    pub ended_with: Option<CloseReason>,
}

impl ErrorType for MockConn {
    type Error = MockError;
}

impl Read for MockConn {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, MockError> {
        let n = buf.len().min(self.to_read.len());
        buf[..n].copy_from_slice(&self.to_read[..n]);
        self.to_read.drain(..n);
        Ok(n)
    }
}

impl Write for MockConn {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, MockError> {
        let mut first_poll = self.pend_first_poll;
        poll_fn(|_| {
            if std::mem::take(&mut first_poll) {
                return Poll::Pending;
            }
            let random_wait = self
                .random_pending
                .as_mut()
                .is_some_and(|r| r.below(3) == 0);
            let full = self
                .block_after_pieces
                .is_some_and(|k| self.pieces.len() >= k);
            if self.blocked || random_wait || full {
                return Poll::Pending;
            }
            if self
                .fail_after
                .is_some_and(|limit| self.written.len() >= limit)
            {
                return Poll::Ready(Err(MockError(CloseReason::ClientCancelled)));
            }
            let n = buf.len().min(self.accept_limit.unwrap_or(usize::MAX));
            self.written.extend_from_slice(&buf[..n]);
            self.pieces.push(n);
            Poll::Ready(Ok(n))
        })
        .await
    }
    async fn flush(&mut self) -> Result<(), MockError> {
        self.flushes += 1;
        Ok(())
    }
}

impl Connection for MockConn {
    fn state(&self) -> TcpState {
        TcpState::Established
    }
    fn close_write(&mut self) {
        self.closed_write = true;
    }
    fn abort(&mut self) {
        self.aborted = true;
    }
    fn ended_error(&self, reason: CloseReason) -> MockError {
        MockError(reason)
    }
    fn close_reason(&self) -> Option<CloseReason> {
        self.close_reason
    }
    async fn end(&mut self, reason: CloseReason) {
        self.ended_with = Some(reason);
    }
}

/// Polls `fut` up to `polls` times; `Some` if it finished, `None` if it was still
/// pending (and is then dropped: a cancellation).
pub fn poll_up_to<F: Future>(fut: F, polls: usize) -> Option<F::Output> {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..polls {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return Some(out);
        }
    }
    None
}

/// Runs `fut` to completion and counts how often it returned `Pending` on the way:
/// with a mock that never blocks, that is the number of times it yielded.
pub fn run_counting_yields<F: Future>(fut: F) -> (F::Output, usize) {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    let mut pendings = 0;
    loop {
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(out) => return (out, pendings),
            Poll::Pending => pendings += 1,
        }
    }
}

/// The deterministic body pattern the simulated network's responder also uses.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}
