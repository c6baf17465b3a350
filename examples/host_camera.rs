//! A camera page served from the host with every layer on: the same routes the ESP32
//! firmware serves, over tokio sockets on 127.0.0.1, for a real browser.
//!
//! ```text
//! cargo run --release --example host_camera -- --port 8080
//! ```
//! then open <http://127.0.0.1:8080/>. Routes: `/` the page (chain-loads frames back to
//! back, a spinner appears only when a frame is pending for more than 300 ms),
//! `/frame.jpg` a synthetic JPEG of 100-160 kB, `/events` a server-sent event stream
//! (stream class), `/stats` the counters as JSON. One status line per second on the
//! terminal; client cancels are counted, not printed. Ctrl-C exits.
//!
//! Options: `--port N` (8080), `--bind ADDR` (127.0.0.1), `--chunk BYTES` (4096),
//! `--max-conns N` (8, the ESP32-S3 budget), `--max-streams N` (2), `--stall SECS` (5),
//! `--linger MS` (1000), `--sndbuf BYTES` (16384: a device-sized send buffer, so a
//! client that cancels does so mid-response as on the ESP32, not after the kernel has
//! swallowed the whole frame), `--log LEVEL` (info: error, warn, info, debug, trace),
//! `--quiet` (no status line), `--exit-after SECS` (stop by itself, for scripts).
//!
//! Every connection goes through the default stack, outermost first: quiet logger and
//! counters, budget (LRU purge of idle keep-alive, stream cap), reaper, TIME_WAIT
//! cleaner (`SO_LINGER 0` abort after a bounded linger), chunked writer, nodelay.
use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tcp_layers::core::tokio_stream::TokioStream;
use tcp_layers::{CloseReason, Connection, ConnectionBuilder, ConnectionClass};
use tcp_layers_chunked::ChunkedLayer;
use tcp_layers_limit::{AcceptLoop, Backoff, Budget, BudgetConfig, LimitLayer};
use tcp_layers_nodelay::NoDelayLayer;
use tcp_layers_quiet::{Counters, QuietLayer};
use tcp_layers_reaper::{ReaperConfig, ReaperLayer};
use tcp_layers_timewait::TimeWaitLayer;
use tokio::net::TcpListener;

#[path = "support/jpeg.rs"]
mod jpeg;
#[path = "support/std_time.rs"]
mod std_time;

/// How every connection ended, per reason; shared by all connections.
static COUNTERS: Counters = Counters::new();
/// The most slots `--max-conns` may ask for.
const MAX_SLOTS: usize = 128;

struct Options {
    bind: String,
    port: u16,
    chunk: usize,
    max_conns: usize,
    max_streams: usize,
    stall: Duration,
    linger: Duration,
    sndbuf: u32,
    log_level: log::LevelFilter,
    status_line: bool,
    exit_after: Option<Duration>,
}

