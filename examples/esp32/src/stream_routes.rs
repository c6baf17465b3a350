//! A layer of this application's own: marks the connections that request an event
//! stream as [`ConnectionClass::Stream`].
//!
//! picoserve serves `/events` by writing events while it reads to notice a disconnect.
//! Without the class, that read looks like an idle keep-alive connection: the reaper
//! ends it after its idle deadline and the budget may evict it for the next page load.
//! A picoserve handler cannot reach the connection to call
//! [`Connection::set_class`], so this layer reads the request line as it passes and
//! asks for the class when the path is one of the stream paths. When the stream budget
//! is full the request fails (the browser's `EventSource` retries a few seconds later).
use tcp_layers::{
    ClassFull, CloseReason, Connection, ConnectionClass, Layer,
    core::{ErrorType, Read, Write, delegate_connection},
};

/// The longest request line start this layer reads: the method, a space and the path.
/// A path longer than this is not a stream path.
const LINE_BYTES: usize = 32;

/// Marks requests for `paths` as streams. See the [module docs](self).
#[derive(Clone, Copy)]
pub struct StreamRoutes {
    paths: &'static [&'static str],
}

impl StreamRoutes {
    /// Requests whose path (without the query) is one of `paths` become streams.
    pub const fn new(paths: &'static [&'static str]) -> Self {
        Self { paths }
    }
}

impl<C: Connection> Layer<C> for StreamRoutes {
    type Service = StreamRouted<C>;

    fn layer(&self, inner: C) -> StreamRouted<C> {
        StreamRouted {
            inner,
            paths: self.paths,
            line: [0; LINE_BYTES],
            line_len: 0,
            phase: Phase::RequestLine,
        }
    }
}

/// Where the connection is, as far as this layer cares.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading the start of a request line.
    RequestLine,
    /// The path is known and is not a stream path: the rest of the request.
    Request,
    /// A response is being written; the next read starts the next request.
    Responding,
    /// A stream: nothing more to watch.
    Stream,
    /// Asked for a stream and the budget said no.
    Refused,
}

/// A connection whose stream requests are classified. See [`StreamRoutes`].
pub struct StreamRouted<C> {
    inner: C,
    paths: &'static [&'static str],
    line: [u8; LINE_BYTES],
    line_len: usize,
    phase: Phase,
}

impl<C: Connection> StreamRouted<C> {
    /// Collects the start of the request line from `bytes` and decides once the path
    /// is complete.
    fn observe(&mut self, bytes: &[u8]) {
        let take = bytes.len().min(LINE_BYTES - self.line_len);
        self.line[self.line_len..self.line_len + take].copy_from_slice(&bytes[..take]);
        self.line_len += take;
        let line = &self.line[..self.line_len];
        let Some(path_start) = line.iter().position(|&b| b == b' ').map(|i| i + 1) else {
            if self.line_len == LINE_BYTES {
                self.phase = Phase::Request;
            }
            return;
        };
        let Some(path_len) = line[path_start..]
            .iter()
            .position(|&b| matches!(b, b' ' | b'?'))
        else {
            if self.line_len == LINE_BYTES {
                self.phase = Phase::Request;
            }
            return;
        };
        let path = &line[path_start..path_start + path_len];
        if !self.paths.iter().any(|p| p.as_bytes() == path) {
            self.phase = Phase::Request;
            return;
        }
        self.phase = match self.inner.set_class(ConnectionClass::Stream) {
            Ok(()) => Phase::Stream,
            Err(ClassFull { .. }) => Phase::Refused,
        };
    }
}

impl<C: Connection> ErrorType for StreamRouted<C> {
    type Error = C::Error;
}

impl<C: Connection> Read for StreamRouted<C> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        if self.phase == Phase::Responding {
            self.phase = Phase::RequestLine;
            self.line_len = 0;
        }
        if self.phase == Phase::Refused {
            return Err(self.inner.ended_error(CloseReason::OverBudget));
        }
        let n = self.inner.read(buf).await?;
        if self.phase == Phase::RequestLine && n > 0 {
            self.observe(&buf[..n]);
            if self.phase == Phase::Refused {
                return Err(self.inner.ended_error(CloseReason::OverBudget));
            }
        }
        Ok(n)
    }
}

impl<C: Connection> Write for StreamRouted<C> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        if matches!(self.phase, Phase::RequestLine | Phase::Request) {
            self.phase = Phase::Responding;
        }
        self.inner.write(buf).await
    }

    async fn flush(&mut self) -> Result<(), Self::Error> {
        self.inner.flush().await
    }
}

impl<C: Connection> Connection for StreamRouted<C> {
    delegate_connection!(inner; state, set_nodelay, close_write, abort, remote, local,
        send_queue, recv_queue, ended_error, set_class);

    fn close_reason(&self) -> Option<CloseReason> {
        match self.phase {
            Phase::Refused => Some(CloseReason::OverBudget),
            _ => self.inner.close_reason(),
        }
    }

    async fn end(&mut self, reason: CloseReason) {
        let reason = self.close_reason().unwrap_or(reason);
        self.inner.end(reason).await
    }
}
