//! Piece sizes, yields between pieces and the response byte count, against a mock
//! connection.
use tcp_layers_chunked::{Chunked, ChunkedLayer, ONE_SEGMENT, ResponseProgress};
use tcp_layers_core::{CloseReason, Connection, Layer, Read, Write};
use tcp_layers_mock::poll::{poll_up_to, run_counting_yields};
use tcp_layers_mock::{Mock, MockError, pattern};

const BODY: usize = 160_000;

fn write_all_counting(layer: ChunkedLayer, data: &[u8]) -> (Chunked<Mock>, usize) {
    let mut conn = layer.layer(Mock::new());
    let (result, yields) = run_counting_yields(conn.write_all(data));
    result.unwrap();
    (conn, yields)
}

#[test]
fn default_pieces_are_4096_bytes() {
    let body = pattern(BODY);
    let (conn, yields) = write_all_counting(ChunkedLayer::new(), &body);
    let pieces = conn.get_ref().write_sizes();
    println!(
        "160000 B at chunk 4096: {} pieces, largest {}, {} yields",
        pieces.len(),
        pieces.iter().max().unwrap(),
        yields
    );
    assert_eq!(pieces.len(), BODY.div_ceil(4096));
    assert!(pieces.iter().all(|&p| p <= 4096));
    assert_eq!(conn.get_ref().written(), body);
    // A yield between every two consecutive pieces, none before the first.
    assert_eq!(yields, pieces.len() - 1);
}

#[test]
fn one_segment_pieces() {
    let body = pattern(BODY);
    let layer = ChunkedLayer::new().with_chunk_size(ONE_SEGMENT);
    let (conn, yields) = write_all_counting(layer, &body);
    let pieces = conn.get_ref().write_sizes();
    println!(
        "160000 B at chunk 1460: {} pieces, {yields} yields",
        pieces.len()
    );
    assert_eq!(pieces.len(), BODY.div_ceil(1460));
    assert!(pieces.iter().all(|&p| p <= 1460));
    assert_eq!(conn.get_ref().written(), body);
}

#[test]
fn a_write_that_waited_for_the_socket_needs_no_extra_yield() {
    // Every socket write waits once for buffer room: the task gives the executor a
    // turn there, so the layer adds none of its own.
    let mock = Mock::new().with_yield_before_writes();
    let mut conn = ChunkedLayer::new().layer(mock);
    let body = pattern(BODY);
    let (result, pendings) = run_counting_yields(conn.write_all(&body));
    result.unwrap();
    let pieces = conn.get_ref().write_sizes().len();
    println!("160000 B, socket always waits once: {pieces} pieces, {pendings} pendings");
    assert_eq!(pendings, pieces);
    assert_eq!(conn.get_ref().written(), body);
}

#[test]
fn chunk_size_is_clamped() {
    assert_eq!(ChunkedLayer::new().with_chunk_size(0).chunk_size(), 1);
    assert_eq!(
        ChunkedLayer::new().with_chunk_size(1 << 20).chunk_size(),
        65535
    );
    assert_eq!(ChunkedLayer::default().chunk_size(), 4096);
}

#[test]
fn small_writes_of_a_response_do_not_yield() {
    // A head and a short body written back to back stay together in the TX buffer.
    let mut conn = ChunkedLayer::new().layer(Mock::new());
    let (result, yields) = run_counting_yields(async {
        conn.write_all(&[b'h'; 256]).await?;
        conn.write_all(&pattern(2048)).await?;
        conn.flush().await
    });
    result.unwrap();
    println!("head 256 + body 2048: {yields} yields");
    assert_eq!(yields, 0);
    assert_eq!(conn.get_ref().write_sizes(), [256, 2048]);
}

#[test]
fn short_writes_below_are_passed_on() {
    // A stack with little TX room takes less than a piece; the count says so.
    let mock = Mock::new().with_max_write(1000);
    let mut conn = ChunkedLayer::new().layer(mock);
    let n = poll_up_to(conn.write(&pattern(10_000)), 1)
        .unwrap()
        .unwrap();
    assert_eq!(n, 1000);
    assert_eq!(conn.progress().sent, 1000);
}

#[test]
fn progress_reports_sent_of_expected_when_cut_short() {
    // The peer resets once it has the head and three pieces.
    let mock = Mock::new()
        .with_read(b"GET /big HTTP/1.1\r\n\r\n")
        .with_reset_after(256 + 3 * 4096);
    let mut conn = ChunkedLayer::new().layer(mock);
    let body = pattern(BODY);
    let result = poll_up_to(
        async {
            let mut req = [0u8; 64];
            conn.read(&mut req).await?;
            conn.write_all(&[b'h'; 256]).await?;
            conn.write_all(&body).await
        },
        1000,
    )
    .unwrap();
    assert_eq!(
        result,
        Err(MockError::RESET),
        "the peer's reset, passed up unchanged"
    );
    let progress = conn.progress();
    println!("cut short: {progress}");
    assert_eq!(
        progress,
        ResponseProgress {
            sent: 256 + 3 * 4096,
            expected: Some(256 + BODY as u32),
        }
    );
    assert!(progress.is_cut_short());
}

#[test]
fn announced_length_wins_and_a_read_starts_the_next_response() {
    let mock = Mock::new().with_read(b"GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n");
    let mut conn = ChunkedLayer::new().layer(mock);
    let mut req = [0u8; 18];
    poll_up_to(conn.read(&mut req), 1).unwrap().unwrap();
    conn.expect_response_len(10_000);
    poll_up_to(conn.write_all(&[0; 3000]), 10).unwrap().unwrap();
    assert_eq!(
        conn.progress(),
        ResponseProgress {
            sent: 3000,
            expected: Some(10_000)
        }
    );

    // A complete response with no announcement: nothing more was expected.
    poll_up_to(conn.read(&mut req), 1).unwrap().unwrap();
    poll_up_to(conn.write_all(&[0; 500]), 10).unwrap().unwrap();
    let progress = conn.progress();
    assert_eq!(
        progress,
        ResponseProgress {
            sent: 500,
            expected: None
        }
    );
    assert!(!progress.is_cut_short());
    assert_eq!(progress.to_string(), "sent 500 bytes");
}

#[test]
fn end_prefers_the_inner_close_reason() {
    let mock = Mock::new().with_close_reason(CloseReason::Reaped(tcp_layers_core::Deadline::Stall));
    let mut conn = ChunkedLayer::new().layer(mock);
    poll_up_to(conn.end(CloseReason::ClientCancelled), 1).unwrap();
    assert_eq!(
        conn.get_ref().ended(),
        Some(CloseReason::Reaped(tcp_layers_core::Deadline::Stall))
    );
}

#[test]
fn a_write_dropped_at_the_yield_writes_nothing() {
    let mut conn = ChunkedLayer::new().layer(Mock::new());
    let body = pattern(3 * 4096);
    let first = poll_up_to(conn.write(&body), 1).unwrap().unwrap();
    assert_eq!(first, 4096);
    // The next write yields first: dropped there, it must not have passed anything down.
    assert!(poll_up_to(conn.write(&body[first..]), 1).is_none());
    assert_eq!(conn.get_ref().written().len(), 4096);
    poll_up_to(conn.write_all(&body[first..]), 10)
        .unwrap()
        .unwrap();
    assert_eq!(conn.get_ref().written(), body);
}

#[test]
fn wrapper_size() {
    let extra = size_of::<Chunked<Mock>>() - size_of::<Mock>();
    println!("chunked wrapper: {extra} bytes beyond the connection");
    assert!(extra <= 16, "{extra}");
}
