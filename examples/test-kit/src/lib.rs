//! The ESP32 camera app (`examples/esp32/app`) tested on the host with tcp-layers-sim.
//!
//! The app is the one the firmware and the TAP binary compile, unchanged: its HTTP task
//! is spawned with embassy-executor's `Spawner` as the firmware's `main` spawns it, on
//! a simulated device (ESP32-S3 profile, 8 sockets) behind a 20 ms, 10 Mbit/s Wi-Fi
//! link, and scripted clients play the scenarios of the real-network check
//! (`tests/real_network.sh`): correctness, cancels, silent closers, a slow reader,
//! slowloris.
//!
//! [`run_scenarios`] runs them all in one simulation and returns what it measured. A
//! task that never ends (the HTTP task) keeps its `static` pool slot for the life of
//! the process, so each test binary runs one simulation: `tests/layered.rs` the app
//! with its layer stack, `tests/unlayered.rs` the same app on the bare socket.
#![recursion_limit = "256"]

use std::sync::atomic::{AtomicUsize, Ordering};

use camera_app::{server, stats};
use tcp_layers::limit::StackServices;
use tcp_layers::profile;
use tcp_layers::sim::client::{ClientBuffers, ClientOptions, PeerEnd, Session};
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

/// What the scenarios measured.
#[derive(Clone, Debug, Default)]
pub struct Figures {
    /// `/` and `/frame.jpg`, 10 each: answers with status 200 and a body.
    pub correct_responses: usize,
    /// Frame downloads the client cut mid-transfer (RST after 8 KiB).
    pub cancels: usize,
    /// Closes the app's counters give the reason `client_cancelled`.
    pub cancels_counted: u64,
    /// Silent closers (two addresses, four connections each): asked to close, they read
    /// the answer and the device's FIN and then stay open and silent. How many were
    /// served.
    pub silent_closers_served: usize,
    /// From the last silent closer's FIN to the device accepting on every socket again
    /// (8 connections at once from 8 addresses all accepted).
    pub silent_closer_until_accepting: Option<Duration>,
    /// A reader that never reads a frame: when the server freed its slot.
    pub slow_reader_slot_free: Option<Duration>,
    /// Closes the app's counters give the reason `reaped_stall`.
    pub stall_reaps: u64,
    /// Slowloris (50 slow heads from one address for 14 s): the share of a second
    /// device's `GET /` (every 500 ms, 2 s each) that were answered.
    pub slowloris_legit_ok_ratio: f64,
    /// Log lines at WARN or ERROR during the whole run.
    pub warn_lines: usize,
    /// The counters as `/stats` shows them, at the end.
    pub stats: String,
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

/// Runs every scenario against the app in one simulation, in this order: correctness,
/// cancels, silent closers, slow reader, slowloris. Call it once per process (see the
/// crate docs).
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
        let mut figures = Figures::default();

        // Correctness: every answer complete.
        let browser = net.client();
        for _ in 0..10 {
            for path in ["/", "/frame.jpg"] {
                if let Ok(r) = client::get(browser.stack, addr, path).await
                    && r.status == 200
                    && r.body_len > 0
                {
                    figures.correct_responses += 1;
                }
            }
        }

        // Cancels: a browser swapping images, each frame cut after 8 KiB.
        for _ in 0..30 {
            if client::cancel_after(browser.stack, addr, "/frame.jpg", 8192)
                .await
                .is_ok()
            {
                figures.cancels += 1;
            }
        }
        Timer::after(Duration::from_secs(1)).await;
        figures.cancels_counted = counter(&stats::snapshot().to_string(), "client_cancelled");

        // Silent closers on every socket, then: when does every socket accept again?
        let (served, back) = silent_closers(&net, addr).await;
        figures.silent_closers_served = served;
        figures.silent_closer_until_accepting = back;

        // A slow reader: a frame asked for with a 1 KiB window, never read.
        let reader = net.client();
        if let Ok(hold) =
            client::slow_reader(reader.stack, addr, "/frame.jpg", Duration::from_secs(20)).await
            && hold.held < Duration::from_secs(20)
        {
            figures.slow_reader_slot_free = Some(hold.held);
        }
        Timer::after(Duration::from_secs(1)).await;
        figures.stall_reaps = counter(&stats::snapshot().to_string(), "reaped_stall");

        // Slowloris from one address, a second device asking for the page meanwhile.
        figures.slowloris_legit_ok_ratio = slowloris(&net, addr).await;

        figures.warn_lines = WARN_LINES.load(Ordering::SeqCst);
        figures.stats = stats::snapshot().to_string();
        figures
    })
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
/// for `/` every 500 ms with 2 s to answer: the share answered.
async fn slowloris(net: &Net, addr: std::net::SocketAddr) -> f64 {
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
    let (mut attempts, mut ok) = (0u32, 0u32);
    Timer::at(start + Duration::from_millis(300)).await;
    while Instant::now() - start < Duration::from_secs(12) {
        let tick = Instant::now();
        let r = client::get_within(legit.stack, addr, "/", Duration::from_secs(2)).await;
        attempts += 1;
        if matches!(r, Ok(r) if r.status == 200 && r.body_len > 0) {
            ok += 1;
        }
        Timer::at(tick + Duration::from_millis(500)).await;
    }
    let _ = attack.await;
    f64::from(ok) / f64::from(attempts)
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
