//! picoserve 0.20, unchanged, over layered sockets in the simulated network.
//!
//! The server side is the sim's hand-written accept loop (N slots, one embassy-net
//! socket each); each accepted socket is wrapped by a layer stack, handed to picoserve
//! as a `PicoserveSocket` and served by an ordinary `Router` + `Server::serve`.
#![recursion_limit = "256"]

use std::cell::RefCell;
use std::rc::Rc;

use embassy_net::tcp::TcpSocket;
use picoserve::response::sse::{EventSource, EventStream, EventWriter};
use picoserve::routing::get;
use picoserve::{Config, Router, Server, Timeouts};
use tcp_layers::core::{ErrorType, Read, Write, delegate_connection};
use tcp_layers::{
    Budget, BudgetConfig, CloseReason, Connection, ConnectionBuilder, Counters, Deadline, Identity,
    Layer, QuietLayer, Stack, default_stack, profile,
};
use tcp_layers_mock::log_lines as quiet_log;
use tcp_layers_nodelay::NoDelayLayer;
use tcp_layers_picoserve::{FlushMode, PicoserveSocket};
use tcp_layers_sim::client::{AfterLoad, ClientBuffers, ClientOptions, Page, PeerEnd, Session};
use tcp_layers_sim::responder::checksum;
use tcp_layers_sim::{Duration, LinkConfig, Net, Timer, client, run, server, spawn};

const PORT: u16 = 80;
const BIG_LEN: usize = 20_000;

/// The body of `/big`: byte i = i % 251, so a client checksum catches any byte out of
/// place (a split read/write mix-up would show here).
static BIG: [u8; BIG_LEN] = {
    let mut body = [0u8; BIG_LEN];
    let mut i = 0;
    while i < BIG_LEN {
        body[i] = (i % 251) as u8;
        i += 1;
    }
    body
};

static CONFIG: Config = Config::new(Timeouts {
    start_read_request: Duration::from_secs(5),
    persistent_start_read_request: Duration::from_secs(5),
    read_request: Duration::from_secs(3),
    write: Duration::from_secs(3),
})
.keep_connection_alive();

/// Three events, one every 100 ms, then the stream ends.
struct ThreeEvents;

impl EventSource for ThreeEvents {
    async fn write_events<W: picoserve::io::Write>(
        self,
        mut writer: EventWriter<'_, W>,
    ) -> Result<(), W::Error> {
        for n in 0..3 {
            writer.write_event("tick", format_args!("{n}")).await?;
            Timer::after(Duration::from_millis(100)).await;
        }
        Ok(())
    }
}

fn app() -> Router<impl picoserve::routing::PathRouter> {
    Router::new()
        .route("/hello", get(|| async { "hello from picoserve" }))
        .route("/big", get(|| async { &BIG[..] }))
        .route("/tail", get(|| async { &BIG[..3000] }))
        .route("/sse", get(|| async { EventStream(ThreeEvents) }))
}

/// Starts `sockets` slots serving `app()` with picoserve over `layers.wrap(socket)`.
fn spawn_picoserve<L>(stack: embassy_net::Stack<'static>, sockets: usize, layers: L)
where
    L: for<'a, 's> Layer<&'a mut TcpSocket<'s>> + 'static,
    for<'a, 's> <L as Layer<&'a mut TcpSocket<'s>>>::Service:
        tcp_layers::Connection<Error = embassy_net::tcp::Error>,
{
    spawn_picoserve_with(stack, sockets, layers, FlushMode::Queued, &[])
}

/// `spawn_picoserve` with the adapter's flush mode and stream paths.
fn spawn_picoserve_with<L>(
    stack: embassy_net::Stack<'static>,
    sockets: usize,
    layers: L,
    flush: FlushMode,
    stream_paths: &'static [&'static str],
) where
    L: for<'a, 's> Layer<&'a mut TcpSocket<'s>> + 'static,
    for<'a, 's> <L as Layer<&'a mut TcpSocket<'s>>>::Service:
        tcp_layers::Connection<Error = embassy_net::tcp::Error>,
{
    spawn_picoserve_config(stack, sockets, layers, flush, stream_paths, &CONFIG);
}

