//! The layer's close discipline against a scripted connection, in the simulator's
//! virtual time: what it calls, in which order, and when.
use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use tcp_layers_core::{
    CloseReason, Connection, Deadline, ErrorKind, ErrorType, Layer, Read, TcpState, Write,
};
use tcp_layers_sim::{Duration, Instant, Timer, run};
use tcp_layers_timewait::TimeWait;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    CloseWrite,
    Abort,
    Flush,
    /// A read that returned this many bytes (0: the peer's FIN).
    Read(usize),
    End(CloseReason),
}

/// What the next read does.
#[derive(Clone, Copy, Debug)]
enum Step {
    /// Returns this many bytes at once.
    Bytes(usize),
    /// Returns 0: the peer's FIN.
    Eof,
    /// Returns `n` bytes after `every`, forever: a peer that keeps sending.
    Forever(Duration, usize),
}

/// Whether `flush` completes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Acks {
    /// At once: the peer acknowledges everything.
    Yes,
    /// Never: the peer vanished.
    Never,
}

struct Mock {
    ops: Rc<RefCell<Vec<Op>>>,
    reads: VecDeque<Step>,
    acks: Acks,
    state: TcpState,
    send_queue: Option<usize>,
    known_reason: Option<CloseReason>,
}

impl Mock {
    fn new(ops: &Rc<RefCell<Vec<Op>>>) -> Self {
        Self {
            ops: ops.clone(),
            reads: VecDeque::new(),
            acks: Acks::Yes,
            state: TcpState::Established,
            send_queue: Some(0),
            known_reason: None,
        }
    }
    fn log(&self, op: Op) {
        self.ops.borrow_mut().push(op);
    }
}

impl ErrorType for Mock {
    type Error = ErrorKind;
}

impl Read for Mock {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        let n = match self.reads.front().copied() {
            Some(Step::Bytes(n)) => {
                let taken = n.min(buf.len());
                if taken == n {
                    self.reads.pop_front();
                } else {
                    self.reads[0] = Step::Bytes(n - taken);
                }
                taken
            }
            Some(Step::Forever(every, n)) => {
                Timer::after(every).await;
                n.min(buf.len())
            }
            Some(Step::Eof) | None => 0,
        };
        self.log(Op::Read(n));
        Ok(n)
    }
}

impl Write for Mock {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        Ok(buf.len())
    }
    async fn flush(&mut self) -> Result<(), ErrorKind> {
        self.log(Op::Flush);
        if self.acks == Acks::Never && self.state != TcpState::Closed {
            core::future::pending::<()>().await;
        }
        Ok(())
    }
}

impl Connection for Mock {
    fn state(&self) -> TcpState {
        self.state
    }
    fn close_write(&mut self) {
        self.log(Op::CloseWrite);
        self.state = TcpState::FinWait1;
    }
    fn abort(&mut self) {
        self.log(Op::Abort);
        self.state = TcpState::Closed;
    }
    fn send_queue(&self) -> Option<usize> {
        self.send_queue
    }
    fn ended_error(&self, _reason: CloseReason) -> ErrorKind {
        ErrorKind::ConnectionReset
    }
    fn close_reason(&self) -> Option<CloseReason> {
        self.known_reason
    }
    /// As a socket's: an orderly end waits for the peer's acknowledgement (forever, to
    /// a vanished peer); any other resets.
    async fn end(&mut self, reason: CloseReason) {
        self.log(Op::End(reason));
        if reason.is_orderly() && self.state != TcpState::Closed {
            self.state = TcpState::FinWait1;
            if self.acks == Acks::Never {
                core::future::pending::<()>().await;
            }
            self.state = TcpState::FinWait2;
        } else {
            self.state = TcpState::Closed;
        }
    }
}

/// Runs `end(reason)` on `mock` wrapped in `layer`; the calls the mock saw and the
/// virtual time `end` took.
fn end_with(
    layer: TimeWait,
    mock: impl FnOnce(&mut Mock),
    reason: CloseReason,
) -> (Vec<Op>, Duration) {
    let ops = Rc::new(RefCell::new(Vec::new()));
    let mut m = Mock::new(&ops);
    mock(&mut m);
    let took = run(async move {
        let mut conn = layer.layer(m);
        let t0 = Instant::now();
        conn.end(reason).await;
        let took = Instant::now() - t0;
        assert_eq!(conn.state(), TcpState::Closed);
        took
    });
    let ops = ops.borrow().clone();
    (ops, took)
}

