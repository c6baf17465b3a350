//! Unit tests of the executor, the clock and the link.
use std::cell::RefCell;
use std::rc::Rc;

use super::*;

#[test]
fn tick_rate_is_one_megahertz() {
    assert_eq!(embassy_time_driver::TICK_HZ, 1_000_000);
}

#[test]
fn tasks_run_in_fifo_order() {
    let order = run(async {
        let log = Rc::new(RefCell::new(Vec::new()));
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let log = log.clone();
                spawn(async move {
                    log.borrow_mut().push(i);
                    yield_now().await;
                    log.borrow_mut().push(10 + i);
                })
            })
            .collect();
        for h in handles {
            h.await.unwrap();
        }
        log.borrow().clone()
    });
    println!("order: {order:?}");
    assert_eq!(order, vec![0, 1, 2, 3, 10, 11, 12, 13]);
}

#[test]
fn clock_jumps_to_the_next_timer() {
    let (t, polls) = run(async {
        let start = now();
        Timer::after(Duration::from_secs(3600)).await;
        (now() - start, polls())
    });
    println!("slept {} s in {polls} polls", t.as_secs());
    assert_eq!(t, Duration::from_secs(3600));
    assert!(polls <= 3, "an hour of virtual time took {polls} polls");
}

#[test]
fn timers_fire_in_due_order_and_clock_restarts_at_zero() {
    let order = run(async {
        assert_eq!(now().as_ticks(), 0);
        let log = Rc::new(RefCell::new(Vec::new()));
        let hs: Vec<_> = [30u64, 10, 20, 10]
            .into_iter()
            .enumerate()
            .map(|(i, ms)| {
                let log = log.clone();
                spawn(async move {
                    Timer::after(Duration::from_millis(ms)).await;
                    log.borrow_mut().push((i, now().as_millis()));
                })
            })
            .collect();
        for h in hs {
            h.await.unwrap();
        }
        log.borrow().clone()
    });
    assert_eq!(order, vec![(1, 10), (3, 10), (2, 20), (0, 30)]);
    // A second run starts from zero again.
    run(async { assert_eq!(now().as_ticks(), 0) });
}

#[test]
fn time_limit_stops_a_run() {
    let r = run_with_limit(Duration::from_secs(5), async {
        Timer::after(Duration::from_secs(6)).await;
    });
    assert_eq!(
        r,
        Err(TimeLimit {
            limit: Duration::from_secs(5)
        })
    );
    let ok = run_with_limit(Duration::from_secs(5), async {
        Timer::after(Duration::from_secs(4)).await;
        7
    });
    assert_eq!(ok, Ok(7));
}

#[test]
fn a_stalled_run_panics_and_later_runs_still_work() {
    let r = std::panic::catch_unwind(|| run(std::future::pending::<()>()));
    let msg = r.expect_err("must panic");
    let msg = msg.downcast_ref::<&str>().copied().unwrap_or("");
    assert!(msg.contains("simulation stalled"), "{msg}");
    assert_eq!(run(async { 5 }), 5);
}

#[test]
fn serialization_time_is_bytes_times_eight_over_bandwidth() {
    let p = Path::new(Duration::from_millis(10), 10_000_000);
    // 1500 bytes at 10 Mbit/s: 1.2 ms.
    assert_eq!(p.serialization_ticks(1500), 1200);
    assert_eq!(
        Path::new(Duration::from_millis(1), 0).serialization_ticks(1500),
        0
    );
    // Rounded up, never zero for a non-empty packet on a finite link.
    assert_eq!(
        Path::new(Duration::from_millis(1), 3).serialization_ticks(1),
        2_666_667
    );
}

/// Wall-clock independent figures of one GET over the Wi-Fi preset.
#[test]
fn get_over_wifi_takes_the_link_time() {
    let (resp, stats) = run(async {
        let net = Net::new(LinkConfig::wifi());
        let server = net.server();
        server::spawn_server(server.stack, 80, 2, async |s| {
            s.set_nagle_enabled(false);
            responder::serve(s, &responder::Routes::new()).await;
        });
        let c = net.client();
        let r = client::get(c.stack, server.addr(80), "/bytes/1000").await;
        (r, net.stats())
    });
    let resp = resp.expect("GET works");
    println!("{resp:?} {stats:?}");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body_len, 1000);
    assert_eq!(
        resp.checksum,
        responder::checksum(&responder::body_of("/bytes/1000", &responder::Routes::new()).unwrap())
    );
    // One round trip (20 ms) plus serialization of the request and response.
    let ttlb = resp.time_to_last_byte.as_micros();
    assert!(
        (20_000..23_000).contains(&ttlb),
        "time to last byte {ttlb} us"
    );
}

