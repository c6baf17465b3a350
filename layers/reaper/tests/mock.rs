//! The reaper's phases and deadlines on a scripted mock connection, in the simulator's
//! virtual time: exact deadlines, the head rate, what happens to an oversized head,
//! `100 Continue`, upgrades, raw mode, flush progress and cancellation.
use embassy_futures::select::{Either, select};
use tcp_layers_core::{
    CloseReason, Connection, ConnectionClass, Deadline, ErrorKind, Layer, Read, Write,
};
use tcp_layers_mock::{Acks, Mock};
use tcp_layers_reaper::{Oversize, Phase, Protocol, REPLY_431, Reaper, ReaperConfig, ReaperLayer};
use tcp_layers_sim::{Duration, Instant, Timer, run};

/// `ms` after the simulation started: when scripted bytes arrive.
fn at(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

static HTTP: ReaperConfig = ReaperConfig::http();

fn wrap(mock: Mock, config: &'static ReaperConfig) -> Reaper<Mock> {
    ReaperLayer::new(config).layer(mock)
}

/// Virtual time since the simulation started.
fn elapsed() -> Duration {
    Instant::now() - Instant::from_ticks(0)
}

/// Reads until the end of the stream or an error; returns the bytes read and when the
/// reads ended. (The mock's peer never closes: an end comes from the reaper.)
async fn read_to_end(conn: &mut Reaper<Mock>) -> (usize, Duration) {
    let mut buf = [0u8; 512];
    let mut total = 0;
    while let Ok(n) = conn.read(&mut buf).await {
        if n == 0 {
            break;
        }
        total += n;
    }
    (total, elapsed())
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: device\r\n\r\n";
const OK_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n";

#[test]
fn phases_follow_the_reads_and_writes() {
    run(async {
        let mock = Mock::new()
            .with_read_at(at(0), b"GET / HTTP/1.1\r\n")
            .with_read_at(at(100), b"Host: device\r\n\r\n");
        let mut conn = wrap(mock, &HTTP);
        let mut buf = [0u8; 64];
        assert_eq!(conn.phase(), Phase::Fresh);
        conn.read(&mut buf).await.unwrap();
        assert_eq!(conn.phase(), Phase::Head);
        conn.read(&mut buf).await.unwrap();
        assert_eq!(conn.phase(), Phase::Request);
        conn.write_all(OK_HEAD).await.unwrap();
        assert_eq!(conn.phase(), Phase::Response);
        conn.write_all(b"ok").await.unwrap();
        conn.flush().await.unwrap();
        let idle_from = elapsed();
        let end = conn.read(&mut buf).await;
        println!(
            "after the response the read ended at {} ms (idle since {} ms): {end:?}",
            elapsed().as_millis(),
            idle_from.as_millis()
        );
        // The end of the stream, as after the peer's FIN: a server ends the connection
        // quietly; the close reason below says it was the deadline.
        assert_eq!(end, Ok(0));
        assert_eq!(conn.read(&mut buf).await, Ok(0), "and every later read");
        assert_eq!(elapsed() - idle_from, HTTP.idle());
        assert_eq!(conn.phase(), Phase::Ended);
        assert_eq!(
            conn.close_reason(),
            Some(CloseReason::Reaped(Deadline::Idle))
        );
        assert_eq!(conn.get_ref().ends(), [CloseReason::Reaped(Deadline::Idle)]);
    });
}

#[test]
fn first_byte_deadline_is_exact_and_survives_a_cancelled_read() {
    run(async {
        let mut conn = wrap(Mock::new(), &HTTP);
        let mut buf = [0u8; 16];
        // A read dropped after 1 s does not restart the first-byte deadline.
        match select(conn.read(&mut buf), Timer::after_secs(1)).await {
            Either::First(r) => panic!("read returned {r:?}"),
            Either::Second(()) => {}
        }
        let (_, at) = read_to_end(&mut conn).await;
        println!("silent connection ended at {} ms", at.as_millis());
        assert_eq!(at, HTTP.first_byte());
        assert_eq!(
            conn.close_reason(),
            Some(CloseReason::Reaped(Deadline::FirstByte))
        );
    });
}

#[test]
fn head_deadline_grows_with_the_bytes_received_up_to_its_cap() {
    let (base, max, rate) = HTTP.head();
    let mut figures = Vec::new();
    for head_bytes in [3usize, 1000, 3000] {
        let at = run(async move {
            let mock = Mock::new().with_read_at(at(0), &vec![b'h'; head_bytes]);
            let mut conn = wrap(mock, &HTTP);
            let (read, at) = read_to_end(&mut conn).await;
            assert_eq!(read, head_bytes);
            assert_eq!(
                conn.close_reason(),
                Some(CloseReason::Reaped(Deadline::Request))
            );
            at
        });
        let want =
            (base + Duration::from_millis(head_bytes as u64 * 1000 / u64::from(rate))).min(max);
        figures.push((head_bytes, at.as_millis()));
        assert_eq!(at, want, "{head_bytes} head bytes");
    }
    println!("head deadline by bytes received (bytes, ms): {figures:?}");
}

static REPLY: ReaperConfig = ReaperConfig::http().with_max_head(64);
static RESET: ReaperConfig = ReaperConfig::http()
    .with_max_head(64)
    .with_oversize(Oversize::Reset);
static SERVER_ANSWERS: ReaperConfig = ReaperConfig::http()
    .with_max_head(64)
    .with_oversize(Oversize::LeaveToServer);

#[test]
fn an_oversized_head_is_answered_431_or_reset_or_left_to_the_server() {
    run(async {
        let long = [b'x'; 65];
        let too_large = CloseReason::Reaped(Deadline::RequestTooLarge);

        let mut conn = wrap(Mock::new().with_read_at(at(0), &long), &REPLY);
        assert_eq!(read_to_end(&mut conn).await.0, 0);
        assert_eq!(conn.close_reason(), Some(too_large));
        assert_eq!(conn.get_ref().written(), REPLY_431);
        assert_eq!(conn.get_ref().ends(), [too_large]);

        let mut conn = wrap(Mock::new().with_read_at(at(0), &long), &RESET);
        assert_eq!(read_to_end(&mut conn).await.0, 0);
        assert!(conn.get_ref().written().is_empty());
        assert_eq!(conn.get_ref().ends(), [too_large]);

        let mut conn = wrap(Mock::new().with_read_at(at(0), &long), &SERVER_ANSWERS);
        assert_eq!(read_to_end(&mut conn).await.0, 0);
        assert_eq!(conn.close_reason(), Some(too_large));
        assert_eq!(conn.reaped(), Some(Deadline::RequestTooLarge));
        assert!(conn.get_ref().ends().is_empty(), "left open for the server");
        conn.write_all(b"HTTP/1.1 431 Too Large\r\n\r\n")
            .await
            .unwrap();
        assert!(
            conn.read(&mut [0u8; 4]).await.is_err(),
            "until the server answered, reads fail: its cue, not a peer's close"
        );
        conn.end(CloseReason::LocalClose).await;
        assert_eq!(conn.get_ref().ends(), [too_large]);
        // Ended: reads give the end of the stream, writes fail.
        assert_eq!(conn.read(&mut [0u8; 4]).await, Ok(0));
        assert!(conn.write(b"x").await.is_err());

        // Exactly max_head is a head.
        let mut exact = vec![b'x'; 60];
        exact.extend_from_slice(b"\r\n\r\n");
        let mut conn = wrap(Mock::new().with_read_at(at(0), &exact), &REPLY);
        assert_eq!(conn.read(&mut [0u8; 128]).await, Ok(64));
        assert_eq!(conn.phase(), Phase::Request);
        println!("65-byte head: 431 / reset / server's turn; 64-byte head: served");
    });
}

#[test]
fn a_write_that_makes_no_progress_is_reaped_after_stall() {
    run(async {
        let mock = Mock::new().with_read_at(at(0), GET).with_room(10);
        let mut conn = wrap(mock, &HTTP);
        conn.read(&mut [0u8; 64]).await.unwrap();
        Timer::after_secs(1).await;
        assert_eq!(conn.write(OK_HEAD).await, Ok(10));
        let blocked_at = elapsed();
        let err = conn.write(&OK_HEAD[10..]).await.unwrap_err();
        println!(
            "write blocked at {} ms, reaped at {} ms",
            blocked_at.as_millis(),
            elapsed().as_millis()
        );
        assert_eq!(err.kind(), ErrorKind::ConnectionReset);
        assert_eq!(elapsed() - blocked_at, HTTP.stall());
        assert_eq!(
            conn.get_ref().ends(),
            [CloseReason::Reaped(Deadline::Stall)]
        );
        assert!(
            conn.write(b"x").await.is_err(),
            "writes fail after the reap"
        );
    });
}

#[test]
fn a_flush_that_keeps_making_progress_is_not_reaped() {
    let slow = run(async {
        let mock = Mock::new()
            .with_send_queue(Some(1000))
            .with_acks(Acks::Drain {
                every: Duration::from_secs(1),
                step: 100,
            });
        let mut conn = wrap(mock, &HTTP);
        conn.write_all(OK_HEAD).await.unwrap();
        let result = conn.flush().await;
        (result, elapsed(), conn.close_reason())
    });
    let stuck = run(async {
        let mock = Mock::new()
            .with_send_queue(Some(1000))
            .with_acks(Acks::Never);
        let mut conn = wrap(mock, &HTTP);
        conn.write_all(OK_HEAD).await.unwrap();
        let result = conn.flush().await;
        (result, elapsed(), conn.close_reason())
    });
    println!(
        "flush draining 100 B/s of 1000 B: {:?} after {} ms; flush with no progress: {:?} \
         after {} ms",
        slow.0,
        slow.1.as_millis(),
        stuck.0,
        stuck.1.as_millis()
    );
    assert_eq!(slow.0, Ok(()));
    assert_eq!(slow.1, Duration::from_secs(10));
    assert_eq!(slow.2, None);
    assert!(stuck.0.is_err());
    assert_eq!(stuck.1, HTTP.stall());
    assert_eq!(stuck.2, Some(CloseReason::Reaped(Deadline::Stall)));
}

#[test]
fn a_body_after_100_continue_is_not_taken_for_a_head() {
    run(async {
        let body = vec![b'b'; 5000]; // longer than max_head, and no terminator in it
        let mock = Mock::new()
            .with_read_at(
                at(0),
                b"POST /upload HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
            )
            .with_read_at(at(500), &body);
        let mut conn = wrap(mock, &HTTP);
        let mut buf = [0u8; 8192];
        conn.read(&mut buf).await.unwrap();
        conn.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(conn.phase(), Phase::Interim);
        assert_eq!(conn.read(&mut buf).await, Ok(5000));
        assert_eq!(conn.phase(), Phase::Request);
        conn.write_all(OK_HEAD).await.unwrap();
        assert_eq!(conn.phase(), Phase::Response);
        assert_eq!(conn.close_reason(), None);
    });
}

static STREAMS: [(&str, bool); 2] = [("101 upgrade", true), ("set_class", false)];

#[test]
fn a_stream_reads_without_a_deadline_and_writes_under_stall() {
    for (name, upgrade) in STREAMS {
        let (phase, waited, reason, stall_err) = run(async move {
            let mut conn = wrap(Mock::new().with_read_at(at(0), GET), &HTTP);
            let mut buf = [0u8; 64];
            conn.read(&mut buf).await.unwrap();
            if upgrade {
                conn.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n")
                    .await
                    .unwrap();
            } else {
                conn.set_class(ConnectionClass::Stream).unwrap();
                assert_eq!(conn.get_ref().class(), ConnectionClass::Stream);
                conn.write_all(OK_HEAD).await.unwrap();
            }
            let phase = conn.phase();
            let quiet = Duration::from_secs(600);
            let start = elapsed();
            let waited = match select(conn.read(&mut buf), Timer::after(quiet)).await {
                Either::First(r) => panic!("{name}: read returned {r:?}"),
                Either::Second(()) => elapsed() - start,
            };
            let reason = conn.close_reason();
            conn.get_ref().set_room(Some(0));
            let stall_err = conn.write(b"data: x\n\n").await.is_err();
            (phase, waited, reason, stall_err)
        });
        println!(
            "{name}: a read waited {} s and was still open",
            waited.as_secs()
        );
        assert_eq!(phase, Phase::Stream, "{name}");
        assert_eq!(reason, None, "{name}");
        assert!(stall_err, "{name}: a stalled stream write is reaped");
    }
}

static RAW: ReaperConfig = ReaperConfig::raw();

#[test]
fn raw_mode_bounds_each_read_by_idle_and_never_scans_for_a_head() {
    run(async {
        let bytes = vec![b'm'; 10_000]; // would be far too large for a head
        let mock = Mock::new()
            .with_read_at(at(0), &bytes)
            .with_read_at(at(4_000), b"more");
        let mut conn = wrap(mock, &RAW);
        assert_eq!(conn.config().protocol(), Protocol::Raw);
        assert_eq!(conn.phase(), Phase::Raw);
        let (read, at) = read_to_end(&mut conn).await;
        println!(
            "raw mode: {read} bytes read, ended at {} ms",
            at.as_millis()
        );
        assert_eq!(read, 10_004);
        // The last bytes came at 4 s; the next read waited `idle` from then.
        assert_eq!(at, Duration::from_secs(4) + RAW.idle());
        assert_eq!(
            conn.close_reason(),
            Some(CloseReason::Reaped(Deadline::Idle))
        );
    });
}

static NO_IDLE: ReaperConfig = ReaperConfig::http().with_idle(Duration::MAX);

#[test]
fn duration_max_turns_a_deadline_off() {
    run(async {
        let mut conn = wrap(Mock::new().with_read_at(at(0), GET), &NO_IDLE);
        let mut buf = [0u8; 64];
        conn.read(&mut buf).await.unwrap();
        conn.write_all(OK_HEAD).await.unwrap();
        let hour = Duration::from_secs(3600);
        match select(conn.read(&mut buf), Timer::after(hour)).await {
            Either::First(r) => panic!("read returned {r:?}"),
            Either::Second(()) => {}
        }
        assert_eq!(conn.phase(), Phase::Idle);
        assert_eq!(conn.close_reason(), None);
        assert_eq!(NO_IDLE.idle(), Duration::MAX);
    });
}

#[test]
fn end_runs_once_and_a_cancelled_reap_is_finished_by_end() {
    run(async {
        // The end below the reaper takes 2 s; the read that reaps is dropped in it.
        let mock = Mock::new().with_end_delay(Duration::from_secs(2));
        let mut conn = wrap(mock, &HTTP);
        let mut buf = [0u8; 16];
        let cut = HTTP.first_byte() + Duration::from_secs(1);
        match select(conn.read(&mut buf), Timer::after(cut)).await {
            Either::First(r) => panic!("read returned {r:?}"),
            Either::Second(()) => {}
        }
        let first_byte = CloseReason::Reaped(Deadline::FirstByte);
        assert_eq!(conn.close_reason(), Some(first_byte));
        assert!(conn.get_ref().ends().is_empty(), "the end was cut short");
        // The deadline decided the end: reads give the end of the stream (the server
        // then ends the connection, which finishes the cut-short end).
        assert_eq!(conn.read(&mut buf).await, Ok(0));
        // The server's own end finishes it, with the deadline's reason.
        conn.end(CloseReason::PeerReset).await;
        assert_eq!(conn.get_ref().ends(), [first_byte]);
        assert_eq!(conn.phase(), Phase::Ended);
        conn.end(CloseReason::LocalClose).await;
        assert_eq!(conn.get_ref().ends(), [first_byte], "end runs once");
    });
}

#[test]
fn end_prefers_the_reason_a_layer_below_recorded() {
    run(async {
        let mock = Mock::new().with_close_reason(CloseReason::LocalError);
        let mut conn = wrap(mock, &HTTP);
        assert_eq!(conn.close_reason(), Some(CloseReason::LocalError));
        conn.end(CloseReason::LocalClose).await;
        assert_eq!(conn.get_ref().ends(), [CloseReason::LocalError]);
    });
}

#[test]
fn the_wrapper_is_small() {
    let extra = size_of::<Reaper<Mock>>() - size_of::<Mock>();
    println!("per-connection state beyond the wrapped connection: {extra} bytes");
    // A reference to the config and 8 bytes of state.
    assert!(extra <= size_of::<&ReaperConfig>() + 8);
}
