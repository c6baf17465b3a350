//! Pool semantics, driven by embassy-futures' `block_on` and `join`: single-threaded,
//! every interleaving fixed by the order of the polls, so every run is the same.
use std::cell::RefCell;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use embassy_futures::join::{join, join_array};
use embassy_futures::{block_on, yield_now};
use tcp_layers_pool::{Pool, Reuse};

/// A waker that counts its wake-ups, to see which waiter a return woke.
struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn counting_waker() -> (Arc<CountingWaker>, Waker) {
    let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
    (counter.clone(), Waker::from(counter))
}

#[test]
fn n_plus_one_takers_the_last_waits_until_one_returns() {
    const N: usize = 3;
    let pool: Pool<N, 64> = Pool::new();
    let log = RefCell::new(Vec::new());

    let takers: [_; N + 1] = core::array::from_fn(|id| {
        let (pool, log) = (&pool, &log);
        async move {
            let buf = pool.take().await;
            log.borrow_mut()
                .push(format!("take {id} -> buffer {}", buf.index()));
            // Hold the buffer for a number of polls that differs per taker, so the
            // returns happen in a known order: taker 1 first.
            let hold = [5, 2, 8, 1][id];
            for _ in 0..hold {
                yield_now().await;
            }
            log.borrow_mut().push(format!("drop {id}"));
        }
    });
    block_on(join_array(takers));

    let log = log.into_inner();
    println!("order of events: {log:?}");
    let position = |line: &str| log.iter().position(|l| l.starts_with(line)).unwrap();
    // The first N take at once; the last waits until the first return (taker 1's).
    assert!(position("take 0") < position("drop 1"));
    assert!(position("take 2") < position("drop 1"));
    assert!(
        position("take 3") > position("drop 1"),
        "the N+1th taker got a buffer before one was returned"
    );
    assert_eq!(pool.waited(), 1, "exactly one take had to wait");
    assert_eq!(pool.peak_in_use(), N);
    assert_eq!(pool.in_use(), 0, "every buffer came back");
}

#[test]
fn data_written_by_one_holder_is_never_seen_by_another() {
    const N: usize = 4;
    const HOLDERS: usize = 12;
    let pool: Pool<N, 256> = Pool::new();
    let holding: RefCell<Vec<usize>> = RefCell::new(Vec::new());
    let checks = RefCell::new(0u32);

    let holders: [_; HOLDERS] = core::array::from_fn(|id| {
        let (pool, holding, checks) = (&pool, &holding, &checks);
        async move {
            for round in 0..3u8 {
                let mut buf = pool.take().await;
                {
                    let mut held = holding.borrow_mut();
                    assert!(!held.contains(&buf.index()), "one buffer, two holders");
                    held.push(buf.index());
                }
                let mark = (id as u8).wrapping_mul(17).wrapping_add(round);
                buf.fill(mark);
                // Let every other holder run between the write and the check: a
                // shared buffer would be overwritten here.
                for _ in 0..(id % 3 + 1) {
                    yield_now().await;
                    assert!(
                        buf.iter().all(|&b| b == mark),
                        "holder {id} saw foreign data"
                    );
                    *checks.borrow_mut() += 1;
                }
                holding.borrow_mut().retain(|&i| i != buf.index());
            }
        }
    });
    block_on(join_array(holders));

    println!(
        "{} checks over {} holders, peak {} of {N} buffers, {} waits",
        checks.borrow(),
        HOLDERS,
        pool.peak_in_use(),
        pool.waited()
    );
    assert_eq!(pool.peak_in_use(), N);
    assert!(pool.waited() > 0, "the test must make holders wait");
    assert_eq!(pool.in_use(), 0);
}