impl Options {
    fn parse() -> Result<Self, String> {
        let mut o = Options {
            bind: "127.0.0.1".into(),
            port: 8080,
            chunk: 4096,
            max_conns: 8,
            max_streams: 2,
            stall: Duration::from_secs(5),
            linger: Duration::from_millis(1000),
            sndbuf: 16384,
            log_level: log::LevelFilter::Info,
            status_line: true,
            exit_after: None,
        };
        let mut args = std::env::args().skip(1);
        while let Some(flag) = args.next() {
            let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
            match flag.as_str() {
                "--port" => {
                    o.port = value("--port")?
                        .parse()
                        .map_err(|e| format!("--port: {e}"))?
                }
                "--bind" => o.bind = value("--bind")?,
                "--chunk" => {
                    o.chunk = value("--chunk")?
                        .parse()
                        .map_err(|e| format!("--chunk: {e}"))?
                }
                "--max-conns" => {
                    o.max_conns = value("--max-conns")?
                        .parse()
                        .map_err(|e| format!("--max-conns: {e}"))?
                }
                "--max-streams" => {
                    o.max_streams = value("--max-streams")?
                        .parse()
                        .map_err(|e| format!("--max-streams: {e}"))?
                }
                "--stall" => {
                    let secs: u64 = value("--stall")?
                        .parse()
                        .map_err(|e| format!("--stall: {e}"))?;
                    o.stall = Duration::from_secs(secs);
                }
                "--linger" => {
                    let ms: u64 = value("--linger")?
                        .parse()
                        .map_err(|e| format!("--linger: {e}"))?;
                    o.linger = Duration::from_millis(ms);
                }
                "--sndbuf" => {
                    o.sndbuf = value("--sndbuf")?
                        .parse()
                        .map_err(|e| format!("--sndbuf: {e}"))?
                }
                "--log" => {
                    o.log_level = value("--log")?.parse().map_err(|_| {
                        "--log: one of off, error, warn, info, debug, trace".to_string()
                    })?
                }
                "--quiet" => o.status_line = false,
                "--exit-after" => {
                    let secs: u64 = value("--exit-after")?
                        .parse()
                        .map_err(|e| format!("--exit-after: {e}"))?;
                    o.exit_after = Some(Duration::from_secs(secs));
                }
                "-h" | "--help" => {
                    println!(
                        "host_camera [--port 8080] [--bind 127.0.0.1] [--chunk 4096] [--max-conns 8] \
                         [--max-streams 2] [--stall 5] [--linger 1000] [--sndbuf 16384] [--log info] [--quiet] \
                         [--exit-after SECS]"
                    );
                    std::process::exit(0);
                }
                other => return Err(format!("unknown option {other} (try --help)")),
            }
        }
        if o.chunk == 0 {
            return Err("--chunk must be at least 1".into());
        }
        if o.max_conns < 2 || o.max_conns > MAX_SLOTS {
            return Err(format!(
                "--max-conns must be 2..={MAX_SLOTS} (one slot stays a free listener)"
            ));
        }
        if o.max_streams >= o.max_conns {
            return Err(
                "--max-streams must be below --max-conns, or page loads have no slot".into(),
            );
        }
        Ok(o)
    }
}

/// Counters of this example's own (frames, requests); the layers keep theirs.
#[derive(Default)]
struct AppStats {
    requests: Cell<u64>,
    frames: Cell<u64>,
    bytes_out: Cell<u64>,
    streams: Cell<u64>,
}

/// Log lines on stderr: `LEVEL target: message`.
struct StderrLog;

impl log::Log for StderrLog {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }
    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            eprintln!(
                "{:<5} {}: {}",
                record.level(),
                record.target(),
                record.args()
            );
        }
    }
    fn flush(&self) {}
}

fn main() {
    let options = match Options::parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("host_camera: {e}");
            std::process::exit(2);
        }
    };
    log::set_logger(&StderrLog).expect("the only logger");
    log::set_max_level(options.log_level);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, serve(options));
}

