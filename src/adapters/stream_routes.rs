//! Streams by path: a connection whose request is for one of a few paths asks the stack
//! for [`ConnectionClass::Stream`] before the server sees the request.
//!
//! A budget layer caps streams (SSE, WebSocket) separately from page loads, but only a
//! connection that calls [`Connection::set_class`] counts as a stream, and neither a
//! picoserve nor an edge-http handler can reach the connection. Left as a request, an
//! event stream looks like an idle keep-alive connection between two events: it may be
//! evicted for the next page load or reaped as idle, and the stream cap never applies.
//! [`StreamRouted`] follows the request line as the server reads it and, once the path
//! is known and matches, calls `set_class(Stream)` itself.
//!
//! When the stream budget is full it answers [`REPLY_RETRY`] itself and ends the
//! request: the server's read returns `Ok(0)` (the end of the connection, as far as the
//! server knows), later writes fail, and [`Connection::end`] closes with a FIN so the
//! answer is delivered. The request is never served as a stream.
use tcp_layers_core::{
    CloseReason, Connection, ConnectionClass, ErrorType, Read, Write, delegate_connection,
};

/// The answer to a stream request that the stream budget refuses: an event stream that
/// only sets the reconnection time to 5 s, then ends (`Connection: close`, no length:
/// the FIN ends the body).
///
/// A browser's `EventSource` treats a non-200 answer (503 included) or a wrong
/// `Content-Type` as fatal and never reconnects by itself; a `200 text/event-stream`
/// that closes is a stream that ended, after which the HTML standard has it reconnect
/// once the reconnection time (`retry:`) has passed. 5 s because a stream slot frees
/// when another viewer leaves, which takes a person seconds, not milliseconds.
/// `Cache-Control: no-store` keeps a cache from replaying the refusal.
pub(crate) const REPLY_RETRY: &[u8] = b"HTTP/1.1 200 OK\r\n\
Content-Type: text/event-stream\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n\
retry: 5000\n\n";

// The progress of the answer is kept in a byte.
const _: () = assert!(REPLY_RETRY.len() < u8::MAX as usize);

/// The longest request method looked at (`OPTIONS` is 7 bytes); a longer first word is
/// not HTTP, and the request is left alone.
const METHOD_MAX: u8 = 16;

/// Where the connection is, as far as the stream paths care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Reading the method of a request line; `len` bytes of it so far.
    Method { len: u8 },
    /// Reading the path. Every byte so far equals the first `pos` bytes of
    /// `paths[candidate]`, the first path that agrees with all of them.
    Path { candidate: u16, pos: u16 },
    /// The path is known and is not a stream path: the rest of the request.
    Request,
    /// A response is being written; the next read starts the next request.
    Responding,
    /// A stream: nothing more to watch.
    Stream,
    /// Asked for a stream and the budget said no: the first `sent` bytes of the answer
    /// are written (all of it, or the peer would not take them).
    Refused { sent: u8 },
}

/// What one byte of the request path decides.
enum Step {
    /// Still undecided; the first path that agrees with every byte so far.
    Continue(u16),
    /// The path is a stream path.
    Stream,
    /// No stream path can match any more.
    NotStream,
}

/// True for a byte that ends the path part of a request target.
const fn ends_path(b: u8) -> bool {
    matches!(b, b' ' | b'?' | b'#' | b'\r' | b'\n')
}

/// The next step after the path bytes `paths[candidate][..pos]` were followed by `b`.
///
/// A path matches the request path exactly (without the query); a path that ends in
/// `/` matches every request path it is a prefix of.
fn step(paths: &[&str], candidate: u16, pos: u16, b: u8) -> Step {
    let pos = usize::from(pos);
    let Some(seen) = paths
        .get(usize::from(candidate))
        .and_then(|path| path.as_bytes().get(..pos))
    else {
        return Step::NotStream;
    };
    let mut next = None;
    for (i, path) in paths.iter().enumerate().skip(usize::from(candidate)) {
        let path = path.as_bytes();
        if path.get(..pos) != Some(seen) {
            continue;
        }
        match path.get(pos) {
            None if ends_path(b) || path.last() == Some(&b'/') => return Step::Stream,
            Some(&expected) if expected == b && next.is_none() => next = Some(i),
            _ => {}
        }
    }
    // Path lengths and counts beyond u16 are not stream paths: a request path that long
    // does not fit any server's request buffer.
    match next.and_then(|i| u16::try_from(i).ok()) {
        Some(i) if pos < usize::from(u16::MAX) => Step::Continue(i),
        _ => Step::NotStream,
    }
}