fn raw_server(host: &Host, slots: usize) -> server::ServerHandle {
    server::spawn_server(host.stack, 80, slots, async |s| {
        responder::serve(s, &responder::Routes::new()).await;
    })
}

/// The trace of a lossy transfer, as (time, flags, seq, len, fate) lines.
fn lossy_trace(seed: u64) -> (Vec<String>, u64) {
    run(async move {
        let net = Net::new(LinkConfig::wifi().with_loss(0.05).with_seed(seed));
        let device = net.server();
        raw_server(&device, 2);
        let c = net.client();
        let options = client::ClientOptions::new().with_request_timeout(Duration::from_secs(60));
        let r = client::get_with(c.stack, device.addr(80), "/bytes/50000", options).await;
        assert_eq!(r.map(|r| r.body_len), Ok(50_000));
        let lines = net.trace().iter().map(|p| p.to_string()).collect();
        (lines, net.stats().up.dropped + net.stats().down.dropped)
    })
}

#[test]
fn same_seed_same_trace_other_seed_other_trace() {
    let (a, lost_a) = lossy_trace(7);
    let (b, _) = lossy_trace(7);
    let (c, lost_c) = lossy_trace(8);
    println!(
        "seed 7: {} packets, {lost_a} lost; seed 8: {} packets, {lost_c} lost",
        a.len(),
        c.len()
    );
    assert!(lost_a > 0, "5 % loss over a 50 kB transfer loses something");
    assert_eq!(a, b);
    assert_ne!(a, c);
}

/// A bulk transfer is paced by the medium: 200 kB at 10 Mbit/s takes at least 160 ms of
/// serialization, plus the round trip; an unlimited link only the round trip and the
/// window turns.
#[test]
fn bandwidth_paces_a_bulk_transfer() {
    let elapsed = |bps: u64| {
        run(async move {
            let path = Path::new(Duration::from_millis(1), bps);
            let net = Net::new(LinkConfig::symmetric(path));
            let device = net.server();
            raw_server(&device, 1);
            let c = net.client();
            let r = client::get(c.stack, device.addr(80), "/bytes/200000")
                .await
                .unwrap();
            assert_eq!(r.body_len, 200_000);
            r.time_to_last_byte
        })
    };
    let slow = elapsed(10_000_000);
    let fast = elapsed(0);
    // 200 kB of payload in 1460-byte segments with 40 bytes of headers each.
    let wire_bits = 200_000u64.div_ceil(1460) * 1500 * 8;
    let serialization_ms = wire_bits / 10_000;
    println!(
        "200 kB: {} ms at 10 Mbit/s (serialization alone {} ms), {} ms unlimited",
        slow.as_millis(),
        serialization_ms,
        fast.as_millis()
    );
    assert!(slow.as_millis() >= serialization_ms);
    assert!(
        slow.as_millis() < serialization_ms + 60,
        "no more than a few window stalls"
    );
    assert!(fast < slow);
}

#[test]
fn a_browser_loads_the_page_and_keeps_its_connections_idle() {
    let (ok, resources, elapsed, open, accepted) = run(async {
        let net = Net::new(LinkConfig::wifi());
        let device = net.server();
        let srv = raw_server(&device, 8);
        let c = net.client();
        let load = client::browser(
            c.stack,
            device.addr(80),
            &client::Page::default(),
            client::AfterLoad::StayIdle,
        )
        .await;
        Timer::after(Duration::from_secs(5)).await;
        (
            load.ok,
            load.resources_ok,
            load.elapsed,
            load.connections.open(),
            srv.accepted(),
        )
    });
    println!(
        "page: ok {ok}, {resources} resources in {} ms; {open} connections idle, {accepted} accepted",
        elapsed.as_millis()
    );
    assert!(ok);
    assert_eq!(resources, 6);
    assert_eq!(open, 6);
    assert_eq!(accepted, 6);
}

