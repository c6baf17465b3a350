//! The tokio adapter against real OS sockets on 127.0.0.1: FIN, RST and TCP_NODELAY
//! must be the real socket operations, not bookkeeping.
#![cfg(feature = "tokio")]

use std::io::ErrorKind;

use tcp_layers_core::tokio_stream::TokioStream;
use tcp_layers_core::{Connection, Read, TcpState, Write};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn pair() -> (TokioStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (client, server) = tokio::join!(TcpStream::connect(addr), listener.accept());
    (TokioStream::new(server.unwrap().0), client.unwrap())
}

#[tokio::test]
async fn abort_resets_the_peer() {
    let (mut server, mut client) = pair().await;
    server.write_all(b"partial").await.unwrap();
    let mut buf = [0u8; 7];
    client.read_exact(&mut buf).await.unwrap();
    server.abort();
    assert_eq!(server.state(), TcpState::Closed);
    let err = client.read(&mut buf).await.expect_err("an RST, not a FIN");
    println!("peer saw: {err}");
    assert_eq!(err.kind(), ErrorKind::ConnectionReset);
    // The adapter's own I/O after abort fails with a clear error and never panics.
    assert!(server.write(b"x").await.is_err());
    assert!(server.flush().await.is_ok());
}

#[tokio::test]
async fn close_write_sends_fin_and_keeps_reading() {
    let (mut server, mut client) = pair().await;
    server.write_all(b"response").await.unwrap();
    server.close_write();
    assert_eq!(server.state(), TcpState::FinWait1);
    let mut got = Vec::new();
    client.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"response");
    client.write_all(b"late").await.unwrap();
    client.shutdown().await.unwrap();
    let mut buf = [0u8; 8];
    let n = server.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"late");
    assert_eq!(server.read(&mut buf).await.unwrap(), 0);
    assert_eq!(server.state(), TcpState::TimeWait);
}

#[tokio::test]
async fn nodelay_is_the_socket_option() {
    let (mut server, _client) = pair().await;
    assert!(!server.get_ref().unwrap().nodelay().unwrap());
    server.set_nodelay(true).unwrap();
    assert!(server.get_ref().unwrap().nodelay().unwrap());
    server.set_nodelay(false).unwrap();
    assert!(!server.get_ref().unwrap().nodelay().unwrap());
}

#[tokio::test]
async fn peer_fin_is_close_wait_and_endpoints_are_known() {
    let (mut server, client) = pair().await;
    assert_eq!(server.remote(), Some(client.local_addr().unwrap()));
    assert_eq!(server.local(), Some(client.peer_addr().unwrap()));
    drop(client);
    let mut buf = [0u8; 4];
    assert_eq!(server.read(&mut buf).await.unwrap(), 0);
    assert_eq!(server.state(), TcpState::CloseWait);
}
