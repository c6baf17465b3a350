//! One executor, two connections: a 160 kB response and a 512-byte one become ready in
//! the same instant. Without the layer the big `write_all` copies the whole response
//! into a large TX buffer before the other connection's task gets a turn; with it, the
//! other task runs after the first 4096-byte piece.
//!
//! What the simulation can and cannot show: the link is the bottleneck and copying
//! into a socket buffer costs no virtual time, so the small response completes long
//! before the big one in both variants (the stack interleaves their segments). What
//! differs, and what this test asserts, is how much of the big response one task
//! pushes before another ready task runs: on a device that is CPU time during which
//! every other connection (and the Wi-Fi driver's task) waits. With an ESP32-sized TX
//! buffer (8 KiB) raw embassy-net already yields whenever the buffer is full, so the
//! difference there is the buffer size against the chunk size; the figure is printed.

use crate::simnet::{
    BIG, Counting, Pacing, SMALL, WriteLog, expected_checksum, serve_whole_bodies,
};
use tcp_layers_chunked::ChunkedLayer;
use tcp_layers_core::Layer;
use tcp_layers_sim::server::{self, ServerConfig};
use tcp_layers_sim::{Duration, Instant, LinkConfig, Net, Timer, client, now, run, spawn};

const PORT: u16 = 80;
const WHOLE_RESPONSE_TX: usize = 192 * 1024;
const ESP32_TX: usize = 8192;
/// Both requests are in by then (handshake and request take ~35 ms on this link).
const GATE: Instant = Instant::from_millis(100);
const PACING: Pacing = Pacing {
    gate: Some(GATE),
    pause_after_head: None,
};

struct Figures {
    /// Bytes of the big response the socket took before the small response's first write.
    big_bytes_before_small: usize,
    /// Executor polls between the big body's first and last socket write.
    polls_during_big_body: u64,
    small_done: Duration,
    big_done: Duration,
}

fn two_responses(layer: Option<ChunkedLayer>, tx_buffer: usize) -> Figures {
    let log = WriteLog::default();
    let writes = log.clone();
    let (small_done, big_done) = run(async move {
        let net = Net::new(LinkConfig::wifi());
        let device = net.server();
        let config = ServerConfig::new(PORT, 2).with_buffers(2048, tx_buffer);
        server::spawn_server_with(device.stack, config, async move |socket| {
            let counted = Counting::new(socket, log.clone());
            match layer {
                None => serve_whole_bodies(&mut { counted }, PACING).await,
                Some(layer) => serve_whole_bodies(&mut layer.layer(counted), PACING).await,
            }
        });
        let addr = device.addr(PORT);
        let (camera, phone) = (net.client(), net.client());
        let big = spawn(async move {
            let r = client::get(camera.stack, addr, BIG).await.unwrap();
            assert_eq!(r.checksum, expected_checksum(BIG));
            now()
        });
        Timer::after(Duration::from_millis(5)).await;
        let r = client::get(phone.stack, addr, SMALL).await.unwrap();
        assert_eq!(r.checksum, expected_checksum(SMALL));
        let small_done = now();
        (small_done, big.await.unwrap())
    });
    let writes = writes.borrow();
    let first_small = writes.iter().position(|w| w.path == SMALL).unwrap();
    let big_bytes_before_small = writes[..first_small]
        .iter()
        .filter(|w| w.path == BIG)
        .map(|w| w.len)
        .sum();
    let big: Vec<_> = writes.iter().filter(|w| w.path == BIG).collect();
    Figures {
        big_bytes_before_small,
        polls_during_big_body: big.last().unwrap().poll - big[1].poll,
        small_done: small_done - GATE,
        big_done: big_done - GATE,
    }
}

fn report(name: &str, tx: usize, f: &Figures) {
    println!(
        "{name:>7}, TX {tx:>6} B: {:>6} B of the big response before the small one got a turn, \
         {:>3} executor polls while its body went down; after the gate the small response \
         completes at {:>5} us, the big one at {:>6} us",
        f.big_bytes_before_small,
        f.polls_during_big_body,
        f.small_done.as_micros(),
        f.big_done.as_micros()
    );
}

#[test]
fn a_second_connection_runs_between_the_pieces_of_a_big_response() {
    let raw = two_responses(None, WHOLE_RESPONSE_TX);
    let layered = two_responses(Some(ChunkedLayer::new()), WHOLE_RESPONSE_TX);
    report("raw", WHOLE_RESPONSE_TX, &raw);
    report("layered", WHOLE_RESPONSE_TX, &layered);

    // Without the layer the whole 160 kB went into the socket before the other task ran.
    assert!(raw.big_bytes_before_small > 160_000);
    assert_eq!(raw.polls_during_big_body, 0);
    // With it, one head and one piece.
    assert!(layered.big_bytes_before_small <= 200 + 4096);
    assert!(layered.polls_during_big_body >= 39);
    // The small response completes while the big one is still being sent.
    assert!(layered.small_done < layered.big_done);
    // The pieces cost no throughput: the big response completes when it does raw.
    assert!(layered.big_done.as_micros() * 100 <= raw.big_done.as_micros() * 101);
}

#[test]
fn with_an_esp32_tx_buffer_raw_embassy_already_yields_when_the_buffer_is_full() {
    let raw = two_responses(None, ESP32_TX);
    let layered = two_responses(Some(ChunkedLayer::new()), ESP32_TX);
    report("raw", ESP32_TX, &raw);
    report("layered", ESP32_TX, &layered);
    assert!(raw.big_bytes_before_small <= ESP32_TX + 200);
    assert!(layered.big_bytes_before_small <= 200 + 4096);
    assert!(raw.small_done < raw.big_done && layered.small_done < layered.big_done);
}
