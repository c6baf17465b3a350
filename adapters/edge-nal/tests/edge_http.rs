//! edge-http 0.8, unchanged, over the layered acceptor in the simulated network.
//!
//! `Server::run` gets a `&LayeredAcceptor`: N embassy-net sockets on the device host,
//! each accepted connection wrapped in a layer stack; the handler is ordinary edge-http
//! code.
#![recursion_limit = "256"]

use core::fmt::{Debug, Display};
use std::cell::RefCell;
use std::rc::Rc;

use edge_http::io::Error as HttpError;
use edge_http::io::server::{Connection as HttpConnection, Handler, Server};
use edge_nal::{Readable, TcpSplit};
use embedded_io_async::{Read, Write};
use tcp_layers::{
    Budget, BudgetConfig, CloseReason, Connection, ConnectionBuilder, Counters, Deadline, Identity,
    Layer, QuietLayer, default_stack,
};
use tcp_layers_edge_nal::{EdgeConnection, LayeredAcceptor, RxBuffer, SocketBuffers, TxBuffer};
use tcp_layers_nodelay::NoDelayLayer;
use tcp_layers_sim::client::{ClientBuffers, ClientOptions, PeerEnd, Session};
use tcp_layers_sim::responder::checksum;
use tcp_layers_sim::{Duration, Instant, LinkConfig, Net, Timer, client, run, server, spawn};

const PORT: u16 = 80;
const BIG_LEN: usize = 20_000;

/// Byte i = i % 251, so a client checksum catches any byte out of place.
fn big() -> Vec<u8> {
    (0..BIG_LEN).map(|i| (i % 251) as u8).collect()
}

/// `/hello`, `/big` (20 000 B), `/tail` (3000 B) and `/sse` (three events 100 ms
/// apart).
struct App;

impl Handler for App {
    type Error<E>
        = HttpError<E>
    where
        E: Debug;

    async fn handle<T, const N: usize>(
        &self,
        _task_id: impl Display + Copy,
        conn: &mut HttpConnection<'_, T, N>,
    ) -> Result<(), Self::Error<T::Error>>
    where
        T: Read + Write + TcpSplit,
    {
        let path = conn.headers()?.path;
        let body: Vec<u8> = match path {
            "/sse" => {
                conn.initiate_response(200, Some("OK"), &[("Content-Type", "text/event-stream")])
                    .await?;
                for n in 0..3 {
                    conn.write_all(format!("data: {n}\n\n").as_bytes()).await?;
                    conn.flush().await?;
                    Timer::after_millis(100).await;
                }
                return Ok(());
            }
            "/hello" => b"hello from edge-http".to_vec(),
            "/big" => big(),
            "/tail" => big()[..3000].to_vec(),
            _ => {
                conn.initiate_response(404, None, &[("Content-Length", "0")])
                    .await?;
                return Ok(());
            }
        };
        let len = body.len().to_string();
        conn.initiate_response(200, Some("OK"), &[("Content-Length", &len)])
            .await?;
        conn.write_all(&body).await?;
        Ok(())
    }
}

/// Runs edge-http's `Server::run` with `P` handler tasks over an acceptor of `N` sockets.
fn spawn_edge_http<L, const P: usize, const N: usize>(
    stack: embassy_net::Stack<'static>,
    layers: L,
) -> tcp_layers_sim::JoinHandle<()>
where
    L: 'static,
    L: for<'a> tcp_layers::Layer<tcp_layers_edge_nal::SocketSlot<'a, 'static, N>>,
    for<'a> <L as tcp_layers::Layer<tcp_layers_edge_nal::SocketSlot<'a, 'static, N>>>::Service:
        tcp_layers::Connection<Error = embassy_net::tcp::Error>,
{
    spawn_edge_http_with::<L, P, N>(stack, layers, None, &[])
}