#[test]
fn browser_close_after_load_frees_every_slot() {
    let listening = run(async {
        let net = Net::new(LinkConfig::wifi());
        let device = net.server();
        let srv = raw_server(&device, 6);
        let c = net.client();
        let load = client::browser(
            c.stack,
            device.addr(80),
            &client::Page::default(),
            client::AfterLoad::Close,
        )
        .await;
        assert!(load.ok);
        srv.wait_listening(6).await;
        srv.listening()
    });
    assert_eq!(listening, 6);
}

#[test]
fn a_cancel_sends_rst_and_the_raw_server_sees_it() {
    let (cut, rsts) = run(async {
        let net = Net::new(LinkConfig::wifi());
        let device = net.server();
        raw_server(&device, 2);
        let c = net.client();
        let cut = client::cancel_after(c.stack, device.addr(80), "/bytes/100000", 3000)
            .await
            .unwrap();
        Timer::after(Duration::from_millis(100)).await;
        (cut, net.stats().up.rsts)
    });
    println!(
        "cancelled after {} bytes; RSTs client->server: {rsts}",
        cut.received
    );
    assert!(cut.received >= 3000);
    assert!(rsts >= 1);
}

#[test]
fn a_vanished_peer_gets_no_more_packets_and_the_raw_slot_is_stuck() {
    let (phase, delivered_after) = run(async {
        let net = Net::new(LinkConfig::wifi());
        let device = net.server();
        let srv = raw_server(&device, 1);
        let c = net.client();
        let v = client::vanish_after(&net, c.stack, device.addr(80), "/bytes/100000", 3000)
            .await
            .unwrap();
        Timer::after(Duration::from_secs(60)).await;
        let delivered_after = net
            .trace()
            .iter()
            .filter(|p| {
                p.at > v.at && (std::net::SocketAddr::V4(p.dst) == v.local) && !p.fate.dropped()
            })
            .count();
        (srv.slot_phase(0), delivered_after)
    });
    println!(
        "60 s after the peer vanished: slot {phase:?}, {delivered_after} packets delivered to it"
    );
    assert_eq!(delivered_after, 0);
    assert_ne!(phase, server::SlotPhase::Accepting);
}

#[test]
fn slowloris_holds_a_raw_slot_until_the_client_gives_up() {
    let hold = run(async {
        let net = Net::new(LinkConfig::wifi());
        let device = net.server();
        raw_server(&device, 1);
        let c = net.client();
        client::slowloris(
            c.stack,
            device.addr(80),
            Duration::from_secs(1),
            Duration::from_secs(30),
        )
        .await
        .unwrap()
    });
    println!("slowloris: {hold:?}");
    assert_eq!(hold.end, client::PeerEnd::StillOpen);
    assert!(hold.held >= Duration::from_secs(30));
    // One byte at 0 s, 1 s, ..., 30 s.
    assert_eq!(hold.bytes_sent, 31);
}

#[test]
fn silent_slow_reader_and_garbage_against_the_raw_server() {
    let (silent, reader, garbage) = run(async {
        let net = Net::new(LinkConfig::wifi());
        let device = net.server();
        raw_server(&device, 3);
        let c = net.client();
        let max = Duration::from_secs(20);
        let a = addr_of(&device);
        let silent = spawn(client::silent(c.stack, a, max));
        let reader =
            spawn(async move { client::slow_reader(c.stack, a, "/bytes/100000", max).await });
        let garbage = client::garbage(net.client().stack, a, 3000, max).await;
        (
            silent.await.unwrap().unwrap(),
            reader.await.unwrap().unwrap(),
            garbage.unwrap(),
        )
    });
    println!("silent: {silent:?}\nslow reader: {reader:?}\ngarbage: {garbage:?}");
    assert_eq!(silent.end, client::PeerEnd::StillOpen);
    assert_eq!(reader.end, client::PeerEnd::StillOpen);
    assert!(reader.bytes_received <= 1024);
    // 3000 bytes without a line end overflow the 2048-byte head buffer: 431 and close.
    assert_eq!(garbage.status, Some(431));
    assert_eq!(garbage.end, client::PeerEnd::Fin);
}