async fn serve(options: Options) {
    let addr = format!("{}:{}", options.bind, options.port);
    let listener = match listen(&addr, options.sndbuf) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("host_camera: cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    let frames: &'static [Vec<u8>] = Box::leak(jpeg::frames(8).into_boxed_slice());
    let sizes: Vec<usize> = frames.iter().map(Vec::len).collect();
    println!(
        "host_camera: http://{addr}/  ({} frames of {:?} bytes)",
        frames.len(),
        sizes
    );
    let stats = Rc::new(AppStats::default());
    let requests = (options.max_conns - options.max_streams) as u8;
    let budget: &'static Budget<MAX_SLOTS> = Box::leak(Box::new(Budget::new(BudgetConfig::new(
        options.max_conns as u8,
        options.max_streams as u8,
        requests,
    ))));
    let reaper: &'static ReaperConfig = Box::leak(Box::new(ReaperConfig::http().with_stall(
        embassy_time::Duration::from_millis(options.stall.as_millis() as u64),
    )));
    let layers = ConnectionBuilder::new()
        .layer(QuietLayer::new(&COUNTERS))
        .layer(LimitLayer::new(budget))
        .layer(ReaperLayer::new(reaper))
        .layer(TimeWaitLayer::with_linger(
            embassy_time::Duration::from_millis(options.linger.as_millis() as u64),
        ))
        .layer(ChunkedLayer::new().with_chunk_size(options.chunk))
        .layer(NoDelayLayer::new());
    let options = Rc::new(options);

    if options.status_line {
        let stats = stats.clone();
        tokio::task::spawn_local(async move {
            let started = Instant::now();
            let mut last_bytes = 0u64;
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let bytes = stats.bytes_out.get();
                println!(
                    "[{:>4}s] frames {} out {:.1} MB/s | {}",
                    started.elapsed().as_secs(),
                    stats.frames.get(),
                    (bytes - last_bytes) as f64 / 1e6,
                    COUNTERS.snapshot(),
                );
                last_bytes = bytes;
            }
        });
    }

    let exit_after = options.exit_after;
    let accept_loop = async {
        // Out of descriptors and friends: back off 10 ms .. 1 s and retry, never end.
        let mut accepts = AcceptLoop::new(Backoff::DEFAULT);
        loop {
            let (stream, _) = accepts.accept(async || listener.accept().await).await;
            let stats = stats.clone();
            let options = options.clone();
            let mut conn = layers.wrap(TokioStream::new(stream));
            tokio::task::spawn_local(async move {
                handle(&mut conn, frames, &stats, &options, budget).await;
            });
        }
    };
    let stop = async {
        match exit_after {
            Some(d) => tokio::time::sleep(d).await,
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    tokio::select! {
        _ = accept_loop => {}
        _ = stop => println!("host_camera: exiting"),
    }
}

/// A listener whose accepted sockets inherit a send buffer of `sndbuf` bytes.
fn listen(addr: &str, sndbuf: u32) -> std::io::Result<TcpListener> {
    let addr: std::net::SocketAddr = addr.parse().map_err(|e| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{addr}: {e}"))
    })?;
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_send_buffer_size(sndbuf)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Reads a request head into `buf`; returns its length, or how the connection ended.
async fn read_head<C: Connection>(conn: &mut C, buf: &mut [u8]) -> Result<usize, CloseReason> {
    let mut len = 0;
    loop {
        if len == buf.len() {
            return Err(CloseReason::Reaped(tcp_layers::Deadline::RequestTooLarge));
        }
        match conn.read(&mut buf[len..]).await {
            Ok(0) if len == 0 => return Err(CloseReason::PeerClosed),
            Ok(0) => return Err(CloseReason::PeerReset),
            Ok(n) => len += n,
            Err(_) if len == 0 => return Err(CloseReason::PeerClosed),
            Err(_) => return Err(CloseReason::PeerReset),
        }
        if let Some(end) = buf[..len].windows(4).position(|w| w == b"\r\n\r\n") {
            return Ok(end + 4);
        }
    }
}

async fn respond<C: Connection>(
    conn: &mut C,
    status: &str,
    content_type: &str,
    body: &[u8],
    stats: &AppStats,
) -> Result<(), CloseReason> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: keep-alive\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes())
        .await
        .map_err(|_| CloseReason::ClientCancelled)?;
    conn.write_all(body)
        .await
        .map_err(|_| CloseReason::ClientCancelled)?;
    conn.flush()
        .await
        .map_err(|_| CloseReason::ClientCancelled)?;
    stats
        .bytes_out
        .set(stats.bytes_out.get() + (head.len() + body.len()) as u64);
    Ok(())
}

async fn handle<C: Connection>(
    conn: &mut C,
    frames: &[Vec<u8>],
    stats: &AppStats,
    options: &Options,
    budget: &Budget<MAX_SLOTS>,
) {
    let mut buf = [0u8; 2048];
    let reason = loop {
        let head_len = match read_head(conn, &mut buf).await {
            Ok(n) => n,
            Err(reason) => break reason,
        };
        stats.requests.set(stats.requests.get() + 1);
        let head = String::from_utf8_lossy(&buf[..head_len]);
        let path = head.split_whitespace().nth(1).unwrap_or("/");
        let path = path.split('?').next().unwrap_or(path);
        let result = match path {
            "/" => {
                respond(
                    conn,
                    "200 OK",
                    "text/html; charset=utf-8",
                    PAGE.as_bytes(),
                    stats,
                )
                .await
            }
            "/frame.jpg" => {
                let n = stats.frames.get();
                let frame = &frames[n as usize % frames.len()];
                let r = respond(conn, "200 OK", "image/jpeg", frame, stats).await;
                if r.is_ok() {
                    // Read again: other connections counted frames during the await.
                    stats.frames.set(stats.frames.get() + 1);
                }
                r
            }
            "/stats" => {
                let c = COUNTERS.snapshot();
                let mut closed = String::new();
                for reason in CloseReason::ALL {
                    if !closed.is_empty() {
                        closed.push(',');
                    }
                    closed.push_str(&format!("\"{reason}\":{}", c.closed(reason)));
                }
                let json = format!(
                    "{{\"requests\":{},\"frames\":{},\"bytes_out\":{},\"streams\":{},\"chunk\":{},\
                     \"max_conns\":{},\"accepted\":{},\"active\":{},\"budget_active\":{},\"closed\":{{{closed}}}}}",
                    stats.requests.get(),
                    stats.frames.get(),
                    stats.bytes_out.get(),
                    stats.streams.get(),
                    options.chunk,
                    options.max_conns,
                    c.accepted,
                    c.active,
                    budget.active(),
                );
                respond(conn, "200 OK", "application/json", json.as_bytes(), stats).await
            }
            "/events" => break sse(conn, stats).await,
            _ => respond(conn, "404 Not Found", "text/plain", b"not found\n", stats).await,
        };
        if let Err(reason) = result {
            break reason;
        }
    };
    conn.end(reason).await;
}

