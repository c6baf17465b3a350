//! Each way a connection ends, on the real embassy-net stack in the simulated network,
//! classified into the right `CloseReason` and logged at its level; a local fault is the
//! one warning, and a flood of them is rate-limited.
mod common;

use std::net::SocketAddr;

use common::NaiveLog;
use embassy_net::Stack;
use embassy_time::with_timeout;
use tcp_layers_core::{CloseReason, Connection, Deadline, ErrorType, Layer, Read, Write};
use tcp_layers_mock::log_lines::{Lines, lines, start_counting};
use tcp_layers_quiet::{CounterSnapshot, Counters, QuietLayer};
use tcp_layers_sim::client::{self, ClientBuffers, ClientOptions, Session};
use tcp_layers_sim::fault::FailWrites;
use tcp_layers_sim::{Duration, LinkConfig, Net, Timer, responder, run, run_with_limit, server};

const SOCKETS: usize = 2;
/// Virtual time a scenario may take; far more than any of them needs.
const LIMIT: Duration = Duration::from_secs(120);

/// What the server does with each accepted socket.
#[derive(Clone, Copy)]
enum Server {
    /// The raw responder behind the quiet layer.
    QuietLayer,
    /// The same with `fault::FailWrites` under the layer: writes fail after `n` bytes.
    QuietFailWrites(usize),
    /// `FailWrites` whose reason is hidden: the layer classifies from the state alone.
    QuietFailWritesSilently(usize),
    /// The same without the layer, with naive `error!` logging (the baseline).
    NaiveFailWrites(usize),
    /// An inner layer that ended the connection for its own reason.
    QuietEndedBy(CloseReason),
    /// Reads one request, writes the response head, waits `ms`, then drops the wrapper
    /// without calling `end`.
    QuietDropAfter(u64),
}

/// A connection wrapper that plays an inner layer which ended the connection itself
/// (as the reaper does): it answers `reason` from `close_reason()` and ends with it.
struct EndedBy<C> {
    inner: C,
    reason: CloseReason,
}

impl<C: Connection> ErrorType for EndedBy<C> {
    type Error = C::Error;
}
impl<C: Connection> Read for EndedBy<C> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, C::Error> {
        self.inner.read(buf).await
    }
}
impl<C: Connection> Write for EndedBy<C> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, C::Error> {
        self.inner.write(buf).await
    }
    async fn flush(&mut self) -> Result<(), C::Error> {
        self.inner.flush().await
    }
}
impl<C: Connection> Connection for EndedBy<C> {
    tcp_layers_core::delegate_connection!(inner; state, set_nodelay, close_write, abort,
        remote, local, send_queue, recv_queue, ended_error, set_class);
    fn close_reason(&self) -> Option<CloseReason> {
        Some(self.reason)
    }
    async fn end(&mut self, _reason: CloseReason) {
        self.inner.end(self.reason).await
    }
}

/// Hides the inner layers' `close_reason()`: the quiet layer must then classify from
/// the TCP state alone (a fault in a stack or adapter that reports no reason).
struct HideReason<C> {
    inner: C,
}

impl<C: Connection> ErrorType for HideReason<C> {
    type Error = C::Error;
}
impl<C: Connection> Read for HideReason<C> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, C::Error> {
        self.inner.read(buf).await
    }
}
impl<C: Connection> Write for HideReason<C> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, C::Error> {
        self.inner.write(buf).await
    }
    async fn flush(&mut self) -> Result<(), C::Error> {
        self.inner.flush().await
    }
}
impl<C: Connection> Connection for HideReason<C> {
    tcp_layers_core::delegate_connection!(inner; state, set_nodelay, close_write, abort,
        remote, local, send_queue, recv_queue, ended_error, set_class, end);
    fn close_reason(&self) -> Option<CloseReason> {
        None
    }
}

