//! Cancel safety: every future of every layer is dropped at every await point, and
//! nothing is leaked.
//!
//! A server's task can drop an operation at any await: a `select` on a timer (an SSE
//! loop watching the read side), a handler cancelled by its accept loop, a deadline.
//! Each operation of a scripted exchange (read, write, flush, `set_class`, `end`) runs
//! on the default layer stack with a budget of k polls, k = 1, 2, 3, ..., and is
//! dropped when the budget runs out, until it completes within it. After each drop the
//! connection is either ended or dropped at once, and then no budget slot or permit,
//! no pooled buffer and no open count may be left: budget `active` = 0 and no idle
//! mark without a pending read, pool all free, quiet counters `active` = 0 and
//! `accepted` = closed total. The pool's `take()` gets the same treatment.
//!
//! The connection below the layers is a mock whose every read, write and flush returns
//! `Pending` once before it acts (so each one is an await point of the layers above),
//! and which stalls, fails or reaches its end as each scenario says. Between two polls
//! the virtual clock moves on by [`STEP`], so the layers' deadlines (the reaper's, the
//! linger, the budget's idle grace) fire within the budget and their own await points
//! are dropped too.
#[path = "common/pooled.rs"]
mod pooled;
use pooled::Pooled;
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use tcp_layers::{ConnectionBuilder, default_stack};
use tcp_layers_chunked::{ChunkedLayer, ONE_SEGMENT};
use tcp_layers_core::{CloseReason, Connection, ConnectionClass, Layer};
use tcp_layers_limit::{Budget, BudgetConfig, LimitLayer};
use tcp_layers_mock::{Acks, Mock, PeerFin};
use tcp_layers_nodelay::NoDelayLayer;
use tcp_layers_pool::Pool;
use tcp_layers_quiet::{Counters, QuietLayer};
use tcp_layers_reaper::ReaperLayer;
use tcp_layers_sim::{Duration, Timer, run};
use tcp_layers_timewait::TimeWaitLayer;

/// Virtual time between two polls: a quarter of the shortest deadline's second, so a
/// deadline fires a few polls after it is armed and every await before it is dropped.
const STEP: Duration = Duration::from_millis(250);
/// Polls an operation may take when it must complete (a prefix, an `end` after a drop):
/// the longest path is a reaper deadline (8 s) then a 431 under the stall deadline
/// (5 s) then the linger (2 s), 60 polls at [`STEP`].
const UNBOUNDED: usize = 400;

/// Bytes the mock hands over per read: a request head takes several reads.
const READ_PIECE: usize = 16;

static COUNTERS: Counters = Counters::new();
/// 3 slots, 1 stream, 2 requests, reserve 1, never exhausted: one connection at a time
/// is never evicted nor refused.
static BUDGET: Budget<3> = Budget::new(BudgetConfig::new(3, 1, 2).with_exhaustion_at(4));
/// 2 slots, 1 stream, 1 request, reserve 1: with a stream beside it, a request
/// connection leaves no listener free, so the budget evicts it once it idles for the
/// grace period.
static TIGHT: Budget<2> = Budget::new(BudgetConfig::new(2, 1, 1).with_exhaustion_at(3));
/// One scratch buffer, held across every write below it.
static SCRATCH: Pool<1, 512> = Pool::new();

/// What the peer does, for one scenario.
#[derive(Clone, Copy)]
struct Peer {
    /// The bytes the peer sends, all there from the start.
    sends: &'static [u8],
    /// The peer closes (FIN) once its bytes are read; it always answers our FIN with its
    /// own.
    fin: bool,
    /// Bytes the peer takes before its window stays closed (`usize::MAX`: no limit).
    window: usize,
    /// Bytes after which the peer resets the connection (`usize::MAX`: never).
    resets_after: usize,
    /// Writes wait once before they act (the default); `false` makes them complete at
    /// their first poll, as into a socket buffer with room, so the chunked layer's own
    /// yield between pieces is the await point.
    writes_wait: bool,
}

impl Peer {
    const fn new(sends: &'static [u8]) -> Self {
        Self {
            sends,
            fin: false,
            window: usize::MAX,
            resets_after: usize::MAX,
            writes_wait: true,
        }
    }

