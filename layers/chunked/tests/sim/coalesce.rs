//! The coalescing buffer on a stack that keeps Nagle on. A server writes a 1000-byte
//! response's head, pauses (reading the body from flash), then writes the body: the
//! stack sends the head alone, and Nagle holds the body until the client's delayed ACK
//! of the head. Holding the head and merging it with the body sends the whole response
//! as one segment, which Nagle lets go at once.

use crate::simnet::{
    Counting, ONE_SEGMENT_BODY, Pacing, WriteLog, expected_checksum, serve_whole_bodies,
};
use tcp_layers_chunked::{ChunkedLayer, ONE_SEGMENT};
use tcp_layers_core::Layer;
use tcp_layers_sim::{Duration, LinkConfig, Net, client, run, server};

const PORT: u16 = 80;
const PACING: Pacing = Pacing {
    gate: None,
    pause_after_head: Some(Duration::from_millis(1)),
};

#[derive(Clone, Copy, Debug)]
enum Server {
    /// Nagle on, no layer.
    Raw,
    /// Nagle on, `ChunkedLayer::new().coalesce::<1460>()`.
    Coalescing,
    /// Nagle off by hand, no layer: the ideal.
    NagleOff,
}

/// Time to last byte and the number of response segments the client received.
fn time_to_last_byte(variant: Server) -> (Duration, usize) {
    run(async move {
        let net = Net::new(LinkConfig::wifi());
        let device = net.server();
        server::spawn_server(device.stack, PORT, 2, async move |socket| {
            let counted = Counting::new(socket, WriteLog::default());
            match variant {
                Server::Raw => serve_whole_bodies(&mut { counted }, PACING).await,
                Server::NagleOff => {
                    let mut counted = counted;
                    tcp_layers_core::Connection::set_nodelay(&mut counted, true).unwrap();
                    serve_whole_bodies(&mut counted, PACING).await
                }
                Server::Coalescing => {
                    let layer = ChunkedLayer::new().coalesce::<ONE_SEGMENT>();
                    serve_whole_bodies(&mut layer.layer(counted), PACING).await
                }
            }
        });
        let phone = net.client();
        let r = client::get(phone.stack, device.addr(PORT), ONE_SEGMENT_BODY)
            .await
            .unwrap();
        assert_eq!(r.checksum, expected_checksum(ONE_SEGMENT_BODY));
        let server_ip = device.ip;
        let segments = net
            .trace()
            .iter()
            .filter(|p| *p.src.ip() == server_ip && p.len > 0)
            .count();
        (r.time_to_last_byte, segments)
    })
}

#[test]
fn a_held_head_leaves_with_the_body_in_one_segment() {
    let (raw, raw_segments) = time_to_last_byte(Server::Raw);
    let (coalescing, coalescing_segments) = time_to_last_byte(Server::Coalescing);
    let (ideal, _) = time_to_last_byte(Server::NagleOff);
    println!(
        "head + 1000 B body with a 1 ms pause between, Nagle on: time to last byte raw {} us \
         ({raw_segments} segments), coalescing {} us ({coalescing_segments} segment), \
         Nagle off by hand {} us",
        raw.as_micros(),
        coalescing.as_micros(),
        ideal.as_micros()
    );
    assert_eq!(raw_segments, 2);
    assert_eq!(coalescing_segments, 1);
    assert!(coalescing + Duration::from_millis(10) <= raw);
    // Merged, the response waits for the pause and then leaves at once: within 2 % of
    // the Nagle-off ideal, which sends the head early but the body no sooner.
    let diff = coalescing.as_micros().abs_diff(ideal.as_micros());
    assert!(diff * 50 <= ideal.as_micros(), "{diff} us from the ideal");
}