fn addr_of(host: &Host) -> std::net::SocketAddr {
    host.addr(80)
}

#[test]
fn sse_streams_one_event_per_second() {
    let sse = run(async {
        let net = Net::new(LinkConfig::wifi());
        let device = net.server();
        raw_server(&device, 1);
        let c = net.client();
        client::sse(c.stack, device.addr(80), 3, Duration::from_secs(10))
            .await
            .unwrap()
    });
    println!("sse: {sse:?}");
    assert_eq!(sse.status, 200);
    assert_eq!(sse.events, 3);
    let ms = sse.elapsed.as_millis();
    assert!((3000..3100).contains(&ms), "{ms} ms for 3 events");
}

#[test]
fn keep_alive_reuses_one_connection() {
    let (results, syns) = run(async {
        let net = Net::new(LinkConfig::wifi());
        let device = net.server();
        raw_server(&device, 2);
        let c = net.client();
        let r = client::keep_alive(
            c.stack,
            device.addr(80),
            &["/", "/r/1", "/nope", "/bytes/10"],
        )
        .await;
        (r, net.stats().up.syns)
    });
    let statuses: Vec<_> = results.iter().map(|r| r.map(|r| r.status)).collect();
    println!("statuses {statuses:?}, SYNs {syns}");
    assert_eq!(statuses, vec![Ok(200), Ok(200), Ok(404), Ok(200)]);
    assert_eq!(syns, 1);
}

#[test]
fn fail_writes_ends_with_local_error() {
    let (outcome, received) = run(async {
        let net = Net::new(LinkConfig::wifi());
        let device = net.server();
        let outcome = std::rc::Rc::new(std::cell::Cell::new(None));
        let o = outcome.clone();
        server::spawn_server(device.stack, 80, 1, async move |s| {
            let mut conn = fault::FailWrites::new(s, 5000);
            let served = responder::serve(&mut conn, &responder::Routes::new()).await;
            o.set(Some((
                served,
                tcp_layers_core::Connection::close_reason(&conn),
            )));
        });
        let c = net.client();
        let r = client::get(c.stack, device.addr(80), "/bytes/20000").await;
        (outcome.get().unwrap(), r)
    });
    let (served, reason) = outcome;
    println!("{served:?}, close reason {reason:?}; client {received:?}");
    // The responder guesses a cancel from the write error; the wrapper knows better.
    assert_eq!(served.ended, tcp_layers_core::CloseReason::ClientCancelled);
    assert_eq!(reason, Some(tcp_layers_core::CloseReason::LocalError));
    assert!(served.bytes_out < 5000);
    // The end aborts: what was queued is dropped and the client sees a reset.
    assert!(matches!(received, Err(client::ClientError::Reset { .. })));
}

#[test]
fn trace_lines_are_readable() {
    let line = run(async {
        let net = Net::new(LinkConfig::wifi());
        let device = net.server();
        raw_server(&device, 1);
        let c = net.client();
        client::get(c.stack, device.addr(80), "/").await.unwrap();
        net.trace()[0].to_string()
    });
    println!("{line}");
    assert!(line.contains("10.0.0.2:") && line.contains("> 10.0.0.1:80") && line.contains("[S"));
}

// ---------------------------------------------------------------------------------------
// The browser model: a connection pool per host, the camera page, EventSource rules.

/// A server whose every slot reads one request head and answers `response`, then
/// returns (the slot loop closes the connection with FIN). Counts the requests.
fn fixed_server(host: &Host, slots: usize, response: &'static [u8]) -> server::ServerHandle {
    server::spawn_server(host.stack, 80, slots, async move |socket| {
        use embedded_io_async::Write;
        let mut head = Vec::new();
        let mut chunk = [0u8; 512];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match socket.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&chunk[..n]),
            }
        }
        let _ = socket.write_all(response).await;
        let _ = socket.flush().await;
    })
}