    /// The connection that plays this peer: every read, write (unless `writes_wait`
    /// is off) and flush is an await point, `Pending` once before it acts; a read hands
    /// over at most [`READ_PIECE`] bytes and a write takes at most 1024; the peer
    /// acknowledges everything while its window is open and answers our FIN with its own.
    fn connection(self) -> Mock {
        let mut mock = Mock::new()
            .with_read(self.sends)
            .with_max_read(READ_PIECE)
            .with_max_write(1024)
            .with_acks(Acks::WhileWindowOpen)
            .with_peer_fin(PeerFin::Answer)
            .with_yield_before_reads()
            .with_yield_before_flushes();
        if self.fin {
            mock = mock.with_fin();
        }
        if self.window != usize::MAX {
            mock = mock.with_room(self.window);
        }
        if self.resets_after != usize::MAX {
            mock = mock.with_reset_after(self.resets_after);
        }
        if self.writes_wait {
            mock = mock.with_yield_before_writes();
        }
        mock
    }
}

/// One step of an exchange, as a server makes it.
#[derive(Clone, Copy, Debug)]
enum Op {
    /// Reads until the end of a request head, the peer's FIN or an error.
    ReadHead,
    /// One read.
    Read,
    /// `write_all` of this many bytes.
    Write(usize),
    Flush,
    SetClass(ConnectionClass),
    End(CloseReason),
}

async fn run_op<C: Connection>(conn: &mut C, op: Op) {
    let mut buf = [0u8; 256];
    match op {
        Op::ReadHead => {
            let mut tail = [0u8; 4];
            while let Ok(n @ 1..) = conn.read(&mut buf).await {
                for b in &buf[..n] {
                    tail = [tail[1], tail[2], tail[3], *b];
                }
                if &tail == b"\r\n\r\n" {
                    break;
                }
            }
        }
        Op::Read => {
            let _ = conn.read(&mut buf).await;
        }
        Op::Write(len) => {
            let body = vec![b'x'; len];
            let _ = conn.write_all(&body).await;
        }
        Op::Flush => {
            let _ = conn.flush().await;
        }
        Op::SetClass(class) => {
            let _ = conn.set_class(class);
        }
        Op::End(reason) => conn.end(reason).await,
    }
}

/// Polls `fut` at most `budget` times, [`STEP`] of virtual time apart; `None` when it
/// did not complete (it is dropped here, where it last stopped).
async fn drive<F: Future>(fut: F, budget: usize) -> Option<F::Output> {
    let mut fut = pin!(fut);
    for poll in 0..budget {
        if poll > 0 {
            Timer::after(STEP).await;
        }
        if let Poll::Ready(out) = poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await {
            return Some(out);
        }
    }
    None
}

/// What is done with the connection once an operation was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Teardown {
    /// `end(LocalClose)` to completion, then drop.
    End,
    /// Dropped at once, as a cancelled handler drops it.
    Drop,
}

/// The budget a scenario admits into, read through one shape.
#[derive(Clone, Copy)]
struct BudgetView {
    active: fn() -> u16,
    idle: fn() -> u16,
    permits: fn() -> u16,
}

const WIDE: BudgetView = BudgetView {
    active: || BUDGET.active(),
    idle: || BUDGET.idle(),
    permits: || BUDGET.permits_outstanding(),
};
const NARROW: BudgetView = BudgetView {
    active: || TIGHT.active(),
    idle: || TIGHT.idle(),
    permits: || TIGHT.permits_outstanding(),
};

/// Checks that nothing is held once every wrapper is gone.
fn assert_nothing_leaked(what: &str, budget: BudgetView) {
    let counts = COUNTERS.snapshot();
    assert_eq!((budget.active)(), 0, "{what}: budget slot leaked");
    assert_eq!((budget.permits)(), 0, "{what}: budget permit leaked");
    assert_eq!(SCRATCH.in_use(), 0, "{what}: pool buffer leaked");
    assert_eq!(counts.active, 0, "{what}: connection still counted active");
    assert_eq!(
        counts.accepted,
        counts.closed_total(),
        "{what}: accepted != closed"
    );
}

