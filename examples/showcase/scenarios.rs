//! The scenarios: each reproduces one thing that hurts an ESP32 web server, on the
//! simulated Wi-Fi link (20 ms round trip, 10 Mbit/s each way, no loss), and measures it
//! on every variant where it means something.
use std::future::Future;
use std::net::{SocketAddr, SocketAddrV4};
use std::rc::Rc;

use embedded_io_async::Write;
use tcp_layers::CloseReason;
use tcp_layers_sim::client::{
    self, AfterLoad, CameraPage, ClientBuffers, ClientOptions, EventSourceStats, Page, Response,
    Session,
};
use tcp_layers_sim::embassy_net::Stack;
use tcp_layers_sim::embassy_net::tcp::TcpSocket;
use tcp_layers_sim::embassy_time::{with_deadline, with_timeout};
use tcp_layers_sim::responder::Routes;
use tcp_layers_sim::{Duration, Fate, Host, Instant, LinkConfig, Net, Timer, run, spawn};

use crate::probes::{self, CpuMeter};
use crate::report::{Figure, Goal, Unit, progress};
use crate::variants::{self, BODY_MAX, COUNTERS, Metering, PORT, Slots, Variant};

/// A scenario: an id (fixed, used by `--scenario` and the JSON lines), a line for the
/// help text, and how it is measured.
pub struct Scenario {
    /// The scenario's id.
    pub id: &'static str,
    /// What it does, in one line.
    pub summary: &'static str,
    measure: Measure,
}

