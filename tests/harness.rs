//! The simulated network behaves like the device: each test reproduces one fact about
//! embassy-net 0.9 / smoltcp that the layers rely on, on real stacks over the simulated
//! link, and prints the figure it measures.
use std::net::SocketAddr;

use tcp_layers_core::TcpState;
use tcp_layers_sim::client::{
    self, AfterLoad, ClientBuffers, ClientError, ClientOptions, Page, PeerEnd, Session,
};
use tcp_layers_sim::embassy_net::tcp::TcpSocket;
use tcp_layers_sim::responder::{self, Routes};
use tcp_layers_sim::{Duration, Host, Instant, LinkConfig, Net, Timer, run, server, spawn};

const PORT: u16 = 80;

/// Time to last byte of `GET /bytes/2048` on the 20 ms Wi-Fi link, Nagle on or off in
/// the server's handler.
fn two_kib_response(nagle: bool) -> Duration {
    run(async move {
        let net = Net::new(LinkConfig::wifi());
        let device = net.server();
        server::spawn_server(device.stack, PORT, 2, async move |s| {
            s.set_nagle_enabled(nagle);
            responder::serve(s, &Routes::new()).await;
        });
        let phone = net.client();
        let r = client::get(phone.stack, device.addr(PORT), "/bytes/2048")
            .await
            .unwrap();
        assert_eq!(r.body_len, 2048);
        r.time_to_last_byte
    })
}

/// (a) Nagle holds the end of a response for a delayed ACK.
///
/// The responder writes the head (~100 B) and the 2048-byte body with two `write_all`
/// calls; both land in the socket's buffer before the stack runs, so the stack cuts
/// 2.1 KiB into a full 1460-byte segment and a ~690-byte tail. smoltcp's Nagle check
/// (`nagle && data_in_flight && !can_send_full`) holds the tail until the first
/// segment is acknowledged, and the client, having received a single segment, delays
/// that ACK by 10 ms. Had the head gone out alone (a stack poll between the writes),
/// a small body would be held the same way behind the unacknowledged head. Nagle off,
/// both segments leave back to back. On the 20 ms link the tail arrives ~30 ms later
/// with Nagle: the client's 10 ms delayed ACK plus the ACK's and the tail's trips.
#[test]
fn a_nagle_holds_the_response_tail_for_a_delayed_ack() {
    let on = two_kib_response(true);
    let off = two_kib_response(false);
    println!(
        "GET /bytes/2048 over 20 ms RTT: time to last byte {} us with Nagle, {} us without (+{} us)",
        on.as_micros(),
        off.as_micros(),
        on.as_micros() as i64 - off.as_micros() as i64
    );
    assert!(
        on >= off + Duration::from_millis(10),
        "Nagle must cost at least one delayed ACK (10 ms)"
    );
}

/// (b) With every listening socket taken by an idle keep-alive connection, the next
/// connection's SYN is answered with RST: no listener, no backlog.
#[test]
fn b_all_slots_busy_means_the_next_syn_is_reset() {
    const SLOTS: usize = 4;
    let (refused, rsts, held_open, elapsed) = run(async {
        let net = Net::new(LinkConfig::wifi());
        let device = net.server();
        let srv = server::spawn_server(device.stack, PORT, SLOTS, async |s| {
            responder::serve(s, &Routes::new()).await;
        });
        srv.wait_listening(SLOTS).await;
        // A browser whose page load leaves SLOTS keep-alive connections idle.
        let browser = net.client();
        let page = Page::default().with_connections(SLOTS);
        let load =
            client::browser(browser.stack, device.addr(PORT), &page, AfterLoad::StayIdle).await;
        assert!(load.ok, "{:?}", load.errors);
        // A second device.
        let second = net.client();
        let t0 = Instant::now();
        let refused = client::get(second.stack, device.addr(PORT), "/").await;
        let elapsed = Instant::now() - t0;
        let rsts: Vec<_> = net
            .trace()
            .into_iter()
            .filter(|p| p.flags.rst() && *p.dst.ip() == second.ip)
            .collect();
        for p in &rsts {
            println!("{p}");
        }
        (refused, rsts.len(), load.connections.open(), elapsed)
    });
    println!(
        "{SLOTS} slots held by {held_open} idle connections; the next connect: {refused:?} after {} us, {rsts} RST(s) to it",
        elapsed.as_micros()
    );
    assert_eq!(held_open, SLOTS);
    assert_eq!(refused, Err(ClientError::Refused));
    assert!(rsts >= 1);
}

/// Accepts one connection on a bare socket of `device` (no accept loop around it).
async fn accept_one<'a>(device: &Host, rx: &'a mut [u8], tx: &'a mut [u8]) -> TcpSocket<'a> {
    let mut s = TcpSocket::new(device.stack, rx, tx);
    s.accept(PORT).await.unwrap();
    s
}

fn state(s: &TcpSocket<'_>) -> TcpState {
    s.state().into()
}