/// An exchange: the stack, the peer and the server's operations.
struct Scenario<L> {
    name: &'static str,
    layers: L,
    budget: BudgetView,
    peer: Peer,
    ops: &'static [Op],
    /// A stream connection held beside the one under test (for the eviction path).
    bystander: bool,
}

/// For every operation of `scenario` and every k until it completes within k polls:
/// a fresh connection runs the operations before it to completion, this one for k
/// polls, drops it, checks that no idle mark or pooled buffer outlives it, tears the
/// connection down both ways and checks that nothing leaked. Returns the polls each
/// operation needed (its await points plus one) and the drops made.
fn cancel_at_every_await<L>(scenario: Scenario<L>) -> (Vec<usize>, usize)
where
    L: Layer<Mock> + Copy + 'static,
    L::Service: Connection,
{
    run(async move {
        let s = &scenario;
        let mut polls_needed = Vec::new();
        let mut drops = 0;
        for (i, op) in s.ops.iter().enumerate() {
            let mut k = 1;
            let done = loop {
                let mut completed = false;
                for teardown in [Teardown::End, Teardown::Drop] {
                    let what = format!(
                        "{}: {op:?} (op {i}) dropped after {k} polls, {teardown:?}",
                        s.name
                    );
                    let bystander = s.bystander.then(|| {
                        let mut b = Pooled {
                            inner: s.layers.layer(Peer::new(b"").connection()),
                            pool: &SCRATCH,
                        };
                        assert!(b.set_class(ConnectionClass::Stream).is_ok(), "{what}");
                        b
                    });
                    let mut conn = Pooled {
                        inner: s.layers.layer(s.peer.connection()),
                        pool: &SCRATCH,
                    };
                    for prefix in &s.ops[..i] {
                        drive(run_op(&mut conn, *prefix), UNBOUNDED)
                            .await
                            .unwrap_or_else(|| panic!("{what}: {prefix:?} never completes"));
                    }
                    completed = drive(run_op(&mut conn, *op), k).await.is_some();
                    if !completed {
                        drops += 1;
                    }
                    assert_eq!(
                        (s.budget.idle)(),
                        0,
                        "{what}: idle mark without a pending read"
                    );
                    assert_eq!(
                        SCRATCH.in_use(),
                        0,
                        "{what}: pool buffer held by a dropped write"
                    );
                    if teardown == Teardown::End {
                        drive(conn.end(CloseReason::LocalClose), UNBOUNDED)
                            .await
                            .unwrap_or_else(|| panic!("{what}: end never completes"));
                    }
                    drop(conn);
                    drop(bystander);
                    assert_nothing_leaked(&what, s.budget);
                }
                if completed {
                    break k;
                }
                k += 1;
                assert!(k < UNBOUNDED, "{}: {op:?} never completes", s.name);
            };
            polls_needed.push(done);
        }
        (polls_needed, drops)
    })
}

fn report<L>(scenario: Scenario<L>) -> usize
where
    L: Layer<Mock> + Copy + 'static,
    L::Service: Connection,
{
    let name = scenario.name;
    let ops = scenario.ops;
    let (polls, drops) = cancel_at_every_await(scenario);
    let steps: Vec<String> = ops
        .iter()
        .zip(&polls)
        .map(|(op, k)| format!("{op:?}={k}"))
        .collect();
    println!(
        "{name}: polls to complete each operation: {}; {drops} futures dropped, nothing leaked",
        steps.join(" ")
    );
    // The mock makes every read, write and flush that reaches it wait once, so a
    // scenario whose operations all completed at their first poll tested nothing.
    assert!(
        polls.iter().any(|k| *k >= 2) && drops > 0,
        "{name}: no operation was ever dropped mid-way"
    );
    drops
}

const REQUEST: &[u8] = b"GET /frame.jpg HTTP/1.1\r\nHost: device\r\nAccept: */*\r\n\r\n";

