//! Slowloris against a device with 8 sockets, on real embassy-net stacks in the
//! simulated network (virtual time): 50 attacking connections, each sending one head
//! byte every 2 s, while one legitimate client makes 100 sequential keep-alive
//! requests. The raw server serves none of them; with the reaper at least 99 %.

use std::net::SocketAddr;

use crate::common::{device, link, ms};
use embassy_net::Stack;
use embassy_net::tcp::TcpSocket;
use tcp_layers_core::{CloseReason, Deadline};
use tcp_layers_reaper::ReaperConfig;
use tcp_layers_sim::client::{ClientBuffers, ClientOptions, Session};
use tcp_layers_sim::{Duration, Instant, Net, Timer, run, spawn};

static HTTP: ReaperConfig = ReaperConfig::http();

const SOCKETS: usize = 8;
const ATTACKERS: usize = 50;
const BYTE_INTERVAL: Duration = Duration::from_secs(2);
const REQUESTS: usize = 100;
/// The whole scenario, as the showcase bounds it.
const SCENARIO: Duration = Duration::from_secs(120);
/// The legitimate client joins once the attack holds the device.
const LEGIT_START: Duration = Duration::from_secs(1);
/// A request that is not answered within this time (connect retries included) failed.
const REQUEST_BUDGET: Duration = Duration::from_secs(10);
/// How often the legitimate client retries a refused connect.
const CONNECT_RETRY: Duration = Duration::from_millis(250);

/// One attacking connection slot, the way slowloris.py drives its sockets: one loop for
/// all of them, a tick every `BYTE_INTERVAL`; at each tick a live connection gets one
/// more byte of a head that never ends, and a dead or refused one is opened again.
async fn attacker(stack: Stack<'static>, server: SocketAddr, until: Instant) {
    let SocketAddr::V4(server) = server else {
        unreachable!("IPv4 network")
    };
    let head = b"GET / HTTP/1.1\r\nHost: device\r\nUser-Agent: slowloris\r\nX-a: ";
    let (mut rx, mut tx) = ([0u8; 1024], [0u8; 256]);
    let mut tick = Instant::from_ticks(0);
    while tick < until {
        Timer::at(tick).await;
        let mut socket = TcpSocket::new(stack, &mut rx, &mut tx);
        if socket.connect(server).await.is_err() {
            tick += BYTE_INTERVAL;
            continue;
        }
        let mut sent = 0;
        loop {
            let byte = head.get(sent).copied().unwrap_or(b'a');
            if embedded_io_async::Write::write_all(&mut socket, &[byte])
                .await
                .is_err()
            {
                break; // reset by the device: reconnect at this tick
            }
            sent += 1;
            tick += BYTE_INTERVAL;
            if tick >= until {
                return;
            }
            Timer::at(tick).await;
        }
    }
}

/// The legitimate client: `REQUESTS` sequential GETs of `/` on a keep-alive connection,
/// reconnecting (every `CONNECT_RETRY` while refused) when the connection is lost.
/// Each entry is the request's latency, `None` when it missed its budget or was never
/// sent before `until`.
async fn legit(stack: Stack<'static>, server: SocketAddr, until: Instant) -> Vec<Option<Duration>> {
    let options = ClientOptions::new();
    let mut results: Vec<Option<Duration>> = Vec::new();
    let mut request_start: Option<Instant> = None;
    // Ends the current request as failed once it is over budget.
    let over_budget = |results: &mut Vec<Option<Duration>>, start: &mut Option<Instant>| {
        if start.is_some_and(|s| Instant::now() - s >= REQUEST_BUDGET) {
            results.push(None);
            *start = None;
        }
    };
    while results.len() < REQUESTS && Instant::now() < until {
        let mut buffers = ClientBuffers::new(&options);
        request_start.get_or_insert_with(Instant::now);
        let mut session = match Session::connect(stack, &mut buffers, server, options).await {
            Ok(session) => session,
            Err(_) => {
                over_budget(&mut results, &mut request_start);
                Timer::after(CONNECT_RETRY).await;
                continue;
            }
        };
        while results.len() < REQUESTS && Instant::now() < until {
            let start = *request_start.get_or_insert_with(Instant::now);
            match session.get("/").await {
                Ok(r) if r.status == 200 && Instant::now() - start < REQUEST_BUDGET => {
                    results.push(Some(Instant::now() - start));
                    request_start = None;
                }
                Ok(_) => {
                    results.push(None);
                    request_start = None;
                }
                Err(_) => {
                    over_budget(&mut results, &mut request_start);
                    break; // the connection is gone: reconnect
                }
            }
        }
    }
    results.resize(REQUESTS, None);
    results
}

struct Outcome {
    ok_ratio: f64,
    p50: Option<Duration>,
    accepted: u64,
    reaped_head: usize,
}

fn slowloris(config: Option<&'static ReaperConfig>) -> Outcome {
    run(async move {
        let net = Net::new(link());
        let host = net.server();
        let (server, log) = device(&host, SOCKETS, config);
        let addr = host.addr(80);
        let until = Instant::from_ticks(0) + SCENARIO;
        let attack_host = net.client();
        for _ in 0..ATTACKERS {
            spawn(attacker(attack_host.stack, addr, until));
        }
        Timer::after(LEGIT_START).await;
        let results = legit(net.client().stack, addr, until).await;
        let mut latencies: Vec<Duration> = results.iter().flatten().copied().collect();
        latencies.sort();
        let reaped_head = log
            .borrow()
            .iter()
            .filter(|s| s.reason == Some(CloseReason::Reaped(Deadline::Request)))
            .count();
        Outcome {
            ok_ratio: latencies.len() as f64 / REQUESTS as f64,
            p50: latencies.get(latencies.len() / 2).copied(),
            accepted: server.accepted(),
            reaped_head,
        }
    })
}

#[test]
fn slowloris_does_not_starve_a_legitimate_client() {
    let raw = slowloris(None);
    let reaped = slowloris(Some(&HTTP));
    println!(
        "slowloris ({ATTACKERS} connections, one byte every {} s, {SOCKETS} sockets, {} s): \
         legitimate requests ok: raw server {:.2} (p50 {:?} ms, {} accepted), reaper {:.2} \
         (p50 {:?} ms, {} accepted, {} attackers reaped by the head deadline)",
        BYTE_INTERVAL.as_secs(),
        SCENARIO.as_secs(),
        raw.ok_ratio,
        raw.p50.map(ms),
        raw.accepted,
        reaped.ok_ratio,
        reaped.p50.map(ms),
        reaped.accepted,
        reaped.reaped_head,
    );
    assert!(
        raw.ok_ratio < 0.01,
        "the attack did not hold the raw server"
    );
    assert!(reaped.ok_ratio >= 0.99);
    assert!(
        reaped.reaped_head >= SOCKETS,
        "the attackers were not reaped"
    );
}
