//! Polling a future by hand, with a waker that does nothing: to stop an operation
//! after a given number of polls (a cancellation) or to count its yields.
//!
//! ```
//! use tcp_layers_mock::poll::{poll_up_to, run_counting_yields};
//!
//! let yields_twice = async {
//!     embassy_futures::yield_now().await;
//!     embassy_futures::yield_now().await;
//!     7
//! };
//! assert_eq!(run_counting_yields(yields_twice), (7, 2));
//! assert_eq!(poll_up_to(embassy_futures::yield_now(), 1), None, "dropped after one poll");
//! ```
use core::future::Future;
use core::pin::{Pin, pin};
use core::task::{Context, Poll, Waker};

/// Polls `fut` once.
pub fn poll_once<F: Future + ?Sized>(fut: Pin<&mut F>) -> Poll<F::Output> {
    fut.poll(&mut Context::from_waker(Waker::noop()))
}

/// Polls `fut` up to `polls` times; `Some` if it finished, `None` if it was still
/// pending (and is then dropped: a cancellation).
pub fn poll_up_to<F: Future>(fut: F, polls: usize) -> Option<F::Output> {
    let mut fut = pin!(fut);
    for _ in 0..polls {
        if let Poll::Ready(out) = poll_once(fut.as_mut()) {
            return Some(out);
        }
    }
    None
}

/// Runs `fut` to completion and counts how often it returned `Pending` on the way:
/// over a connection that never waits, the number of times it yielded.
pub fn run_counting_yields<F: Future>(fut: F) -> (F::Output, usize) {
    let mut fut = pin!(fut);
    let mut pendings = 0;
    loop {
        match poll_once(fut.as_mut()) {
            Poll::Ready(out) => return (out, pendings),
            Poll::Pending => pendings += 1,
        }
    }
}
