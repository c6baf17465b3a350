//! The ESP32 camera app (`examples/esp32/app`) tested on the host with tcp-layers-sim.
//!
//! The app is the one the firmware and the TAP binary compile, unchanged: its HTTP task
//! is spawned with embassy-executor's `Spawner` as the firmware's `main` spawns it, on
//! a simulated device (ESP32-S3 profile, 8 sockets) behind a 20 ms, 10 Mbit/s Wi-Fi
//! link, and scripted clients play the scenarios of the real-network check
//! (`tests/real_network.sh`): correctness, cancels, second device, a stream over the
//! cap, silent closers, a slow reader, slowloris.
//!
//! [`run_scenarios`] runs them all in one simulation and returns its figures, named as
//! the real-network check names them; `tests/agreement.py` judges both with the same
//! goals and fails when a verdict differs. A
//! task that never ends (the HTTP task) keeps its `static` pool slot for the life of
//! the process, so each test binary runs one simulation: `tests/layered.rs` the app
//! with its layer stack, `tests/unlayered.rs` the same app on the bare socket.
#![recursion_limit = "256"]

use std::sync::atomic::{AtomicUsize, Ordering};

use camera_app::{server, stats};
use tcp_layers::limit::StackServices;
use tcp_layers::profile;
use tcp_layers::sim::client::{CameraPage, ClientBuffers, ClientOptions, PeerEnd, Session};
use tcp_layers::sim::embassy_net::Stack;
use tcp_layers::sim::{Duration, Instant, LinkConfig, Net, Timer, client, run, spawn, spawner};

/// The port the app serves on, as on the device.
const PORT: u16 = 80;

/// The ESP32-S3 profile with 8 sockets, the TAP binary's default, and a stack with
/// room for exactly those 8 (no DHCP client in the simulation).
const SOCKETS: usize = 8;
static RESOURCES: server::Resources<SOCKETS> =
    server::Resources::new(profile::ESP32_S3.fits_stack(SOCKETS, StackServices::None));

/// Whether the app serves through its layer stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layering {
    /// `server::serve_layered`: the firmware's default build.
    Layered,
    /// `server::serve_unlayered`: the firmware's `no-layers` build, the TAP binary's
    /// `--unlayered`.
    Unlayered,
}

/// The firmware's HTTP task: the accept loops on every socket; never returns.
#[embassy_executor::task]
async fn http_task(stack: Stack<'static>, layering: Layering) {
    match layering {
        Layering::Layered => server::serve_layered(stack, PORT, &RESOURCES).await,
        Layering::Unlayered => server::serve_unlayered(stack, PORT, &RESOURCES).await,
    }
}

/// One figure, in the real-network check's shape: the scenario and the metric are
/// those of `tests/real_network.py`, so `tests/agreement.py` can judge both with the
/// same goals.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Figure {
    /// The real-network scenario it mirrors.
    pub scenario: &'static str,
    /// The metric's name there.
    pub metric: &'static str,
    /// `None` for a measurement that found nothing (a slot still held at its bound).
    pub value: Option<f64>,
    /// Its unit there.
    pub unit: &'static str,
}

/// Everything one simulation measured.
#[derive(Clone, Debug, Default)]
pub struct Figures {
    /// In the order the scenarios ran.
    pub figures: Vec<Figure>,
    /// The counters as `/stats` shows them, at the end.
    pub stats: String,
}

impl Figures {
    /// The value of `scenario`/`metric`, if it was measured and found something.
    pub fn get(&self, scenario: &str, metric: &str) -> Option<f64> {
        self.figures
            .iter()
            .find(|f| f.scenario == scenario && f.metric == metric)
            .and_then(|f| f.value)
    }

    /// One JSON object per line, as `tests/real_network.sh --record` writes them, for
    /// the variant the real-network check gives this app (`picoserve` or
    /// `picoserve_layered`).
    pub fn json_lines(&self, layering: Layering) -> String {
        let mut out = String::new();
        for f in &self.figures {
            let value = match f.value {
                Some(v) if v.is_finite() => format!("{v}"),
                _ => "null".to_string(),
            };
            out += &format!(
                "{{\"scenario\":\"{}\",\"variant\":\"{}\",\"metric\":\"{}\",\"value\":{},\"unit\":\"{}\"}}\n",
                f.scenario,
                layering.variant(),
                f.metric,
                value,
                f.unit
            );
        }
        out
    }

    /// What a test does with the figures before it asserts: [`Self::record`]s them and
    /// prints them (the JSON lines, then the counters).
    pub fn report(&self, layering: Layering) {
        self.record(layering);
        print!("{}", self.json_lines(layering));
        println!("{}", self.stats);
    }

