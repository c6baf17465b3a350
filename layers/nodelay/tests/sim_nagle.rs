//! On the real embassy-net stack in the simulated network: the raw responder writes a
//! response as head then body (two `write_all` calls); with Nagle on (embassy's
//! default) the response's tail waits for the client's 10 ms delayed ACK. The layer
//! must remove that wait and match a socket whose Nagle was turned off by hand.
use tcp_layers_core::Layer;
use tcp_layers_nodelay::NoDelayLayer;
use tcp_layers_sim::responder::{self, Routes};
use tcp_layers_sim::{Duration, LinkConfig, Net, client, run, server};

const PORT: u16 = 80;
const BODY: usize = 2048;
const PATH: &str = "/bytes/2048";

#[derive(Clone, Copy, Debug)]
enum Server {
    /// The socket as accepted: Nagle on.
    Raw,
    /// Wrapped in `NoDelayLayer::new()`.
    Layered,
    /// `set_nagle_enabled(false)` by hand: the ideal the layer must reach.
    NagleOffByHand,
}

fn time_to_last_byte(variant: Server) -> Duration {
    run(async move {
        let net = Net::new(LinkConfig::wifi());
        let device = net.server();
        server::spawn_server(device.stack, PORT, 2, async move |socket| match variant {
            Server::Raw => {
                responder::serve(socket, &Routes::new()).await;
            }
            Server::Layered => {
                let mut conn = NoDelayLayer::new().layer(socket);
                responder::serve(&mut conn, &Routes::new()).await;
            }
            Server::NagleOffByHand => {
                socket.set_nagle_enabled(false);
                responder::serve(socket, &Routes::new()).await;
            }
        });
        let phone = net.client();
        let r = client::get(phone.stack, device.addr(PORT), PATH)
            .await
            .unwrap();
        assert_eq!((r.status, r.body_len), (200, BODY));
        assert_eq!(
            r.checksum,
            responder::checksum(&responder::body_of(PATH, &Routes::new()).unwrap())
        );
        r.time_to_last_byte
    })
}

/// One round trip plus the time the link takes to carry the request and the response
/// segments (each with 40 bytes of IPv4 and TCP headers, MSS 1460).
fn rtt_plus_serialization() -> Duration {
    let link = LinkConfig::wifi();
    let request = format!("GET {PATH} HTTP/1.1\r\nHost: device\r\nConnection: keep-alive\r\n\r\n");
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {BODY}\r\nConnection: keep-alive\r\n\r\n"
    );
    let mut ticks = link.up.latency.as_ticks()
        + link.down.latency.as_ticks()
        + link.up.serialization_ticks(request.len() + 40);
    let mut left = head.len() + BODY;
    while left > 0 {
        let segment = left.min(1460);
        ticks += link.down.serialization_ticks(segment + 40);
        left -= segment;
    }
    Duration::from_ticks(ticks)
}

#[test]
fn head_and_body_arrive_without_the_delayed_ack() {
    let raw = time_to_last_byte(Server::Raw);
    let layered = time_to_last_byte(Server::Layered);
    let by_hand = time_to_last_byte(Server::NagleOffByHand);
    let computed = rtt_plus_serialization();
    println!(
        "GET {PATH}, 20 ms RTT, 10 Mbit/s: time to last byte raw {} us, layered {} us, \
         Nagle off by hand {} us, RTT + serialization {} us; layer saves {} us",
        raw.as_micros(),
        layered.as_micros(),
        by_hand.as_micros(),
        computed.as_micros(),
        raw.as_micros() - layered.as_micros()
    );
    assert!(
        layered + Duration::from_millis(10) <= raw,
        "the layer must save at least one delayed ACK (10 ms)"
    );
    for ideal in [by_hand, computed] {
        let diff = layered.as_micros().abs_diff(ideal.as_micros());
        assert!(
            diff * 50 <= ideal.as_micros(),
            "layered {} us is not within 2 % of the ideal {} us",
            layered.as_micros(),
            ideal.as_micros()
        );
    }
}