/// A connection whose requests for `paths` become streams. See the [module docs](self).
pub(crate) struct StreamRouted<C> {
    inner: C,
    paths: &'static [&'static str],
    phase: Phase,
}

impl<C: Connection> StreamRouted<C> {
    /// Watches `inner`'s requests for `paths` (none: it only passes the I/O through).
    pub(crate) fn new(inner: C, paths: &'static [&'static str]) -> Self {
        Self {
            inner,
            paths,
            phase: Phase::Method { len: 0 },
        }
    }

    pub(crate) fn set_paths(&mut self, paths: &'static [&'static str]) {
        self.paths = paths;
    }

    pub(crate) fn get_mut(&mut self) -> &mut C {
        &mut self.inner
    }

    pub(crate) fn into_inner(self) -> C {
        self.inner
    }

    /// Follows the request line through `bytes`; once the path is a stream path, asks
    /// the stack for the stream class.
    fn observe(&mut self, bytes: &[u8]) {
        self.phase = match scan(self.phase, self.paths, bytes) {
            Phase::Stream => match self.inner.set_class(ConnectionClass::Stream) {
                Ok(()) => Phase::Stream,
                Err(_full) => Phase::Refused { sent: 0 },
            },
            undecided_or_request => undecided_or_request,
        };
    }
}

/// Follows a request line from `phase` through `bytes`. Returns `Phase::Stream` as soon
/// as the path is one of `paths`, `Phase::Request` as soon as it cannot be, or the
/// phase to go on from with the next bytes.
fn scan(mut phase: Phase, paths: &[&str], bytes: &[u8]) -> Phase {
    for &b in bytes {
        phase = match phase {
            Phase::Method { .. } | Phase::Path { .. } if paths.is_empty() => Phase::Request,
            // Empty lines before a request line are allowed (RFC 9112, 2.2).
            Phase::Method { len: 0 } if matches!(b, b'\r' | b'\n') => continue,
            Phase::Method { .. } if b == b' ' => Phase::Path {
                candidate: 0,
                pos: 0,
            },
            Phase::Method { len } if len < METHOD_MAX => Phase::Method { len: len + 1 },
            Phase::Path { candidate, pos } => match step(paths, candidate, pos, b) {
                Step::Continue(candidate) => Phase::Path {
                    candidate,
                    pos: pos + 1,
                },
                Step::NotStream => Phase::Request,
                Step::Stream => Phase::Stream,
            },
            Phase::Method { .. } => Phase::Request,
            decided => return decided,
        };
    }
    phase
}

impl<C: Connection> ErrorType for StreamRouted<C> {
    type Error = C::Error;
}

impl<C: Connection> Read for StreamRouted<C> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        if self.phase == Phase::Responding {
            self.phase = Phase::Method { len: 0 };
        }
        if !matches!(self.phase, Phase::Refused { .. }) {
            let n = self.inner.read(buf).await?;
            if self.paths.is_empty()
                || !matches!(self.phase, Phase::Method { .. } | Phase::Path { .. })
            {
                return Ok(n);
            }
            self.observe(&buf[..n]);
            if !matches!(self.phase, Phase::Refused { .. }) {
                return Ok(n);
            }
            // Refused: the server never sees this request. The bytes of it it already
            // has (a request line split over reads) end in an early EOF, which it
            // answers with a write that fails.
        }
        // One await of the refusal (each would hold a write of the layers below in this
        // state machine): what is left of it, then the end of the stream.
        self.send_refusal().await;
        Ok(0)
    }
}

impl<C: Connection> StreamRouted<C> {
    /// Writes what is left of the refusal. Cancel-safe: the progress is kept after every
    /// write, so a dropped read (picoserve's request timeout) leaves the rest for the
    /// next read or for `end`.
    async fn send_refusal(&mut self) {
        while let Phase::Refused { sent } = self.phase {
            let Some(rest) = REPLY_RETRY
                .get(usize::from(sent)..)
                .filter(|r| !r.is_empty())
            else {
                return;
            };
            let sent = match self.inner.write(rest).await {
                // Written, or never will be: either way nothing is left to send.
                Ok(0) | Err(_) => REPLY_RETRY.len(),
                Ok(n) => usize::from(sent) + n,
            };
            self.phase = Phase::Refused {
                sent: u8::try_from(sent).unwrap_or(u8::MAX),
            };
        }
    }
}

