//! A 160 kB body written with one `write_all` reaches the embassy-net socket in pieces
//! of at most the chunk size, and arrives intact.

use crate::simnet::{BIG, Counting, Pacing, WriteLog, expected_checksum, serve_whole_bodies};
use tcp_layers_chunked::{ChunkedLayer, ONE_SEGMENT};
use tcp_layers_core::Layer;
use tcp_layers_sim::server::{self, ServerConfig};
use tcp_layers_sim::{LinkConfig, Net, client, run};

const PORT: u16 = 80;
const BODY: usize = 160_000;
/// A TX buffer that holds the whole response: every write is accepted whole, so the
/// count of socket writes is the count of pieces the server's writes were cut into.
const WHOLE_RESPONSE_TX: usize = 192 * 1024;
/// What an ESP32 server gives a socket.
const ESP32_TX: usize = 8192;

/// The sizes of the body's writes that reached the socket (the head's write left out).
fn body_writes(layer: Option<ChunkedLayer>, tx_buffer: usize) -> Vec<usize> {
    let log = WriteLog::default();
    let writes = log.clone();
    run(async move {
        let net = Net::new(LinkConfig::wifi());
        let device = net.server();
        let config = ServerConfig::new(PORT, 2).with_buffers(2048, tx_buffer);
        server::spawn_server_with(device.stack, config, async move |socket| {
            let counted = Counting::new(socket, log.clone());
            match layer {
                None => serve_whole_bodies(&mut { counted }, Pacing::default()).await,
                Some(layer) => {
                    serve_whole_bodies(&mut layer.layer(counted), Pacing::default()).await
                }
            }
        });
        let phone = net.client();
        let r = client::get(phone.stack, device.addr(PORT), BIG)
            .await
            .unwrap();
        assert_eq!(r.body_len, BODY);
        assert_eq!(
            r.checksum,
            expected_checksum(BIG),
            "the body arrived altered"
        );
    });
    let writes = writes.borrow();
    assert!(writes[0].len < 200, "the first write is the head");
    let body: Vec<usize> = writes[1..].iter().map(|w| w.len).collect();
    assert_eq!(body.iter().sum::<usize>(), BODY);
    body
}

#[test]
fn a_160_kb_body_goes_down_in_4096_byte_pieces() {
    let raw = body_writes(None, WHOLE_RESPONSE_TX);
    let layered = body_writes(Some(ChunkedLayer::new()), WHOLE_RESPONSE_TX);
    println!(
        "160000 B body, one write_all, TX buffer {WHOLE_RESPONSE_TX} B: {} socket write(s) raw, \
         {} with the layer (largest {} B); checksum ok",
        raw.len(),
        layered.len(),
        layered.iter().max().unwrap()
    );
    assert_eq!(raw, [BODY], "without the layer the body is one write");
    assert_eq!(layered.len(), BODY.div_ceil(4096));
    assert!(layered.iter().all(|&n| n <= 4096));
}

#[test]
fn one_segment_pieces_when_set_to_1460() {
    let layer = ChunkedLayer::new().with_chunk_size(ONE_SEGMENT);
    let layered = body_writes(Some(layer), WHOLE_RESPONSE_TX);
    println!(
        "160000 B body at chunk 1460: {} socket writes, largest {} B; checksum ok",
        layered.len(),
        layered.iter().max().unwrap()
    );
    assert_eq!(layered.len(), BODY.div_ceil(1460));
    assert!(layered.iter().all(|&n| n <= 1460));
}

#[test]
fn pieces_stay_bounded_with_an_esp32_tx_buffer() {
    // The socket takes what fits in its 8 KiB buffer, so raw writes are already cut by
    // the buffer; the layer's pieces are never larger than its chunk.
    let raw = body_writes(None, ESP32_TX);
    let layered = body_writes(Some(ChunkedLayer::new()), ESP32_TX);
    println!(
        "160000 B body, TX buffer {ESP32_TX} B: raw {} socket writes (largest {} B), \
         layered {} (largest {} B); checksum ok",
        raw.len(),
        raw.iter().max().unwrap(),
        layered.len(),
        layered.iter().max().unwrap()
    );
    assert!(
        raw.iter().any(|&n| n > 4096),
        "raw fills the buffer in one write"
    );
    assert!(layered.iter().all(|&n| n <= 4096));
}