/// What `Server::serve` returned for each connection, in order (an error as its Debug
/// text): what a firmware that counts server errors sees.
type ServeResults = Rc<RefCell<Vec<Result<(), String>>>>;

/// `spawn_picoserve_with` with picoserve's configuration; returns what each `serve`
/// call returned.
fn spawn_picoserve_config<L>(
    stack: embassy_net::Stack<'static>,
    sockets: usize,
    layers: L,
    flush: FlushMode,
    stream_paths: &'static [&'static str],
    config: &'static Config,
) -> ServeResults
where
    L: for<'a, 's> Layer<&'a mut TcpSocket<'s>> + 'static,
    for<'a, 's> <L as Layer<&'a mut TcpSocket<'s>>>::Service:
        tcp_layers::Connection<Error = embassy_net::tcp::Error>,
{
    let app: &'static _ = Box::leak(Box::new(app()));
    let results = ServeResults::default();
    let record = results.clone();
    server::spawn_server(
        stack,
        PORT,
        sockets,
        async move |socket: &mut TcpSocket<'_>| {
            let mut http_buffer = [0u8; 2048];
            let conn = layers.layer(socket);
            let socket = PicoserveSocket::with_flush(conn, flush).with_stream_paths(stream_paths);
            let served = Server::new(app, config, &mut http_buffer)
                .serve(socket)
                .await;
            record
                .borrow_mut()
                .push(served.map(|_| ()).map_err(|e| format!("{e:?}")));
        },
    );
    results
}

#[test]
fn an_unchanged_picoserve_router_answers_over_layered_sockets() {
    run(async {
        let net = Net::new(LinkConfig::wifi());
        let device = net.server();
        let layers = ConnectionBuilder::new()
            .layer(tcp_layers_timewait::TimeWaitLayer::new())
            .layer(NoDelayLayer::new());
        spawn_picoserve(device.stack, 4, layers);

        let browser = net.client();
        let responses = client::keep_alive(
            browser.stack,
            device.addr(PORT),
            &["/hello", "/big", "/hello", "/big"],
        )
        .await;
        for (i, r) in responses.iter().enumerate() {
            let r = r
                .as_ref()
                .unwrap_or_else(|e| panic!("request {i} failed: {e}"));
            println!(
                "request {i}: status {} body {} B in {} ms",
                r.status,
                r.body_len,
                r.time_to_last_byte.as_millis()
            );
            assert_eq!(r.status, 200);
        }
        let hello = responses[0].as_ref().unwrap();
        assert_eq!(hello.body_len, "hello from picoserve".len());
        assert_eq!(hello.checksum, checksum(b"hello from picoserve"));
        for big in [&responses[1], &responses[3]] {
            let big = big.as_ref().unwrap();
            assert_eq!(big.body_len, BIG_LEN);
            assert_eq!(big.checksum, checksum(&BIG), "the body arrived corrupted");
        }
    });
}

#[test]
fn picoserve_event_stream_reads_and_writes_at_once_over_a_layered_socket() {
    // picoserve watches for a disconnect (a pending read) while it writes the events:
    // the two halves of the layered connection must take turns without a deadlock.
    run(async {
        let net = Net::new(LinkConfig::wifi());
        let device = net.server();
        spawn_picoserve(
            device.stack,
            2,
            ConnectionBuilder::new().layer(NoDelayLayer::new()),
        );
        let viewer = net.client();
        let outcome = client::sse(viewer.stack, device.addr(PORT), 3, Duration::from_secs(5))
            .await
            .expect("the stream opens");
        println!(
            "status {}, {} events in {} ms, end {:?}",
            outcome.status,
            outcome.events,
            outcome.elapsed.as_millis(),
            outcome.end
        );
        assert_eq!(outcome.status, 200);
        assert_eq!(outcome.events, 3, "every event arrived");
        // Events are 100 ms apart: a read holding the connection would have stalled
        // them until the client's next byte (never).
        assert!(outcome.elapsed < Duration::from_secs(1));
    });
}