async fn sse<C: Connection>(conn: &mut C, stats: &AppStats) -> CloseReason {
    if conn.set_class(ConnectionClass::Stream).is_err() {
        let _ = respond(
            conn,
            "503 Service Unavailable",
            "text/plain",
            b"stream budget full\n",
            stats,
        )
        .await;
        return CloseReason::OverBudget;
    }
    let head =
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n\r\n";
    if conn.write_all(head.as_bytes()).await.is_err() {
        return CloseReason::ClientCancelled;
    }
    stats.streams.set(stats.streams.get() + 1);
    loop {
        let event = format!(
            "data: {{\"frames\":{},\"requests\":{}}}\n\n",
            stats.frames.get(),
            stats.requests.get()
        );
        match conn.write_all(event.as_bytes()).await {
            Ok(()) => {}
            Err(_) => {
                stats.streams.set(stats.streams.get() - 1);
                return CloseReason::ClientCancelled;
            }
        }
        let _ = conn.flush().await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tcp-layers camera</title>
<style>
  body { font-family: system-ui, sans-serif; margin: 1.5rem; background: #111; color: #eee; }
  #view { position: relative; display: inline-block; min-width: 320px; min-height: 240px; }
  #cam { max-width: 100%; display: block; }
  #spinner { display: none; position: absolute; top: 50%; left: 50%; width: 48px; height: 48px;
             margin: -24px; border: 5px solid #555; border-top-color: #eee; border-radius: 50%;
             animation: spin 0.8s linear infinite; }
  #view.waiting #spinner { display: block; }
  @keyframes spin { to { transform: rotate(360deg); } }
  #stats { font-family: ui-monospace, monospace; color: #9c9; }
</style>
</head>
<body>
<h1>tcp-layers camera</h1>
<div id="view"><img id="cam" alt="camera frame"><div id="spinner"></div></div>
<p id="stats">connecting...</p>
<p id="frames">frames loaded: <span id="count">0</span></p>
<script>
// Pending-request tracker: the spinner appears only when something has been pending
// for more than 300 ms, so fast frames never make it flash.
const view = document.getElementById('view');
let pending = 0, showTimer = null;
function begin() {
  pending++;
  if (showTimer === null) {
    showTimer = setTimeout(() => { showTimer = null; if (pending > 0) view.classList.add('waiting'); }, 300);
  }
}
function done() {
  pending = Math.max(0, pending - 1);
  if (pending === 0) {
    if (showTimer !== null) { clearTimeout(showTimer); showTimer = null; }
    view.classList.remove('waiting');
  }
}
const cam = document.getElementById('cam');
const count = document.getElementById('count');
let loaded = 0, lastUrl = null;
async function next() {
  begin();
  try {
    const r = await fetch('/frame.jpg?n=' + loaded, { cache: 'no-store' });
    if (!r.ok) throw new Error('status ' + r.status);
    const url = URL.createObjectURL(await r.blob());
    cam.src = url;
    if (lastUrl) URL.revokeObjectURL(lastUrl);
    lastUrl = url;
    loaded++;
    count.textContent = loaded;
    done();
    next();
  } catch (e) {
    done();
    setTimeout(next, 500);
  }
}
next();
const stats = document.getElementById('stats');
const events = new EventSource('/events');
events.onmessage = (e) => { stats.textContent = 'server: ' + e.data; };
events.onerror = () => { stats.textContent = 'event stream closed; the browser retries'; };
</script>
</body>
</html>
"#;