/// `spawn_edge_http` with edge-http's keep-alive timeout and the acceptor's stream
/// paths.
fn spawn_edge_http_with<L, const P: usize, const N: usize>(
    stack: embassy_net::Stack<'static>,
    layers: L,
    keep_alive_ms: Option<u32>,
    stream_paths: &'static [&'static str],
) -> tcp_layers_sim::JoinHandle<()>
where
    L: 'static,
    L: for<'a> tcp_layers::Layer<tcp_layers_edge_nal::SocketSlot<'a, 'static, N>>,
    for<'a> <L as tcp_layers::Layer<tcp_layers_edge_nal::SocketSlot<'a, 'static, N>>>::Service:
        tcp_layers::Connection<Error = embassy_net::tcp::Error>,
{
    let buffers: &'static mut [SocketBuffers<RxBuffer<2048>, TxBuffer<8192>>; N] =
        Box::leak(Box::new(SocketBuffers::array()));
    let acceptor: &'static _ = Box::leak(Box::new(
        LayeredAcceptor::new(stack, PORT, layers, buffers).with_stream_paths(stream_paths),
    ));
    spawn(async move {
        let mut server: Server<P, 2048, 16> = Server::new();
        let result = server.run(keep_alive_ms, acceptor, App).await;
        panic!("edge-http's run ended: {result:?}");
    })
}

#[test]
fn an_unchanged_edge_http_server_answers_over_the_layered_acceptor() {
    run(async {
        let net = Net::new(LinkConfig::wifi());
        let device = net.server();
        let layers = ConnectionBuilder::new()
            .layer(tcp_layers_timewait::TimeWaitLayer::new())
            .layer(NoDelayLayer::new());
        spawn_edge_http::<_, 4, 4>(device.stack, layers);

        let browser = net.client();
        let paths = ["/hello", "/big", "/hello", "/big"];
        let responses = client::keep_alive(browser.stack, device.addr(PORT), &paths).await;
        for (i, r) in responses.iter().enumerate() {
            let r = r
                .as_ref()
                .unwrap_or_else(|e| panic!("request {i} failed: {e}"));
            println!(
                "request {i} {}: status {} body {} B in {} ms",
                paths[i],
                r.status,
                r.body_len,
                r.time_to_last_byte.as_millis()
            );
            assert_eq!(r.status, 200);
        }
        let hello = responses[0].as_ref().unwrap();
        assert_eq!(hello.checksum, checksum(b"hello from edge-http"));
        for big_response in [&responses[1], &responses[3]] {
            let r = big_response.as_ref().unwrap();
            assert_eq!(r.body_len, BIG_LEN);
            assert_eq!(r.checksum, checksum(&big()), "the body arrived corrupted");
        }
    });
}

#[test]
fn the_acceptor_waits_instead_of_failing_when_every_socket_is_held() {
    // 4 handler tasks call accept() at once over 2 sockets. An acceptor that errors
    // when it has no socket ends edge-http's `run` for good; this one waits.
    run(async {
        let net = Net::new(LinkConfig::wifi());
        let device = net.server();
        let server = spawn_edge_http::<_, 4, 2>(device.stack, Identity);
        let addr = device.addr(PORT);

        // Two clients hold both sockets with idle keep-alive connections.
        let (a, b) = (net.client(), net.client());
        let options = ClientOptions::new();
        let mut buffers_a = ClientBuffers::new(&options);
        let mut buffers_b = ClientBuffers::new(&options);
        let mut session_a = Session::connect(a.stack, &mut buffers_a, addr, options)
            .await
            .expect("a connects");
        let mut session_b = Session::connect(b.stack, &mut buffers_b, addr, options)
            .await
            .expect("b connects");
        assert_eq!(
            session_a.get("/hello").await.expect("a's request").status,
            200
        );
        assert_eq!(
            session_b.get("/hello").await.expect("b's request").status,
            200
        );

        // A third device finds no listening socket: refused, as on the device.
        let c = net.client();
        let refused = client::get(c.stack, addr, "/hello").await;
        println!("third device while both sockets are held: {refused:?}");
        assert!(refused.is_err());
        Timer::after(Duration::from_millis(100)).await;
        assert!(
            !server.is_finished(),
            "edge-http's run ended on an accept error"
        );

        // One idle client leaves: its socket listens again and the next device is served.
        session_a.close().await;
        Timer::after(Duration::from_millis(100)).await;
        let served = client::get(c.stack, addr, "/hello").await;
        println!("third device after one socket came back: {served:?}");
        assert_eq!(served.expect("served once a socket is free").status, 200);
        assert!(!server.is_finished());
        session_b.close().await;
    });
}

