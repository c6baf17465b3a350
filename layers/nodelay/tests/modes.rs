//! The layer sets the asked Nagle mode once, at wrap, and passes everything else through.
use embassy_futures::block_on;
use tcp_layers_core::{CloseReason, Connection, Layer, Read, Write};
use tcp_layers_mock::Mock;
use tcp_layers_nodelay::{Nagle, NoDelay, NoDelayLayer};

#[test]
fn default_turns_nagle_off_at_wrap() {
    let conn = NoDelayLayer::new().layer(Mock::new());
    println!(
        "set_nodelay calls at wrap: {:?}",
        conn.get_ref().nodelay_calls()
    );
    assert_eq!(conn.get_ref().nodelay_calls(), [true]);
    assert_eq!(NoDelayLayer::default(), NoDelayLayer::new());
    assert_eq!(NoDelayLayer::new().nagle(), Nagle::Off);
}

#[test]
fn keep_nagle_sets_nagle_on_explicitly() {
    // A reused socket keeps the mode of its previous connection, so the opt-out must
    // set it too.
    let conn = NoDelayLayer::keep_nagle().layer(Mock::new());
    assert_eq!(conn.get_ref().nodelay_calls(), [false]);
    let conn = NoDelayLayer::with_nagle(Nagle::Off).layer(Mock::new());
    assert_eq!(conn.get_ref().nodelay_calls(), [true]);
}

#[test]
fn everything_else_passes_through() {
    let mock = Mock::new()
        .with_read(b"GET / HTTP/1.1\r\n\r\n")
        .with_close_reason(CloseReason::Evicted);
    let mut conn = NoDelayLayer::new().layer(mock);
    block_on(async {
        let mut buf = [0u8; 64];
        let n = conn.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"GET / HTTP/1.1\r\n\r\n");
        conn.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
        conn.flush().await.unwrap();
    });
    assert_eq!(conn.get_ref().written(), b"HTTP/1.1 200 OK\r\n\r\n");
    assert_eq!(conn.close_reason(), Some(CloseReason::Evicted));
    conn.set_nodelay(false).unwrap();
    conn.close_write();
    conn.abort();
    let mock = conn.into_inner();
    assert_eq!(mock.nodelay_calls(), [true, false]);
    assert_eq!((mock.close_writes(), mock.aborts()), (1, 1));
}

#[test]
fn wrapper_adds_no_bytes() {
    let extra = size_of::<NoDelay<Mock>>() - size_of::<Mock>();
    println!("nodelay wrapper: {extra} bytes beyond the connection");
    assert_eq!(extra, 0);
}
