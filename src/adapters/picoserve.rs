//! picoserve 0.20: any layered [`Connection`] as a `picoserve::io::Socket`.
//!
//! picoserve's `Server::serve` takes a socket it can split into a read half and a write
//! half (it reads for a disconnect while it writes an event stream), abort and shut
//! down. [`PicoserveSocket`] gives it that over the layered connection, so the router
//! and the server stay as they are:
//!
//! ```ignore
//! socket.accept(80).await?;
//! let conn = layers.wrap(&mut socket);
//! picoserve::Server::new(&app, &config, &mut http_buffer)
//!     .serve(PicoserveSocket::new(conn))
//!     .await?;
//! ```
//!
//! Shutting down goes through [`Connection::end`], so the close discipline of the
//! stack (the timewait layer's bounded linger, the quiet layer's record of the reason)
//! applies to picoserve's closes as to any other.
//!
//! picoserve flushes after every response head; over a bare embassy-net socket that
//! flush waits for the client's (delayed) ACK before the body may leave. The adapter's
//! default [`FlushMode::Queued`] returns as soon as the bytes are queued, which takes
//! a 20 B response on a 20 ms RTT link from 50 ms to 20 ms (tests/picoserve.rs).
//!
//! The wait for the acknowledgement moves to where it costs nothing: before picoserve
//! reads the next request, which the client sends only once it has the response. Until
//! then the connection still counts as busy: a budget layer evicts idle keep-alive
//! connections, and one whose response is still in flight is not idle (its client may
//! be sending the next request of the same page load at that moment).
//!
//! # Streams
//!
//! A picoserve handler cannot reach the connection, so an event stream cannot call
//! [`Connection::set_class`] itself. [`PicoserveSocket::with_stream_paths`] does it for
//! the paths it is given: the adapter follows the request line as picoserve reads it,
//! asks for [`ConnectionClass::Stream`](tcp_layers_core::ConnectionClass::Stream) when
//! the path is one of them, and when the stream budget is full answers `503 Service
//! Unavailable` itself and closes, so the handler never runs.
//!
//! ```ignore
//! static STREAM_PATHS: [&str; 1] = ["/events"];
//! let socket = PicoserveSocket::new(layers.wrap(&mut socket)).with_stream_paths(&STREAM_PATHS);
//! ```
use core::cell::Cell;

use picoserve::io::{ErrorType, Read, Socket};
use picoserve::mem::BorrowedCursor;
use picoserve::time::Timer;
use picoserve::{EmbassyRuntime, Timeouts};
use tcp_layers_core::{Connection, Write as _};

use super::split::{ReadHalf, Shared, WriteHalf};
use super::stream_routes::StreamRouted;
use super::{Ending, end_reason};

/// Bytes picoserve may format in one go into [`Write::write_with`](picoserve::io::Write):
/// a status line or one header line. A longer line still comes out right (picoserve
/// formats it again in pieces), at the cost of a flush per piece; 256 fits every
/// header picoserve writes itself with room for a long `Location` or `Content-Type`.
const FORMAT_BUFFER: usize = 256;

/// What picoserve's `flush` waits for.
///
/// picoserve flushes after every response head (and after each event of a stream).
/// On embassy-net a flush waits until the peer has acknowledged every byte, so each
/// response pays a round trip plus the peer's delayed ACK (10 ms on smoltcp, up to
/// 200 ms on desktops) between its head and its body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlushMode {
    /// `flush` returns once the bytes are in the socket's send buffer, from which the
    /// stack sends them at its next poll (with Nagle off nothing holds them back). The
    /// default: the wait for the peer's ACK delays the body, as a full send buffer
    /// already makes `write` wait. (Either way the next read of a request waits for the
    /// acknowledgement of the response first; see the [module docs](self).)
    Queued,
    /// `flush` is the connection's own: on embassy-net, wait until the peer has
    /// acknowledged everything (what picoserve does over a bare socket).
    Acknowledged,
}

/// A layered connection as a picoserve socket. See the [module docs](self).
pub struct PicoserveSocket<C: Connection> {
    shared: Shared<StreamRouted<C>>,
    flush: FlushMode,
    /// Bytes were written since the last flush that waited for the acknowledgement.
    unacknowledged: Cell<bool>,
}

impl<C: Connection> PicoserveSocket<C> {
    /// Wraps a (layered) connection for picoserve, with [`FlushMode::Queued`] and no
    /// stream paths.
    pub fn new(conn: C) -> Self {
        Self::with_flush(conn, FlushMode::Queued)
    }

    /// Wraps a (layered) connection for picoserve, with the given [`FlushMode`].
    pub fn with_flush(conn: C, flush: FlushMode) -> Self {
        Self {
            shared: Shared::new(StreamRouted::new(conn, &[])),
            flush,
            unacknowledged: Cell::new(false),
        }
    }

    /// Requests for these paths are streams (SSE, WebSocket, long poll): the adapter
    /// calls [`Connection::set_class`] with `Stream` once it has read such a request's
    /// path, before picoserve routes it. When the budget refuses (its stream cap is
    /// reached), the client gets `503 Service Unavailable` (`Retry-After: 5`,
    /// `Connection: close`) and a FIN, and the handler is not run. A browser's
    /// `EventSource` does not retry after a 503 by itself: a page that should keep
    /// trying reopens it from its `error` handler.
    ///
    /// A path matches the request path exactly, without its query (`"/events"` matches
    /// `/events?since=9`); a path ending in `/` also matches every path below it
    /// (`"/ws/"` matches `/ws/camera`). Only the first request line of each read is
    /// looked at, so a request pipelined behind another in the same segment (which
    /// browsers do not send) stays a request.
    pub fn with_stream_paths(mut self, paths: &'static [&'static str]) -> Self {
        self.shared.get_mut().set_paths(paths);
        self
    }

    /// The connection, for what picoserve does not do (reading the close reason).
    pub fn get_mut(&mut self) -> &mut C {
        self.shared.get_mut().get_mut()
    }

    /// Gives the connection back.
    pub fn into_inner(self) -> C {
        self.shared.into_inner().into_inner()
    }
}

