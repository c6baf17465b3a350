//! The mock's model of a peer, pinned where the layers' tests rely on it.
use tcp_layers_core::{CloseReason, Connection, ErrorKind, Read, TcpState, Write};
use tcp_layers_mock::poll::poll_up_to;
use tcp_layers_mock::{Acks, Mock, MockError, Op, PeerFin, ReadStep};
use tcp_layers_sim::{Duration, Instant, run};

#[test]
fn a_read_takes_from_one_step_and_leaves_the_rest() {
    let mut conn = Mock::new()
        .with_read(&[1; 100])
        .with_read(&[2; 30])
        .with_read_step(ReadStep::Error(MockError::new(ErrorKind::Other)))
        .with_fin();
    let mut buf = [0u8; 64];
    let mut read = || poll_up_to(conn.read(&mut buf), 1).expect("ready");
    assert_eq!(read(), Ok(64));
    assert_eq!(read(), Ok(36));
    assert_eq!(read(), Ok(30));
    assert_eq!(read(), Err(MockError::new(ErrorKind::Other)));
    assert_eq!(read(), Ok(0));
    assert_eq!(read(), Ok(0), "the FIN stays");
    assert_eq!(conn.state(), TcpState::CloseWait);
}

#[test]
fn with_no_step_left_a_read_waits_until_the_peer_sends() {
    let mock = Mock::new();
    let mut conn = mock.clone();
    let mut buf = [0u8; 8];
    assert_eq!(poll_up_to(conn.read(&mut buf), 3), None);
    mock.push_read(b"ping");
    assert_eq!(poll_up_to(conn.read(&mut buf), 1), Some(Ok(4)));
    assert_eq!(conn.recv_queue(), Some(0));
}

#[test]
fn writes_take_what_the_window_and_the_faults_allow() {
    let mock = Mock::new().with_max_write(4).with_room(6);
    let mut conn = mock.clone();
    assert_eq!(poll_up_to(conn.write(b"abcdefgh"), 1), Some(Ok(4)));
    assert_eq!(poll_up_to(conn.write(b"efgh"), 1), Some(Ok(2)));
    assert_eq!(
        poll_up_to(conn.write(b"gh"), 3),
        None,
        "the window is closed"
    );
    mock.set_room(None);
    assert_eq!(poll_up_to(conn.write(b"gh"), 1), Some(Ok(2)));
    assert_eq!(mock.written(), b"abcdefgh");
    assert_eq!(mock.write_sizes(), [4, 2, 2]);

    let mut reset = Mock::new().with_reset_after(3);
    assert_eq!(poll_up_to(reset.write(b"abcd"), 1), Some(Ok(3)));
    assert_eq!(
        poll_up_to(reset.write(b"d"), 1),
        Some(Err(MockError::RESET))
    );
    assert_eq!(reset.state(), TcpState::Closed);

    let failing = MockError::new(ErrorKind::Other);
    let mut local = Mock::new().with_write_error_after(0, failing);
    assert_eq!(poll_up_to(local.write(b"a"), 1), Some(Err(failing)));
    assert_eq!(local.state(), TcpState::Established);
}

#[test]
fn acknowledgements_are_kept_across_dropped_flushes() {
    run(async {
        let mut conn = Mock::new()
            .with_send_queue(Some(512))
            .with_acks(Acks::After(Duration::from_millis(100)));
        // A flush dropped after its first poll still fixed the moment.
        assert!(poll_up_to(conn.flush(), 1).is_none());
        tcp_layers_sim::Timer::after_millis(60).await;
        assert_eq!(conn.send_queue(), Some(512));
        conn.flush().await.unwrap();
        assert_eq!(Instant::now().as_millis(), 100);
        assert_eq!(conn.send_queue(), Some(0));

        let mut draining = Mock::new()
            .with_send_queue(Some(300))
            .with_acks(Acks::Drain {
                every: Duration::from_secs(1),
                step: 100,
            });
        let start = Instant::now();
        assert!(poll_up_to(draining.flush(), 1).is_none());
        tcp_layers_sim::Timer::after_millis(2500).await;
        assert_eq!(draining.send_queue(), Some(100), "drains without a flush");
        draining.flush().await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(3));
    });
}

#[test]
fn an_orderly_end_waits_for_the_fin_to_be_acknowledged() {
    run(async {
        let mock = Mock::new();
        mock.clone().end(CloseReason::LocalClose).await;
        assert_eq!(mock.state(), TcpState::FinWait2);
        assert_eq!(mock.ops(), [Op::End(CloseReason::LocalClose)]);
        assert_eq!(mock.ends(), [CloseReason::LocalClose]);

        let vanished = Mock::new().with_acks(Acks::Never);
        let mut conn = vanished.clone();
        assert!(poll_up_to(conn.end(CloseReason::LocalClose), 3).is_none());
        assert_eq!(vanished.state(), TcpState::FinWait1);
        assert!(vanished.ends().is_empty(), "not finished");
        conn.end(CloseReason::PeerReset).await;
        assert_eq!(vanished.state(), TcpState::Closed);
        assert_eq!(vanished.ended(), Some(CloseReason::PeerReset));
    });
}

#[test]
fn a_peer_that_answers_our_fin_acknowledges_it_with_its_own() {
    let mut conn = Mock::new()
        .with_peer_fin(PeerFin::Answer)
        .with_room(0)
        .with_acks(Acks::WhileWindowOpen);
    assert_eq!(conn.send_queue(), Some(1), "the window is closed");
    assert!(poll_up_to(conn.flush(), 3).is_none());
    conn.set_room(None);
    assert_eq!(conn.send_queue(), Some(0));
    conn.close_write();
    assert_eq!(poll_up_to(conn.flush(), 1), Some(Ok(())));
    assert_eq!(
        conn.state(),
        TcpState::FinWait1,
        "no ACK of the FIN by itself"
    );
    let mut buf = [0u8; 8];
    assert_eq!(poll_up_to(conn.read(&mut buf), 1), Some(Ok(0)));
    assert_eq!(conn.state(), TcpState::TimeWait);
    assert_eq!(
        conn.ops(),
        [Op::CloseWrite, Op::Flush, Op::Read(0)],
        "the first flush never returned"
    );
}
