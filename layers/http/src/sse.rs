//! Server-sent events: the keepalive a stream sends when it has nothing to say.
//!
//! A stream whose peer vanished without a FIN or RST (power lost, out of Wi-Fi range)
//! learns it only when something it sent goes unacknowledged. A stream that sends an
//! event every second learns it from its events; one that may be silent for minutes
//! sends [`KEEPALIVE`] every interval (15 s is common: shorter than the idle timeouts
//! of the proxies and NAT gateways on the way) and flushes it, and the reaper's
//! `keepalive` deadline on that flush ends the stream as `Reaped(Keepalive)` when no
//! acknowledgement comes.
use tcp_layers_core::Write;

/// A comment line and the blank line that ends it: an `EventSource` ignores it (the
/// HTML standard's event stream rules: a line starting with `:` is a comment), TCP
/// carries it.
pub const KEEPALIVE: &[u8] = b":\n\n";

/// Writes [`KEEPALIVE`] and flushes: under the reaper, a vanished peer makes the flush
/// fail after the `keepalive` deadline.
pub async fn write_keepalive<W: Write>(conn: &mut W) -> Result<(), W::Error> {
    conn.write_all(KEEPALIVE).await?;
    conn.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_keepalive_is_one_comment_block() {
        assert_eq!(KEEPALIVE.first(), Some(&b':'));
        assert!(KEEPALIVE.ends_with(b"\n\n"));
        assert_eq!(KEEPALIVE.iter().filter(|&&b| b == b'\n').count(), 2);
    }
}
