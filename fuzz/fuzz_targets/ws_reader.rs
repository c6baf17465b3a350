//! The WebSocket frame reader on untrusted bytes: whatever a client sends, cut into
//! reads of fuzzer-chosen sizes, `WebSocket::read` hands out pieces no larger than the
//! caller's buffer and never more payload than was sent, and ends (closed, a protocol
//! error, the end of the stream) without a panic.
#![no_main]

use embassy_futures::block_on;
use libfuzzer_sys::fuzz_target;
use tcp_layers_core::{CloseReason, ErrorKind, ErrorType, Read, Write};
use tcp_layers_ws::{Incoming, Keepalive, Transport, WebSocket, WsConfig};

/// A client's bytes, delivered in reads of the given sizes (cycled; 0 means 1); every
/// write is taken whole and counted.
struct Client<'a> {
    bytes: &'a [u8],
    sizes: &'a [u8],
    reads: usize,
    written: usize,
    ended: Option<CloseReason>,
}

#[derive(Debug)]
struct Gone;

impl core::fmt::Display for Gone {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("the connection was ended")
    }
}

impl core::error::Error for Gone {}

impl embedded_io_async::Error for Gone {
    fn kind(&self) -> ErrorKind {
        ErrorKind::ConnectionReset
    }
}

impl ErrorType for Client<'_> {
    type Error = Gone;
}

impl Read for Client<'_> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Gone> {
        if self.ended.is_some() {
            return Err(Gone);
        }
        let size = match self.sizes {
            [] => usize::MAX,
            sizes => usize::from(sizes[self.reads % sizes.len()]).max(1),
        };
        self.reads += 1;
        let n = size.min(buf.len()).min(self.bytes.len());
        buf[..n].copy_from_slice(&self.bytes[..n]);
        self.bytes = &self.bytes[n..];
        Ok(n)
    }
}

impl Write for Client<'_> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Gone> {
        if self.ended.is_some() {
            return Err(Gone);
        }
        self.written += buf.len();
        Ok(buf.len())
    }

    async fn flush(&mut self) -> Result<(), Gone> {
        Ok(())
    }
}

impl Transport for Client<'_> {
    async fn end(&mut self, reason: CloseReason) {
        self.ended.get_or_insert(reason);
    }
}

fuzz_target!(|input: (u16, u8, &[u8], &[u8])| {
    let (max_message, buf_len, sizes, bytes) = input;
    let config = WsConfig::new()
        .with_max_message(u64::from(max_message))
        .with_keepalive(Keepalive::Off);
    let client = Client {
        bytes,
        sizes,
        reads: 0,
        written: 0,
        ended: None,
    };
    let mut ws = WebSocket::new(client, config);
    let mut buf = vec![0u8; usize::from(buf_len)];
    let capacity = buf.len();
    let mut payload = 0usize;
    // Every read consumes input or ends the WebSocket; bounded all the same.
    for _ in 0..bytes.len() * 2 + 16 {
        match block_on(ws.read(&mut buf)) {
            Ok(Incoming::Data(piece)) => {
                assert!(piece.bytes.len() <= capacity);
                payload += piece.bytes.len();
                assert!(payload <= bytes.len(), "more payload than bytes sent");
            }
            Ok(Incoming::Closed(_)) | Err(_) => {
                assert!(ws.is_closed() || ws.get_ref().ended.is_some() || ws.get_ref().bytes.is_empty());
                return;
            }
        }
    }
});
