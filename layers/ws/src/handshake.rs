//! The server's half of the opening handshake (RFC 6455 section 4.2.2): the value of
//! `Sec-WebSocket-Accept` that proves to the client that the server read its
//! `Sec-WebSocket-Key`.
//!
//! The HTTP part (checking `Upgrade: websocket`, `Sec-WebSocket-Version: 13`, answering
//! `101 Switching Protocols` with `Upgrade: websocket`, `Connection: Upgrade` and the
//! accept value) belongs to the server the application runs; this module gives it the
//! one computation every server needs, without allocation.
//!
//! ```
//! use tcp_layers_ws::handshake::accept_key;
//!
//! // RFC 6455 section 1.3's example.
//! let accept = accept_key(b"dGhlIHNhbXBsZSBub25jZQ==");
//! assert_eq!(&accept, b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
//! ```

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// The GUID RFC 6455 appends to the client's key before hashing it.
pub const GUID: &[u8; 36] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The length of a `Sec-WebSocket-Accept` value: the base64 of a 20-byte SHA-1 digest,
/// 28 ASCII characters.
pub const ACCEPT_LEN: usize = 28;

/// The value of `Sec-WebSocket-Accept` for the client's `Sec-WebSocket-Key` (the header
/// value as received, surrounding whitespace trimmed): base64 of the SHA-1 of the key
/// followed by [`GUID`]. 28 ASCII bytes; `core::str::from_utf8` of them never fails.
///
/// The key is not checked: a browser sends the base64 of 16 random bytes (24
/// characters); a server that wants to refuse other keys checks the length itself.
pub fn accept_key(key: &[u8]) -> [u8; ACCEPT_LEN] {
    let mut sha1 = sha1_smol::Sha1::new();
    sha1.update(key);
    sha1.update(GUID);
    let digest = sha1.digest().bytes();
    let mut accept = [0u8; ACCEPT_LEN];
    // 20 bytes encode to exactly 28 characters (with one `=` of padding).
    let written = STANDARD.encode_slice(digest, &mut accept);
    debug_assert_eq!(written, Ok(ACCEPT_LEN));
    accept
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

    #[test]
    fn every_value_is_ascii_base64() {
        for key in [&b""[..], b"x", b"AQIDBAUGBwgJCgsMDQ4PEA==", &[0xff; 64]] {
            let accept = accept_key(key);
            assert!(core::str::from_utf8(&accept).is_ok());
            assert_eq!(accept[ACCEPT_LEN - 1], b'=');
        }
    }
}
