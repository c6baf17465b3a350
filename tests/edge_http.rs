//! edge-http 0.8, unchanged, over the layered acceptor in the simulated network.
//!
//! `Server::run` gets a `&LayeredAcceptor`: N embassy-net sockets on the device host,
//! each accepted connection wrapped in a layer stack; the handler is ordinary edge-http
//! code.
#![recursion_limit = "256"]

use core::fmt::{Debug, Display};

use edge_http::io::Error as HttpError;
use edge_http::io::server::{Connection as HttpConnection, Handler, Server};
use edge_nal::TcpSplit;
use embedded_io_async::{Read, Write};
use tcp_layers::adapters::edge_nal::{LayeredAcceptor, SocketBuffers};
use tcp_layers::{ConnectionBuilder, Identity};
use tcp_layers_nodelay::NoDelay;
use tcp_layers_sim::client::{ClientBuffers, ClientOptions, Session};
use tcp_layers_sim::responder::checksum;
use tcp_layers_sim::{Duration, LinkConfig, Net, Timer, client, run, spawn};

const PORT: u16 = 80;
const BIG_LEN: usize = 20_000;

/// Byte i = i % 251, so a client checksum catches any byte out of place.
fn big() -> Vec<u8> {
    (0..BIG_LEN).map(|i| (i % 251) as u8).collect()
}

/// `/hello`, `/big` (20 000 B) and `/tail` (3000 B).
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
    L: for<'a> tcp_layers::Layer<tcp_layers::adapters::edge_nal::SocketSlot<'a, 'static, N>>,
    for<'a> <L as tcp_layers::Layer<tcp_layers::adapters::edge_nal::SocketSlot<'a, 'static, N>>>::Service:
        tcp_layers::Connection<Error = embassy_net::tcp::Error>,
{
    let buffers: &'static mut [SocketBuffers<2048, 8192>; N] =
        Box::leak(Box::new(SocketBuffers::array()));
    let acceptor: &'static _ =
        Box::leak(Box::new(LayeredAcceptor::new(stack, PORT, layers, buffers)));
    spawn(async move {
        let mut server: Server<P, 2048, 16> = Server::new();
        let result = server.run(None, acceptor, App).await;
        panic!("edge-http's run ended: {result:?}");
    })
}

#[test]
fn an_unchanged_edge_http_server_answers_over_the_layered_acceptor() {
    run(async {
        let net = Net::new(LinkConfig::wifi());
        let device = net.server();
        let layers = ConnectionBuilder::new()
            .layer(tcp_layers_timewait::TimeWait::new())
            .layer(NoDelay::new());
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
    L: for<'a> tcp_layers::Layer<tcp_layers::adapters::edge_nal::SocketSlot<'a, 'static, 2>>,
    for<'a> <L as tcp_layers::Layer<tcp_layers::adapters::edge_nal::SocketSlot<'a, 'static, 2>>>::Service:
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
    let nodelay = tail_us(ConnectionBuilder::new().layer(NoDelay::new()));
    // 3 segments of headers + 3.1 kB at 10 Mbit/s: about 2.6 ms on the wire.
    let ideal_us = 20_000 + 2_600;
    println!(
        "edge-http GET /tail (3000 B), 20 ms RTT, request to last byte: Nagle on {} ms, \
         NoDelay layer {} ms (RTT + serialization about {} ms)",
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
