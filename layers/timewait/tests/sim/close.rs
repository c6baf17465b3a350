//! On the real embassy-net stack in the simulated network (20 ms RTT, 10 Mbit/s): a
//! server-side close gives the socket back within the linger plus one round trip,
//! whatever the peer does, and without losing a byte of the response; within one round
//! trip once the peer has acknowledged everything. Raw, the same server holds the slot
//! in FIN_WAIT_2 behind a silent client, in TIME_WAIT for 10 s behind a polite one, and
//! forever behind a vanished one.

use crate::common::*;
use embassy_time::with_timeout;
use tcp_layers_core::{CloseReason, Layer, Write};
use tcp_layers_sim::client::{ClientBuffers, ClientOptions, PeerEnd, Session};
use tcp_layers_sim::responder::{self, Routes};
use tcp_layers_sim::server;
use tcp_layers_sim::{Duration, Instant, LinkConfig, Net, Timer, run, spawn};
use tcp_layers_timewait::TimeWaitLayer;

const SMALL: &str = "/bytes/2048";

/// From the server's `end` to its only slot accepting again (`None`: not within 120 s).
fn close_to_listen(variant: Server, after: After) -> Option<Duration> {
    run(async move {
        let net = Net::new(LinkConfig::wifi());
        let device = net.server();
        let ended = stamp();
        let stamp_in_handler = ended.clone();
        let slots = server::spawn_server(device.stack, PORT, 1, async move |socket| {
            variant.serve(socket, &stamp_in_handler).await
        });
        let phone = net.client();
        let client = spawn(close_request(
            phone.stack,
            device.addr(PORT),
            SMALL,
            after,
            GIVE_UP * 2,
        ));
        let back = slot_back_after(&slots, &ended).await;
        if after == After::Close {
            let saw = client.await.expect("client result");
            let r = saw.response.expect("complete response");
            assert_eq!((r.status, r.body_len), (200, 2048));
        }
        back
    })
}

/// The server closes after the response and the client stays silent: raw, the socket
/// waits in FIN_WAIT_2 for a FIN that never comes and accept() answers InvalidState
/// until the end of the test; layered, it is accepting again once the client's stack
/// acknowledged the FIN, within a round trip plus its delayed ACK.
#[test]
fn silent_client_socket_accepting_again_within_one_round_trip() {
    let raw = close_to_listen(Server::Raw, After::StaySilent);
    let layered = close_to_listen(Server::Layered, After::StaySilent);
    let bound = RTT + ACK_DELAY;
    println!(
        "close_to_listen, silent client: raw {}, layered {} (bound RTT + delayed ACK = {} ms)",
        ms(raw),
        ms(layered),
        bound.as_millis()
    );
    assert_eq!(raw, None, "raw must stay stuck in FIN_WAIT_2");
    let layered = layered.expect("layered must accept again");
    assert!(layered <= bound, "layered took {} ms", layered.as_millis());
    // The response was acknowledged before the close (the responder flushes it), so
    // nothing is left to linger for: the wait is the FIN's round trip, not the linger
    // (2 s) spent on a FIN the client never sends. A slow reader, whose response is
    // still unacknowledged, still gets the linger: `a_slow_reader_still_gets_the_linger`.
    assert!(layered >= RTT);
}

/// Answers one keep-alive request (`GET /bytes/<n>`) and flushes it, then leaves the
/// connection idle for `idle` before it ends it for `reason`.
async fn serve_one_then_idle<C: tcp_layers_core::Connection>(
    conn: &mut C,
    idle: Duration,
    reason: CloseReason,
) {
    let mut head = [0u8; 512];
    let mut filled = 0;
    while !head[..filled].windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut head[filled..]).await {
            Ok(0) | Err(_) => return conn.end(CloseReason::PeerReset).await,
            Ok(n) => filled += n,
        }
    }
    let text = std::str::from_utf8(&head[..filled]).unwrap_or("");
    let path = text.split(' ').nth(1).unwrap_or("/");
    let body = responder::body_of(path, &Routes::new()).unwrap_or_default();
    let response_head = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: keep-alive\r\n\r\n",
        body.len()
    );
    let _ = conn.write_all(response_head.as_bytes()).await;
    let _ = conn.write_all(&body).await;
    let _ = conn.flush().await;
    Timer::after(idle).await;
    conn.end(reason).await;
}