/// Request to last byte of `/tail` over a fresh connection, in microseconds.
fn tail_us<L>(layers: L) -> u64
where
    L: 'static,
    L: for<'a> tcp_layers::Layer<tcp_layers_edge_nal::SocketSlot<'a, 'static, 2>>,
    for<'a> <L as tcp_layers::Layer<tcp_layers_edge_nal::SocketSlot<'a, 'static, 2>>>::Service:
        tcp_layers::Connection<Error = embassy_net::tcp::Error>,
{
    run(async move {
        let net = Net::new(LinkConfig::wifi());
        let device = net.server();
        spawn_edge_http::<_, 2, 2>(device.stack, layers);
        let browser = net.client();
        let r = client::get(browser.stack, device.addr(PORT), "/tail")
            .await
            .expect("a response");
        assert_eq!(r.status, 200);
        assert_eq!(r.body_len, 3000);
        r.time_to_last_byte.as_micros()
    })
}

#[test]
fn nodelay_through_edge_http_sends_the_last_short_segment_at_once() {
    let nagle = tail_us(Identity);
    let nodelay = tail_us(ConnectionBuilder::new().layer(NoDelayLayer::new()));
    // 3 segments of headers + 3.1 kB at 10 Mbit/s: about 2.6 ms on the wire.
    let ideal_us = 20_000 + 2_600;
    println!(
        "edge-http GET /tail (3000 B), 20 ms RTT, request to last byte: Nagle on {} ms, \
         NoDelayLayer layer {} ms (RTT + serialization about {} ms)",
        nagle as f64 / 1000.0,
        nodelay as f64 / 1000.0,
        ideal_us as f64 / 1000.0
    );
    assert!(
        nodelay <= ideal_us * 102 / 100,
        "within 2 % of RTT + serialization"
    );
    assert!(
        nagle >= nodelay + 8_000,
        "Nagle should hold the last segment for a delayed ACK or more"
    );
}

/// The paths the acceptor marks as streams in these tests: the app's event stream.
static STREAM_PATHS: [&str; 1] = ["/sse"];

/// Two viewers open `/sse` 50 ms apart on an edge-http server over the default stack
/// with one stream slot; what each got (status, event blocks, how the server ended it)
/// and the budget's stream refusals.
fn two_viewers(stream_paths: &'static [&'static str]) -> (Vec<(u16, usize, PeerEnd)>, u32) {
    static BUDGET: Budget<4> = Budget::new(BudgetConfig::new(4, 1, 3));
    static COUNTERS: Counters = Counters::new();
    BUDGET.reset();
    let viewers = run(async move {
        let net = Net::new(LinkConfig::wifi());
        let device = net.server();
        spawn_edge_http_with::<_, 4, 4>(
            device.stack,
            default_stack(&COUNTERS, &BUDGET),
            None,
            stream_paths,
        );
        let mut viewers = Vec::new();
        for _ in 0..2 {
            let host = net.client();
            viewers.push(spawn(client::sse(
                host.stack,
                device.addr(PORT),
                3,
                Duration::from_secs(2),
            )));
            Timer::after_millis(50).await;
        }
        let mut outcomes = Vec::new();
        for viewer in viewers {
            let o = viewer.await.expect("the viewer ran").expect("an answer");
            outcomes.push((o.status, o.events, o.end));
        }
        outcomes
    });
    (viewers, BUDGET.stats().stream_refusals)
}

