//! The coalescing buffer: a short head leaves with the start of the body, and no
//! cancellation loses or duplicates a held byte.
use tcp_layers_chunked::{Chunked, ChunkedLayer, ONE_SEGMENT};
use tcp_layers_core::{CloseReason, Connection, Layer, Read, Write};
use tcp_layers_mock::poll::poll_up_to;
use tcp_layers_mock::{Mock, Rng, pattern};

type Coalescing = Chunked<Mock, ONE_SEGMENT>;

fn coalescing(mock: Mock) -> Coalescing {
    ChunkedLayer::new().coalesce::<ONE_SEGMENT>().layer(mock)
}

fn head() -> Vec<u8> {
    let mut h = b"HTTP/1.1 200 OK\r\nContent-Length: 2048\r\n".to_vec();
    h.resize(256, b'x');
    h
}

#[test]
fn head_and_body_start_leave_as_one_full_segment() {
    let mut conn = coalescing(Mock::new());
    let (head, body) = (head(), pattern(2048));
    poll_up_to(
        async {
            conn.write_all(&head).await?;
            conn.write_all(&body).await?;
            conn.flush().await
        },
        100,
    )
    .unwrap()
    .unwrap();
    let pieces = conn.get_ref().write_sizes();
    println!("head 256 + body 2048 with a 1460 B buffer: pieces {pieces:?}");
    assert_eq!(pieces, [1460, 2048 + 256 - 1460]);
    assert_eq!(conn.get_ref().written(), [head, body].concat());
}

#[test]
fn without_coalescing_the_head_leaves_alone() {
    let mut conn = ChunkedLayer::new().layer(Mock::new());
    poll_up_to(
        async {
            conn.write_all(&head()).await?;
            conn.write_all(&pattern(2048)).await
        },
        100,
    )
    .unwrap()
    .unwrap();
    assert_eq!(conn.get_ref().write_sizes(), [256, 2048]);
}

#[test]
fn flush_read_and_orderly_end_send_held_bytes() {
    // The peer has sent its FIN: the read below returns at once.
    let mut conn = coalescing(Mock::new().with_fin());
    poll_up_to(conn.write_all(b"HTTP/1.1 204 No Content\r\n\r\n"), 1)
        .unwrap()
        .unwrap();
    assert_eq!(conn.held(), 27);
    assert!(conn.get_ref().written().is_empty());
    poll_up_to(conn.flush(), 1).unwrap().unwrap();
    assert_eq!(conn.get_ref().written().len(), 27);
    assert_eq!(conn.get_ref().flushes(), 1);

    // A read first sends what is held: the peer may wait for it before it sends more.
    poll_up_to(conn.write_all(b"pong"), 1).unwrap().unwrap();
    let mut buf = [0u8; 8];
    poll_up_to(conn.read(&mut buf), 1).unwrap().unwrap();
    assert_eq!(conn.get_ref().written().len(), 31);

    poll_up_to(conn.write_all(b"bye"), 1).unwrap().unwrap();
    poll_up_to(conn.end(CloseReason::LocalClose), 1).unwrap();
    assert!(conn.get_ref().written().ends_with(b"pongbye"));
    assert_eq!(conn.get_ref().ended(), Some(CloseReason::LocalClose));
}

#[test]
fn abortive_end_drops_held_bytes() {
    let mut conn = coalescing(Mock::new());
    poll_up_to(conn.write_all(b"partial"), 1).unwrap().unwrap();
    poll_up_to(conn.end(CloseReason::ClientCancelled), 1).unwrap();
    assert!(conn.get_ref().written().is_empty());
    assert_eq!(conn.held(), 0);
}

#[test]
fn a_dropped_merge_neither_loses_nor_duplicates() {
    let mock = Mock::new().with_room(0);
    let mut conn = coalescing(mock);
    let (head, body) = (head(), pattern(2048));
    poll_up_to(conn.write_all(&head), 1).unwrap().unwrap();
    // The merge copies the start of the body beside the head, then waits on the stack:
    // dropped there, the body's bytes must not count as held.
    assert!(poll_up_to(conn.write(&body), 3).is_none());
    assert_eq!(conn.held(), 256);
    conn.get_ref().set_room(None);
    poll_up_to(conn.write_all(&body), 100).unwrap().unwrap();
    poll_up_to(conn.flush(), 100).unwrap().unwrap();
    assert_eq!(conn.get_ref().written(), [head, body].concat());
}

#[test]
fn a_merge_dropped_after_a_partial_write_keeps_the_rest_once() {
    // 100 bytes a write, and the peer's window closes after the first one.
    let mock = Mock::new().with_max_write(100).with_room(100);
    let mut conn = coalescing(mock);
    let (head, body) = (head(), pattern(2048));
    poll_up_to(conn.write_all(&head), 1).unwrap().unwrap();
    // 100 head bytes go down, then the merge waits on the stack and is dropped.
    assert!(poll_up_to(conn.write(&body), 3).is_none());
    assert_eq!(conn.get_ref().written().len(), 100);
    assert_eq!(conn.held(), 156);
    conn.get_ref().set_room(None);
    poll_up_to(conn.write_all(&body), 100).unwrap().unwrap();
    poll_up_to(conn.flush(), 100).unwrap().unwrap();
    assert_eq!(conn.get_ref().written(), [head, body].concat());
    assert!(conn.get_ref().write_sizes().iter().all(|&p| p <= 100));
}

/// Random write sizes, random short writes below, random pending polls and random
/// cancellations: whatever the caller was told was written reaches the stack exactly
/// once and in order.
#[test]
fn random_cancellations_keep_the_byte_stream_exact() {
    let data = pattern(200_000);
    for seed in 1..=200u64 {
        let mut rng = Rng::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mock = Mock::new()
            .with_random_write_pending(Rng::new(seed))
            .with_max_write(1 + rng.below(3000) as usize);
        let mut conn = coalescing(mock);
        let mut pos = 0;
        let mut cancels = 0;
        while pos < data.len() {
            let max = if rng.below(2) == 0 { 300 } else { 6000 };
            let len = (1 + rng.below(max) as usize).min(data.len() - pos);
            let polls = 1 + rng.below(3) as usize;
            match poll_up_to(conn.write(&data[pos..pos + len]), polls) {
                Some(n) => pos += n.unwrap(),
                None => cancels += 1,
            }
            if rng.below(20) == 0 && poll_up_to(conn.flush(), polls).is_none() {
                cancels += 1;
            }
        }
        conn.get_ref().set_random_write_pending(None);
        poll_up_to(conn.flush(), 10_000).unwrap().unwrap();
        assert_eq!(conn.get_ref().written().len(), pos, "seed {seed}");
        assert!(
            conn.get_ref().written() == data,
            "seed {seed}: stream differs"
        );
        if seed == 1 {
            println!(
                "seed 1: {cancels} cancelled calls, {} pieces",
                conn.get_ref().write_sizes().len()
            );
        }
    }
}