/// From the server's `end` of an idle keep-alive connection (its client sends nothing
/// and never its FIN, as a browser's idle socket) to the slot accepting again.
fn idle_keep_alive_end_to_listen(variant: Server, reason: CloseReason) -> Option<Duration> {
    run(async move {
        let net = Net::new(LinkConfig::wifi());
        let device = net.server();
        let ended = stamp();
        let ended_in = ended.clone();
        let slots = server::spawn_server(device.stack, PORT, 1, async move |socket| {
            let idle = Duration::from_millis(500);
            match variant {
                Server::Raw => {
                    serve_one_then_idle(&mut EndStamp::new(socket, &ended_in, None), idle, reason)
                        .await
                }
                _ => {
                    let conn = TimeWaitLayer::new().layer(socket);
                    serve_one_then_idle(&mut EndStamp::new(conn, &ended_in, None), idle, reason)
                        .await
                }
            }
        });
        let browser = net.client();
        let server_addr = device.addr(PORT);
        spawn(async move {
            let options = ClientOptions::new();
            let mut buffers = ClientBuffers::new(&options);
            let mut session = Session::connect(browser.stack, &mut buffers, server_addr, options)
                .await
                .expect("connect");
            let r = session.get(SMALL).await.expect("a response");
            assert_eq!((r.status, r.body_len), (200, 2048));
            // Idle, and silent after the server's FIN: its stack acknowledges the FIN,
            // the application does not close.
            Timer::after(GIVE_UP * 2).await;
        });
        slot_back_after(&slots, &ended).await
    })
}

/// The server ends an idle keep-alive connection (an eviction, or its own keep-alive
/// timeout) and the browser does not answer the FIN with its own: the slot accepts
/// again within one round trip plus the client's delayed ACK, not after a linger (2 s)
/// spent waiting for the browser's FIN; raw waits in FIN_WAIT_2 for good.
#[test]
fn idle_keep_alive_ended_by_the_server_accepts_again_within_one_round_trip() {
    let bound = RTT + ACK_DELAY;
    for reason in [CloseReason::Evicted, CloseReason::LocalClose] {
        let raw = idle_keep_alive_end_to_listen(Server::Raw, reason);
        let layered = idle_keep_alive_end_to_listen(Server::Layered, reason);
        println!(
            "idle keep-alive ended as {reason}, browser silent: slot accepting raw {}, \
             layered {} (bound RTT + delayed ACK = {} ms)",
            ms(raw),
            ms(layered),
            bound.as_millis()
        );
        assert_eq!(raw, None, "raw must stay stuck in FIN_WAIT_2");
        let layered = layered.expect("layered must accept again");
        assert!(
            layered <= bound,
            "{reason}: layered took {} ms",
            layered.as_millis()
        );
    }
}

/// What a slow reader got: the body's length and checksum, how the server ended, and
/// when its last body byte arrived.
struct SlowRead {
    body_len: usize,
    checksum: u64,
    end: PeerEnd,
    last_byte: Instant,
}

/// How often the slow reader takes 1 KiB.
const READ_EVERY: Duration = Duration::from_millis(100);