/// The page's 6 tiles take every connection the browser allows to a host; the
/// EventSource's request waits for one of them instead of opening a 7th, and streams.
#[test]
fn a_camera_page_keeps_six_connections_busy_and_queues_its_event_source() {
    let (stats, accepted, listening_after_close) = run(async {
        let net = Net::new(LinkConfig::wifi());
        let device = net.server();
        let srv = raw_server(&device, 8);
        let browser = net.client();
        let view = client::camera_page(browser.stack, device.addr(80), &Default::default());
        Timer::after(Duration::from_secs(5)).await;
        let stats = view.stats();
        let accepted = srv.accepted();
        view.close().await;
        srv.wait_listening(8).await;
        (stats, accepted, srv.listening())
    });
    println!("camera page after 5 s: {stats:?}, {accepted} connections accepted");
    let events = stats.events.expect("the page opened its EventSource");
    assert_eq!(stats.pool.peak_open, client::CONNECTIONS_PER_HOST);
    assert_eq!(accepted, 6, "the EventSource waited for one of the 6");
    assert_eq!((events.attempts, events.opened), (1, 1));
    assert!(events.events >= 3, "{} events in 5 s", events.events);
    // 5 tiles share 10 Mbit/s for most of 5 s: 128 KiB frames take about 105 ms each.
    assert!(stats.frames >= 30, "{} frames", stats.frames);
    assert_eq!(stats.frame_errors, 0);
    assert_eq!(listening_after_close, 8);
}

/// After an answer other than 200 `text/event-stream` an EventSource gives up for good.
#[test]
fn an_event_source_gives_up_after_a_503_or_a_204() {
    for (response, status) in [
        (
            &b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                [..],
            503,
        ),
        (&b"HTTP/1.1 204 No Content\r\n\r\n"[..], 204),
    ] {
        let (stats, accepted) = run(async move {
            let net = Net::new(LinkConfig::wifi());
            let device = net.server();
            let srv = fixed_server(&device, 2, response);
            let browser = net.client();
            let pool = client::ConnectionPool::new(
                browser.stack,
                device.addr(80),
                client::PoolConfig::new(),
            );
            let source = pool.event_source("/sse");
            Timer::after(Duration::from_secs(20)).await;
            let stats = source.stats();
            pool.close().await;
            (stats, srv.accepted())
        });
        println!("{status}: {stats:?}");
        assert!(stats.given_up);
        assert_eq!(stats.refused_with, Some(status));
        assert_eq!((stats.attempts, accepted), (1, 1), "no second request");
    }
}

/// A 200 event stream that set `retry:` and closed is reopened that many milliseconds
/// later; a refused connect (no socket listening) is retried after the default 3 s.
#[test]
fn an_event_source_reconnects_after_retry_and_close_or_a_network_error() {
    let (stats, accepted) = run(async {
        let net = Net::new(LinkConfig::wifi());
        let device = net.server();
        let srv = fixed_server(
            &device,
            1,
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\nretry: 500\r\ndata: one\r\n\r\n",
        );
        let browser = net.client();
        let pool =
            client::ConnectionPool::new(browser.stack, device.addr(80), client::PoolConfig::new());
        let source = pool.event_source("/sse");
        Timer::after(Duration::from_millis(2500)).await;
        let stats = source.stats();
        pool.close().await;
        (stats, srv.accepted())
    });
    println!("retry 500 and close: {stats:?}, {accepted} accepted");
    assert!(!stats.given_up);
    assert_eq!(stats.retry, Duration::from_millis(500));
    // Each round: the connect and the answer (2 round trips, 40 ms), then 500 ms.
    assert_eq!(stats.attempts, 5);
    assert_eq!(stats.events, stats.opened);
    assert!(stats.events_after_reconnect >= 3);

    let (stats, refusals) = run(async {
        let net = Net::new(LinkConfig::wifi());
        let device = net.server();
        let browser = net.client();
        let pool =
            client::ConnectionPool::new(browser.stack, device.addr(80), client::PoolConfig::new());
        let source = pool.event_source("/sse");
        Timer::after(Duration::from_secs(10)).await;
        let stats = source.stats();
        pool.close().await;
        (stats, net.stats().down.rsts)
    });
    println!("no listener: {stats:?}, {refusals} RSTs");
    assert!(!stats.given_up);
    // Refused at 0 s, then 3 s after each refusal (a round trip each): 4 tries in 10 s.
    assert_eq!(stats.attempts, 4);
    assert_eq!(stats.reconnects, 4);
    assert_eq!(refusals, 4);
}