/// Runs one server and one client script; returns the log lines of the run.
fn scenario(
    counters: &'static Counters,
    kind: Server,
    script: impl AsyncFnOnce(&Net, Stack<'static>, SocketAddr) + 'static,
) -> Lines {
    start_counting();
    run_with_limit(LIMIT, async move {
        let net = Net::new(LinkConfig::wifi());
        let device = net.server();
        let routes = responder::Routes::new();
        let quiet = QuietLayer::new(counters);
        let handle =
            server::spawn_server(device.stack, 80, SOCKETS, async move |socket| match kind {
                Server::QuietLayer => {
                    responder::serve(&mut quiet.layer(socket), &routes).await;
                }
                Server::QuietFailWrites(n) => {
                    let mut conn = quiet.layer(FailWrites::new(socket, n));
                    responder::serve(&mut conn, &routes).await;
                }
                Server::QuietFailWritesSilently(n) => {
                    let mut conn = quiet.layer(HideReason {
                        inner: FailWrites::new(socket, n),
                    });
                    responder::serve(&mut conn, &routes).await;
                }
                Server::NaiveFailWrites(n) => {
                    let mut conn = NaiveLog {
                        inner: FailWrites::new(socket, n),
                    };
                    responder::serve(&mut conn, &routes).await;
                }
                Server::QuietEndedBy(reason) => {
                    let mut conn = quiet.layer(EndedBy {
                        inner: socket,
                        reason,
                    });
                    responder::serve(&mut conn, &routes).await;
                }
                Server::QuietDropAfter(ms) => {
                    let mut conn = quiet.layer(socket);
                    let mut head = [0u8; 512];
                    let _ = conn.read(&mut head).await;
                    let _ = conn
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
                        .await;
                    Timer::after(Duration::from_millis(ms)).await;
                    drop(conn);
                }
            });
        handle.wait_listening(SOCKETS).await;
        let host = net.client();
        script(&net, host.stack, device.addr(80)).await;
        if with_timeout(LIMIT / 2, handle.wait_listening(SOCKETS))
            .await
            .is_err()
        {
            net.print_trace(30);
            panic!(
                "a slot never came back: {:?}",
                (0..SOCKETS)
                    .map(|i| (handle.slot_phase(i), handle.slot_state(i)))
                    .collect::<Vec<_>>()
            );
        }
    })
    .expect("the scenario ends within its virtual time limit");
    lines()
}

fn report(name: &str, lines: &Lines, s: &CounterSnapshot) {
    println!(
        "{name}: warn+ {} info {} debug {} trace {}; counters: {s}",
        lines.warn_or_above(),
        lines.info,
        lines.debug,
        lines.trace
    );
    for l in &lines.loud {
        println!("  {l}");
    }
}

/// The only reason counted, with accepted = closed and nothing active.
fn only(s: &CounterSnapshot, reason: CloseReason, n: u64) {
    assert_eq!(
        lines().closed_events,
        vec![reason; n as usize],
        "one Event::Closed per close"
    );
    assert_eq!(s.closed(reason), n, "{reason}: {s}");
    assert_eq!(s.closed_total(), n, "{s}");
    assert_eq!(s.active, 0, "{s}");
    assert!(s.is_balanced(), "{s}");
}

#[test]
fn fin_between_requests_is_a_peer_close_at_trace() {
    static COUNTERS: Counters = Counters::new();
    let lines = scenario(&COUNTERS, Server::QuietLayer, async |_, stack, server| {
        let r = client::keep_alive(stack, server, &["/", "/r/1", "/r/2"]).await;
        assert!(r.iter().all(|r| r.is_ok()), "{r:?}");
    });
    let s = COUNTERS.snapshot();
    report("peer closed", &lines, &s);
    only(&s, CloseReason::PeerClosed, 1);
    assert_eq!((lines.warn_or_above(), lines.trace), (0, 1));
    assert!(
        s.bytes_out > 2048 + 2 * 8192,
        "whole responses counted: {s}"
    );
}

#[test]
fn rst_while_idle_is_a_peer_reset_at_trace() {
    static COUNTERS: Counters = Counters::new();
    let lines = scenario(&COUNTERS, Server::QuietLayer, async |_, stack, server| {
        let options = ClientOptions::new();
        let mut buffers = ClientBuffers::new(&options);
        let mut session = Session::connect(stack, &mut buffers, server, options)
            .await
            .unwrap();
        session.get("/bytes/20000").await.unwrap();
        Timer::after(Duration::from_secs(1)).await;
        session.abort().await;
    });
    let s = COUNTERS.snapshot();
    report("peer reset", &lines, &s);
    only(&s, CloseReason::PeerReset, 1);
    assert_eq!((lines.warn_or_above(), lines.trace), (0, 1));
}

#[test]
fn the_servers_own_close_is_a_local_close() {
    static COUNTERS: Counters = Counters::new();
    let lines = scenario(&COUNTERS, Server::QuietLayer, async |_, stack, server| {
        let options = ClientOptions::new();
        let mut buffers = ClientBuffers::new(&options);
        let mut session = Session::connect(stack, &mut buffers, server, options)
            .await
            .unwrap();
        let r = session
            .request(b"GET / HTTP/1.1\r\nHost: device\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        assert!(r.server_closes);
        session.wait_server_end(Duration::from_secs(5)).await;
        session.close().await;
    });
    let s = COUNTERS.snapshot();
    report("local close", &lines, &s);
    only(&s, CloseReason::LocalClose, 1);
    assert_eq!((lines.warn_or_above(), lines.trace), (0, 1));
}

#[test]
fn an_inner_layers_reason_wins_over_the_servers_guess() {
    static COUNTERS: Counters = Counters::new();
    let stall = CloseReason::Reaped(Deadline::Stall);
    let lines = scenario(
        &COUNTERS,
        Server::QuietEndedBy(stall),
        async |_, stack, server| {
            // The responder ends with PeerClosed; the inner layer says it reaped it.
            client::keep_alive(stack, server, &["/"]).await;
        },
    );
    let s = COUNTERS.snapshot();
    report("inner reason", &lines, &s);
    only(&s, stall, 1);
    assert_eq!((lines.warn_or_above(), lines.debug, lines.trace), (0, 1, 0));
}

#[test]
fn a_local_write_error_is_exactly_one_warning() {
    static COUNTERS: Counters = Counters::new();
    let get_big = async |_: &Net, stack, server| {
        let r = client::get(stack, server, "/bytes/160000").await;
        assert!(r.is_err(), "the injected fault cuts the response: {r:?}");
    };
    let naive = scenario(&COUNTERS, Server::NaiveFailWrites(10_000), get_big);
    report("local write error, layer off", &naive, &COUNTERS.snapshot());
    COUNTERS.reset();
    let lines = scenario(&COUNTERS, Server::QuietFailWrites(10_000), get_big);
    let s = COUNTERS.snapshot();
    report("local write error, layer on", &lines, &s);
    only(&s, CloseReason::LocalError, 1);
    assert_eq!((lines.error, lines.warn), (0, 1));
    assert!(lines.loud[0].contains("local_error"), "{:?}", lines.loud);

    // No layer reports the reason: the socket is still established when the write
    // fails, so the peer did not cause it.
    COUNTERS.reset();
    let lines = scenario(&COUNTERS, Server::QuietFailWritesSilently(10_000), get_big);
    let s = COUNTERS.snapshot();
    report("local write error, no reason reported", &lines, &s);
    only(&s, CloseReason::LocalError, 1);
    assert_eq!((lines.error, lines.warn), (0, 1));
}

#[test]
fn a_flood_of_local_errors_prints_the_first_ones_then_one_summary() {
    static COUNTERS: Counters = Counters::new();
    const FAULTS: usize = 30;
    let lines = scenario(
        &COUNTERS,
        Server::QuietFailWrites(1_000),
        async |_, stack, server| {
            for _ in 0..FAULTS {
                let _ = client::get(stack, server, "/bytes/20000").await;
            }
            // The rate limit's window (10 s) ends; the next close announces what the
            // window dropped.
            Timer::after(Duration::from_secs(11)).await;
            let _ = client::get(stack, server, "/bytes/20000").await;
        },
    );
    let s = COUNTERS.snapshot();
    report("flood of local errors", &lines, &s);
    only(&s, CloseReason::LocalError, FAULTS as u64 + 1);
    let limit = tcp_layers_quiet::RateLimit::DEFAULT.lines() as usize;
    // `limit` lines of the flood, then the summary and the line of the 31st fault.
    assert_eq!(lines.warn, limit + 2, "{:?}", lines.loud);
    assert_eq!(s.suppressed_lines, (FAULTS - limit) as u64);
    assert!(lines.loud[0].contains("local_error"));
    assert!(
        lines.loud[limit].contains(&format!("{} more warning lines suppressed", FAULTS - limit)),
        "{:?}",
        lines.loud
    );
}

#[test]
fn a_dropped_wrapper_is_counted_and_classified_from_the_state() {
    // The server drops a live connection: its own doing.
    static LIVE: Counters = Counters::new();
    let lines = scenario(
        &LIVE,
        Server::QuietDropAfter(50),
        async |_, stack, server| {
            let options = ClientOptions::new();
            let mut buffers = ClientBuffers::new(&options);
            let mut session = Session::connect(stack, &mut buffers, server, options)
                .await
                .unwrap();
            let r = session.get("/").await;
            assert!(
                r.is_err(),
                "the server dropped the connection mid-response: {r:?}"
            );
            session.close().await;
        },
    );
    let s = LIVE.snapshot();
    report("dropped while established", &lines, &s);
    only(&s, CloseReason::LocalClose, 1);

    // The client resets mid-response and the server never reads the error.
    static RESET: Counters = Counters::new();
    let lines = scenario(
        &RESET,
        Server::QuietDropAfter(500),
        async |_, stack, server| {
            client::cancel_after(stack, server, "/", 10).await.unwrap();
        },
    );
    let s = RESET.snapshot();
    report("dropped after an unseen reset", &lines, &s);
    only(&s, CloseReason::ClientCancelled, 1);
    assert_eq!(lines.warn_or_above(), 0);
}

/// The drop path never runs I/O: dropping the wrapper of a connection whose peer is
/// already gone is still one count, and the layer never panics on a closed socket.
#[test]
fn end_then_drop_counts_once() {
    static COUNTERS: Counters = Counters::new();
    start_counting();
    run(async {
        let net = Net::new(LinkConfig::wifi());
        let device = net.server();
        let handle = server::spawn_server(device.stack, 80, 1, async |socket| {
            let mut conn = QuietLayer::new(&COUNTERS).layer(socket);
            let mut buf = [0u8; 64];
            let _ = conn.read(&mut buf).await;
            conn.end(CloseReason::LocalClose).await;
            conn.end(CloseReason::LocalError).await;
            assert_eq!(conn.close_reason(), Some(CloseReason::LocalClose));
        });
        handle.wait_listening(1).await;
        let host = net.client();
        let _ = client::get(host.stack, device.addr(80), "/").await;
        handle.wait_listening(1).await;
    });
    let s = COUNTERS.snapshot();
    println!("end twice then drop: {s}");
    only(&s, CloseReason::LocalClose, 1);
}

/// Cancel safety: an `end` future dropped before it finishes (a FIN to a vanished peer
/// is never acknowledged) has already counted the close, and the drop of the wrapper
/// after it does not count it again.
#[test]
fn a_dropped_end_future_still_counts_once() {
    static COUNTERS: Counters = Counters::new();
    start_counting();
    let snapshot = run_with_limit(LIMIT, async {
        let net = Net::new(LinkConfig::wifi());
        let device = net.server();
        let _handle = server::spawn_server(device.stack, 80, 1, async |socket| {
            let mut conn = QuietLayer::new(&COUNTERS).layer(socket);
            let mut buf = [0u8; 256];
            let _ = conn.read(&mut buf).await;
            // The client vanishes meanwhile.
            Timer::after(Duration::from_millis(100)).await;
            let ended =
                with_timeout(Duration::from_secs(1), conn.end(CloseReason::LocalClose)).await;
            assert!(ended.is_err(), "the FIN is never acknowledged");
        });
        let host = net.client();
        let options = ClientOptions::new();
        let mut buffers = ClientBuffers::new(&options);
        let mut session = Session::connect(host.stack, &mut buffers, device.addr(80), options)
            .await
            .unwrap();
        session
            .socket()
            .write_all(b"GET / HTTP/1.1\r\nHost: device\r\n\r\n")
            .await
            .unwrap();
        session.socket().flush().await.unwrap();
        net.vanish(session.local().unwrap());
        Timer::after(Duration::from_secs(5)).await;
        COUNTERS.snapshot()
    })
    .expect("ends within the limit");
    println!("end dropped after 1 s: {snapshot}");
    only(&snapshot, CloseReason::LocalClose, 1);
}

/// What the layer adds to a connection: a reference, two byte counts, two bytes of
/// state (16 bytes on a 32-bit target).
#[test]
fn the_wrapper_adds_two_words_and_eight_bytes_at_most() {
    type Socket = &'static mut embassy_net::tcp::TcpSocket<'static>;
    let overhead = size_of::<tcp_layers_quiet::Quiet<Socket>>() - size_of::<Socket>();
    println!("quiet layer: {overhead} bytes per connection on this host");
    assert!(overhead <= 2 * size_of::<usize>() + 8, "{overhead}");
}