    /// Writes [`Self::json_lines`] to `<dir>/<variant>.jsonl` when the environment
    /// variable `TEST_KIT_FIGURES` names a directory (CI's agreement check reads them).
    pub fn record(&self, layering: Layering) {
        if let Some(dir) = std::env::var_os("TEST_KIT_FIGURES") {
            let path = std::path::Path::new(&dir).join(format!("{}.jsonl", layering.variant()));
            std::fs::create_dir_all(&dir).expect("the figures directory can be created");
            std::fs::write(&path, self.json_lines(layering)).expect("the figures can be written");
        }
    }

    fn push(
        &mut self,
        scenario: &'static str,
        metric: &'static str,
        value: Option<f64>,
        unit: &'static str,
    ) {
        self.figures.push(Figure {
            scenario,
            metric,
            value,
            unit,
        });
    }

    /// The WARN and ERROR lines logged since `mark`, as the scenario's `warn_lines`.
    fn warn_lines(&mut self, scenario: &'static str, mark: usize) {
        let lines = WARN_LINES.load(Ordering::SeqCst) - mark;
        self.push(scenario, "warn_lines", Some(lines as f64), "lines");
    }
}

impl Layering {
    /// The variant the real-network check gives this app: the app is served by
    /// picoserve, with (`picoserve_layered`) or without its layers.
    pub const fn variant(self) -> &'static str {
        match self {
            Layering::Layered => "picoserve_layered",
            Layering::Unlayered => "picoserve",
        }
    }
}

/// Counts WARN and ERROR lines and prints them (a test shows its output when it fails).
struct CountingLog;

static WARN_LINES: AtomicUsize = AtomicUsize::new(0);

impl log::Log for CountingLog {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::Level::Warn
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            WARN_LINES.fetch_add(1, Ordering::SeqCst);
            eprintln!(
                "{:<5} {:>10} {}: {}",
                record.level(),
                Instant::now().as_micros(),
                record.target(),
                record.args()
            );
        }
    }

    fn flush(&self) {}
}

/// Runs every scenario against the app in one simulation, in the order of the
/// real-network check: correctness, cancels, second device, a stream over the cap,
/// silent closers, a slow reader, slowloris. Call it once per process (see the crate
/// docs).
pub fn run_scenarios(layering: Layering) -> Figures {
    let _ = log::set_logger(&CountingLog);
    log::set_max_level(log::LevelFilter::Warn);
    run(async move {
        let net = Net::new(LinkConfig::wifi());
        let device = net.server_with_sockets::<SOCKETS>();
        // As the firmware's main: the event hook, then the HTTP task.
        stats::install_event_hook();
        spawner().spawn(http_task(device.stack, layering).expect("one HTTP task"));
        let addr = device.addr(PORT);
        let mut f = Figures::default();

        // Correctness: `/` and `/frame.jpg` 20 times each, every answer a 200 whose
        // body is as long as announced (the real check compares the bytes too).
        let browser = net.client();
        let mut complete = 0;
        for _ in 0..20 {
            for path in ["/", "/frame.jpg"] {
                if let Ok(r) = client::get(browser.stack, addr, path).await
                    && r.status == 200
                    && r.body_len > 0
                {
                    complete += 1;
                }
            }
        }
        f.push(
            "correctness",
            "exact_responses",
            Some(f64::from(complete)),
            "of 40",
        );

        // Cancels: a browser swapping images, each frame cut after 8 KiB.
        let mark = WARN_LINES.load(Ordering::SeqCst);
        let before = counter(&stats::snapshot().to_string(), "client_cancelled");
        let mut cut = 0;
        for _ in 0..30 {
            if client::cancel_after(browser.stack, addr, "/frame.jpg", 8192)
                .await
                .is_ok()
            {
                cut += 1;
            }
        }
        Timer::after(Duration::from_secs(1)).await;
        let counted = counter(&stats::snapshot().to_string(), "client_cancelled") - before;
        f.push("cancels", "cut_mid_transfer", Some(f64::from(cut)), "of 30");
        f.warn_lines("cancels", mark);
        f.push("cancels", "cancels_counted", Some(counted as f64), "count");

        second_device(&net, addr, &mut f).await;
        sse_over_cap(&net, addr, &mut f).await;

        // Silent closers on every socket, then: when does every socket accept again?
        let mark = WARN_LINES.load(Ordering::SeqCst);
        let (served, back) = silent_closers(&net, addr).await;
        f.push("silent_closer", "served", Some(served as f64), "of 8");
        f.push("silent_closer", "ms_until_accepting", back.map(ms), "ms");
        f.warn_lines("silent_closer", mark);

        // A slow reader: a frame asked for with a 1 KiB window, never read.
        let mark = WARN_LINES.load(Ordering::SeqCst);
        let before = counter(&stats::snapshot().to_string(), "reaped_stall");
        let reader = net.client();
        let freed = match client::slow_reader(reader.stack, addr, "/frame.jpg", BOUND).await {
            Ok(hold) if hold.held < BOUND => Some(ms(hold.held)),
            _ => None,
        };
        Timer::after(Duration::from_secs(1)).await;
        let reaps = counter(&stats::snapshot().to_string(), "reaped_stall") - before;
        f.push("slow_reader", "slot_free_ms", freed, "ms");
        f.push("slow_reader", "stall_reaps", Some(reaps as f64), "count");
        f.warn_lines("slow_reader", mark);

        // Slowloris from one address, a second device asking for the page meanwhile.
        let mark = WARN_LINES.load(Ordering::SeqCst);
        let (ratio, first) = slowloris(&net, addr).await;
        f.push("slowloris", "legit_ok_ratio", Some(ratio), "ratio");
        f.push("slowloris", "first_ok_ms", first.map(ms), "ms");
        f.warn_lines("slowloris", mark);

        f.stats = stats::snapshot().to_string();
        f
    })
}

