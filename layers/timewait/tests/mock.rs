//! The layer's close discipline against a scripted connection, in the simulator's
//! virtual time: what it calls, in which order, and when.
use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use tcp_layers_core::{
    CloseReason, Connection, Deadline, ErrorKind, ErrorType, Layer, Read, TcpState, Write,
};
use tcp_layers_sim::{Duration, Instant, Timer, run};
use tcp_layers_timewait::TimeWaitLayer;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    CloseWrite,
    Abort,
    Flush,
    /// A read that returned this many bytes (0: the peer's FIN).
    Read(usize),
    End(CloseReason),
}

/// What the next read does. With no step left, a read waits forever: a silent peer.
#[derive(Clone, Copy, Debug)]
enum Step {
    /// Returns this many bytes at once.
    Bytes(usize),
    /// Returns 0: the peer's FIN.
    Eof,
    /// Returns `n` bytes every `every`, forever: a peer that keeps sending.
    Forever(Duration, usize),
}

/// When `flush` completes (and, for `end`, when the FIN is acknowledged).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Acks {
    /// At once: the peer acknowledges everything.
    Yes,
    /// This long after the first flush: a slow reader takes the rest of the response.
    After(Duration),
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
    /// When the pending `Acks::After` acknowledgement or `Step::Forever` bytes arrive:
    /// kept in the mock, as a socket keeps its state, so a read or flush dropped and
    /// created again (the layer's discarding flush does that) waits for the same moment.
    acked_at: Option<Instant>,
    next_bytes_at: Option<Instant>,
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
            acked_at: None,
            next_bytes_at: None,
        }
    }
    fn log(&self, op: Op) {
        self.ops.borrow_mut().push(op);
    }
}

/// Waits until `at`, returning at the first poll once it has passed, as a socket's
/// read returns data already there (an `embassy_time::Timer` always waits one poll,
/// and the layer polls reads and flushes afresh each time it is woken).
async fn wait_until(at: Instant) {
    if Instant::now() < at {
        Timer::at(at).await;
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
                let at = *self
                    .next_bytes_at
                    .get_or_insert_with(|| Instant::now() + every);
                wait_until(at).await;
                self.next_bytes_at = Some(at + every);
                n.min(buf.len())
            }
            Some(Step::Eof) => 0,
            None => core::future::pending().await,
        };
        self.log(Op::Read(n));
        Ok(n)
    }
}

