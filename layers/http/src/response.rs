//! What the first bytes of a response say about the connection after it.

/// The kind of a response, from its status line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ResponseKind {
    /// `101 Switching Protocols`: the connection leaves HTTP (a WebSocket).
    SwitchingProtocols,
    /// Another `1xx` (`100 Continue`): an interim answer, the request goes on.
    Interim,
    /// A final status, or bytes that are no HTTP/1 status line.
    Final,
}

/// The kind of the response whose first write is `first_write`. The status code is at
/// offset 9 of `HTTP/1.x NNN`; a first write shorter than the status line is `Final`.
pub fn response_kind(first_write: &[u8]) -> ResponseKind {
    match (first_write.get(..7), first_write.get(9..12)) {
        (Some(b"HTTP/1."), Some(b"101")) => ResponseKind::SwitchingProtocols,
        (Some(b"HTTP/1."), Some([b'1', _, _])) => ResponseKind::Interim,
        _ => ResponseKind::Final,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        let kind = response_kind;
        assert_eq!(
            kind(b"HTTP/1.1 101 Switching Protocols\r\n"),
            ResponseKind::SwitchingProtocols
        );
        assert_eq!(kind(b"HTTP/1.1 100 Continue\r\n"), ResponseKind::Interim);
        assert_eq!(kind(b"HTTP/1.0 103 Early Hints\r\n"), ResponseKind::Interim);
        assert_eq!(kind(b"HTTP/1.1 200 OK\r\n"), ResponseKind::Final);
        assert_eq!(kind(b"HTTP/1.1 1"), ResponseKind::Final);
        assert_eq!(kind(b"hello"), ResponseKind::Final);
    }
}