/// An edge-http handler cannot mark its event stream, the acceptor does: with stream
/// paths `/sse` counts as a stream, so the one stream slot refuses the second viewer
/// (answered with the retry event stream, then a FIN); without them both are served as
/// requests and the stream cap never applies.
#[test]
fn an_edge_http_server_with_stream_paths_counts_its_event_stream_as_a_stream() {
    let (without, refusals_without) = two_viewers(&[]);
    let (with, refusals_with) = two_viewers(&STREAM_PATHS);
    println!(
        "2 SSE viewers, 1 stream slot: without stream paths {without:?} ({refusals_without} \
         refusals); with {with:?} ({refusals_with} refusals)"
    );
    assert_eq!(refusals_without, 0);
    assert!(without.iter().all(|v| v.0 == 200 && v.1 == 3));
    assert_eq!(refusals_with, 1);
    assert_eq!((with[0].0, with[0].1), (200, 3));
    // The refused viewer's only block is `retry: 5000`: no event.
    assert_eq!(with[1], (200, 0, PeerEnd::Fin));
}

/// A keep-alive timeout shorter than the reaper's idle deadline (5 s) lets edge-http
/// end an idle connection itself, in order (FIN, `LocalClose`); the same 5 s lets the
/// reaper win the race, which resets the connection.
#[test]
fn a_keep_alive_shorter_than_the_reapers_idle_lets_edge_http_close_first() {
    fn idle_end(keep_alive_ms: u32) -> (PeerEnd, Duration, Vec<CloseReason>) {
        static BUDGET: Budget<4> = Budget::new(BudgetConfig::new(4, 1, 3));
        static COUNTERS: Counters = Counters::new();
        BUDGET.reset();
        COUNTERS.reset();
        let (end, idle) = run(async move {
            let net = Net::new(LinkConfig::wifi());
            let device = net.server();
            spawn_edge_http_with::<_, 2, 2>(
                device.stack,
                default_stack(&COUNTERS, &BUDGET),
                Some(keep_alive_ms),
                &[],
            );
            let browser = net.client();
            let options = ClientOptions::new();
            let mut buffers = ClientBuffers::new(&options);
            let mut session =
                Session::connect(browser.stack, &mut buffers, device.addr(PORT), options)
                    .await
                    .expect("connects");
            assert_eq!(session.get("/hello").await.expect("served").status, 200);
            let idle_from = Instant::now();
            let end = session.wait_server_end(Duration::from_secs(30)).await;
            let idle = Instant::now() - idle_from;
            Timer::after_secs(1).await;
            (end, idle)
        });
        let closed = CloseReason::ALL
            .into_iter()
            .filter(|r| COUNTERS.snapshot().closed(*r) > 0)
            .collect();
        (end, idle, closed)
    }
    let (end_4, idle_4, closed_4) = idle_end(4_000);
    let (end_5, idle_5, closed_5) = idle_end(5_000);
    println!(
        "idle keep-alive: edge-http keep-alive 4 s: {end_4:?} after {} ms, {closed_4:?}; \
         5 s: {end_5:?} after {} ms, {closed_5:?}",
        idle_4.as_millis(),
        idle_5.as_millis()
    );
    assert_eq!(end_4, PeerEnd::Fin);
    assert_eq!(closed_4, [CloseReason::LocalClose]);
    assert_eq!(end_5, PeerEnd::Reset);
    assert_eq!(closed_5, [CloseReason::Reaped(Deadline::Idle)]);
}

/// Counts, per thread, the lines edge-http logs at warn or above (each test runs its
/// simulation on its own thread).
mod edge_http_warnings {
    use std::cell::Cell;
    use std::sync::Once;

    thread_local! {
        static WARNINGS: Cell<usize> = const { Cell::new(0) };
    }

    struct Counter;