/// A client with a 1 KiB receive buffer that asks for `path` with `Connection: close`
/// and reads 1 KiB every [`READ_EVERY`] (10 KiB/s), to the server's FIN or RST.
async fn slow_read(
    stack: embassy_net::Stack<'static>,
    server: std::net::SocketAddr,
    path: &str,
) -> SlowRead {
    let options = ClientOptions::new().with_rx_buffer(1024);
    let mut buffers = ClientBuffers::new(&options);
    let mut session = Session::connect(stack, &mut buffers, server, options)
        .await
        .expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: device\r\nConnection: close\r\n\r\n");
    session
        .socket()
        .write_all(request.as_bytes())
        .await
        .expect("request sent");
    let mut received = Vec::new();
    let mut last_byte = Instant::now();
    let mut chunk = [0u8; 1024];
    let end = loop {
        Timer::after(READ_EVERY).await;
        match session.socket().read(&mut chunk).await {
            Ok(0) => break PeerEnd::Fin,
            Ok(n) => {
                received.extend_from_slice(&chunk[..n]);
                last_byte = Instant::now();
            }
            Err(_) => break PeerEnd::Reset,
        }
    };
    let body = received
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(&[][..], |p| &received[p + 4..]);
    SlowRead {
        body_len: body.len(),
        checksum: responder::checksum(body),
        end,
        last_byte,
    }
}

/// A response still in flight when the server ends the connection, to a client that
/// reads it slowly (10 KiB/s, 16 KiB with up to 8 KiB still in the transmit buffer):
/// the layer keeps lingering while the data is unacknowledged, so the client gets every
/// byte and the slot comes back only after the client took the last one. An RST at
/// once (the zero linger) cuts the response.
#[test]
fn a_slow_reader_still_gets_the_linger() {
    const PATH: &str = "/bytes/16384";
    let expected = responder::checksum(&responder::body_of(PATH, &Routes::new()).unwrap());
    let measure = |variant: Server| {
        run(async move {
            let net = Net::new(LinkConfig::wifi());
            let device = net.server();
            let ended = stamp();
            let ended_in = ended.clone();
            let slots = server::spawn_server(device.stack, PORT, 1, async move |socket| {
                variant.write_and_end(socket, &ended_in).await
            });
            let reader = net.client();
            let read = spawn(slow_read(reader.stack, device.addr(PORT), PATH));
            let back = slot_back_after(&slots, &ended).await;
            let read = read.await.expect("the reader ran");
            let ended = ended.get().expect("the server ended");
            (read, back, ended)
        })
    };
    let (layered, back, ended) = measure(Server::Layered);
    let (at_once, _, _) = measure(Server::AbortAtOnce);
    let back = back.expect("layered must accept again");
    let last_byte = layered.last_byte - ended;
    println!(
        "slow reader (10 KiB/s) of 16 KiB closed by the server: layered {} body bytes \
         ({}), last byte {} after end, slot accepting {} after end; RST at once: {} body \
         bytes ({:?})",
        layered.body_len,
        if layered.checksum == expected {
            "checksum ok"
        } else {
            "WRONG"
        },
        ms(Some(last_byte)),
        ms(Some(back)),
        at_once.body_len,
        at_once.end
    );
    assert_eq!((layered.body_len, layered.checksum), (16384, expected));
    // The reader's stack holds the whole response and the FIN before the RST comes:
    // the application reads all of it, then the end of the stream.
    assert_eq!(layered.end, PeerEnd::Fin);
    // Not cut short: the server waits until the reader's stack acknowledged the last
    // bytes, which it does once the application made room for them, at most one read
    // before it reads them; then the FIN's round trip. All within the linger.
    assert!(
        back + READ_EVERY >= last_byte,
        "the slot came back before the reader made room for the last bytes"
    );
    assert!(back <= TimeWaitLayer::DEFAULT_LINGER + RTT);
    assert!(
        at_once.body_len < 16384,
        "the baseline must lose the tail, or this test proves nothing"
    );
}