impl Write for Mock {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        Ok(buf.len())
    }
    /// Logged when it returns.
    async fn flush(&mut self) -> Result<(), ErrorKind> {
        if self.state != TcpState::Closed {
            match self.acks {
                Acks::Yes => {}
                Acks::After(after) => {
                    let at = *self.acked_at.get_or_insert_with(|| Instant::now() + after);
                    wait_until(at).await;
                    self.send_queue = self.send_queue.map(|_| 0);
                }
                Acks::Never => core::future::pending::<()>().await,
            }
        }
        self.log(Op::Flush);
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
    layer: TimeWaitLayer,
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

/// While the peer has not acknowledged our data, what it sends is read and discarded
/// (the reads come before the flush returns and before the `End`); once it has, FIN,
/// and RST as soon as the FIN is acknowledged. The peer's own FIN is not waited for
/// after that: it sends it here, but an idle browser does not for seconds.
#[test]
fn orderly_end_discards_until_acknowledged_then_fin_then_rst() {
    let (ops, took) = end_with(
        TimeWaitLayer::new(),
        |m| {
            m.acks = Acks::After(Duration::from_millis(100));
            m.send_queue = Some(512);
            m.reads
                .extend([Step::Bytes(100), Step::Bytes(30), Step::Eof])
        },
        CloseReason::LocalClose,
    );
    println!(
        "orderly end, 512 B acknowledged after 100 ms, peer sends 130 bytes then FIN: \
         {ops:?} in {} us",
        took.as_micros()
    );
    assert_eq!(
        ops,
        [
            Op::Read(64),
            Op::Read(36),
            Op::Read(30),
            Op::Read(0),
            Op::Flush,
            Op::End(CloseReason::LocalClose),
            Op::Abort,
            Op::Flush,
        ]
    );
    assert_eq!(took, Duration::from_millis(100));
}

/// Everything acknowledged and a peer that never sends its FIN (an idle keep-alive
/// browser): FIN, then RST at once, no linger.
#[test]
fn everything_acknowledged_resets_without_waiting_for_the_peers_fin() {
    for reason in [CloseReason::LocalClose, CloseReason::Evicted] {
        let (ops, took) = end_with(TimeWaitLayer::new(), |_| {}, reason);
        println!(
            "{reason}, everything acknowledged, silent peer: {ops:?} in {} us",
            took.as_micros()
        );
        assert_eq!(ops, [Op::Flush, Op::End(reason), Op::Abort, Op::Flush]);
        assert_eq!(took, Duration::from_ticks(0));
    }
}

/// A stack that does not report its send queue (the tokio adapter) gives no proof
/// that the peer has everything: the RST waits for the peer's FIN, or the linger.
#[test]
fn without_a_send_queue_the_rst_waits_for_the_peers_fin() {
    let (ops, took) = end_with(
        TimeWaitLayer::new(),
        |m| {
            m.send_queue = None;
            m.reads.extend([Step::Bytes(10), Step::Eof]);
        },
        CloseReason::LocalClose,
    );
    assert_eq!(
        ops,
        [
            Op::Flush,
            Op::End(CloseReason::LocalClose),
            Op::Read(10),
            Op::Read(0),
            Op::Abort,
            Op::Flush,
        ]
    );
    assert_eq!(took, Duration::from_ticks(0));
    let (ops, took) = end_with(
        TimeWaitLayer::new(),
        |m| m.send_queue = None,
        CloseReason::LocalClose,
    );
    println!(
        "no send queue, silent peer: {ops:?}, RST after {} ms",
        took.as_millis()
    );
    assert_eq!(
        ops,
        [
            Op::Flush,
            Op::End(CloseReason::LocalClose),
            Op::Abort,
            Op::Flush
        ]
    );
    assert_eq!(took, TimeWaitLayer::DEFAULT_LINGER);
}

#[test]
fn other_reasons_reset_at_once() {
    for reason in CloseReason::ALL.into_iter().filter(|r| !r.is_orderly()) {
        let (ops, took) = end_with(TimeWaitLayer::new(), |m| m.acks = Acks::Never, reason);
        assert_eq!(ops, [Op::Abort, Op::End(reason)], "{reason}");
        assert_eq!(took, Duration::from_ticks(0));
    }
}

#[test]
fn a_reason_known_below_wins_over_the_callers_guess() {
    let stall = CloseReason::Reaped(Deadline::Stall);
    let (ops, took) = end_with(
        TimeWaitLayer::new(),
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
    for linger in [TimeWaitLayer::DEFAULT_LINGER, Duration::from_millis(500)] {
        let (ops, took) = end_with(
            TimeWaitLayer::with_linger(linger),
            |m| {
                m.acks = Acks::Never;
                m.send_queue = Some(512);
            },
            CloseReason::LocalClose,
        );
        println!(
            "vanished peer, linger {} ms: reset after {} ms",
            linger.as_millis(),
            took.as_millis()
        );
        // The data is never acknowledged, so no FIN goes out (it would wait behind the
        // data anyway): at the linger's end the RST, then the end of the layers below,
        // which only sends it.
        assert_eq!(ops, [Op::Abort, Op::End(CloseReason::LocalClose)]);
        assert_eq!(took, linger);
    }
}

/// A peer that keeps sending and never acknowledges our data: its bytes are
/// discarded for the whole linger, then RST. The peer withholds its acknowledgement:
/// with everything acknowledged the layer would not wait for it at all (see above).
#[test]
fn a_peer_that_keeps_sending_is_reset_when_the_linger_expires() {
    let (ops, took) = end_with(
        TimeWaitLayer::new(),
        |m| {
            m.acks = Acks::Never;
            m.send_queue = Some(512);
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
        "peer sending every 10 ms (64 B per read): {} bytes discarded, reset after {} ms",
        discarded,
        took.as_millis()
    );
    assert_eq!(took, TimeWaitLayer::DEFAULT_LINGER);
    assert!(discarded > 0);
    // The discarding starts before any end below; the inner `end` comes last, after the
    // RST, and only sends it.
    assert_eq!(ops[0], Op::Read(64));
    assert_eq!(
        &ops[ops.len() - 2..],
        [Op::Abort, Op::End(CloseReason::LocalClose)]
    );
}

#[test]
fn zero_linger_resets_at_once() {
    let (ops, took) = end_with(
        TimeWaitLayer::with_linger(Duration::from_millis(0)),
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
        drop(TimeWaitLayer::new().layer(m));
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
    let over_ref = size_of::<tcp_layers_timewait::TimeWait<&mut Mock>>() - size_of::<&mut Mock>();
    println!(
        "timewait adds {over_ref} bytes to a &mut connection on this host ({}-bit)",
        usize::BITS
    );
    assert!(over_ref <= size_of::<usize>());
}
