//! Where a connection's request/response exchange stands, as its I/O shows it.
//!
//! A layer that must know whether a response is in flight (to tell a cancel from a
//! clean close, to count a response's pieces, to tell an idle keep-alive connection
//! from a busy one) sees only reads, writes and flushes. The rule is the same for
//! every request/response protocol (HTTP/1, Modbus/TCP, MQTT's request and
//! acknowledgement): bytes read start a request, bytes written start its response, a
//! flush the stack confirmed delivered it, and the next bytes read start the next
//! request. [`Exchange`] states that rule once; each layer keeps its own data beside it
//! (the reaper also follows the HTTP head, the limit layer its admission).

/// Where the exchange stands. One byte; every transition is a `const fn` of the I/O
/// result, so a layer updates it where it already inspects the result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Exchange {
    /// Nothing read or written yet.
    #[default]
    Fresh,
    /// Bytes of a request were read; no response byte written since.
    Request,
    /// Response bytes were written since the request, and no confirmed flush followed.
    Response,
    /// The response was flushed and the stack still held the connection: on
    /// embassy-net every byte of it is acknowledged. No request byte since.
    Responded,
}

impl Exchange {
    /// After a read that returned `n` bytes: `n > 0` starts (or continues) a request.
    /// A read of 0 bytes (the end of the stream, or an empty buffer) changes nothing.
    #[must_use]
    pub const fn after_read(self, n: usize) -> Self {
        if n > 0 { Self::Request } else { self }
    }

    /// After a write that passed `n` bytes: `n > 0` starts (or continues) a response.
    #[must_use]
    pub const fn after_write(self, n: usize) -> Self {
        if n > 0 { Self::Response } else { self }
    }

    /// After a flush that returned `Ok` while the stack still held the connection: a
    /// response in progress is delivered.
    #[must_use]
    pub const fn after_flush(self) -> Self {
        match self {
            Self::Response => Self::Responded,
            other => other,
        }
    }

    /// True once something was written since the last request bytes (delivered or
    /// not): the server answered, so the next read that has to wait is the idle wait
    /// between requests.
    pub const fn answered(self) -> bool {
        matches!(self, Self::Response | Self::Responded)
    }
}

#[cfg(test)]
mod tests {
    use super::Exchange::{self, *};

    #[test]
    fn a_keep_alive_cycle() {
        let mut e = Exchange::default();
        assert_eq!(e, Fresh);
        e = e.after_read(0);
        assert_eq!(e, Fresh, "the end of the stream starts nothing");
        e = e.after_read(120);
        assert_eq!((e, e.answered()), (Request, false));
        e = e.after_flush();
        assert_eq!(e, Request, "a flush without a response delivers nothing");
        e = e.after_write(0).after_write(900);
        assert_eq!((e, e.answered()), (Response, true));
        e = e.after_flush();
        assert_eq!((e, e.answered()), (Responded, true));
        e = e.after_write(10);
        assert_eq!(
            e, Response,
            "more bytes after a flush are still the response"
        );
        e = e.after_read(80);
        assert_eq!((e, e.answered()), (Request, false), "the next request");
    }
}
