//! The symptom, on the real embassy-net stack in the simulated network: four clients
//! fetch four different 8 KiB resources at once from a server whose handlers build
//! each body in a scratch buffer and send it in pieces.
//!
//! With one shared scratch buffer (what a server without a pool does to save RAM), a
//! handler refills it while another is still sending from it: clients receive bytes of
//! someone else's response. With a buffer from the pool each handler sends its own.
use std::cell::RefCell;
use std::rc::Rc;

use embassy_net::tcp::TcpSocket;
use embedded_io_async::Write;
use tcp_layers_pool::Pool;
use tcp_layers_sim::responder::checksum;
use tcp_layers_sim::{LinkConfig, Net, client, run, server, spawn};

const BODY: usize = 8192;
const PIECE: usize = 1024;
const CLIENTS: usize = 4;

/// Resource `k`: byte i = (i * k + k) % 251, different for every k.
fn fill(body: &mut [u8], k: usize) {
    for (i, b) in body.iter_mut().enumerate() {
        *b = ((i * k + k) % 251) as u8;
    }
}

fn expected(k: usize) -> u64 {
    let mut body = vec![0u8; BODY];
    fill(&mut body, k);
    checksum(&body)
}

/// Reads a request head and returns `k` from `GET /r/<k>`.
async fn read_request(socket: &mut TcpSocket<'_>) -> Option<usize> {
    let mut head = [0u8; 512];
    let mut len = 0;
    while !head[..len].windows(4).any(|w| w == b"\r\n\r\n") {
        let n = socket.read(&mut head[len..]).await.ok()?;
        if n == 0 {
            return None;
        }
        len += n;
    }
    let text = std::str::from_utf8(&head[..len]).ok()?;
    text.split(' ').nth(1)?.strip_prefix("/r/")?.parse().ok()
}

async fn write_head(socket: &mut TcpSocket<'_>) -> Option<()> {
    let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {BODY}\r\nConnection: close\r\n\r\n");
    socket.write_all(head.as_bytes()).await.ok()
}

#[derive(Clone, Copy, Debug)]
enum Scratch {
    /// One buffer shared by every handler.
    Shared,
    /// A buffer per response, from the pool.
    Pooled,
}

/// Runs the scenario and returns how many of the responses arrived corrupted.
fn corrupted_responses(scratch: Scratch) -> usize {
    run(async move {
        static POOL: Pool<CLIENTS, BODY> = Pool::new();
        let shared = Rc::new(RefCell::new(vec![0u8; BODY]));
        let net = Net::new(LinkConfig::wifi());
        let device = net.server();
        // A 2 KiB send buffer, as on an ESP32: a body goes out over several waits.
        let config = server::ServerConfig::new(80, CLIENTS).with_buffers(2048, 2048);
        server::spawn_server_with(
            device.stack,
            config,
            async move |socket: &mut TcpSocket<'_>| {
                let Some(k) = read_request(socket).await else {
                    return;
                };
                if write_head(socket).await.is_none() {
                    return;
                }
                match scratch {
                    Scratch::Shared => {
                        fill(&mut shared.borrow_mut(), k);
                        for start in (0..BODY).step_by(PIECE) {
                            let piece = shared.borrow()[start..start + PIECE].to_vec();
                            if socket.write_all(&piece).await.is_err() {
                                return;
                            }
                        }
                    }
                    Scratch::Pooled => {
                        let mut buf = POOL.take().await;
                        fill(&mut buf[..], k);
                        for piece in buf.chunks(PIECE) {
                            if socket.write_all(piece).await.is_err() {
                                return;
                            }
                        }
                    }
                }
                let _ = socket.flush().await;
            },
        );
        let handles: Vec<_> = (1..=CLIENTS)
            .map(|k| {
                let stack = net.client().stack;
                let addr = device.addr(80);
                spawn(async move { (k, client::get(stack, addr, &format!("/r/{k}")).await) })
            })
            .collect();
        let mut corrupted = 0;
        for handle in handles {
            let (k, response) = handle.await.expect("the client task ran");
            let response = response.expect("a response");
            assert_eq!(response.body_len, BODY);
            if response.checksum != expected(k) {
                corrupted += 1;
            }
        }
        if let Scratch::Pooled = scratch {
            assert_eq!(POOL.in_use(), 0, "every buffer went back to the pool");
            println!(
                "pool: peak {} of {CLIENTS} buffers in use",
                POOL.peak_in_use()
            );
        }
        corrupted
    })
}

#[test]
fn a_shared_scratch_buffer_corrupts_concurrent_responses_the_pool_does_not() {
    let shared = corrupted_responses(Scratch::Shared);
    let pooled = corrupted_responses(Scratch::Pooled);
    println!(
        "{CLIENTS} concurrent 8 KiB responses: corrupted with one shared scratch buffer {shared}, \
         with the pool {pooled}"
    );
    assert!(
        shared > 0,
        "the shared buffer should corrupt at least one response"
    );
    assert_eq!(pooled, 0, "no response may carry another one's bytes");
}
