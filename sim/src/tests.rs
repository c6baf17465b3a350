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