    impl log::Log for Counter {
        fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
            metadata.level() <= log::Level::Warn
        }
        fn log(&self, record: &log::Record<'_>) {
            if record.level() <= log::Level::Warn && record.target().starts_with("edge_http") {
                eprintln!("edge-http {}: {}", record.level(), record.args());
                WARNINGS.with(|n| n.set(n.get() + 1));
            }
        }
        fn flush(&self) {}
    }

    /// Lines at warn or above edge-http logged on this thread while `f` ran.
    pub fn during<R>(f: impl FnOnce() -> R) -> (R, usize) {
        static INSTALL: Once = Once::new();
        INSTALL.call_once(|| {
            let _ = log::set_logger(&Counter);
            log::set_max_level(log::LevelFilter::Warn);
        });
        let before = WARNINGS.with(Cell::get);
        let result = f();
        (result, WARNINGS.with(Cell::get) - before)
    }
}

/// A slowloris connection whose head the reaper cuts: edge-http's own loop
/// (`Server::run`) logs the cut head at warn, `tcp_layers_edge_nal::serve` at debug.
/// Both end the connection, and the reaper names the deadline.
#[test]
fn a_head_the_reaper_cuts_is_no_warning_through_the_crates_serve() {
    #[derive(Clone, Copy, Debug)]
    enum Loop {
        EdgeHttpRun,
        CratesServe,
    }
    fn slowloris_through(
        server_loop: Loop,
    ) -> (tcp_layers_sim::client::Hold, Vec<CloseReason>, usize) {
        static COUNTERS: Counters = Counters::new();
        COUNTERS.reset();
        let (hold, warnings) = edge_http_warnings::during(|| {
            run(async move {
                let net = Net::new(LinkConfig::wifi());
                let device = net.server();
                let layers = ConnectionBuilder::new()
                    .layer(tcp_layers_timewait::TimeWaitLayer::new())
                    .layer(tcp_layers::ReaperLayer::http())
                    .layer(QuietLayer::new(&COUNTERS));
                let buffers: &'static mut [SocketBuffers<RxBuffer<2048>, TxBuffer<8192>>; 2] =
                    Box::leak(Box::new(SocketBuffers::array()));
                let acceptor: &'static _ = Box::leak(Box::new(LayeredAcceptor::new(
                    device.stack,
                    PORT,
                    layers,
                    buffers,
                )));
                spawn(async move {
                    match server_loop {
                        Loop::EdgeHttpRun => {
                            let mut server: Server<2, 2048, 16> = Server::new();
                            let result = server.run(Some(4_000), acceptor, App).await;
                            panic!("edge-http's run ended: {result:?}");
                        }
                        Loop::CratesServe => {
                            let buffers: &'static mut [[u8; 2048]; 2] =
                                Box::leak(Box::new([[0; 2048]; 2]));
                            tcp_layers_edge_nal::serve::<_, _, 2, 2, 16>(
                                acceptor,
                                buffers.each_mut().map(|b| &mut b[..]),
                                Some(4_000),
                                &App,
                            )
                            .await
                        }
                    }
                });
                let attacker = net.client();
                client::slowloris(
                    attacker.stack,
                    device.addr(PORT),
                    Duration::from_millis(500),
                    Duration::from_secs(30),
                )
                .await
                .expect("connects")
            })
        });
        let closed = CloseReason::ALL
            .into_iter()
            .filter(|r| COUNTERS.snapshot().closed(*r) > 0)
            .collect();
        (hold, closed, warnings)
    }
    let (run_hold, run_closed, run_warnings) = slowloris_through(Loop::EdgeHttpRun);
    let (serve_hold, serve_closed, serve_warnings) = slowloris_through(Loop::CratesServe);
    println!(
        "slowloris: Server::run held {} ms, {run_closed:?}, {run_warnings} warn lines; \
         serve held {} ms, {serve_closed:?}, {serve_warnings} warn lines",
        run_hold.held.as_millis(),
        serve_hold.held.as_millis()
    );
    for (closed, hold) in [(&run_closed, &run_hold), (&serve_closed, &serve_hold)] {
        assert_eq!(closed, &[CloseReason::Reaped(Deadline::Request)]);
        assert!(hold.held < Duration::from_secs(10), "the reaper ended it");
    }
    assert!(
        run_warnings >= 1,
        "edge-http's own loop warns about the cut head"
    );
    assert_eq!(serve_warnings, 0, "the crate's loop logs it at debug");
}

