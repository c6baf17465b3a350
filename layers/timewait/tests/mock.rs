//! The layer's close discipline against a scripted connection, in the simulator's
//! virtual time: what it calls, in which order, and when.
use tcp_layers_core::{CloseReason, Connection, Deadline, Layer, TcpState};
use tcp_layers_mock::{Acks, Mock, Op, ReadStep};
use tcp_layers_sim::{Duration, Instant, run};
use tcp_layers_timewait::TimeWaitLayer;

/// Runs `end(reason)` on `mock` wrapped in `layer`; the calls the mock saw and the
/// virtual time `end` took.
fn end_with(layer: TimeWaitLayer, mock: Mock, reason: CloseReason) -> (Vec<Op>, Duration) {
    let seen = mock.clone();
    let took = run(async move {
        let mut conn = layer.layer(mock);
        let t0 = Instant::now();
        conn.end(reason).await;
        let took = Instant::now() - t0;
        assert_eq!(conn.state(), TcpState::Closed);
        took
    });
    (seen.ops(), took)
}

/// While the peer has not acknowledged our data, what it sends is read and discarded
/// (the reads come before the flush returns and before the `End`); once it has, FIN,
/// and RST as soon as the FIN is acknowledged. The peer's own FIN is not waited for
/// after that: it sends it here, but an idle browser does not for seconds.
#[test]
fn orderly_end_discards_until_acknowledged_then_fin_then_rst() {
    let (ops, took) = end_with(
        TimeWaitLayer::new(),
        Mock::new()
            .with_acks(Acks::After(Duration::from_millis(100)))
            .with_send_queue(Some(512))
            .with_read(&[0; 100])
            .with_read(&[0; 30])
            .with_fin(),
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
        let (ops, took) = end_with(TimeWaitLayer::new(), Mock::new(), reason);
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
        Mock::new()
            .with_send_queue(None)
            .with_read(&[0; 10])
            .with_fin(),
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
        Mock::new().with_send_queue(None),
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
        let (ops, took) = end_with(
            TimeWaitLayer::new(),
            Mock::new().with_acks(Acks::Never),
            reason,
        );
        assert_eq!(ops, [Op::Abort, Op::End(reason)], "{reason}");
        assert_eq!(took, Duration::from_ticks(0));
    }
}

#[test]
fn a_reason_known_below_wins_over_the_callers_guess() {
    let stall = CloseReason::Reaped(Deadline::Stall);
    let (ops, took) = end_with(
        TimeWaitLayer::new(),
        Mock::new().with_close_reason(stall).with_acks(Acks::Never),
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
            Mock::new()
                .with_acks(Acks::Never)
                .with_send_queue(Some(512)),
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
        Mock::new()
            .with_acks(Acks::Never)
            .with_send_queue(Some(512))
            .with_read_step(ReadStep::Every {
                every: Duration::from_millis(10),
                len: 1000,
            }),
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
        Mock::new().with_fin(),
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
        let mock = Mock::new().with_state(state).with_send_queue(send_queue);
        drop(TimeWaitLayer::new().layer(mock.clone()));
        assert_eq!(
            mock.ops(),
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

/// `into_inner` hands the connection back without the close a dropped wrapper sends:
/// dropping the wrapper of an established connection ends it (FIN or RST), taking the
/// connection out does not.
#[test]
fn into_inner_takes_the_connection_out_without_the_drop_close() {
    let dropped = Mock::new().with_send_queue(Some(0));
    let taken = Mock::new().with_send_queue(Some(0));
    run({
        let (dropped, taken) = (dropped.clone(), taken.clone());
        async move {
            drop(TimeWaitLayer::new().layer(dropped));
            let inner = TimeWaitLayer::new().layer(taken).into_inner();
            assert_eq!(inner.state(), TcpState::Established);
        }
    });
    let ends = |m: &Mock| m.close_writes() + m.aborts();
    println!(
        "closes sent: dropped wrapper {}, into_inner {}",
        ends(&dropped),
        ends(&taken)
    );
    assert_eq!(ends(&dropped), 1, "a dropped wrapper ends the connection");
    assert_eq!(ends(&taken), 0, "into_inner leaves it to the caller");
}