/// picoserve's read half: the read half of the shared connection. A read that
/// follows a write first waits until the peer has acknowledged what was written.
pub struct PicoserveReader<'s, C: Connection> {
    half: ReadHalf<'s, StreamRouted<C>>,
    unacknowledged: &'s Cell<bool>,
}

/// picoserve's write half: writes go straight to the connection; picoserve's
/// formatted writes pass through a small stack buffer.
pub struct PicoserveWriter<'s, C: Connection> {
    half: WriteHalf<'s, StreamRouted<C>>,
    flush: FlushMode,
    unacknowledged: &'s Cell<bool>,
}

impl<C: Connection> ErrorType for PicoserveReader<'_, C> {
    type Error = C::Error;
}

impl<C: Connection> Read for PicoserveReader<'_, C> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, C::Error> {
        let unacknowledged = self.unacknowledged;
        self.half
            .run(async |conn: &mut StreamRouted<C>| {
                if unacknowledged.get() {
                    // Cancel-safe: dropped when the write half needs the connection,
                    // done again afterwards. A failed flush leaves the verdict to the
                    // read, which sees the same connection.
                    let _ = conn.flush().await;
                    unacknowledged.set(false);
                }
                conn.read(buf).await
            })
            .await
    }
}

impl<C: Connection> ErrorType for PicoserveWriter<'_, C> {
    type Error = C::Error;
}

impl<C: Connection> picoserve::io::BaseWrite for PicoserveWriter<'_, C> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, C::Error> {
        self.unacknowledged.set(true);
        picoserve::io::BaseWrite::write(&mut self.half, buf).await
    }

    async fn flush(&mut self) -> Result<(), C::Error> {
        match self.flush {
            FlushMode::Queued => Ok(()),
            FlushMode::Acknowledged => {
                picoserve::io::BaseWrite::flush(&mut self.half).await?;
                self.unacknowledged.set(false);
                Ok(())
            }
        }
    }
}

impl<C: Connection> picoserve::io::Write for PicoserveWriter<'_, C> {
    async fn write_with<F: FnOnce(BorrowedCursor<'_>) -> R, R>(
        &mut self,
        f: F,
    ) -> Result<R, C::Error> {
        let mut bytes = [0u8; FORMAT_BUFFER];
        let mut buffer = picoserve::mem::BorrowedBuffer::new(&mut bytes);
        let output = f(buffer.unfilled());
        let filled = buffer.filled();
        self.unacknowledged.set(true);
        self.half
            .with_conn(async |conn: &mut StreamRouted<C>| conn.write_all(filled).await)
            .await
            .map(|()| output)
    }
}

impl<C> Socket<EmbassyRuntime> for PicoserveSocket<C>
where
    C: Connection,
    C::Error: 'static,
{
    type Error = C::Error;
    type ReadHalf<'a>
        = PicoserveReader<'a, C>
    where
        Self: 'a;
    type WriteHalf<'a>
        = PicoserveWriter<'a, C>
    where
        Self: 'a;

    fn split(&mut self) -> (Self::ReadHalf<'_>, Self::WriteHalf<'_>) {
        let (read, write) = self.shared.halves();
        let reader = PicoserveReader {
            half: read,
            unacknowledged: &self.unacknowledged,
        };
        let writer = PicoserveWriter {
            half: write,
            flush: self.flush,
            unacknowledged: &self.unacknowledged,
        };
        (reader, writer)
    }

    /// Ends the connection with an RST (unless a layer knows the connection ended in
    /// order), bounded by picoserve's write timeout.
    async fn abort<T: Timer<EmbassyRuntime>>(
        mut self,
        timeouts: &Timeouts,
        timer: &T,
    ) -> Result<(), picoserve::Error<C::Error>> {
        let conn = self.shared.get_mut();
        let reason = end_reason(conn, Ending::Abort);
        timer
            .run_with_timeout(timeouts.write, conn.end(reason))
            .await
            .map_err(picoserve::Error::WriteTimeout)
    }

    /// Ends the connection through [`Connection::end`] (`LocalClose`, or the reason a
    /// layer knows), bounded by picoserve's own shutdown bound (read-request plus write
    /// timeout); past it the connection is reset so the socket is free either way.
    async fn shutdown<T: Timer<EmbassyRuntime>>(
        mut self,
        timeouts: &Timeouts,
        timer: &T,
    ) -> Result<(), picoserve::Error<C::Error>> {
        let conn = self.shared.get_mut();
        let reason = end_reason(conn, Ending::Shutdown);
        let bound = timeouts.read_request + timeouts.write;
        match timer.run_with_timeout(bound, conn.end(reason)).await {
            Ok(()) => Ok(()),
            Err(timeout) => {
                conn.abort();
                let _ = timer.run_with_timeout(timeouts.write, conn.flush()).await;
                Err(picoserve::Error::WriteTimeout(timeout))
            }
        }
    }
}