/// A layer that has already ended the connection (as a budget that refused it does)
/// and whose reads fail.
#[path = "../../test-support/ended.rs"]
mod ended;
use ended::AlreadyEnded;

/// What edge-http's `readable()` and reads of an [`EdgeConnection`] (whole and split)
/// return over `layers`, whose client connects and then resets at once or stays.
fn edge_reads<L>(layers: L, reset_at_once: bool) -> Vec<Result<usize, embassy_net::tcp::Error>>
where
    L: for<'a, 's> Layer<&'a mut embassy_net::tcp::TcpSocket<'s>> + 'static,
    for<'a, 's> <L as Layer<&'a mut embassy_net::tcp::TcpSocket<'s>>>::Service:
        Connection<Error = embassy_net::tcp::Error>,
{
    let seen = Rc::new(RefCell::new(Vec::new()));
    let record = seen.clone();
    run(async move {
        let net = Net::new(LinkConfig::wifi());
        let device = net.server();
        server::spawn_server(device.stack, PORT, 1, async move |socket| {
            // Let the client's reset arrive first.
            Timer::after_millis(100).await;
            let mut conn = EdgeConnection::new(layers.layer(socket));
            let mut buf = [0u8; 16];
            let readable = conn.readable().await.map(|()| 1);
            let read = conn.read(&mut buf).await;
            let (mut read_half, _) = conn.split();
            let half = read_half.read(&mut buf).await;
            record.borrow_mut().extend([readable, read, half]);
        });
        let phone = net.client();
        let options = ClientOptions::new();
        let mut buffers = ClientBuffers::new(&options);
        let session = Session::connect(phone.stack, &mut buffers, device.addr(PORT), options)
            .await
            .expect("connects");
        if reset_at_once {
            session.abort().await;
        }
        Timer::after_secs(1).await;
    });
    seen.take()
}

/// A read of a connection a layer already ended reaches edge-http as the end of the
/// stream (edge-http logs every I/O error at WARN); a peer's real reset is still an
/// error. `readable()` answers `Ok` (there is something to read: the end), and reads,
/// whole or split, return 0.
#[test]
fn a_connection_a_layer_ended_reaches_edge_http_as_the_end_of_the_stream() {
    static COUNTERS: Counters = Counters::new();
    let ended = edge_reads(
        ConnectionBuilder::new()
            .layer(QuietLayer::new(&COUNTERS))
            .layer(AlreadyEnded),
        false,
    );
    let reset = edge_reads(
        ConnectionBuilder::new().layer(QuietLayer::new(&COUNTERS)),
        true,
    );
    println!("readable, read, split read: layer ended {ended:?}; peer reset {reset:?}");
    assert_eq!(ended, [Ok(1), Ok(0), Ok(0)]);
    assert!(reset.iter().all(Result::is_err), "{reset:?}");
}

/// The acceptor's socket states: a socket of an index it does not have is `None`, not
/// a panic.
#[test]
fn socket_state_answers_none_for_an_index_of_no_socket() {
    run(async {
        let net = Net::new(LinkConfig::wifi());
        let device = net.server();
        let buffers: &'static mut [SocketBuffers<RxBuffer<512>, TxBuffer<512>>; 2] =
            Box::leak(Box::new(SocketBuffers::array()));
        let acceptor = LayeredAcceptor::new(device.stack, PORT, Identity, buffers);
        assert_eq!(acceptor.socket_state(0), Some(tcp_layers::TcpState::Closed));
        assert_eq!(acceptor.socket_state(2), None);
        assert_eq!(acceptor.in_use(), 0);
    });
}
