//! The one computation of the HTTP upgrade a server without WebSocket support needs:
//! the `Sec-WebSocket-Accept` value of a `101 Switching Protocols` answer (RFC 6455
//! section 4.2.2), the base64 of the SHA-1 of the client's `Sec-WebSocket-Key` and a
//! fixed GUID. picoserve computes it itself; a hand-written or edge-http server calls
//! [`accept_key`], answers
//!
//! ```text
//! HTTP/1.1 101 Switching Protocols\r\n
//! Upgrade: websocket\r\n
//! Connection: Upgrade\r\n
//! Sec-WebSocket-Accept: <accept_key(key)>\r\n\r\n
//! ```
//!
//! and hands the connection to [`WebSocket::new`](crate::WebSocket::new).

/// The GUID every server appends to the client's key.
pub const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Bytes of an accept value: the base64 of a 20-byte SHA-1.
pub const ACCEPT_LEN: usize = 28;

/// The `Sec-WebSocket-Accept` value for the client's `Sec-WebSocket-Key` (its bytes as
/// sent, surrounding spaces trimmed by the caller): 28 ASCII characters.
pub fn accept_key(key: &[u8]) -> [u8; ACCEPT_LEN] {
    let mut sha1 = sha1_smol::Sha1::new();
    sha1.update(key);
    sha1.update(GUID);
    base64_20(&sha1.digest().bytes())
}

/// Standard base64 (with `=` padding) of 20 bytes.
fn base64_20(bytes: &[u8; 20]) -> [u8; ACCEPT_LEN] {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = [b'='; ACCEPT_LEN];
    // 6 groups of 3 bytes make 24 characters; the last 2 bytes make 3 and one `=`.
    for (group, chunk) in bytes.chunks(3).enumerate() {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out[group * 4 + i] = ALPHABET[(n >> (18 - 6 * i) & 0x3F) as usize];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rfc_example() {
        // RFC 6455 section 1.3.
        assert_eq!(
            &accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