#[test]
fn orderly_end_fin_ack_drain_then_rst() {
    let (ops, took) = end_with(
        TimeWait::new(),
        |m| {
            m.reads
                .extend([Step::Bytes(100), Step::Bytes(30), Step::Eof])
        },
        CloseReason::LocalClose,
    );
    println!(
        "orderly end, peer sends 130 bytes then FIN: {ops:?} in {} us",
        took.as_micros()
    );
    assert_eq!(
        ops,
        [
            Op::End(CloseReason::LocalClose),
            Op::Read(64),
            Op::Read(36),
            Op::Read(30),
            Op::Read(0),
            Op::Abort,
            Op::Flush,
        ]
    );
    assert_eq!(took, Duration::from_ticks(0));
}

#[test]
fn other_reasons_reset_at_once() {
    for reason in CloseReason::ALL.into_iter().filter(|r| !r.is_orderly()) {
        let (ops, took) = end_with(TimeWait::new(), |m| m.acks = Acks::Never, reason);
        assert_eq!(ops, [Op::Abort, Op::End(reason)], "{reason}");
        assert_eq!(took, Duration::from_ticks(0));
    }
}

#[test]
fn a_reason_known_below_wins_over_the_callers_guess() {
    let stall = CloseReason::Reaped(Deadline::Stall);
    let (ops, took) = end_with(
        TimeWait::new(),
        |m| {
            m.known_reason = Some(stall);
            m.acks = Acks::Never;
        },
        CloseReason::LocalClose,
    );
    assert_eq!(ops, [Op::Abort, Op::End(stall)]);
    assert_eq!(took, Duration::from_ticks(0));
}

#[test]
fn a_vanished_peer_is_reset_when_the_linger_expires() {
    for linger in [TimeWait::DEFAULT_LINGER, Duration::from_millis(500)] {
        let (ops, took) = end_with(
            TimeWait::with_linger(linger),
            |m| m.acks = Acks::Never,
            CloseReason::LocalClose,
        );
        println!(
            "vanished peer, linger {} ms: reset after {} ms",
            linger.as_millis(),
            took.as_millis()
        );
        assert_eq!(
            ops,
            [Op::End(CloseReason::LocalClose), Op::Abort, Op::Flush]
        );
        assert_eq!(took, linger);
    }
}

#[test]
fn a_peer_that_keeps_sending_is_reset_when_the_linger_expires() {
    let (ops, took) = end_with(
        TimeWait::new(),
        |m| {
            m.reads
                .push_back(Step::Forever(Duration::from_millis(10), 1000))
        },
        CloseReason::LocalClose,
    );
    let discarded: usize = ops
        .iter()
        .map(|o| if let Op::Read(n) = o { *n } else { 0 })
        .sum();
    println!(
        "peer sending 1000 B every 10 ms: {} bytes discarded, reset after {} ms",
        discarded,
        took.as_millis()
    );
    assert_eq!(took, TimeWait::DEFAULT_LINGER);
    assert!(discarded > 0);
    assert_eq!(ops[0], Op::End(CloseReason::LocalClose));
    assert_eq!(&ops[ops.len() - 2..], [Op::Abort, Op::Flush]);
}

#[test]
fn zero_linger_resets_at_once() {
    let (ops, took) = end_with(
        TimeWait::with_linger(Duration::from_millis(0)),
        |m| m.reads.push_back(Step::Eof),
        CloseReason::LocalClose,
    );
    assert_eq!(ops, [Op::Abort, Op::End(CloseReason::LocalClose)]);
    assert_eq!(took, Duration::from_ticks(0));
}

/// What dropping the wrapper without `end` does, per state and send queue.
#[test]
fn drop_without_end() {
    let cases = [
        (TcpState::Listen, Some(0), vec![]),
        (TcpState::Closed, Some(10), vec![]),
        (TcpState::Established, Some(0), vec![Op::Abort]),
        (TcpState::FinWait2, Some(0), vec![Op::Abort]),
        (TcpState::TimeWait, Some(0), vec![Op::Abort]),
        (TcpState::Established, Some(512), vec![Op::CloseWrite]),
        (TcpState::CloseWait, Some(1), vec![Op::CloseWrite]),
        (TcpState::Established, None, vec![Op::CloseWrite]),
    ];
    for (state, send_queue, expected) in cases {
        let ops = Rc::new(RefCell::new(Vec::new()));
        let mut m = Mock::new(&ops);
        m.state = state;
        m.send_queue = send_queue;
        drop(TimeWait::new().layer(m));
        assert_eq!(
            *ops.borrow(),
            expected,
            "{state:?} with send queue {send_queue:?}"
        );
    }
}

/// The layer's state per connection is its linger: 4 bytes (rounded up to the
/// alignment of the connection it wraps).
#[test]
fn per_connection_ram() {
    use core::mem::size_of;
    let over_ref =
        size_of::<tcp_layers_timewait::TimeWaitConnection<&mut Mock>>() - size_of::<&mut Mock>();
    println!(
        "timewait adds {over_ref} bytes to a &mut connection on this host ({}-bit)",
        usize::BITS
    );
    assert!(over_ref <= size_of::<usize>());
}