/// (c) After the server closes first and the client answers with its FIN, the server's
/// socket lingers in TIME_WAIT for 10 s (smoltcp's CLOSE_DELAY), then is Closed.
#[test]
fn c_server_side_close_lingers_ten_seconds_in_time_wait() {
    let (before, after, linger) = run(async {
        let net = Net::new(LinkConfig::wifi());
        let device = net.server();
        let server_addr = device.addr(PORT);
        let phone = net.client();
        let client = spawn(async move {
            let options = ClientOptions::new();
            let mut buffers = ClientBuffers::new(&options);
            let mut session = Session::connect(phone.stack, &mut buffers, server_addr, options)
                .await
                .unwrap();
            // The server's FIN arrives; the client closes its side too.
            assert_eq!(
                session.wait_server_end(Duration::from_secs(5)).await,
                PeerEnd::Fin
            );
            session.close().await;
        });
        let (mut rx, mut tx) = ([0u8; 1024], [0u8; 1024]);
        let mut s = accept_one(&device, &mut rx, &mut tx).await;
        s.close();
        s.flush().await.unwrap();
        client.await.unwrap();
        // The client's FIN reached the server at the time the trace says; that is when
        // smoltcp enters TIME_WAIT.
        let fin_in = net
            .trace()
            .into_iter()
            .filter(|p| p.flags.fin() && *p.dst.ip() == device.ip)
            .find_map(|p| match p.fate {
                tcp_layers_sim::Fate::Delivered(at) => Some(at),
                _ => None,
            })
            .expect("the client's FIN reached the server");
        Timer::at(fin_in + Duration::from_secs(10) - Duration::from_millis(1)).await;
        let before = state(&s);
        Timer::at(fin_in + Duration::from_secs(10) + Duration::from_millis(1)).await;
        let after = state(&s);
        (before, after, Duration::from_secs(10))
    });
    println!(
        "server socket {} ms after the client's FIN: {before:?}; 1 ms after {} s: {after:?}",
        linger.as_millis() - 1,
        linger.as_secs()
    );
    assert_eq!(before, TcpState::TimeWait);
    assert_eq!(after, TcpState::Closed);
}

/// (d, first half) Dropping an embassy-net socket removes it and sends nothing: the
/// peer sees neither FIN nor RST and believes the connection is open.
#[test]
fn d_dropping_a_socket_sends_neither_fin_nor_rst() {
    let (end, from_server_after_drop) = run(async {
        let net = Net::new(LinkConfig::wifi());
        let device = net.server();
        let server_addr = device.addr(PORT);
        let phone = net.client();
        let client = spawn(async move {
            let options = ClientOptions::new();
            let mut buffers = ClientBuffers::new(&options);
            let mut session = Session::connect(phone.stack, &mut buffers, server_addr, options)
                .await
                .unwrap();
            session.wait_server_end(Duration::from_secs(30)).await
        });
        let (mut rx, mut tx) = ([0u8; 1024], [0u8; 1024]);
        let s = accept_one(&device, &mut rx, &mut tx).await;
        Timer::after(Duration::from_millis(100)).await;
        let dropped_at = Instant::now();
        drop(s);
        let end = client.await.unwrap();
        let after: Vec<_> = net
            .trace()
            .into_iter()
            .filter(|p| p.at >= dropped_at && *p.src.ip() == device.ip)
            .collect();
        (end, after.len())
    });
    println!(
        "30 s after the server dropped its socket: client sees {end:?}; server packets since the drop: {from_server_after_drop}"
    );
    assert_eq!(end, PeerEnd::StillOpen);
    assert_eq!(from_server_after_drop, 0);
}

/// (d, second half) `close(); flush().await` toward a peer that vanished never
/// completes: the FIN is never acknowledged, smoltcp retransmits it and keeps the socket
/// in FIN_WAIT_1. Bounded here at 120 s of virtual time.
#[test]
fn d_close_then_flush_to_a_vanished_peer_never_completes() {
    let (flushed, state_after, fins) = run(async {
        let net = Net::new(LinkConfig::wifi());
        let device = net.server();
        let server_addr: SocketAddr = device.addr(PORT);
        let phone = net.client();
        let net2 = net.clone();
        spawn(async move {
            let options = ClientOptions::new();
            let mut buffers = ClientBuffers::new(&options);
            let session = Session::connect(phone.stack, &mut buffers, server_addr, options)
                .await
                .unwrap();
            net2.vanish(session.local().unwrap());
            // Keep the socket: the endpoint is gone from the link either way.
            std::future::pending::<()>().await;
            drop(session);
        });
        let (mut rx, mut tx) = ([0u8; 1024], [0u8; 1024]);
        let mut s = accept_one(&device, &mut rx, &mut tx).await;
        Timer::after(Duration::from_millis(100)).await;
        s.close();
        let flushed =
            tcp_layers_sim::embassy_time::with_timeout(Duration::from_secs(120), s.flush()).await;
        let fins = net
            .trace()
            .iter()
            .filter(|p| p.flags.fin() && *p.src.ip() == device.ip)
            .count();
        (flushed.is_ok(), state(&s), fins)
    });
    println!(
        "after 120 s: flush finished: {flushed}; server socket {state_after:?}; FIN sent {fins} times"
    );
    assert!(!flushed);
    assert_eq!(state_after, TcpState::FinWait1);
    assert!(fins >= 2, "the FIN is retransmitted");
}