/// Time from request to last byte of `path` over a fresh connection, in microseconds.
fn get_us<L>(layers: L, flush: FlushMode, path: &'static str) -> u64
where
    L: for<'a, 's> Layer<&'a mut TcpSocket<'s>> + 'static,
    for<'a, 's> <L as Layer<&'a mut TcpSocket<'s>>>::Service:
        tcp_layers::Connection<Error = embassy_net::tcp::Error>,
{
    run(async move {
        let net = Net::new(LinkConfig::wifi());
        let device = net.server();
        spawn_picoserve_with(device.stack, 2, layers, flush, &[]);
        let browser = net.client();
        let r = client::get(browser.stack, device.addr(PORT), path)
            .await
            .expect("a response");
        assert_eq!(r.status, 200);
        r.time_to_last_byte.as_micros()
    })
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

#[test]
fn the_queued_flush_sends_picoserves_head_and_body_in_one_round_trip() {
    // picoserve writes the head, flushes, then writes the body. Over a bare embassy
    // socket that flush waits for the client's delayed ACK of the head.
    let acknowledged = get_us(NoDelayLayer::new(), FlushMode::Acknowledged, "/hello");
    let queued = get_us(NoDelayLayer::new(), FlushMode::Queued, "/hello");
    println!(
        "picoserve GET /hello (20 B), 20 ms RTT, request to last byte: flush waits for ACK {} ms, \
         queued flush {} ms",
        ms(acknowledged),
        ms(queued)
    );
    assert!(
        queued <= 20_000 * 102 / 100,
        "head and body take one round trip"
    );
    assert!(
        acknowledged >= queued + 8_000,
        "the flush should cost at least a delayed ACK"
    );
}

#[test]
fn nodelay_through_picoserve_sends_the_last_short_segment_at_once() {
    // A 3000 B body leaves as two full segments and a short one; Nagle holds the short
    // one until the full ones are acknowledged (the client's delayed ACK, a round trip).
    let nagle = get_us(Identity, FlushMode::Queued, "/tail");
    let nodelay = get_us(
        ConnectionBuilder::new().layer(NoDelayLayer::new()),
        FlushMode::Queued,
        "/tail",
    );
    // 3 segments of headers + 3.1 kB at 10 Mbit/s: about 2.6 ms on the wire.
    let ideal_us = 20_000 + 2_600;
    println!(
        "picoserve GET /tail (3000 B), 20 ms RTT, request to last byte: Nagle on {} ms, \
         NoDelayLayer layer {} ms (RTT + serialization about {} ms)",
        ms(nagle),
        ms(nodelay),
        ms(ideal_us)
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

/// The paths the adapter marks as streams in these tests: the app's event stream.
static STREAM_PATHS: [&str; 1] = ["/sse"];

/// What one event-stream viewer got: the status (0: no response at all), the events
/// read and how the server ended the connection.
type Viewer = (u16, usize, PeerEnd);

/// Three viewers open `/sse` 20 ms apart on 8 picoserve slots over the default stack
/// with `budget` (its stream cap); each reads the stream's 3 events (300 ms), so the
/// first two are still streaming when the third asks.
fn three_viewers(
    budget: &'static Budget<8>,
    counters: &'static Counters,
    stream_paths: &'static [&'static str],
) -> Vec<Viewer> {
    budget.reset();
    counters.reset();
    run(async move {
        let net = Net::new(LinkConfig::wifi());
        let device = net.server();
        let layers = default_stack(counters, budget);
        spawn_picoserve_with(device.stack, 8, layers, FlushMode::Queued, stream_paths);
        let mut viewers = Vec::new();
        for _ in 0..3 {
            let host = net.client();
            viewers.push(spawn(client::sse(
                host.stack,
                device.addr(PORT),
                3,
                Duration::from_secs(2),
            )));
            Timer::after_millis(20).await;
        }
        let mut outcomes = Vec::new();
        for viewer in viewers {
            outcomes.push(match viewer.await.expect("the viewer task ran") {
                Ok(o) => (o.status, o.events, o.end),
                Err(_) => (0, 0, PeerEnd::Reset),
            });
        }
        outcomes
    })
}

#[test]
fn the_stream_cap_applies_through_picoserve_with_stream_paths() {
    static BUDGET: Budget<8> = Budget::new(profile::ESP32_S3);
    static COUNTERS: Counters = Counters::new();
    let cap = BUDGET.config().stream;

    // Without stream paths picoserve's event streams count as requests: all admitted.
    // Without stream paths every viewer is answered by the handler (as a request: the
    // first may then be evicted as idle between two events, which is the point of
    // stream paths). With them, admitted means the stream's 3 events arrived: a refused
    // viewer also gets a 200, see below, but no event.
    let without = three_viewers(&BUDGET, &COUNTERS, &[]);
    let admitted_without = without.iter().filter(|v| v.0 == 200).count();
    let refusals_without = BUDGET.stats().stream_refusals;

    let with = three_viewers(&BUDGET, &COUNTERS, &STREAM_PATHS);
    let admitted_with = with.iter().filter(|v| v.1 == 3).count();
    let refusals_with = BUDGET.stats().stream_refusals;
    println!(
        "3 SSE viewers, stream cap {cap}: streams admitted without stream paths \
         {admitted_without} ({without:?}), with {admitted_with} ({with:?}); \
         stream refusals {refusals_without} / {refusals_with}"
    );

    assert_eq!(
        admitted_without, 3,
        "without the paths no stream is counted"
    );
    assert_eq!(refusals_without, 0);
    assert_eq!(admitted_with, usize::from(cap), "the cap applies");
    assert_eq!(refusals_with, 1);
    for viewer in &with[..2] {
        assert_eq!(viewer.1, 3, "an admitted stream delivers every event");
    }
    // The third is answered with a 200 event stream whose only block is `retry: 5000`
    // (no event: a block without data dispatches none) and closed with a FIN (an RST
    // could destroy the answer before the client reads it); its handler never ran.
    assert_eq!(with[2], (200, 0, PeerEnd::Fin));
}

/// What a refused stream request gets: an event stream that only sets the
/// reconnection time, then the end of the connection.
const RETRY_BODY: &[u8] = b"retry: 5000\n\n";

#[test]
fn a_stream_path_split_over_two_segments_is_still_refused() {
    // The request line arrives in two reads: picoserve already holds the first part
    // when the adapter learns the path. It must still not be served as a stream.
    static BUDGET: Budget<4> = Budget::new(BudgetConfig::new(4, 1, 3));
    static COUNTERS: Counters = Counters::new();
    run(async {
        let net = Net::new(LinkConfig::wifi());
        let device = net.server();
        let layers = default_stack(&COUNTERS, &BUDGET);
        spawn_picoserve_with(device.stack, 4, layers, FlushMode::Queued, &STREAM_PATHS);
        let first = net.client();
        let streaming = spawn(client::sse(
            first.stack,
            device.addr(PORT),
            3,
            Duration::from_secs(2),
        ));
        Timer::after_millis(50).await;

        let second = net.client();
        let options = ClientOptions::new();
        let mut buffers = ClientBuffers::new(&options);
        let mut session = Session::connect(second.stack, &mut buffers, device.addr(PORT), options)
            .await
            .expect("a listener is free");
        session.socket().write_all(b"GET /ss").await.unwrap();
        session.socket().flush().await.unwrap();
        Timer::after_millis(50).await;
        let response = session
            .request(b"e HTTP/1.1\r\nHost: device\r\n\r\n")
            .await
            .expect("an answer");
        let end = session.wait_server_end(Duration::from_secs(2)).await;
        let first = streaming.await.unwrap().expect("the first stream opens");
        println!(
            "request line in two segments while the one stream slot is taken: status {}, \
             server end {end:?}; the first stream got {} events",
            response.status, first.events
        );
        assert_eq!(response.status, 200);
        assert_eq!(
            (response.body_len, response.checksum),
            (RETRY_BODY.len(), checksum(RETRY_BODY))
        );
        assert!(response.server_closes);
        assert_eq!(end, PeerEnd::Fin);
        assert_eq!((first.status, first.events), (200, 3));
        assert_eq!(BUDGET.stats().stream_refusals, 1);
    });
}

/// A layer whose flush returns at once: picoserve's reads then no longer wait for the
/// acknowledgement of the response, as with the adapter before it did.
#[derive(Clone, Copy)]
struct FlushAtOnce;

struct FlushedAtOnce<C> {
    inner: C,
}

impl<C: Connection> Layer<C> for FlushAtOnce {
    type Service = FlushedAtOnce<C>;
    fn layer(&self, inner: C) -> FlushedAtOnce<C> {
        FlushedAtOnce { inner }
    }
}

impl<C: Connection> ErrorType for FlushedAtOnce<C> {
    type Error = C::Error;
}

impl<C: Connection> Read for FlushedAtOnce<C> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, C::Error> {
        self.inner.read(buf).await
    }
}

impl<C: Connection> Write for FlushedAtOnce<C> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, C::Error> {
        self.inner.write(buf).await
    }
    async fn flush(&mut self) -> Result<(), C::Error> {
        Ok(())
    }
}

impl<C: Connection> Connection for FlushedAtOnce<C> {
    delegate_connection!(inner; state, set_nodelay, close_write, abort, remote, local,
        send_queue, recv_queue, ended_error, close_reason, set_class, end);
}

/// Device A loads a page (a document and 6 resources over 6 keep-alive connections,
/// the document's connection asking for a resource right after it) and idles; 2 s
/// later device B loads it. picoserve on 8 slots over `layers`, whose budget is
/// `budget` (ESP32-S3: 6 listeners kept in reserve, so accepts evict idle connections).
/// Returns whether each load was whole and the evictions during A's load.
fn second_device<L>(layers: L, budget: &'static Budget<8>) -> (bool, bool, u32)
where
    L: for<'a, 's> Layer<&'a mut TcpSocket<'s>> + 'static,
    for<'a, 's> <L as Layer<&'a mut TcpSocket<'s>>>::Service:
        tcp_layers::Connection<Error = embassy_net::tcp::Error>,
{
    budget.reset();
    run(async move {
        let net = Net::new(LinkConfig::wifi());
        let device = net.server();
        spawn_picoserve(device.stack, 8, layers);
        let page = Page {
            document: "/hello".into(),
            resources: vec!["/tail".into(); 6],
            connections: 6,
        };
        let (a, b) = (net.client(), net.client());
        let load_a = client::browser(a.stack, device.addr(PORT), &page, AfterLoad::StayIdle).await;
        let evicted_during_a = budget.stats().evictions;
        Timer::after_secs(2).await;
        let load_b = client::browser(b.stack, device.addr(PORT), &page, AfterLoad::StayIdle).await;
        println!(
            "  A: ok {} {:?}; B: ok {} {:?}",
            load_a.ok, load_a.errors, load_b.ok, load_b.errors
        );
        (load_a.ok, load_b.ok, evicted_during_a)
    })
}

#[test]
fn a_response_in_flight_is_not_evicted_as_idle_through_picoserve() {
    // picoserve reads the next request right after writing a response; a read that
    // starts before the client has acknowledged the response makes the connection
    // look idle while its client is sending the next request on it, and an accept of
    // the same page load evicts it.
    static BUDGET: Budget<8> = Budget::new(profile::ESP32_S3);
    static COUNTERS: Counters = Counters::new();
    println!("flush at once (no acknowledgement wait before the next read):");
    let (a_at_once, b_at_once, evicted_at_once) = second_device(
        Stack::new(default_stack(&COUNTERS, &BUDGET), FlushAtOnce),
        &BUDGET,
    );
    println!("the adapter as it is:");
    let (a, b, evicted) = second_device(default_stack(&COUNTERS, &BUDGET), &BUDGET);
    println!(
        "page loads whole (A, B): flush at once {a_at_once}, {b_at_once} with {evicted_at_once} \
         evictions during A's load; adapter {a}, {b} with {evicted}"
    );
    assert!(
        !a_at_once && evicted_at_once > 0,
        "without the wait a connection of A's own page load is evicted"
    );
    assert!(a && b, "both devices load the whole page");
    // A is served 5 requests at once (the ESP32-S3's 6 request slots less one left for
    // another device): its sixth connection takes over one of A's own connections once
    // that one is idle, its response delivered. Nothing in flight is evicted, or A's
    // load would not be whole.
    assert!(
        evicted <= 1,
        "at most A's own idle connection is given up during its load, not {evicted}"
    );
}

/// The exact answer to a refused EventSource: `200 OK`, `text/event-stream`, not to be
/// cached, closing, and a body that sets the reconnection time to 5 s; then a FIN. A
/// browser's EventSource reconnects after such a stream ends, where it gives up for
/// good after a 503.
#[test]
fn a_refused_event_stream_is_told_to_reconnect_in_5_s() {
    static BUDGET: Budget<4> = Budget::new(BudgetConfig::new(4, 1, 3));
    static COUNTERS: Counters = Counters::new();
    let (answer, end, first) = run(async {
        let net = Net::new(LinkConfig::wifi());
        let device = net.server();
        let layers = default_stack(&COUNTERS, &BUDGET);
        spawn_picoserve_with(device.stack, 4, layers, FlushMode::Queued, &STREAM_PATHS);
        let first = net.client();
        let streaming = spawn(client::sse(
            first.stack,
            device.addr(PORT),
            3,
            Duration::from_secs(2),
        ));
        Timer::after_millis(50).await;

        let second = net.client();
        let options = ClientOptions::new();
        let mut buffers = ClientBuffers::new(&options);
        let mut session = Session::connect(second.stack, &mut buffers, device.addr(PORT), options)
            .await
            .expect("a listener is free");
        session
            .socket()
            .write_all(b"GET /sse HTTP/1.1\r\nHost: device\r\nAccept: text/event-stream\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let mut chunk = [0u8; 256];
        let end = loop {
            match session.socket().read(&mut chunk).await {
                Ok(0) => break PeerEnd::Fin,
                Ok(n) => answer.extend_from_slice(&chunk[..n]),
                Err(_) => break PeerEnd::Reset,
            }
        };
        let first = streaming.await.unwrap().expect("the first stream opens");
        (answer, end, first)
    });
    println!(
        "refused EventSource while the one stream slot is taken: {:?}, then {end:?}",
        String::from_utf8_lossy(&answer)
    );
    assert_eq!(
        answer,
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n\
Connection: close\r\n\r\nretry: 5000\n\n"
    );
    assert_eq!(end, PeerEnd::Fin);
    assert_eq!((first.status, first.events), (200, 3));
    assert_eq!(BUDGET.stats().stream_refusals, 1);
}

/// picoserve enforcing its own, shorter timeout: `read_request` 1 s (the reaper's head
/// deadline is 4 s), `write` 1 s (the reaper's stall is 5 s).
static SHORT_READ: Config = Config::new(Timeouts {
    start_read_request: Duration::from_secs(5),
    persistent_start_read_request: Duration::from_secs(5),
    read_request: Duration::from_secs(1),
    write: Duration::from_secs(3),
})
.keep_connection_alive();

static SHORT_WRITE: Config = Config::new(Timeouts {
    start_read_request: Duration::from_secs(5),
    persistent_start_read_request: Duration::from_secs(5),
    read_request: Duration::from_secs(3),
    write: Duration::from_secs(1),
})
.keep_connection_alive();

/// What a client that makes picoserve give up on the connection does.
#[derive(Clone, Copy, Debug)]
enum GivesUp {
    /// Sends half a request head and waits: picoserve's read of the rest times out.
    HalfAHead,
    /// Asks for `/big` and never reads: picoserve's write times out.
    NeverReads,
}

/// One client that makes picoserve (over the default stack, with `config`) give up on
/// its connection; the close reasons the quiet layer reported and the lines it logged
/// at WARN or above.
fn picoserve_gives_up(config: &'static Config, client: GivesUp) -> (Vec<CloseReason>, Vec<String>) {
    static BUDGET: Budget<8> = Budget::new(profile::ESP32_S3);
    static COUNTERS: Counters = Counters::new();
    BUDGET.reset();
    COUNTERS.reset();
    quiet_log::start_counting();
    run(async move {
        let net = Net::new(LinkConfig::wifi());
        let device = net.server();
        let layers = default_stack(&COUNTERS, &BUDGET);
        spawn_picoserve_config(device.stack, 2, layers, FlushMode::Queued, &[], config);
        let phone = net.client();
        match client {
            GivesUp::HalfAHead => {
                let options = ClientOptions::new();
                let mut buffers = ClientBuffers::new(&options);
                let mut session =
                    Session::connect(phone.stack, &mut buffers, device.addr(PORT), options)
                        .await
                        .expect("connects");
                session.socket().write_all(b"GET /hel").await.unwrap();
                let end = session.wait_server_end(Duration::from_secs(10)).await;
                assert_eq!(end, PeerEnd::Reset, "picoserve aborts");
            }
            GivesUp::NeverReads => {
                let hold = client::slow_reader(
                    phone.stack,
                    device.addr(PORT),
                    "/big",
                    Duration::from_secs(10),
                )
                .await
                .expect("connects");
                assert_eq!(hold.end, PeerEnd::Reset, "picoserve aborts");
            }
        }
        Timer::after_secs(1).await;
    });
    let lines = quiet_log::lines();
    (lines.closed_events, lines.loud)
}

#[test]
fn a_picoserve_read_timeout_is_a_reaped_request_not_a_local_error() {
    let (closed, loud) = picoserve_gives_up(&SHORT_READ, GivesUp::HalfAHead);
    println!(
        "picoserve's read_request (1 s) fires before the reaper's head deadline (4 s): \
         closes {closed:?}, warn lines {loud:?}"
    );
    assert_eq!(closed, [CloseReason::Reaped(Deadline::Request)]);
    assert!(loud.is_empty(), "no WARN line: {loud:?}");
}

#[test]
fn a_picoserve_write_timeout_is_a_reaped_stall_not_a_local_error() {
    let (closed, loud) = picoserve_gives_up(&SHORT_WRITE, GivesUp::NeverReads);
    println!(
        "picoserve's write timeout (1 s) fires before the reaper's stall deadline (5 s): \
         closes {closed:?}, warn lines {loud:?}"
    );
    assert_eq!(closed, [CloseReason::Reaped(Deadline::Stall)]);
    assert!(loud.is_empty(), "no WARN line: {loud:?}");
}

/// A layer that has already ended the connection (as a budget that refused it does)
/// and whose reads fail.
#[path = "../../test-support/ended.rs"]
mod ended;
use ended::AlreadyEnded;

/// What `serve` returned for one connection over `layers` whose client connects and
/// then does `client`.
fn serve_result<L>(layers: L, reset_at_once: bool) -> Result<(), String>
where
    L: for<'a, 's> Layer<&'a mut TcpSocket<'s>> + 'static,
    for<'a, 's> <L as Layer<&'a mut TcpSocket<'s>>>::Service:
        tcp_layers::Connection<Error = embassy_net::tcp::Error>,
{
    run(async move {
        let net = Net::new(LinkConfig::wifi());
        let device = net.server();
        let results =
            spawn_picoserve_config(device.stack, 1, layers, FlushMode::Queued, &[], &CONFIG);
        let phone = net.client();
        let options = ClientOptions::new();
        let mut buffers = ClientBuffers::new(&options);
        let session = Session::connect(phone.stack, &mut buffers, device.addr(PORT), options)
            .await
            .expect("connects");
        if reset_at_once {
            session.abort().await;
        } else {
            let mut session = session;
            let _ = session.get("/hello").await;
        }
        Timer::after_secs(1).await;
        let results = results.borrow();
        assert_eq!(results.len(), 1, "one connection served");
        results[0].clone()
    })
}

/// A read of a connection a layer already ended reaches picoserve as the end of the
/// stream, so `serve` returns `Ok` (picoserve reports a read error as
/// `Read(ConnectionReset)`, which a firmware counts as a server error); a peer's real
/// reset still surfaces as that error.
#[test]
fn a_connection_a_layer_ended_reaches_picoserve_as_the_end_of_the_stream() {
    static COUNTERS: Counters = Counters::new();
    let ended = serve_result(
        ConnectionBuilder::new()
            .layer(QuietLayer::new(&COUNTERS))
            .layer(AlreadyEnded),
        false,
    );
    let reset = serve_result(
        ConnectionBuilder::new().layer(QuietLayer::new(&COUNTERS)),
        true,
    );
    println!("serve returned: layer ended the connection {ended:?}; peer reset {reset:?}");
    assert_eq!(ended, Ok(()));
    assert!(
        reset.as_ref().is_err_and(|e| e.contains("ConnectionReset")),
        "a peer's reset is still an error: {reset:?}"
    );
}