/// A server's FIN on an idle connection stays unanswered (the server's side waits in
/// FIN_WAIT_2) until the browser picks the connection for a request, which then goes
/// to a new connection, or until the idle sweep closes it.
#[test]
fn an_idle_connection_leaves_the_servers_fin_unanswered() {
    let response: &'static [u8] =
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok";
    let (after_fin, server_state, after_reuse, swept) = run(async move {
        let net = Net::new(LinkConfig::wifi());
        let device = net.server();
        let srv = fixed_server(&device, 2, response);
        srv.set_sampling(Some(Duration::from_millis(1)));
        let browser = net.client();
        let pool =
            client::ConnectionPool::new(browser.stack, device.addr(80), client::PoolConfig::new());
        assert_eq!(pool.get("/").await.map(|r| r.status), Ok(200));
        Timer::after(Duration::from_secs(1)).await;
        let after_fin = pool.stats();
        let server_state = srv.slot_state(0);
        // Picked for a request, the dead connection is closed and a new one serves it.
        assert_eq!(pool.get("/").await.map(|r| r.status), Ok(200));
        let after_reuse = pool.stats();
        // The second connection is closed by the server too; the sweep at 10 s closes it.
        Timer::at(Instant::from_secs(10) + Duration::from_millis(100)).await;
        let swept = pool.stats();
        pool.close().await;
        (after_fin, server_state, after_reuse, swept)
    });
    println!(
        "after the FIN: {after_fin:?} (server {server_state:?})\nafter a request: {after_reuse:?}\nafter the sweep: {swept:?}"
    );
    assert_eq!((after_fin.open, after_fin.fins_unanswered), (1, 1));
    assert_eq!(server_state, tcp_layers_core::TcpState::FinWait2);
    assert_eq!((after_reuse.opened, after_reuse.retried), (2, 0));
    assert_eq!((swept.open, swept.fins_unanswered), (0, 2));
}

/// slowhttptest's slow headers: an unfinished head, a header line every interval, held
/// until the server ends it; refused when no socket listens, and not reopened.
#[test]
fn slow_headers_hold_a_slot_until_the_server_ends_it() {
    let (held, refused, accepted) = run(async {
        let net = Net::new(LinkConfig::wifi());
        let device = net.server();
        // A server that gives a request head 2.5 s, then closes.
        let srv = server::spawn_server(device.stack, 80, 1, async |socket| {
            let mut chunk = [0u8; 512];
            let deadline = Instant::now() + Duration::from_millis(2500);
            while let Ok(Ok(n)) =
                embassy_time::with_deadline(deadline, socket.read(&mut chunk)).await
            {
                if n == 0 {
                    return;
                }
            }
        });
        let attack = net.client();
        let until = Instant::now() + Duration::from_secs(14);
        let every = Duration::from_millis(1000);
        let first = spawn(client::slow_headers(
            attack.stack,
            device.addr(80),
            every,
            until,
        ));
        Timer::after(Duration::from_millis(100)).await;
        let refused = client::slow_headers(attack.stack, device.addr(80), every, until).await;
        let held = first.await.unwrap().unwrap();
        (held, refused, srv.accepted())
    });
    println!("slow headers: {held:?}; second: {refused:?}");
    assert_eq!(held.end, client::PeerEnd::Fin);
    let ms = held.held.as_millis();
    assert!((2500..2600).contains(&ms), "held {ms} ms");
    // The head at 0 s and a header line at 1 s and 2 s.
    let head = "GET / HTTP/1.1\r\nHost: device\r\nUser-Agent: slowhttptest\r\n";
    assert_eq!(held.bytes_sent, head.len() + "X-1: 1\r\nX-2: 2\r\n".len());
    assert_eq!(refused.err(), Some(client::ClientError::Refused));
    assert_eq!(accepted, 1);
}

