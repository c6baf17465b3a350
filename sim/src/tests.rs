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
