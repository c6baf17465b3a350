//! The limit layer on real embassy-net stacks in the simulated network (virtual time).
//! Each scenario runs twice, raw (the hand-written accept loops of the sim's server)
//! and with the layer, and asserts the raw failure and the layered success.
use std::cell::RefCell;

use tcp_layers_core::event::{self, Event};
use tcp_layers_core::{ConnectionClass, Layer};
use tcp_layers_limit::{Budget, BudgetConfig, LimitLayer};
use tcp_layers_sim::client::{self, AfterLoad, Page, PageLoad};
use tcp_layers_sim::responder::{self, Routes};
use tcp_layers_sim::server::{ServerHandle, spawn_server};
use tcp_layers_sim::{Duration, Host, LinkConfig, Net, Timer, run};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    Raw,
    LimitLayer,
}

/// The sim's server with `sockets` slots serving the raw responder, each connection
/// wrapped in `LimitLayer` when `variant` says so.
fn server<const N: usize>(
    device: &Host,
    sockets: usize,
    variant: Variant,
    budget: &'static Budget<N>,
) -> ServerHandle {
    spawn_server(device.stack, 80, sockets, async move |socket| {
        let routes = Routes::new();
        match variant {
            Variant::Raw => {
                responder::serve(socket, &routes).await;
            }
            Variant::LimitLayer => {
                let mut conn = LimitLayer::new(budget).layer(socket);
                responder::serve(&mut conn, &routes).await;
            }
        }
    })
}

/// Every connection handed back: no slot, permit or wrapper left behind.
async fn assert_budget_drained<const N: usize>(budget: &'static Budget<N>) {
    for _ in 0..100 {
        if budget.active() == 0 && budget.permits_outstanding() == 0 {
            break;
        }
        Timer::after_millis(100).await;
    }
    println!(
        "  budget after the run: active {}, permits outstanding {}, stats {:?}",
        budget.active(),
        budget.permits_outstanding(),
        budget.stats()
    );
    assert_eq!(budget.active(), 0, "slots still taken");
    assert_eq!(budget.permits_outstanding(), 0, "wrappers still alive");
    assert_eq!(budget.active_of(ConnectionClass::Request), 0);
    assert_eq!(budget.active_of(ConnectionClass::Stream), 0);
}

fn describe(name: &str, load: &PageLoad) {
    println!(
        "  {name}: ok {}, resources {}/6, {} ms, errors {:?}",
        load.ok,
        load.resources_ok,
        load.elapsed.as_millis(),
        load.errors
    );
}

/// Device A loads a page over 6 keep-alive connections and leaves them idle; 2 s later
/// device B loads a page. Returns (A's load ok, B's load).
fn second_device<const N: usize>(
    variant: Variant,
    budget: &'static Budget<N>,
) -> (bool, bool, u64) {
    run(async move {
        let net = Net::new(LinkConfig::wifi());
        let device = net.server();
        let handle = server(&device, 8, variant, budget);
        let (a, b) = (net.client(), net.client());
        let page = Page::default();
        let load_a = client::browser(a.stack, device.addr(80), &page, AfterLoad::StayIdle).await;
        describe("device A", &load_a);
        Timer::after(Duration::from_secs(2)).await;
        println!(
            "  after 2 s idle: A holds {} connections, server listening on {}",
            load_a.connections.open(),
            handle.listening()
        );
        let load_b = client::browser(b.stack, device.addr(80), &page, AfterLoad::StayIdle).await;
        describe("device B", &load_b);
        let b_ms = load_b.elapsed.as_millis();
        let result = (load_a.ok, load_b.ok, b_ms);
        load_a.connections.close().await;
        load_b.connections.close().await;
        if variant == Variant::LimitLayer {
            assert_budget_drained(budget).await;
        }
        result
    })
}

#[test]
fn second_device_loads_its_page_while_the_first_idles() {
    // 8 sockets (ESP32-S3 budget), reserve 6: a browser opens 6 connections in the same
    // millisecond and a SYN that finds no listener is reset.
    static BUDGET: Budget<8> = Budget::new(BudgetConfig::new(8, 2, 6).with_reserve(6));
    static UNUSED: Budget<8> = Budget::new(BudgetConfig::new(8, 2, 6));
    println!("raw:");
    let (raw_a, raw_b, raw_ms) = second_device(Variant::Raw, &UNUSED);
    println!("limit:");
    let (lim_a, lim_b, lim_ms) = second_device(Variant::LimitLayer, &BUDGET);
    println!(
        "second device page load: raw ok {raw_b} ({raw_ms} ms), limit ok {lim_b} ({lim_ms} ms)"
    );
    assert!(raw_a && lim_a, "device A must load its page either way");
    assert!(!raw_b, "raw: device B should be refused");
    assert!(lim_b, "limit: device B's page must load in full");
    assert!(
        BUDGET.stats().evictions >= 4,
        "A's idle connections made room"
    );
}