#[test]
fn every_layer_future_dropped_at_every_await_leaks_nothing() {
    COUNTERS.reset();
    BUDGET.reset();
    TIGHT.reset();
    let stack = default_stack(&COUNTERS, &BUDGET);
    let mut drops = 0;

    // A keep-alive exchange: head, response, flush, then the idle read until the
    // reaper's idle deadline ends it (its reap and the abort under it are awaits too;
    // an `end` after it returns at once, so the teardown covers it).
    drops += report(Scenario {
        name: "keep-alive",
        layers: stack,
        budget: WIDE,
        peer: Peer::new(REQUEST),
        ops: &[Op::ReadHead, Op::Write(6000), Op::Flush, Op::Read],
        bystander: false,
    });

    // A request closed by the peer: the orderly end lingers (FIN, flush, read to the
    // peer's FIN) under the timewait layer's timeout.
    drops += report(Scenario {
        name: "orderly close",
        layers: stack,
        budget: WIDE,
        peer: Peer {
            fin: true,
            ..Peer::new(REQUEST)
        },
        ops: &[
            Op::ReadHead,
            Op::Write(3000),
            Op::Flush,
            Op::Read,
            Op::End(CloseReason::PeerClosed),
        ],
        bystander: false,
    });

    // SSE: the connection becomes a stream (reads without deadline), then the peer
    // leaves.
    drops += report(Scenario {
        name: "sse",
        layers: stack,
        budget: WIDE,
        peer: Peer {
            fin: true,
            ..Peer::new(REQUEST)
        },
        ops: &[
            Op::ReadHead,
            Op::SetClass(ConnectionClass::Stream),
            Op::Write(80),
            Op::Flush,
            Op::Write(20),
            Op::Flush,
            Op::Read,
            Op::End(CloseReason::PeerClosed),
        ],
        bystander: false,
    });

    // A socket buffer with room: every write completes at once, and the chunked layer
    // yields to the executor after each 4096 bytes.
    drops += report(Scenario {
        name: "chunked yields",
        layers: stack,
        budget: WIDE,
        peer: Peer {
            writes_wait: false,
            ..Peer::new(REQUEST)
        },
        ops: &[
            Op::ReadHead,
            Op::Write(20_000),
            Op::Flush,
            Op::End(CloseReason::LocalClose),
        ],
        bystander: false,
    });

    // A browser cancel: the peer resets 5000 bytes into a 20000-byte response.
    drops += report(Scenario {
        name: "cancel",
        layers: stack,
        budget: WIDE,
        peer: Peer {
            resets_after: 5000,
            ..Peer::new(REQUEST)
        },
        ops: &[
            Op::ReadHead,
            Op::Write(20_000),
            Op::End(CloseReason::ClientCancelled),
        ],
        bystander: false,
    });

    // A reader that stops: its window closes after 4000 bytes and the write stalls until
    // the reaper's stall deadline ends the connection.
    drops += report(Scenario {
        name: "stalled reader",
        layers: stack,
        budget: WIDE,
        peer: Peer {
            window: 4000,
            ..Peer::new(REQUEST)
        },
        ops: &[Op::ReadHead, Op::Write(10_000)],
        bystander: false,
    });

    // The same reader, whose window takes the whole response: the flush stalls, the
    // send queue does not shrink, the reaper ends the connection inside the flush.
    drops += report(Scenario {
        name: "stalled flush",
        layers: stack,
        budget: WIDE,
        peer: Peer {
            window: 4000,
            ..Peer::new(REQUEST)
        },
        ops: &[Op::ReadHead, Op::Write(4000), Op::Flush],
        bystander: false,
    });

    // A head past 4096 bytes: the reaper answers 431 (a write and a flush of its own)
    // and ends the connection inside the read.
    static OVERSIZED: [u8; 5000] = [b'a'; 5000];
    drops += report(Scenario {
        name: "oversized head",
        layers: stack,
        budget: WIDE,
        peer: Peer::new(&OVERSIZED),
        ops: &[Op::ReadHead],
        bystander: false,
    });

    // Eviction: beside a stream no listener is free, so the idle read is evicted after
    // the budget's grace (1 s) and returns Ok(0).
    drops += report(Scenario {
        name: "evicted idle",
        layers: default_stack(&COUNTERS, &TIGHT),
        budget: NARROW,
        peer: Peer::new(REQUEST),
        ops: &[
            Op::ReadHead,
            Op::Write(500),
            Op::Flush,
            Op::Read,
            Op::End(CloseReason::PeerClosed),
        ],
        bystander: true,
    });

    // The chunked layer's coalescing buffer: a short head is held, merged with the
    // body, drained by flush and by an orderly end.
    let coalescing = ConnectionBuilder::new()
        .layer(QuietLayer::new(&COUNTERS))
        .layer(LimitLayer::new(&BUDGET))
        .layer(ReaperLayer::http())
        .layer(TimeWaitLayer::new())
        .layer(ChunkedLayer::new().coalesce::<ONE_SEGMENT>())
        .layer(NoDelayLayer::new());
    drops += report(Scenario {
        name: "coalescing",
        layers: coalescing,
        budget: WIDE,
        peer: Peer::new(REQUEST),
        ops: &[
            Op::ReadHead,
            Op::Write(120),
            Op::Write(5000),
            Op::Write(60),
            Op::Flush,
            Op::Write(40),
            Op::End(CloseReason::LocalClose),
        ],
        bystander: false,
    });

    let counts = COUNTERS.snapshot();
    println!("{drops} futures dropped mid-operation in all; counters: {counts}");
    println!(
        "budget after the run: {:?}, {:?}",
        BUDGET.stats(),
        TIGHT.stats()
    );
    assert!(counts.is_balanced() && counts.active == 0);
}

