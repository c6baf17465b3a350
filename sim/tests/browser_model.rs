//! The simulated browser against the behaviours `tests/browser_model.py` measures on
//! headless Chromium: each test is one measured figure, reproduced by the model.

use embedded_io_async::Write;
use tcp_layers_sim::client::{ConnectionPool, PoolConfig};
use tcp_layers_sim::server::spawn_server;
use tcp_layers_sim::{LinkConfig, Net, run};

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok";

/// `retried_on_reused_reset` = 1 and `fetch_ok_after_reset` = 1: a request on a reused
/// keep-alive connection that the server resets before any byte of the answer is sent
/// again once, on a new connection, and succeeds there.
#[test]
fn a_request_on_a_reused_connection_the_server_resets_is_sent_again_once() {
    let (first, second, stats, accepted) = run(async {
        let net = Net::new(LinkConfig::wifi());
        let device = net.server();
        // Answers the first request of each connection and resets it at the second.
        let server = spawn_server(device.stack, 80, 2, async |socket| {
            let mut seen = Vec::new();
            let mut chunk = [0u8; 512];
            let mut requests = 0;
            loop {
                match socket.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => seen.extend_from_slice(&chunk[..n]),
                }
                while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                    seen.drain(..end + 4);
                    requests += 1;
                    if requests > 1 {
                        socket.abort();
                        let _ = socket.flush().await;
                        return;
                    }
                    let _ = socket.write_all(OK).await;
                    let _ = socket.flush().await;
                }
            }
        });
        let browser = net.client();
        let pool = ConnectionPool::new(browser.stack, device.addr(80), PoolConfig::new());
        let first = pool.get("/").await.map(|r| r.status);
        let second = pool.get("/").await.map(|r| r.status);
        let stats = pool.stats();
        pool.close().await;
        (first, second, stats, server.accepted())
    });
    println!("first {first:?}, second {second:?}, {stats:?}, accepted {accepted}");
    assert_eq!(first, Ok(200));
    assert_eq!(second, Ok(200), "the request sent again succeeds");
    assert_eq!((stats.opened, stats.retried), (2, 1));
    assert_eq!(accepted, 2);
}