/// 3 SSE clients (stream cap 2), then 2 browsers one after the other, each closing
/// after its page. Returns (SSE status and whether events came, browser loads ok).
fn streams<const N: usize>(
    variant: Variant,
    budget: &'static Budget<N>,
) -> (Vec<(u16, bool)>, Vec<bool>) {
    run(async move {
        let net = Net::new(LinkConfig::wifi());
        let device = net.server();
        let _handle = server(&device, 8, variant, budget);
        let mut sse = Vec::new();
        for _ in 0..3 {
            let host = net.client();
            sse.push(tcp_layers_sim::spawn(client::sse(
                host.stack,
                device.addr(80),
                20,
                Duration::from_secs(30),
            )));
            Timer::after_millis(100).await;
        }
        Timer::after(Duration::from_secs(1)).await;
        let mut loads = Vec::new();
        for name in ["browser 1", "browser 2"] {
            let host = net.client();
            let load = client::browser(
                host.stack,
                device.addr(80),
                &Page::default(),
                AfterLoad::Close,
            )
            .await;
            describe(name, &load);
            loads.push(load.ok);
            load.connections.close().await;
            Timer::after(Duration::from_secs(1)).await;
        }
        let mut statuses = Vec::new();
        for handle in sse {
            let outcome = handle.await.expect("sse task");
            println!("  sse: {outcome:?}");
            statuses.push(match outcome {
                Ok(o) => (o.status, o.events > 0),
                Err(_) => (0, false),
            });
        }
        if variant == Variant::LimitLayer {
            assert_budget_drained(budget).await;
        }
        (statuses, loads)
    })
}

#[test]
fn streams_beyond_their_cap_are_told_to_retry_and_page_loads_go_on() {
    static BUDGET: Budget<8> = Budget::new(BudgetConfig::new(8, 2, 6));
    static UNUSED: Budget<8> = Budget::new(BudgetConfig::new(8, 2, 6));
    println!("raw:");
    let (raw_sse, raw_loads) = streams(Variant::Raw, &UNUSED);
    println!("limit:");
    let (lim_sse, lim_loads) = streams(Variant::LimitLayer, &BUDGET);
    println!(
        "sse statuses raw {raw_sse:?} limit {lim_sse:?}; page loads ok raw {raw_loads:?} limit {lim_loads:?}"
    );
    let mut sorted = lim_sse.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [(200, false), (200, true), (200, true)],
        "the third stream is answered 200 with retry: and no event, so a browser retries"
    );
    assert_eq!(
        lim_loads,
        [true, true],
        "both page loads succeed beside 2 streams"
    );
    assert!(
        raw_loads.contains(&false),
        "raw: 3 streams leave too few sockets"
    );
    assert_eq!(BUDGET.stats().stream_refusals, 1);
}

thread_local! {
    static EXHAUSTION: RefCell<Vec<(bool, u16)>> = const { RefCell::new(Vec::new()) };
}

fn record_exhaustion(e: &Event) {
    if let Event::Exhaustion { held, active } = *e {
        EXHAUSTION.with(|v| v.borrow_mut().push((held, active)));
    }
}

/// 5 clients on 6 sockets (exhaustion at 4) connect at once and each download
/// 2 x 50 kB over keep-alive (busy, never evictable), then leave.
fn exhaustion<const N: usize>(variant: Variant, budget: &'static Budget<N>) -> Vec<(bool, u16)> {
    EXHAUSTION.with(|v| v.borrow_mut().clear());
    run(async move {
        event::set_hook(record_exhaustion);
        let net = Net::new(LinkConfig::wifi());
        let device = net.server();
        let _handle = server(&device, 6, variant, budget);
        let addr = device.addr(80);
        let clients: Vec<_> = (0..5)
            .map(|_| {
                let host = net.client();
                tcp_layers_sim::spawn(async move {
                    client::keep_alive(host.stack, addr, &["/bytes/50000"; 2]).await
                })
            })
            .collect();
        for c in clients {
            for r in c.await.expect("client task") {
                assert_eq!(r.expect("download").body_len, 50_000);
            }
        }
        Timer::after(Duration::from_secs(1)).await;
        if variant == Variant::LimitLayer {
            assert_budget_drained(budget).await;
        }
        event::clear_hook();
        EXHAUSTION.with(|v| v.borrow().clone())
    })
}

#[test]
fn exhaustion_event_fires_once_and_clears() {
    static BUDGET: Budget<6> = Budget::new(tcp_layers_limit::profile::ESP32);
    static UNUSED: Budget<6> = Budget::new(tcp_layers_limit::profile::ESP32);
    let raw = exhaustion(Variant::Raw, &UNUSED);
    let limit = exhaustion(Variant::LimitLayer, &BUDGET);
    println!("exhaustion events: raw {raw:?}, limit {limit:?}");
    assert!(raw.is_empty(), "raw: nothing reacts");
    assert_eq!(limit.len(), 2, "one event in, one out");
    assert_eq!(limit[0], (true, 4), "held at total - 2 = 4 connections");
    assert_eq!(limit[1], (false, 3), "cleared when load drops below 4");
    assert_eq!(BUDGET.stats().exhaustion_entered, 1);
}