/// Counts wake-ups.
struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// `take()` on a full pool, dropped after 1, 2, ... polls until a buffer comes back
/// (at the third poll): a dropped waiter holds no buffer, and the buffer returned while
/// it was registered still wakes the waiter that stays.
#[test]
fn pool_take_dropped_at_every_poll_leaks_nothing() {
    static POOL: Pool<2, 64> = Pool::new();
    const RETURNED_AT_POLL: usize = 3;
    let mut completed_at = None;
    for budget in 1..=RETURNED_AT_POLL {
        let held_a = POOL.try_take().expect("a free buffer");
        let mut held_b = Some(POOL.try_take().expect("a free buffer"));
        // A second waiter that stays, polled once so it is registered.
        let stayer_waker = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let mut stayer = Box::pin(POOL.take());
        let waker = Waker::from(stayer_waker.clone());
        assert!(
            stayer
                .as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_pending()
        );

        let taker_waker = Waker::from(Arc::new(CountingWaker(AtomicUsize::new(0))));
        let mut cx = Context::from_waker(&taker_waker);
        let mut taker = Box::pin(POOL.take());
        let mut got = None;
        for poll in 1..=budget {
            if poll == RETURNED_AT_POLL {
                drop(held_b.take());
            }
            if let Poll::Ready(buf) = taker.as_mut().poll(&mut cx) {
                got = Some(buf);
            }
        }
        drop(taker);
        match got {
            Some(buf) => {
                completed_at = Some(budget);
                assert_eq!(POOL.in_use(), 2, "the taker holds the returned buffer");
                drop(buf);
            }
            None => {
                assert_eq!(
                    POOL.in_use(),
                    if held_b.is_some() { 2 } else { 1 },
                    "a dropped take() holds no buffer"
                );
                drop(held_b.take());
                assert!(
                    stayer_waker.0.load(Ordering::Relaxed) >= 1,
                    "the waiter that stayed is woken when a buffer comes back"
                );
                match stayer.as_mut().poll(&mut Context::from_waker(&waker)) {
                    Poll::Ready(buf) => drop(buf),
                    Poll::Pending => panic!("a free buffer and the waiter still waits"),
                }
            }
        }
        drop(stayer);
        drop(held_a);
        assert_eq!(POOL.in_use(), 0, "budget {budget}: every buffer back");
    }
    println!(
        "pool take(): dropped after 1..{} polls while full, completed at poll {:?}; in use {}, waited {}",
        RETURNED_AT_POLL - 1,
        completed_at,
        POOL.in_use(),
        POOL.waited()
    );
    assert_eq!(completed_at, Some(RETURNED_AT_POLL));
}