/// How long the real-network check waits for a held socket: past it the figure is
/// "held" (`None`).
const BOUND: Duration = Duration::from_secs(20);

fn ms(d: Duration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

/// The real network's `second_device`, with the simulated browser fitted to headless
/// Chromium (`tests/browser_model.py`): device A opens the camera page (6 tiles loading
/// frames back to back, its EventSource on `/events` opened during that burst); 1 s
/// in, device B, from an address of its own, fetches `/` and then `/frame.jpg` (5 s
/// each, as `curl -m 5`); at 4 s A's page is read and closed. 10 runs.
async fn second_device(net: &Net, addr: std::net::SocketAddr, f: &mut Figures) {
    let mark = WARN_LINES.load(Ordering::SeqCst);
    let (a, b) = (net.client(), net.client());
    let page = CameraPage::new().with_events(Some("/events"));
    let (mut b_ok, mut b_ms, mut events, mut given_up) = (0u32, Vec::new(), 0, 0);
    for _ in 0..10 {
        let start = Instant::now();
        let view = client::camera_page(a.stack, addr, &page);
        Timer::at(start + Duration::from_secs(1)).await;
        let b_start = Instant::now();
        let mut ok = true;
        for path in ["/", "/frame.jpg"] {
            let r = client::get_within(b.stack, addr, path, Duration::from_secs(5)).await;
            ok &= matches!(r, Ok(r) if r.status == 200 && r.body_len > 0);
        }
        if ok {
            b_ok += 1;
            b_ms.push(ms(Instant::now() - b_start));
        }
        Timer::at(start + Duration::from_secs(4)).await;
        let source = view.stats().events.unwrap_or_default();
        events += source.events;
        given_up += usize::from(source.given_up);
        view.close().await;
        // A's connections end before the next run.
        Timer::after(Duration::from_millis(500)).await;
    }
    b_ms.sort_by(f64::total_cmp);
    f.push("second_device", "b_ok_runs", Some(f64::from(b_ok)), "of 10");
    f.push(
        "second_device",
        "b_ms",
        b_ms.get(b_ms.len() / 2).copied(),
        "ms",
    );
    f.push(
        "second_device",
        "a_stream_events",
        Some(events as f64),
        "events",
    );
    f.push(
        "second_device",
        "a_streams_given_up",
        Some(given_up as f64),
        "of 10",
    );
    f.warn_lines("second_device", mark);
}

/// The real network's `sse_over_cap`: two event streams from devices of their own hold
/// the stream slots (the ESP32-S3 profile has 2) for 3 s; at 0.5 s a browser opens the
/// camera page (one tile and its EventSource) from another address, read 11 s later.
/// Refused, the EventSource must come back by itself.
async fn sse_over_cap(net: &Net, addr: std::net::SocketAddr, f: &mut Figures) {
    let mark = WARN_LINES.load(Ordering::SeqCst);
    let start = Instant::now();
    let mut holders = Vec::new();
    for _ in 0..2 {
        let holder = net.client();
        holders.push(spawn(client::sse_on(
            holder.stack,
            addr,
            "/events",
            usize::MAX,
            Duration::from_secs(3),
        )));
    }
    Timer::at(start + Duration::from_millis(500)).await;
    let page = CameraPage::new().with_tiles(1).with_events(Some("/events"));
    let view = client::camera_page(net.client().stack, addr, &page);
    Timer::at(start + Duration::from_millis(500) + Duration::from_secs(11)).await;
    let source = view.stats().events.unwrap_or_default();
    view.close().await;
    for holder in holders {
        let _ = holder.await;
    }
    let flag = |on: bool| Some(f64::from(u8::from(on)));
    f.push(
        "sse_over_cap",
        "refused_first",
        flag(source.reconnects > 0 || source.given_up),
        "bool",
    );
    f.push(
        "sse_over_cap",
        "served_after_retry",
        flag(source.events > 0),
        "bool",
    );
    f.push("sse_over_cap", "given_up", flag(source.given_up), "bool");
    f.warn_lines("sse_over_cap", mark);
}

/// Fills every socket with a client that asks the device to close, reads the answer
/// and the FIN, and then neither reads on nor closes; from then on, every 100 ms, 8
/// connections at once (see [`accepting`]) until all 8 are accepted (at most 20 s).
async fn silent_closers(net: &Net, addr: std::net::SocketAddr) -> (usize, Option<Duration>) {
    let hosts = [net.client(), net.client()];
    let options = ClientOptions::new();
    let mut buffers: Vec<ClientBuffers> =
        (0..SOCKETS).map(|_| ClientBuffers::new(&options)).collect();
    let mut silent = Vec::new();
    for (i, buffers) in buffers.iter_mut().enumerate() {
        let host = &hosts[i % hosts.len()];
        let Ok(mut session) = Session::connect(host.stack, buffers, addr, options).await else {
            continue;
        };
        let answer = session
            .request(b"GET / HTTP/1.1\r\nHost: camera\r\nConnection: close\r\n\r\n")
            .await;
        if matches!(answer, Ok(r) if r.status == 200)
            && session.wait_server_end(Duration::from_secs(5)).await == PeerEnd::Fin
        {
            // Kept, open and silent: its stack acknowledges, nothing more.
            silent.push(session);
        }
    }
    let served = silent.len();
    let since = Instant::now();
    let probes: Vec<_> = (0..SOCKETS).map(|_| net.client()).collect();
    let back = loop {
        if accepting(&probes, addr).await == SOCKETS {
            break Some(Instant::now() - since);
        }
        if Instant::now() - since > Duration::from_secs(20) {
            break None;
        }
        Timer::after(Duration::from_millis(100)).await;
    };
    for session in silent {
        session.close().await;
    }
    (served, back)
}

/// How many of one connection from each probe host at once the device accepts, as the
/// real-network check counts it: embassy-net has no backlog, so a SYN that finds no
/// socket in `accept()` is reset, and a handshake that completes (even if a layer then
/// refuses the connection) means a socket accepted it. Each probe comes from an address
/// of its own (a device past its share would be refused by the budget) and closes at once.
async fn accepting(probes: &[tcp_layers::sim::Host], addr: std::net::SocketAddr) -> usize {
    let tries: Vec<_> = probes
        .iter()
        .map(|probe| {
            let stack = probe.stack;
            spawn(async move {
                let options = ClientOptions::new().with_connect_timeout(Duration::from_millis(500));
                let mut buffers = ClientBuffers::new(&options);
                match Session::connect(stack, &mut buffers, addr, options).await {
                    Ok(session) => {
                        session.close().await;
                        true
                    }
                    Err(_) => false,
                }
            })
        })
        .collect();
    let mut accepted = 0;
    for t in tries {
        accepted += usize::from(t.await == Ok(true));
    }
    accepted
}

/// `slowhttptest -H -c 50 -r 100 -i 10 -l 14` from one client host while another asks
/// for `/` every 500 ms with 2 s to answer: the share answered, and when the first
/// answer came after the attack started.
async fn slowloris(net: &Net, addr: std::net::SocketAddr) -> (f64, Option<Duration>) {
    let start = Instant::now();
    let until = start + Duration::from_secs(14);
    let attacker = net.client();
    let attack = spawn(async move {
        let mut heads = Vec::new();
        for k in 0..50u32 {
            Timer::at(start + Duration::from_millis(10) * k).await;
            heads.push(spawn(client::slow_headers(
                attacker.stack,
                addr,
                Duration::from_secs(10),
                until,
            )));
        }
        for head in heads {
            let _ = head.await;
        }
    });
    let legit = net.client();
    let (mut attempts, mut ok, mut first) = (0u32, 0u32, None);
    Timer::at(start + Duration::from_millis(300)).await;
    while Instant::now() - start < Duration::from_secs(12) {
        let tick = Instant::now();
        let r = client::get_within(legit.stack, addr, "/", Duration::from_secs(2)).await;
        attempts += 1;
        if matches!(r, Ok(r) if r.status == 200 && r.body_len > 0) {
            ok += 1;
            first.get_or_insert(Instant::now() - start);
        }
        Timer::at(tick + Duration::from_millis(500)).await;
    }
    let _ = attack.await;
    (f64::from(ok) / f64::from(attempts), first)
}

/// The count of close reason `name` in the JSON line of `/stats`.
fn counter(stats: &str, name: &str) -> u64 {
    let key = format!("\"{name}\":");
    stats
        .find(&key)
        .and_then(|at| {
            let digits: String = stats[at + key.len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        })
        .unwrap_or(0)
}