/// The server closes after the response and the client closes as soon as it reads the
/// FIN (a browser): layered, the slot is back within about one round trip. Raw does as
/// well in this loop (smoltcp's listen() resets a TIME_WAIT socket); the next test
/// shows the TIME_WAIT that raw leaves behind when the socket is not reused at once.
#[test]
fn closing_client_socket_accepting_again_within_one_round_trip() {
    let raw = close_to_listen(Server::Raw, After::Close);
    let layered = close_to_listen(Server::Layered, After::Close);
    println!(
        "close_to_listen, client closes: raw {} (TIME_WAIT reset by accept), layered {}",
        ms(raw),
        ms(layered)
    );
    let layered = layered.expect("layered must accept again");
    assert!(
        layered <= RTT * 2,
        "layered took {} ms",
        layered.as_millis()
    );
}

/// From the server's `end` to its socket holding no connection, for a handler that
/// watches its own socket after serving (a server that does not call accept() on it
/// again at once: spawn-per-connection, lwIP's closed PCBs).
fn close_to_free(variant: Server, after: After) -> Option<Duration> {
    run(async move {
        let net = Net::new(LinkConfig::wifi());
        let device = net.server();
        let ended = stamp();
        let freed = stamp();
        let (ended_in, freed_in) = (ended.clone(), freed.clone());
        server::spawn_server(device.stack, PORT, 1, async move |socket| {
            variant.serve(socket, &ended_in).await;
            freed_in.set(wait_free(socket, GIVE_UP).await);
        });
        let phone = net.client();
        let client = close_request(phone.stack, device.addr(PORT), SMALL, after, GIVE_UP * 2);
        if after == After::Close {
            let saw = client.await;
            assert_eq!(saw.response.expect("complete response").body_len, 2048);
        } else {
            spawn(client);
        }
        // Long enough for raw's TIME_WAIT (10 s) and for the give-up bound.
        let _ = with_timeout(GIVE_UP + Duration::from_secs(1), async {
            while freed.get().is_none() {
                tcp_layers_sim::Timer::after(Duration::from_millis(5)).await;
            }
        })
        .await;
        let ended = ended.get().expect("the server ended the connection");
        freed.get().map(|f| f - ended)
    })
}

/// The client closes politely: raw, the server's socket then sits in TIME_WAIT for
/// smoltcp's 10 s before it is `Closed`; layered, it is `Closed` when `end` returns.
#[test]
fn closing_client_socket_free_without_time_wait() {
    let raw = close_to_free(Server::Raw, After::Close);
    let layered = close_to_free(Server::Layered, After::Close);
    println!(
        "close_to_free, client closes: raw {} (TIME_WAIT), layered {}",
        ms(raw),
        ms(layered)
    );
    let raw = raw.expect("raw leaves TIME_WAIT after 10 s");
    assert!(
        raw >= Duration::from_secs(10),
        "raw TIME_WAIT {} ms",
        raw.as_millis()
    );
    let layered = layered.expect("layered frees the socket");
    assert!(
        layered <= RTT * 2,
        "layered took {} ms",
        layered.as_millis()
    );
}

/// The peer vanishes once it has acknowledged the whole response, as the server
/// closes: raw, `close(); flush()` never returns (the FIN is retransmitted to no one)
/// and the slot is lost; layered, the linger expires and the RST frees the socket.
#[test]
fn vanished_peer_socket_free_within_linger() {
    let measure = |variant: Server| {
        run(async move {
            let net = Net::new(LinkConfig::wifi());
            let device = net.server();
            let ended = stamp();
            let ended_in = ended.clone();
            let vanish = net.clone();
            let slots = server::spawn_server(device.stack, PORT, 1, async move |socket| {
                variant
                    .serve_vanishing(socket, &ended_in, Some(vanish.clone()))
                    .await
            });
            let phone = net.client();
            spawn(close_request(
                phone.stack,
                device.addr(PORT),
                SMALL,
                After::StaySilent,
                GIVE_UP * 2,
            ));
            slot_back_after(&slots, &ended).await
        })
    };
    let raw = measure(Server::Raw);
    let layered = measure(Server::Layered);
    let bound = TimeWaitLayer::DEFAULT_LINGER + RTT;
    println!(
        "vanished_peer slot_free: raw {}, layered {} (bound linger + RTT = {} ms)",
        ms(raw),
        ms(layered),
        bound.as_millis()
    );
    assert_eq!(raw, None, "raw must stay stuck flushing to nobody");
    let layered = layered.expect("layered must free the slot");
    assert!(layered <= bound, "layered took {} ms", layered.as_millis());
}