/// `get_within` gives up at its bound, connect included, as `curl -m` does.
#[test]
fn get_within_gives_up_at_its_bound() {
    let (result, elapsed) = run(async {
        let net = Net::new(LinkConfig::wifi());
        let device = net.server();
        client_silent_server(&device);
        let c = net.client();
        let start = Instant::now();
        let r = client::get_within(c.stack, device.addr(80), "/", Duration::from_secs(2)).await;
        (r, Instant::now() - start)
    });
    println!("{result:?} after {} ms", elapsed.as_millis());
    assert!(matches!(result, Err(client::ClientError::Timeout { .. })));
    assert!((2000..2100).contains(&elapsed.as_millis()));
}

/// A server that accepts and never answers.
fn client_silent_server(host: &Host) -> server::ServerHandle {
    server::spawn_server(host.stack, 80, 1, async |_socket| {
        Timer::after(Duration::from_secs(3600)).await;
    })
}

/// Firmware-style tasks on embassy-executor's own executor, in virtual time.
#[cfg(feature = "embassy-executor")]
mod embassy_tasks {
    use std::sync::atomic::{AtomicU64, Ordering};

    use embassy_executor::{SendSpawner, SpawnError};
    use embassy_net::Stack;
    use embassy_net::tcp::TcpSocket;
    use embedded_io_async::Write;

    use super::*;

    /// Virtual microseconds at which `sleeper` woke.
    static WOKE_AT_US: AtomicU64 = AtomicU64::new(0);

    #[embassy_executor::task]
    async fn sleeper() {
        Timer::after(Duration::from_secs(10)).await;
        WOKE_AT_US.store(Instant::now().as_micros(), Ordering::SeqCst);
    }

    #[test]
    fn a_task_timer_jumps_the_clock() {
        let woke = run(async {
            spawner().spawn(sleeper().unwrap());
            while WOKE_AT_US.load(Ordering::SeqCst) == 0 {
                Timer::after(Duration::from_secs(1)).await;
            }
            WOKE_AT_US.load(Ordering::SeqCst)
        });
        assert_eq!(woke, 10_000_000);
    }

    /// One connection, served as firmware writes it: a `TcpSocket` over buffers in the
    /// task, a fixed answer, a close. The task spawns a helper with its own spawner.
    #[embassy_executor::task]
    async fn hello_server(stack: Stack<'static>) {
        let spawner = SendSpawner::for_current_executor().await;
        spawner.spawn(sleeper_after_server().unwrap());
        let mut rx = [0; 1024];
        let mut tx = [0; 1024];
        let mut socket = TcpSocket::new(stack, &mut rx, &mut tx);
        if socket.accept(80).await.is_err() {
            return;
        }
        let mut head = [0; 512];
        let mut len = 0;
        while !head[..len].ends_with(b"\r\n\r\n") && len < head.len() {
            match embedded_io_async::Read::read(&mut socket, &mut head[len..]).await {
                Ok(0) | Err(_) => return,
                Ok(n) => len += n,
            }
        }
        let _ = socket
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
            .await;
        socket.close();
        let _ = socket.flush().await;
    }

    static HELPER_RAN: AtomicU64 = AtomicU64::new(0);

    #[embassy_executor::task]
    async fn sleeper_after_server() {
        HELPER_RAN.fetch_add(1, Ordering::SeqCst);
    }

    #[test]
    fn a_firmware_task_serves_a_simulated_client() {
        let response = run(async {
            let net = Net::new(LinkConfig::wifi());
            let device = net.server();
            spawner().spawn(hello_server(device.stack).unwrap());
            let browser = net.client();
            client::get(browser.stack, device.addr(80), "/").await
        })
        .expect("served");
        assert_eq!(response.status, 200);
        assert_eq!(response.body_len, 5);
        assert_eq!(response.checksum, responder::checksum(b"hello"));
        assert_eq!(HELPER_RAN.load(Ordering::SeqCst), 1);
    }

    #[embassy_executor::task]
    async fn forever() {
        loop {
            Timer::after(Duration::from_secs(1)).await;
        }
    }

    /// The documented rule: a task still running when its run ends keeps its pool slot.
    #[test]
    fn an_unfinished_task_keeps_its_pool_slot_after_the_run() {
        run(async {
            spawner().spawn(forever().unwrap());
            Timer::after(Duration::from_secs(5)).await;
        });
        let again = run(async { forever().map(|token| spawner().spawn(token)) });
        assert!(matches!(again, Err(SpawnError::Busy)));
    }
}
