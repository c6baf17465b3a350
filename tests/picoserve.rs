//! picoserve 0.20, unchanged, over layered sockets in the simulated network.
//!
//! The server side is the sim's hand-written accept loop (N slots, one embassy-net
//! socket each); each accepted socket is wrapped by a layer stack, handed to picoserve
//! as a `PicoserveSocket` and served by an ordinary `Router` + `Server::serve`.
#![recursion_limit = "256"]

use embassy_net::tcp::TcpSocket;
use picoserve::response::sse::{EventSource, EventStream, EventWriter};
use picoserve::routing::get;
use picoserve::{Config, Router, Server, Timeouts};
use tcp_layers::adapters::picoserve::{FlushMode, PicoserveSocket};
use tcp_layers::{ConnectionBuilder, Identity, Layer};
use tcp_layers_nodelay::NoDelay;
use tcp_layers_sim::responder::checksum;
use tcp_layers_sim::{Duration, LinkConfig, Net, Timer, client, run, server};

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
    L: for<'a> Layer<&'a mut TcpSocket<'static>> + 'static,
    for<'a> <L as Layer<&'a mut TcpSocket<'static>>>::Service:
        tcp_layers::Connection<Error = embassy_net::tcp::Error>,
{
    spawn_picoserve_with(stack, sockets, layers, FlushMode::Queued)
}

fn spawn_picoserve_with<L>(
    stack: embassy_net::Stack<'static>,
    sockets: usize,
    layers: L,
    flush: FlushMode,
) where
    L: for<'a> Layer<&'a mut TcpSocket<'static>> + 'static,
    for<'a> <L as Layer<&'a mut TcpSocket<'static>>>::Service:
        tcp_layers::Connection<Error = embassy_net::tcp::Error>,
{
    let app: &'static _ = Box::leak(Box::new(app()));
    server::spawn_server(
        stack,
        PORT,
        sockets,
        async move |socket: &mut TcpSocket<'static>| {
            let mut http_buffer = [0u8; 2048];
            let conn = layers.layer(socket);
            let _ = Server::new(app, &CONFIG, &mut http_buffer)
                .serve(PicoserveSocket::with_flush(conn, flush))
                .await;
        },
    );
}

#[test]
fn an_unchanged_picoserve_router_answers_over_layered_sockets() {
    run(async {
        let net = Net::new(LinkConfig::wifi());
        let device = net.server();
        let layers = ConnectionBuilder::new()
            .layer(tcp_layers_timewait::TimeWait::new())
            .layer(NoDelay::new());
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
            ConnectionBuilder::new().layer(NoDelay::new()),
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
    L: for<'a> Layer<&'a mut TcpSocket<'static>> + 'static,
    for<'a> <L as Layer<&'a mut TcpSocket<'static>>>::Service:
        tcp_layers::Connection<Error = embassy_net::tcp::Error>,
{
    run(async move {
        let net = Net::new(LinkConfig::wifi());
        let device = net.server();
        spawn_picoserve_with(device.stack, 2, layers, flush);
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
    let acknowledged = get_us(NoDelay::new(), FlushMode::Acknowledged, "/hello");
    let queued = get_us(NoDelay::new(), FlushMode::Queued, "/hello");
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
        ConnectionBuilder::new().layer(NoDelay::new()),
        FlushMode::Queued,
        "/tail",
    );
    // 3 segments of headers + 3.1 kB at 10 Mbit/s: about 2.6 ms on the wire.
    let ideal_us = 20_000 + 2_600;
    println!(
        "picoserve GET /tail (3000 B), 20 ms RTT, request to last byte: Nagle on {} ms, \
         NoDelay layer {} ms (RTT + serialization about {} ms)",
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