impl<C: Connection> StreamRouted<C> {
    /// Before a write: the connection to write to (a response is under way), or the
    /// error once the stream was refused (its answer is the only response).
    pub(crate) fn writer(&mut self) -> Result<&mut C, C::Error> {
        match self.phase {
            Phase::Refused { .. } => {
                return Err(self.inner.ended_error(CloseReason::OverBudget));
            }
            Phase::Method { .. } | Phase::Path { .. } | Phase::Request => {
                self.phase = Phase::Responding
            }
            Phase::Responding | Phase::Stream => {}
        }
        Ok(&mut self.inner)
    }
}

impl<C: Connection> Write for StreamRouted<C> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        self.writer()?.write(buf).await
    }

    async fn flush(&mut self) -> Result<(), Self::Error> {
        self.inner.flush().await
    }
}

impl<C: Connection> Connection for StreamRouted<C> {
    delegate_connection!(inner; state, set_nodelay, close_write, abort, remote, local,
        send_queue, recv_queue, ended_error, close_reason, set_class);

    /// After a refusal its answer is a complete response: the end is orderly (a FIN,
    /// so the client reads it), whatever the server guessed from its failed write.
    async fn end(&mut self, reason: CloseReason) {
        let reason = match self.phase {
            Phase::Refused { .. } => {
                self.send_refusal().await;
                CloseReason::LocalClose
            }
            _ => reason,
        };
        self.inner.end(reason).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The decision for the request line `line` against `paths`, fed `split` bytes at a
    /// time as reads would return them.
    fn decide(paths: &[&str], line: &[u8]) -> &'static str {
        let mut decisions = [1, 2, 5, line.len().max(1)].map(|split| {
            let mut phase = Phase::Method { len: 0 };
            for piece in line.chunks(split) {
                phase = scan(phase, paths, piece);
            }
            match phase {
                Phase::Stream => "stream",
                Phase::Request => "request",
                _ => "undecided",
            }
        });
        decisions.sort_unstable();
        assert_eq!(decisions[0], decisions[3], "the split changed the decision");
        decisions[0]
    }

    #[test]
    fn exact_paths_match_without_their_query() {
        let paths = ["/events", "/ev", "/sse"];
        assert_eq!(decide(&paths, b"GET /events HTTP/1.1\r\n"), "stream");
        assert_eq!(decide(&paths, b"GET /events?since=3 HTTP/1.1"), "stream");
        assert_eq!(decide(&paths, b"GET /ev HTTP/1.1"), "stream");
        assert_eq!(decide(&paths, b"GET /sse HTTP/1.1"), "stream");
        assert_eq!(decide(&paths, b"\r\nGET /sse HTTP/1.1"), "stream");
        assert_eq!(decide(&paths, b"GET /eventsx HTTP/1.1"), "request");
        assert_eq!(decide(&paths, b"GET /events/1 HTTP/1.1"), "request");
        assert_eq!(decide(&paths, b"GET /e HTTP/1.1"), "request");
        assert_eq!(decide(&paths, b"GET / HTTP/1.1"), "request");
        assert_eq!(decide(&paths, b"GET /eve"), "undecided");
    }

    #[test]
    fn a_path_ending_in_a_slash_matches_below_it() {
        let paths = ["/ws/cam", "/ws/"];
        assert_eq!(decide(&paths, b"GET /ws/ HTTP/1.1"), "stream");
        assert_eq!(decide(&paths, b"GET /ws/other HTTP/1.1"), "stream");
        assert_eq!(decide(&paths, b"GET /ws/cam HTTP/1.1"), "stream");
        assert_eq!(decide(&paths, b"GET /ws HTTP/1.1"), "request");
    }

    #[test]
    fn no_paths_and_odd_lines_are_requests() {
        assert_eq!(decide(&[], b"GET /events HTTP/1.1"), "request");
        assert_eq!(
            decide(&["/a"], b"AVERYLONGMETHODNAME /a HTTP/1.1"),
            "request"
        );
        assert_eq!(decide(&["/a"], b"GET http://h/a HTTP/1.1"), "request");
    }
}