/// How a scenario is measured.
enum Measure {
    /// One variant at a time: `f(scenario id, variant)`.
    PerVariant(fn(&'static str, Variant) -> Vec<Figure>),
    /// All variants together (alternating runs, or no simulation at all).
    Together(fn(&'static str, &[Variant]) -> Vec<Figure>),
}

impl Scenario {
    /// Runs the scenario on `variants` and returns its figures.
    pub fn run(&self, variants: &[Variant]) -> Vec<Figure> {
        match self.measure {
            Measure::PerVariant(measure) => variants
                .iter()
                .flat_map(|&v| {
                    progress(&format!("{} · {}", self.id, v.id()));
                    measure(self.id, v)
                })
                .collect(),
            Measure::Together(measure) => measure(self.id, variants),
        }
    }
}

/// Every scenario, in the order of the table.
pub const SCENARIOS: [Scenario; 13] = [
    Scenario {
        id: "nagle_head_body",
        summary: "one request; the response written as head, then a 2 KiB body",
        measure: Measure::PerVariant(nagle_head_body),
    },
    Scenario {
        id: "jpeg_frames",
        summary: "50 frames of 120 KiB back to back on one keep-alive connection",
        measure: Measure::Together(jpeg_frames),
    },
    Scenario {
        id: "second_device",
        summary: "device A loads a page over 6 connections and idles; 2 s later device B loads it",
        measure: Measure::PerVariant(second_device),
    },
    Scenario {
        id: "second_device_busy",
        summary: "10 runs: A's page keeps 6 tiles busy and opens its EventSource; 1 s in, B loads / and /frame.jpg",
        measure: Measure::PerVariant(second_device_busy),
    },
    Scenario {
        id: "sse_and_pages",
        summary: "3 SSE clients connect, then 2 browsers load a page each",
        measure: Measure::PerVariant(sse_and_pages),
    },
    Scenario {
        id: "sse_over_cap",
        summary: "2 streams hold the stream slots for 3 s; at 0.5 s a page opens its EventSource",
        measure: Measure::PerVariant(sse_over_cap),
    },
    Scenario {
        id: "slowloris",
        summary: "50 slowloris connections (a head byte every 2 s) and 100 legitimate requests, 120 s",
        measure: Measure::PerVariant(slowloris),
    },
    Scenario {
        id: "slowloris_first_second",
        summary: "50 slow-head connections (slowhttptest -H) and a GET / every 500 ms from 0.3 s, 12 s",
        measure: Measure::PerVariant(slowloris_first_second),
    },
    Scenario {
        id: "slow_reader",
        summary: "a client requests 160 KiB and never reads",
        measure: Measure::PerVariant(slow_reader),
    },
    Scenario {
        id: "vanished_peer",
        summary: "a client vanishes (no FIN, no RST) 16 KiB into a 160 KiB response",
        measure: Measure::PerVariant(vanished_peer),
    },
    Scenario {
        id: "close_to_listen",
        summary: "the server closes after a response; the client stays silent",
        measure: Measure::PerVariant(close_to_listen),
    },
    Scenario {
        id: "cancel_storm",
        summary: "1000 clients each cancel a 160 KiB response at a random byte (fixed seed)",
        measure: Measure::PerVariant(cancel_storm),
    },
    Scenario {
        id: "footprint",
        summary: "RAM the default stack adds per connection",
        measure: Measure::Together(footprint),
    },
];

/// The scenario with `id`.
pub fn find(id: &str) -> Option<&'static Scenario> {
    SCENARIOS.iter().find(|s| s.id == id)
}

/// The longest any scenario waits for a slot or a client: a wait this long is
/// reported as "held".
const HELD: Duration = Duration::from_secs(120);

/// Runs `body` in a fresh simulation: the Wi-Fi link, the device with `variant` on
/// every socket (each listening before `body` starts), from virtual time 0.
fn on_device<T, F, Fut>(variant: Variant, metering: Metering, body: F) -> T
where
    T: 'static,
    F: FnOnce(Net, Host, Slots) -> Fut + 'static,
    Fut: Future<Output = T> + 'static,
{
    run(async move {
        // Inside the run: runs take turns (a test binary starts them from several
        // threads), so no other run is using the statics while they are reset.
        variants::reset_statics();
        let net = Net::new(LinkConfig::wifi());
        let device = net.server();
        let slots = variants::spawn_server(variant, &device, PORT, metering);
        slots.wait_all_listening().await;
        body(net, device, slots).await
    })
}

fn ms(d: Duration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

/// Waits until slot `slot` listens again, at most until `deadline`; when it did.
async fn slot_free_at(slots: &Slots, slot: usize, deadline: Instant) -> Option<Instant> {
    let free = slots.wait_until(|s| s.is_accepting(slot));
    match with_deadline(deadline, free).await {
        Ok(()) => Some(Instant::now()),
        Err(_) => None,
    }
}

fn v4(addr: SocketAddr) -> SocketAddrV4 {
    match addr {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(_) => unreachable!("the simulated network is IPv4"),
    }
}

fn ok_200(r: &Result<Response, client::ClientError>, len: usize) -> bool {
    matches!(r, Ok(r) if r.status == 200 && r.body_len == len)
}

/// The median of `values` (the mean of the middle two for an even count, as Python's
/// `statistics.median` in tests/real_network.py); `None` for none.
fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

/// `warn_lines`: log lines at warn or error since the last `probes::reset_lines()`,
/// the lines that bury a device's real faults. The goal: none.
fn warn_lines(scenario: &'static str, variant: Variant) -> Figure {
    let lines = probes::lines();
    Figure::new(
        scenario,
        variant,
        "warn_lines",
        Some(lines.warn_or_above as f64),
        Unit::Lines,
    )
    .goal(Goal::Equals(0.0))
}

// ---------------------------------------------------------------------------------------

const NAGLE_PATH: &str = "/bytes/2048";

/// `ms_to_last_byte`: from the request's first byte to the response's last. Nagle
/// holds the end of a response written in two pieces until the client's delayed
/// ACK of the first. The goal is 2 % above the ideal: one round trip plus the time
/// the request's and the response's packets occupy the link.
fn nagle_head_body(id: &'static str, variant: Variant) -> Vec<Figure> {
    let (last_byte, ideal) = on_device(variant, Metering::Off, |net, device, _| async move {
        let phone = net.client();
        let r = client::get(phone.stack, device.addr(PORT), NAGLE_PATH).await;
        let last_byte = ok_200(&r, 2048)
            .then(|| r.map(|r| ms(r.time_to_last_byte)).ok())
            .flatten();
        (last_byte, ideal_exchange_ms(&net))
    });
    vec![
        Figure::new(id, variant, "ms_to_last_byte", last_byte, Unit::Ms)
            .none_means("failed")
            .goal(Goal::AtMost(ideal * 1.02)),
    ]
}

/// One round trip plus the link time of every packet that carried data (the request
/// up, the response down): the fastest a request and its response can be exchanged.
fn ideal_exchange_ms(net: &Net) -> f64 {
    let link = net.config();
    let busy: u64 = net
        .trace()
        .iter()
        .filter(|p| p.len > 0)
        .map(|p| {
            let path = if p.src.port() == PORT {
                link.down
            } else {
                link.up
            };
            path.serialization_ticks(p.wire_len)
        })
        .sum();
    let ticks = link.up.latency.as_ticks() + link.down.latency.as_ticks() + busy;
    ms(Duration::from_ticks(ticks))
}

// ---------------------------------------------------------------------------------------

const FRAMES: usize = 50;
const FRAME_BYTES: usize = 120 * 1024;
/// Runs for the CPU figure; the median is reported.
const CPU_REPEATS: usize = 7;

/// `frames_per_s`: frames per second of virtual time, from the first request to the
/// last frame's last byte, each variant alone on the link.
///
/// `cpu_ns_per_frame`: host CPU time of every poll of the server's connection futures
/// (the HTTP code, the layers, the socket calls; not the stack's runner), per frame.
/// A busy machine makes thread CPU time vary by more than the few percent the goal is
/// about, so the variants are measured at once: one simulation runs every variant's
/// server on its own port, each with its own client taking the 50 frames, and their
/// polls interleave, so whatever slows the machine slows them alike. The median of
/// `CPU_REPEATS` such runs is reported. The goal: a layered server at most 2 % above
/// the same server without layers.
fn jpeg_frames(id: &'static str, variants: &[Variant]) -> Vec<Figure> {
    let frames_per_s: Vec<Option<f64>> = variants
        .iter()
        .map(|&variant| {
            progress(&format!("{id} · {}", variant.id()));
            frames_alone(variant)
        })
        .collect();
    let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    for repeat in 0..CPU_REPEATS {
        progress(&format!(
            "{id} · CPU, every variant at once · run {}/{CPU_REPEATS}",
            repeat + 1
        ));
        for (runs, ns) in cpu.iter_mut().zip(frames_together(variants)) {
            runs.extend(ns);
        }
    }
    variants
        .iter()
        .zip(frames_per_s.iter().zip(cpu.iter_mut()))
        .flat_map(|(&variant, (&frames_per_s, runs))| {
            runs.sort_by(f64::total_cmp);
            let median = (runs.len() == CPU_REPEATS).then(|| runs[runs.len() / 2]);
            [
                Figure::new(id, variant, "frames_per_s", frames_per_s, Unit::FramesPerS)
                    .none_means("failed"),
                Figure::new(id, variant, "cpu_ns_per_frame", median, Unit::Ns)
                    .none_means("failed")
                    .goal(Goal::TimesUnlayered(1.02)),
            ]
        })
        .collect()
}

/// `jpeg_frames` served by `variant` alone, once, its polls metered: the run
/// `examples/showcase/callgrind.sh` counts the instructions of (inside
/// `probes::poll_server`, the metered polls). Its `cpu_ns_per_frame`, `None` unless
/// every frame arrived whole.
pub fn serve_frames(variant: Variant) -> Figure {
    let ns = frames_together(&[variant]).pop().flatten();
    Figure::new("jpeg_frames", variant, "cpu_ns_per_frame", ns, Unit::Ns)
}

/// Takes the frames from `server` on one keep-alive connection; the virtual time it
/// took, `None` unless every frame arrived whole.
async fn take_frames(stack: Stack<'static>, server: SocketAddr) -> Option<Duration> {
    let options = ClientOptions::new();
    let mut buffers = ClientBuffers::new(&options);
    let mut session = Session::connect(stack, &mut buffers, server, options)
        .await
        .ok()?;
    let path = format!("/bytes/{FRAME_BYTES}");
    let start = Instant::now();
    for _ in 0..FRAMES {
        if !ok_200(&session.get(&path).await, FRAME_BYTES) {
            return None;
        }
    }
    Some(Instant::now() - start)
}

/// Frames per second of `variant` alone on the link.
fn frames_alone(variant: Variant) -> Option<f64> {
    on_device(variant, Metering::Off, |net, device, _| async move {
        let elapsed = take_frames(net.client().stack, device.addr(PORT)).await?;
        Some(FRAMES as f64 / (ms(elapsed) / 1000.0))
    })
}

/// Every variant serving its frames at once, each on port `PORT + its index`: CPU ns
/// per frame of each, `None` for one whose frames did not all arrive.
fn frames_together(variants: &[Variant]) -> Vec<Option<f64>> {
    let variants = variants.to_vec();
    run(async move {
        variants::reset_statics();
        let net = Net::new(LinkConfig::wifi());
        let device = net.server();
        let mut servers = Vec::new();
        for &variant in &variants {
            let port = PORT + variant.index() as u16;
            let slots = variants::spawn_server(variant, &device, port, Metering::On);
            slots.wait_all_listening().await;
            servers.push(device.addr(port));
        }
        let meter = Rc::new(CpuMeter::start());
        // Each client reads its server's total the moment its last frame is in, before
        // that server goes on to close the idle connection.
        let clients: Vec<_> = servers
            .into_iter()
            .zip(&variants)
            .map(|(server, variant)| {
                let (meter, channel, stack) = (meter.clone(), variant.index(), net.client().stack);
                spawn(async move {
                    take_frames(stack, server).await?;
                    Some(meter.total_ns(channel) as f64 / FRAMES as f64)
                })
            })
            .collect();
        let mut per_frame = Vec::new();
        for client in clients {
            per_frame.push(client.await.ok().flatten());
        }
        per_frame
    })
}

// ---------------------------------------------------------------------------------------

/// How long device A's connections idle before device B loads the page.
const A_IDLES: Duration = Duration::from_secs(2);

/// `b_ok` (1 when every request of B's page load got its 200) and `b_ms` (B's page
/// load time). A browser keeps its 6 connections open after a page load; on a
/// device with 8 sockets the next device's SYNs find too few listeners.
fn second_device(id: &'static str, variant: Variant) -> Vec<Figure> {
    let (ok, elapsed) = on_device(variant, Metering::Off, |net, device, _| async move {
        let (a, b) = (net.client(), net.client());
        let page = Page::default();
        let load_a = client::browser(a.stack, device.addr(PORT), &page, AfterLoad::StayIdle).await;
        Timer::after(A_IDLES).await;
        let load_b = client::browser(b.stack, device.addr(PORT), &page, AfterLoad::StayIdle).await;
        // A's connections stay open (idle) until B is done.
        drop(load_a);
        (load_b.ok, load_b.elapsed)
    });
    vec![
        Figure::new(
            id,
            variant,
            "b_ok",
            Some(f64::from(u8::from(ok))),
            Unit::Bool,
        )
        .goal(Goal::Equals(1.0)),
        Figure::new(id, variant, "b_ms", ok.then(|| ms(elapsed)), Unit::Ms).none_means("failed"),
    ]
}

// ---------------------------------------------------------------------------------------

/// Runs of `second_device_busy`, each with fresh connections: as many as
/// tests/real_network.py's `second_device`, whose timing the constants below copy.
const BUSY_RUNS: usize = 10;
/// When device B starts, after A opened its page.
const B_STARTS: Duration = Duration::from_secs(1);
/// How long each of B's requests may take, connect included (`curl -m 5`).
const B_MAX: Duration = Duration::from_secs(5);
/// When A's page is read (its events, whether its EventSource gave up) and closed.
const A_READ_AT: Duration = Duration::from_secs(4);
/// The pause between two runs, once A's tab is closed.
const RUN_PAUSE: Duration = Duration::from_millis(500);

/// The real-network `second_device` in the simulation. Device A is a browser on the
/// camera page (6 tiles fetching `/frame.jpg` back to back over its 6 connections, its
/// EventSource queued for one of them during that burst); 1 s later device B, from an
/// address of its own, fetches `/` and then `/frame.jpg` on a new connection each,
/// within 5 s each; at 4 s A's page is read and closed. 10 runs on one server.
///
/// `b_ok_runs`: runs in which B got both answers whole; `b_ms`: the median of B's two
/// fetches in those runs; `a_stream_events`: events A's EventSource received, all runs;
/// `a_streams_given_up`: runs in which it gave up (an answer other than a 200 stream);
/// `warn_lines` over the 10 runs. Goals: B served and A's stream kept in every run,
/// no warn line.
fn second_device_busy(id: &'static str, variant: Variant) -> Vec<Figure> {
    probes::reset_lines();
    let runs = on_device(variant, Metering::Off, |net, device, _| async move {
        let addr = device.addr(PORT);
        let (a, b) = (net.client(), net.client());
        let page = CameraPage::new();
        let mut runs: Vec<(Option<Duration>, EventSourceStats)> = Vec::with_capacity(BUSY_RUNS);
        for _ in 0..BUSY_RUNS {
            let start = Instant::now();
            let view = client::camera_page(a.stack, addr, &page);
            Timer::at(start + B_STARTS).await;
            let b_took = device_b(b.stack, addr).await;
            Timer::at(start + A_READ_AT).await;
            let source = view.stats().events.unwrap_or_default();
            view.close().await;
            runs.push((b_took, source));
            Timer::after(RUN_PAUSE).await;
        }
        runs
    });
    let b_ms: Vec<f64> = runs.iter().filter_map(|(b, _)| b.map(ms)).collect();
    let events: usize = runs.iter().map(|(_, s)| s.events).sum();
    let given_up = runs.iter().filter(|(_, s)| s.given_up).count();
    vec![
        Figure::new(
            id,
            variant,
            "b_ok_runs",
            Some(b_ms.len() as f64),
            Unit::Runs,
        )
        .goal(Goal::Equals(BUSY_RUNS as f64)),
        Figure::new(id, variant, "b_ms", median(b_ms), Unit::Ms).none_means("failed"),
        Figure::new(
            id,
            variant,
            "a_stream_events",
            Some(events as f64),
            Unit::Events,
        ),
        Figure::new(
            id,
            variant,
            "a_streams_given_up",
            Some(given_up as f64),
            Unit::Runs,
        )
        .goal(Goal::Equals(0.0)),
        warn_lines(id, variant),
    ]
}

/// Device B: `/`, then `/frame.jpg`, each on a new connection within `B_MAX`, as two
/// curl calls; the time both took, `None` unless both were answered whole.
async fn device_b(stack: Stack<'static>, server: SocketAddr) -> Option<Duration> {
    let routes = Routes::new();
    let mut took = Some(Duration::from_ticks(0));
    for (path, len) in [("/", routes.document_len), ("/frame.jpg", routes.frame_len)] {
        let start = Instant::now();
        let r = client::get_within(stack, server, path, B_MAX).await;
        let spent = Instant::now() - start;
        took = took.filter(|_| ok_200(&r, len)).map(|t| t + spent);
    }
    took
}

// ---------------------------------------------------------------------------------------

const SSE_CLIENTS: usize = 3;
/// Events each SSE client reads (one a second) before it closes: the streams stay open
/// through both page loads.
const SSE_EVENTS: usize = 8;
const BROWSERS: usize = 2;

/// `pages_ok_ratio` (page loads with every request answered 200) and
/// `streams_admitted` (SSE clients that received events; a refused one is answered
/// 200 with `retry:` and no event). The goal: every page loads and exactly the stream
/// cap of streams (2 of the ESP32-S3 budget) is admitted.
fn sse_and_pages(id: &'static str, variant: Variant) -> Vec<Figure> {
    let (pages_ok, streams) = on_device(variant, Metering::Off, |net, device, _| async move {
        let addr = device.addr(PORT);
        let mut viewers = Vec::new();
        for _ in 0..SSE_CLIENTS {
            let host = net.client();
            viewers.push(spawn(client::sse(
                host.stack,
                addr,
                SSE_EVENTS,
                Duration::from_secs(SSE_EVENTS as u64 * 2),
            )));
            Timer::after_millis(100).await;
        }
        Timer::after_secs(1).await;
        let mut pages_ok = 0;
        for _ in 0..BROWSERS {
            let host = net.client();
            let load = client::browser(host.stack, addr, &Page::default(), AfterLoad::Close).await;
            pages_ok += usize::from(load.ok);
            load.connections.close().await;
            Timer::after_secs(1).await;
        }
        let mut streams = 0;
        for viewer in viewers {
            if let Ok(Ok(outcome)) = viewer.await
                && outcome.status == 200
                && outcome.events > 0
            {
                streams += 1;
            }
        }
        (pages_ok, streams)
    });
    let stream_cap = variants::BUDGET.config().stream;
    vec![
        Figure::new(
            id,
            variant,
            "pages_ok_ratio",
            Some(pages_ok as f64 / BROWSERS as f64),
            Unit::Ratio,
        )
        .goal(Goal::Equals(1.0)),
        Figure::new(
            id,
            variant,
            "streams_admitted",
            Some(streams as f64),
            Unit::Count,
        )
        .goal(Goal::Equals(f64::from(stream_cap))),
    ]
}

// ---------------------------------------------------------------------------------------

/// The timing of tests/real_network.py's `sse_over_cap`: the streams holding the
/// stream slots end after 3 s (`curl -N -m 3`), the page opens at 0.5 s and is read
/// 11 s later.
const HOLDERS_LEAVE: Duration = Duration::from_secs(3);
const PAGE_OPENS: Duration = Duration::from_millis(500);
const PAGE_READ_AFTER: Duration = Duration::from_secs(11);

/// The real-network `sse_over_cap` in the simulation. As many event streams as the
/// stream cap (2 of the ESP32-S3 budget), each from a device of its own, hold the
/// stream slots for 3 s; at 0.5 s a browser opens the camera page (one tile and its
/// EventSource) from another address, and its page is read 11 s later. A browser gives
/// an EventSource up for good after a 503, so one refused at first comes back only if
/// the server answered it in a way a browser retries.
///
/// `refused_first`: the page's EventSource saw an error (a refusal, or a stream lost
/// and reopened; the real network's count of its error events); `reconnected_and_served`:
/// its EventSource received events by the end, reconnecting by itself if it had to
/// (the real network's `served_after_retry`; goal 1); `given_up`: it gave up (goal 0).
/// Without a cap (raw, picoserve) the stream is served at once.
fn sse_over_cap(id: &'static str, variant: Variant) -> Vec<Figure> {
    let cap = usize::from(variants::BUDGET.config().stream);
    let source = on_device(variant, Metering::Off, move |net, device, _| async move {
        let addr = device.addr(PORT);
        let start = Instant::now();
        for _ in 0..cap {
            let holder = net.client();
            spawn(client::sse(holder.stack, addr, usize::MAX, HOLDERS_LEAVE));
        }
        Timer::at(start + PAGE_OPENS).await;
        let page = CameraPage::new().with_tiles(1);
        let view = client::camera_page(net.client().stack, addr, &page);
        Timer::at(start + PAGE_OPENS + PAGE_READ_AFTER).await;
        let source = view.stats().events.unwrap_or_default();
        view.close().await;
        source
    });
    let flag = |on: bool| Some(f64::from(u8::from(on)));
    vec![
        Figure::new(
            id,
            variant,
            "refused_first",
            flag(source.reconnects > 0 || source.given_up),
            Unit::Bool,
        ),
        Figure::new(
            id,
            variant,
            "reconnected_and_served",
            flag(source.events > 0),
            Unit::Bool,
        )
        .goal(Goal::Equals(1.0)),
        Figure::new(id, variant, "given_up", flag(source.given_up), Unit::Bool)
            .goal(Goal::Equals(0.0)),
    ]
}

// ---------------------------------------------------------------------------------------

const ATTACKERS: usize = 50;
const ATTACK_BYTE_EVERY: Duration = Duration::from_secs(2);
const LEGIT_REQUESTS: usize = 100;
/// The legitimate client starts once the attack holds the device.
const LEGIT_STARTS: Duration = Duration::from_secs(1);
/// A request not answered within this time, reconnects included, failed.
const LEGIT_BUDGET: Duration = Duration::from_secs(10);
/// How often the legitimate client retries a refused connect.
const LEGIT_RETRY: Duration = Duration::from_millis(250);

/// `legit_ok_ratio` (of 100 requests, those answered 200 within 10 s) and
/// `legit_p50_ms` (their median latency, reconnects included).
fn slowloris(id: &'static str, variant: Variant) -> Vec<Figure> {
    let latencies = on_device(variant, Metering::Off, |net, device, _| async move {
        let addr = device.addr(PORT);
        let until = Instant::now() + HELD;
        let attack = net.client();
        for _ in 0..ATTACKERS {
            spawn(slowloris_connection(attack.stack, addr, until));
        }
        Timer::after(LEGIT_STARTS).await;
        legit_requests(net.client().stack, addr, until).await
    });
    let mut ok: Vec<Duration> = latencies.into_iter().flatten().collect();
    ok.sort();
    vec![
        Figure::new(
            id,
            variant,
            "legit_ok_ratio",
            Some(ok.len() as f64 / LEGIT_REQUESTS as f64),
            Unit::Ratio,
        )
        .goal(Goal::AtLeast(0.99)),
        Figure::new(
            id,
            variant,
            "legit_p50_ms",
            ok.get(ok.len() / 2).map(|&d| ms(d)),
            Unit::Ms,
        )
        .none_means("none ok"),
    ]
}

/// One slowloris connection: opens, sends a request head one byte every 2 s and never
/// ends it; when the server drops it, opens the next at the following tick.
async fn slowloris_connection(stack: Stack<'static>, server: SocketAddr, until: Instant) {
    let head = b"GET / HTTP/1.1\r\nHost: device\r\nUser-Agent: slowloris\r\nX-Wait: ";
    let (mut rx, mut tx) = ([0u8; 512], [0u8; 256]);
    let mut next = Instant::now();
    while next < until {
        Timer::at(next).await;
        let mut socket = TcpSocket::new(stack, &mut rx, &mut tx);
        if with_timeout(ATTACK_BYTE_EVERY, socket.connect(v4(server)))
            .await
            .is_ok_and(|r| r.is_ok())
        {
            let mut sent = 0;
            loop {
                let byte = head.get(sent).copied().unwrap_or(b'x');
                if socket.write_all(&[byte]).await.is_err() {
                    break;
                }
                sent += 1;
                next += ATTACK_BYTE_EVERY;
                if next >= until {
                    return;
                }
                Timer::at(next).await;
            }
        }
        next += ATTACK_BYTE_EVERY;
    }
}

/// The legitimate client: `LEGIT_REQUESTS` sequential GETs of `/` on a keep-alive
/// connection, reconnecting (every `LEGIT_RETRY` while refused) when it is lost. One
/// entry per request: its latency from its first attempt, `None` if it failed.
async fn legit_requests(
    stack: Stack<'static>,
    server: SocketAddr,
    until: Instant,
) -> Vec<Option<Duration>> {
    let document_len = Routes::new().document_len;
    let options = ClientOptions::new();
    let mut results = Vec::with_capacity(LEGIT_REQUESTS);
    let mut first_try: Option<Instant> = None;
    'connections: while results.len() < LEGIT_REQUESTS && Instant::now() < until {
        let started = *first_try.get_or_insert_with(Instant::now);
        if Instant::now() - started >= LEGIT_BUDGET {
            results.push(None);
            first_try = None;
            continue;
        }
        let mut buffers = ClientBuffers::new(&options);
        let Ok(mut session) = Session::connect(stack, &mut buffers, server, options).await else {
            Timer::after(LEGIT_RETRY).await;
            continue;
        };
        while results.len() < LEGIT_REQUESTS && Instant::now() < until {
            let started = *first_try.get_or_insert_with(Instant::now);
            let response = session.get("/").await;
            let latency = Instant::now() - started;
            match response {
                Err(_) if latency < LEGIT_BUDGET => continue 'connections,
                r => {
                    let ok = ok_200(&r, document_len) && latency < LEGIT_BUDGET;
                    results.push(ok.then_some(latency));
                    first_try = None;
                }
            }
        }
        session.close().await;
    }
    results.resize(LEGIT_REQUESTS, None);
    results
}

// ---------------------------------------------------------------------------------------

/// The constants of tests/real_network.py's `slowloris`: `slowhttptest -H -c 50 -r 100
/// -i 10 -l 14` and a legitimate `curl -m 2 /` every 500 ms from 0.3 s to 12 s.
const SLOW_HEADS: u64 = 50;
/// `-r 100`: connections opened per second.
const SLOW_HEAD_GAP: Duration = Duration::from_millis(10);
/// `-i 10`: seconds between two header lines of a connection.
const SLOW_HEAD_EVERY: Duration = Duration::from_secs(10);
/// `-l 14`: how long the attack lasts.
const SLOW_ATTACK_LASTS: Duration = Duration::from_secs(14);
const LEGIT_FROM: Duration = Duration::from_millis(300);
const LEGIT_EVERY: Duration = Duration::from_millis(500);
const LEGIT_MAX: Duration = Duration::from_secs(2);
const LEGIT_UNTIL: Duration = Duration::from_secs(12);

/// The real-network `slowloris` in the simulation: 50 slow-head connections from one
/// address, opened 10 ms apart from 0 s, each sending an unfinished head and a header
/// line every 10 s and never reopened; from a second address a legitimate `GET /` on a
/// new connection, within 2 s, every 500 ms from 0.3 s (the attack's first second) to
/// 12 s.
///
/// `legit_ok_ratio`: requests answered whole (goal ≥ 0.99); `legit_attempts`;
/// `first_ok_ms`: from the attack's start to the end of the first answered request
/// (goal ≤ 2000 ms); `warn_lines` (goal none).
fn slowloris_first_second(id: &'static str, variant: Variant) -> Vec<Figure> {
    probes::reset_lines();
    let (attempts, ok, first_ok) = on_device(variant, Metering::Off, |net, device, _| async move {
        let addr = device.addr(PORT);
        let start = Instant::now();
        let attack = net.client();
        let until = start + SLOW_ATTACK_LASTS;
        spawn(async move {
            for k in 0..SLOW_HEADS {
                Timer::at(start + SLOW_HEAD_GAP * k as u32).await;
                spawn(client::slow_headers(
                    attack.stack,
                    addr,
                    SLOW_HEAD_EVERY,
                    until,
                ));
            }
        });
        let legit = net.client();
        let document_len = Routes::new().document_len;
        let (mut attempts, mut ok, mut first_ok) = (0usize, 0usize, None);
        Timer::at(start + LEGIT_FROM).await;
        while Instant::now() - start < LEGIT_UNTIL {
            let tick = Instant::now();
            let r = client::get_within(legit.stack, addr, "/", LEGIT_MAX).await;
            attempts += 1;
            if ok_200(&r, document_len) {
                ok += 1;
                first_ok.get_or_insert(Instant::now() - start);
            }
            Timer::at(tick + LEGIT_EVERY).await;
        }
        (attempts, ok, first_ok)
    });
    vec![
        Figure::new(
            id,
            variant,
            "legit_ok_ratio",
            Some(ok as f64 / attempts as f64),
            Unit::Ratio,
        )
        .goal(Goal::AtLeast(0.99)),
        Figure::new(
            id,
            variant,
            "legit_attempts",
            Some(attempts as f64),
            Unit::Count,
        ),
        Figure::new(id, variant, "first_ok_ms", first_ok.map(ms), Unit::Ms)
            .none_means("none ok")
            .goal(Goal::AtMost(2000.0)),
        warn_lines(id, variant),
    ]
}

// ---------------------------------------------------------------------------------------

const BIG_PATH: &str = "/bytes/163840";
const _: () = assert!(BODY_MAX == 163_840, "BIG_PATH asks for the largest body");

/// The reaper's send stall and the link's round trip: the slot goals.
const STALL: Duration = tcp_layers_reaper::ReaperConfig::DEFAULT_STALL;
const RTT: Duration = Duration::from_ticks(
    LinkConfig::wifi().up.latency.as_ticks() + LinkConfig::wifi().down.latency.as_ticks(),
);

/// The slow reader's receive buffer: once it is full the window is closed.
const SLOW_READER_WINDOW: usize = 1024;

/// `slot_free_ms`: from the moment the reader's window closed (its 1 KiB receive
/// buffer full, nothing read) to its slot listening again; none if still held 120 s
/// later. The goal: the stall deadline plus one round trip.
fn slow_reader(id: &'static str, variant: Variant) -> Vec<Figure> {
    let free = on_device(variant, Metering::Off, |net, device, slots| async move {
        let reader = net.client();
        let options = ClientOptions::new().with_rx_buffer(SLOW_READER_WINDOW);
        let mut buffers = ClientBuffers::new(&options);
        let mut session = Session::connect(reader.stack, &mut buffers, device.addr(PORT), options)
            .await
            .ok()?;
        let local = session.local()?;
        let request = format!("GET {BIG_PATH} HTTP/1.1\r\nHost: device\r\n\r\n");
        session.socket().write_all(request.as_bytes()).await.ok()?;
        // Polled, so this is up to a millisecond late; the figure starts at the exact
        // moment from the trace below.
        let noticed = loop {
            if session.socket().recv_queue() >= SLOW_READER_WINDOW {
                break Instant::now();
            }
            if !session.state().may_recv() {
                return None;
            }
            Timer::after_millis(1).await;
        };
        // The server is sending, so it has accepted: its slot knows the peer.
        let slot = slots.slot_of(local)?;
        let free = slot_free_at(&slots, slot, noticed + HELD).await?;
        drop(session);
        let stopped = window_full_at(&net, v4(local), SLOW_READER_WINDOW)?;
        Some(ms(free - stopped))
    });
    vec![slot_figure(id, variant, free)]
}

/// When the response bytes delivered to `client` first reached `window`: the moment its
/// receive buffer, never read, was full and its window closed.
fn window_full_at(net: &Net, client: SocketAddrV4, window: usize) -> Option<Instant> {
    let mut delivered = 0;
    net.trace()
        .iter()
        .filter(|p| p.dst == client && p.len > 0)
        .find_map(|p| match p.fate {
            Fate::Delivered(at) => {
                delivered += p.len;
                (delivered >= window).then_some(at)
            }
            _ => None,
        })
}

fn slot_figure(scenario: &'static str, variant: Variant, free_ms: Option<f64>) -> Figure {
    Figure::new(scenario, variant, "slot_free_ms", free_ms, Unit::Ms)
        .none_means("held > 120 s")
        .goal(Goal::AtMost(ms(STALL + RTT)))
}

// ---------------------------------------------------------------------------------------

/// Response bytes the client reads before it vanishes.
const VANISH_AFTER: usize = 16 * 1024;

/// `slot_free_ms`: from the moment the client vanished to its slot listening again;
/// none if still held 120 s later. The goal: the stall deadline plus one round trip.
fn vanished_peer(id: &'static str, variant: Variant) -> Vec<Figure> {
    let free = on_device(variant, Metering::Off, |net, device, slots| async move {
        let phone = net.client();
        let gone =
            client::vanish_after(&net, phone.stack, device.addr(PORT), BIG_PATH, VANISH_AFTER)
                .await
                .ok()?;
        let slot = slots.slot_of(gone.local)?;
        let free = slot_free_at(&slots, slot, gone.at + HELD).await?;
        Some(ms(free - gone.at))
    });
    vec![slot_figure(id, variant, free)]
}

// ---------------------------------------------------------------------------------------

/// The timewait layer's default linger: the close goal.
const LINGER: Duration = tcp_layers_timewait::TimeWaitLayer::DEFAULT_LINGER;

/// `ms_until_accepting`: from the server's FIN (or RST) after a `Connection: close`
/// response to that slot listening again, while the client stays silent (its stack
/// acknowledges, its application neither reads on nor closes); none if still held
/// 120 s later. The goal: the linger plus one round trip.
fn close_to_listen(id: &'static str, variant: Variant) -> Vec<Figure> {
    let free = on_device(variant, Metering::Off, |net, device, slots| async move {
        let phone = net.client();
        let options = ClientOptions::new();
        let mut buffers = ClientBuffers::new(&options);
        let mut session = Session::connect(phone.stack, &mut buffers, device.addr(PORT), options)
            .await
            .ok()?;
        let local = session.local()?;
        let response = session
            .request(b"GET / HTTP/1.1\r\nHost: device\r\nConnection: close\r\n\r\n")
            .await;
        if response.map(|r| r.status) != Ok(200) {
            return None;
        }
        let slot = slots.slot_of(local)?;
        let free = slot_free_at(&slots, slot, Instant::now() + HELD).await;
        let closed_at = net
            .trace()
            .iter()
            .find(|p| p.dst == v4(local) && (p.flags.fin() || p.flags.rst()))
            .map(|p| p.at)?;
        drop(session);
        Some(ms(free? - closed_at))
    });
    vec![
        Figure::new(id, variant, "ms_until_accepting", free, Unit::Ms)
            .none_means("held > 120 s")
            .goal(Goal::AtMost(ms(LINGER + RTT))),
    ]
}

// ---------------------------------------------------------------------------------------

const CANCELS: usize = 1000;
/// Client hosts the cancels are spread over, each cancelling one after the other.
const CANCEL_HOSTS: usize = 4;
const CANCEL_SEED: u64 = 0x5eed_0007;

/// splitmix64: the cancel offsets, the same on every run.
fn next_random(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `warn_lines` (log lines at warn or above while 1000 clients cancel) and
/// `client_cancels_counted` (closes the quiet layer counted as client cancels;
/// only the layered variants count). The plain variants log every failed read or
/// write at error level, as hand-written servers and picoserve's own accept loop do.
fn cancel_storm(id: &'static str, variant: Variant) -> Vec<Figure> {
    probes::reset_lines();
    let counted = on_device(variant, Metering::Off, |net, device, slots| async move {
        let mut seed = CANCEL_SEED;
        let offsets: Vec<usize> = (0..CANCELS)
            .map(|_| 1 + (next_random(&mut seed) % (BODY_MAX as u64 - 1)) as usize)
            .collect();
        let addr = device.addr(PORT);
        let clients: Vec<_> = (0..CANCEL_HOSTS)
            .map(|h| {
                let host = net.client();
                let mine: Vec<usize> = offsets
                    .iter()
                    .skip(h)
                    .step_by(CANCEL_HOSTS)
                    .copied()
                    .collect();
                spawn(async move {
                    for k in mine {
                        let _ = client::cancel_after(host.stack, addr, BIG_PATH, k).await;
                    }
                })
            })
            .collect();
        for c in clients {
            let _ = c.await;
        }
        // Every handler done with its connection (or a minute passed).
        let _ = with_timeout(Duration::from_secs(60), slots.wait_all_listening()).await;
        COUNTERS.snapshot().closed(CloseReason::ClientCancelled)
    });
    let mut figures = vec![warn_lines(id, variant)];
    if variant.is_layered() {
        figures.push(
            Figure::new(
                id,
                variant,
                "client_cancels_counted",
                Some(counted as f64),
                Unit::Count,
            )
            .goal(Goal::Equals(CANCELS as f64)),
        );
    }
    figures
}

// ---------------------------------------------------------------------------------------

/// `ram_bytes_per_conn`: the size of a socket wrapped in the default stack minus the
/// socket's. The layers have no other per-connection state; the budget, the counters
/// and the configurations are statics shared by every connection.
fn footprint(id: &'static str, variants: &[Variant]) -> Vec<Figure> {
    progress(id);
    variants
        .iter()
        .filter(|&&v| v == Variant::Layered)
        .map(|&v| {
            Figure::new(
                id,
                v,
                "ram_bytes_per_conn",
                Some(variants::layered_bytes_per_connection() as f64),
                Unit::Bytes,
            )
            .goal(Goal::AtMost(64.0))
        })
        .collect()
}
