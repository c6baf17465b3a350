//! Streams by path: a connection whose request is for one of a few paths asks the stack
//! for [`ConnectionClass::Stream`] before the server sees the request.
//!
//! A budget layer caps streams (SSE, WebSocket) separately from page loads, but only a
//! connection that calls [`Connection::set_class`] counts as a stream, and neither a
//! picoserve nor an edge-http handler can reach the connection. Left as a request, an
//! event stream looks like an idle keep-alive connection between two events: it may be
//! evicted for the next page load or reaped as idle, and the stream cap never applies.
//! [`StreamPaths`] follows the request line as the server reads it and, once the path
//! is known and matches, calls `set_class(Stream)` itself. A hand-written server can
//! use it too, or call `set_class` in its handler.
//!
//! When the stream budget is full it answers [`REPLY_RETRY_STREAM`] itself and ends the
//! request: the server's read returns `Ok(0)` (the end of the connection, as far as the
//! server knows), later writes fail, and [`Connection::end`] closes with a FIN so the
//! answer is delivered. The request is never served as a stream.
//!
//! ```
//! use tcp_layers_core::Layer;
//! use tcp_layers_http::StreamPathsLayer;
//! static STREAM_PATHS: [&str; 2] = ["/events", "/ws/"];
//! let layer = StreamPathsLayer::new(&STREAM_PATHS);
//! # fn wrap<C: tcp_layers_core::Connection>(layer: StreamPathsLayer, conn: C) {
//! let conn = layer.layer(conn);
//! # let _ = conn; }
//! ```
use tcp_layers_core::{
    CloseReason, Connection, ConnectionClass, ErrorType, Layer, Read, Write, delegate_connection,
};

use crate::reply::REPLY_RETRY_STREAM;
use crate::request_line::{PathMatch, RequestLine};

// The progress of the answer is kept in a byte.
const _: () = assert!(REPLY_RETRY_STREAM.len() < u8::MAX as usize);

/// Makes [`StreamPaths`]: requests for `paths` become streams. See the
/// [module docs](self).
#[derive(Clone, Copy, Debug)]
pub struct StreamPathsLayer {
    paths: &'static [&'static str],
}

impl StreamPathsLayer {
    /// Requests for `paths` become streams: exact paths, or every path below one that
    /// ends in `/`.
    pub const fn new(paths: &'static [&'static str]) -> Self {
        Self { paths }
    }

    /// The paths.
    pub const fn paths(&self) -> &'static [&'static str] {
        self.paths
    }
}

impl<C: Connection> Layer<C> for StreamPathsLayer {
    type Service = StreamPaths<C>;
    fn layer(&self, inner: C) -> StreamPaths<C> {
        StreamPaths::new(inner, self.paths)
    }
}

/// Where the connection is, as far as the stream paths care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Watch {
    /// Reading a request line.
    Line(RequestLine),
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

/// A connection whose requests for the layer's paths become streams. See the
/// [module docs](self).
pub struct StreamPaths<C> {
    inner: C,
    paths: &'static [&'static str],
    watch: Watch,
}

impl<C: Connection> StreamPaths<C> {
    /// Watches `inner`'s requests for `paths` (none: it only passes the I/O through).
    pub fn new(inner: C, paths: &'static [&'static str]) -> Self {
        Self {
            inner,
            paths,
            watch: Watch::Line(RequestLine::new()),
        }
    }

    /// Watches for other paths from the next request on.
    pub fn set_paths(&mut self, paths: &'static [&'static str]) {
        self.paths = paths;
    }

    /// The wrapped connection.
    pub fn get_ref(&self) -> &C {
        &self.inner
    }

    /// The wrapped connection, mutably.
    pub fn get_mut(&mut self) -> &mut C {
        &mut self.inner
    }

    /// The wrapped connection.
    pub fn into_inner(self) -> C {
        self.inner
    }

    /// Follows the request line through `bytes`; once the path is a stream path, asks
    /// the stack for the stream class.
    fn observe(&mut self, bytes: &[u8]) {
        let Watch::Line(mut line) = self.watch else {
            return;
        };
        self.watch = match line.feed(self.paths, bytes) {
            PathMatch::Undecided => Watch::Line(line),
            PathMatch::NotMatched => Watch::Request,
            PathMatch::Matched => match self.inner.set_class(ConnectionClass::Stream) {
                Ok(()) => Watch::Stream,
                Err(_full) => Watch::Refused { sent: 0 },
            },
        };
    }
}

impl<C: Connection> ErrorType for StreamPaths<C> {
    type Error = C::Error;
}

impl<C: Connection> Read for StreamPaths<C> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        match self.watch {
            Watch::Refused { .. } => {
                self.send_refusal().await;
                return Ok(0);
            }
            Watch::Responding => self.watch = Watch::Line(RequestLine::new()),
            _ => {}
        }
        let n = self.inner.read(buf).await?;
        if self.paths.is_empty() || !matches!(self.watch, Watch::Line(_)) {
            return Ok(n);
        }
        self.observe(&buf[..n]);
        if let Watch::Refused { .. } = self.watch {
            // The server never sees this request: the bytes of it it already has (a
            // request line split over reads) end in an early EOF, which it answers
            // with a write that fails below.
            self.send_refusal().await;
            return Ok(0);
        }
        Ok(n)
    }
}

impl<C: Connection> StreamPaths<C> {
    /// Writes what is left of the refusal. Cancel-safe: the progress is kept after every
    /// write, so a dropped read (picoserve's request timeout) leaves the rest for the
    /// next read or for `end`.
    async fn send_refusal(&mut self) {
        while let Watch::Refused { sent } = self.watch {
            let Some(rest) = REPLY_RETRY_STREAM
                .get(usize::from(sent)..)
                .filter(|r| !r.is_empty())
            else {
                return;
            };
            let sent = match self.inner.write(rest).await {
                // Written, or never will be: either way nothing is left to send.
                Ok(0) | Err(_) => REPLY_RETRY_STREAM.len(),
                Ok(n) => usize::from(sent) + n,
            };
            self.watch = Watch::Refused {
                sent: u8::try_from(sent).unwrap_or(u8::MAX),
            };
        }
    }
}

impl<C: Connection> Write for StreamPaths<C> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        match self.watch {
            Watch::Refused { .. } => {
                return Err(self.inner.ended_error(CloseReason::OverBudget));
            }
            Watch::Line(_) | Watch::Request => self.watch = Watch::Responding,
            Watch::Responding | Watch::Stream => {}
        }
        self.inner.write(buf).await
    }

    async fn flush(&mut self) -> Result<(), Self::Error> {
        self.inner.flush().await
    }
}

impl<C: Connection> Connection for StreamPaths<C> {
    delegate_connection!(inner; state, set_nodelay, close_write, abort, remote, local,
        send_queue, recv_queue, ended_error, close_reason, set_class);

    /// After a refusal its answer is a complete response: the end is orderly (a FIN,
    /// so the client reads it), whatever the server guessed from its failed write.
    async fn end(&mut self, reason: CloseReason) {
        let reason = match self.watch {
            Watch::Refused { .. } => {
                self.send_refusal().await;
                CloseReason::LocalClose
            }
            _ => reason,
        };
        self.inner.end(reason).await
    }
}