/// The RST comes only after the peer acknowledged everything: a 64 KiB response closed
/// right after its last `write_all`, without a flush (up to 8 KiB still in the socket's
/// transmit buffer), reaches the client whole. The quick fix without the linger (RST
/// at once) cuts it; raw keeps it whole but holds the slot (the tests above).
#[test]
fn no_byte_of_a_complete_response_is_lost() {
    const PATH: &str = "/bytes/65536";
    let fetch = |variant: Server| {
        run(async move {
            let net = Net::new(LinkConfig::wifi());
            let device = net.server();
            let ended = stamp();
            let ended_in = ended.clone();
            server::spawn_server(device.stack, PORT, 1, async move |socket| {
                variant.write_and_end(socket, &ended_in).await
            });
            let phone = net.client();
            close_request(phone.stack, device.addr(PORT), PATH, After::Close, GIVE_UP).await
        })
    };
    let expected = responder::checksum(&responder::body_of(PATH, &Routes::new()).unwrap());
    let layered = fetch(Server::Layered);
    let at_once = fetch(Server::AbortAtOnce);
    let raw = fetch(Server::Raw);
    let describe = |saw: &ClientSaw| match saw.response {
        Ok(r) => format!(
            "{} of 65536 body bytes, checksum {}",
            r.body_len,
            if r.checksum == expected {
                "ok"
            } else {
                "WRONG"
            }
        ),
        Err(e) => format!("error: {e}"),
    };
    println!(
        "64 KiB response then close: layered {}; RST at once {}; raw {}",
        describe(&layered),
        describe(&at_once),
        describe(&raw)
    );
    let r = layered.response.expect("layered: complete response");
    assert_eq!((r.status, r.body_len, r.checksum), (200, 65536, expected));
    assert!(
        at_once.response.is_err(),
        "the baseline must lose the tail, or this test proves nothing"
    );
}

/// On a lossy link (5 % each way, several seeds) the linger still waits for the
/// retransmitted tail: every byte arrives, every slot comes back.
#[test]
fn no_byte_lost_on_a_lossy_link() {
    const PATH: &str = "/bytes/32768";
    let expected = responder::checksum(&responder::body_of(PATH, &Routes::new()).unwrap());
    for seed in 1..=5u64 {
        let (saw, free) = run(async move {
            let net = Net::new(LinkConfig::wifi().with_loss(0.05).with_seed(seed));
            let device = net.server();
            let ended = stamp();
            let freed = stamp();
            let (ended_in, freed_in) = (ended.clone(), freed.clone());
            server::spawn_server(device.stack, PORT, 1, async move |socket| {
                Server::Layered.write_and_end(socket, &ended_in).await;
                freed_in.set(Some(Instant::now()));
            });
            let phone = net.client();
            let saw =
                close_request(phone.stack, device.addr(PORT), PATH, After::Close, GIVE_UP).await;
            let _ = with_timeout(Duration::from_secs(10), async {
                while freed.get().is_none() {
                    tcp_layers_sim::Timer::after(Duration::from_millis(5)).await;
                }
            })
            .await;
            (saw, freed.get().zip(ended.get()).map(|(f, e)| f - e))
        });
        let r = saw.response.expect("complete response");
        println!(
            "seed {seed}, 5 % loss: {} body bytes, checksum {}, socket free {} after end",
            r.body_len,
            if r.checksum == expected {
                "ok"
            } else {
                "WRONG"
            },
            ms(free)
        );
        assert_eq!((r.body_len, r.checksum), (32768, expected));
        assert!(free.expect("freed") <= TimeWaitLayer::DEFAULT_LINGER + RTT);
    }
}