#[test]
fn a_dropped_take_leaks_nothing_and_loses_no_wakeup() {
    let pool: Pool<1, 16> = Pool::new();
    let held = pool.try_take().expect("a free buffer");
    assert!(pool.try_take().is_none());

    let (first_count, first_waker) = counting_waker();
    let (second_count, second_waker) = counting_waker();
    let mut first = Box::pin(pool.take());
    let mut second = pin!(pool.take());
    assert!(
        first
            .as_mut()
            .poll(&mut Context::from_waker(&first_waker))
            .is_pending()
    );
    assert!(
        second
            .as_mut()
            .poll(&mut Context::from_waker(&second_waker))
            .is_pending()
    );

    // The return wakes both waiters; the first gives up before it runs again.
    drop(held);
    drop(first);
    let woken = (
        first_count.0.load(Ordering::SeqCst),
        second_count.0.load(Ordering::SeqCst),
    );
    println!("wake-ups after the return (first, second): {woken:?}");
    assert_eq!(woken.1, 1, "the remaining waiter was not woken");

    // The remaining waiter gets the buffer the cancelled one did not take.
    let Poll::Ready(buf) = second
        .as_mut()
        .poll(&mut Context::from_waker(&second_waker))
    else {
        panic!("the remaining waiter found no buffer");
    };
    assert_eq!(pool.in_use(), 1);
    drop(buf);
    assert_eq!(pool.in_use(), 0, "no buffer leaked");
}

#[test]
fn a_take_cancelled_while_pending_holds_no_buffer() {
    let pool: Pool<2, 16> = Pool::new();
    let a = pool.try_take().unwrap();
    let b = pool.try_take().unwrap();
    // Many cancelled waiters: more than the pool remembers by waker, so the overflow
    // path (wake all, start over) is exercised too.
    for _ in 0..20 {
        let (_, waker) = counting_waker();
        let mut take = Box::pin(pool.take());
        assert!(
            take.as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_pending()
        );
    }
    drop((a, b));
    assert_eq!(pool.in_use(), 0);
    assert_eq!(pool.waited(), 20);
    // Both buffers can be taken again: none was claimed by a dropped future.
    let both = (pool.try_take(), pool.try_take());
    assert!(both.0.is_some() && both.1.is_some());
}

#[test]
fn try_take_refuses_when_every_buffer_is_held() {
    let pool: Pool<2, 8> = Pool::new();
    let a = pool.try_take();
    let b = pool.try_take();
    let c = pool.try_take();
    println!(
        "taken: {}, {}, {}; refused {}",
        a.is_some(),
        b.is_some(),
        c.is_some(),
        pool.refused()
    );
    assert!(a.is_some() && b.is_some() && c.is_none());
    assert_ne!(a.as_ref().unwrap().index(), b.as_ref().unwrap().index());
    assert_eq!(pool.refused(), 1);
    assert_eq!(pool.available(), 0);
}

#[test]
fn reuse_zeroed_hides_the_previous_holders_bytes() {
    let as_is: Pool<1, 32> = Pool::new();
    let zeroed: Pool<1, 32> = Pool::with_reuse(Reuse::Zeroed);
    for pool in [&as_is, &zeroed] {
        pool.try_take().unwrap().fill(0xAB);
    }
    let left_over = |pool: &Pool<1, 32>| {
        pool.try_take()
            .unwrap()
            .iter()
            .filter(|&&b| b == 0xAB)
            .count()
    };
    let (seen_as_is, seen_zeroed) = (left_over(&as_is), left_over(&zeroed));
    println!("bytes of the previous holder seen: as-is {seen_as_is}, zeroed {seen_zeroed}");
    assert_eq!(seen_as_is, 32);
    assert_eq!(seen_zeroed, 0);
}

#[test]
fn a_static_pool_serves_two_tasks_in_turn() {
    static POOL: Pool<1, 4096> = Pool::new();
    let order = RefCell::new(Vec::new());
    block_on(join(
        async {
            let _buf = POOL.take().await;
            order.borrow_mut().push("a took");
            yield_now().await;
            order.borrow_mut().push("a returns");
        },
        async {
            let _buf = POOL.take().await;
            order.borrow_mut().push("b took");
        },
    ));
    println!("{:?}", order.borrow());
    assert_eq!(*order.borrow(), ["a took", "a returns", "b took"]);
    assert_eq!(POOL.in_use(), 0);
}
