#![doc = include_str!("../README.md")]
#![no_std]
#![deny(missing_docs)]
use core::cell::Cell;

use picoserve::io::{ErrorType, Read, Socket};
use picoserve::mem::BorrowedCursor;
use picoserve::time::Timer;
use picoserve::{EmbassyRuntime, Timeouts};
use tcp_layers_core::{CloseReason, Connection, Deadline, Exchange, Write as _};

use tcp_layers_http::StreamPaths;
use tcp_layers_http::server::{Ending, ReadHalf, Split, WriteHalf, quiet_read, server_end_reason};

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

/// What the two halves record for the socket as a whole.
struct IoState {
    /// Bytes were written since the last flush that waited for the acknowledgement.
    unacknowledged: Cell<bool>,
    /// Where the exchange stands, as picoserve's reads and writes show it.
    exchange: Cell<Exchange>,
    /// Set when a read starts and cleared when it returns: still set after picoserve
    /// dropped a read unfinished (its timeout fired).
    reading: Cell<bool>,
    /// The same for writes and flushes.
    writing: Cell<bool>,
    /// A read or write returned an error to picoserve: an abort that follows answers
    /// that error, not a timeout.
    failed: Cell<bool>,
}

impl IoState {
    const fn new() -> Self {
        Self {
            unacknowledged: Cell::new(false),
            exchange: Cell::new(Exchange::Fresh),
            reading: Cell::new(false),
            writing: Cell::new(false),
            failed: Cell::new(false),
        }
    }

    /// The deadline picoserve enforced, when its abort follows a read or write it
    /// dropped unfinished (see the [module docs](self)).
    fn timed_out(&self) -> Option<CloseReason> {
        if self.failed.get() {
            return None;
        }
        let deadline = if self.writing.get() {
            Deadline::Stall
        } else if self.reading.get() {
            match self.exchange.get() {
                Exchange::Fresh => Deadline::FirstByte,
                Exchange::Request => Deadline::Request,
                Exchange::Response | Exchange::Responded => Deadline::Idle,
            }
        } else {
            return None;
        };
        Some(CloseReason::Reaped(deadline))
    }

    /// Records the end of a write-like call.
    fn wrote<T, E>(&self, result: &Result<T, E>) {
        self.writing.set(false);
        if result.is_err() {
            self.failed.set(true);
        }
    }
}

/// A layered connection as a picoserve socket. See the [module docs](self).
pub struct PicoserveSocket<C: Connection> {
    shared: Split<StreamPaths<C>>,
    flush: FlushMode,
    io: IoState,
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
            shared: Split::new(StreamPaths::new(conn, &[])),
            flush,
            io: IoState::new(),
        }
    }

    /// Requests for these paths are streams (SSE, WebSocket, long poll): the adapter
    /// calls [`Connection::set_class`] with `Stream` once it has read such a request's
    /// path, before picoserve routes it. When the budget refuses (its stream cap is
    /// reached), the handler is not run: the client gets `200 OK`, `Content-Type:
    /// text/event-stream`, `Connection: close` and the body `retry: 5000`, then a FIN.
    /// A browser's `EventSource` reconnects 5 s after such a stream ends (the HTML
    /// standard's reconnection time), where a non-200 answer (503) makes it give up for
    /// good; a stream slot frees when another viewer leaves.
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

    /// The connection, for code that uses it before handing the socket to picoserve
    /// (its peer's address, a class of its own). `Server::serve` takes the socket by
    /// value and keeps it to the end: how a connection ended is counted and logged by
    /// the quiet layer, not read here.
    pub fn get_mut(&mut self) -> &mut C {
        self.shared.get_mut().get_mut()
    }

    /// Gives the connection back, for code that does not hand the socket to
    /// `Server::serve` (which consumes it).
    pub fn into_inner(self) -> C {
        self.shared.into_inner().into_inner()
    }
}

/// picoserve's read half: the read half of the shared connection. A read that
/// follows a write first waits until the peer has acknowledged what was written.
pub struct PicoserveReader<'s, C: Connection> {
    half: ReadHalf<'s, StreamPaths<C>>,
    io: &'s IoState,
}

/// picoserve's write half: writes go straight to the connection; picoserve's
/// formatted writes pass through a small stack buffer.
pub struct PicoserveWriter<'s, C: Connection> {
    half: WriteHalf<'s, StreamPaths<C>>,
    flush: FlushMode,
    io: &'s IoState,
}

impl<C: Connection> ErrorType for PicoserveReader<'_, C> {
    type Error = C::Error;
}

impl<C: Connection> Read for PicoserveReader<'_, C> {
    /// Reads from the connection; the end of the stream once a layer ended it (see the
    /// [`tcp_layers_http::server`]).
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, C::Error> {
        let io = self.io;
        io.reading.set(true);
        let result = self
            .half
            .run(async |conn: &mut StreamPaths<C>| {
                if io.unacknowledged.get() {
                    // Cancel-safe: dropped when the write half needs the connection,
                    // done again afterwards. A failed flush leaves the verdict to the
                    // read, which sees the same connection.
                    let _ = conn.flush().await;
                    io.unacknowledged.set(false);
                }
                let result = conn.read(buf).await;
                quiet_read(conn, result)
            })
            .await;
        io.reading.set(false);
        match result {
            Ok(0) => {}
            Ok(n) => io.exchange.set(io.exchange.get().after_read(n)),
            Err(_) => io.failed.set(true),
        }
        result
    }
}

impl<C: Connection> ErrorType for PicoserveWriter<'_, C> {
    type Error = C::Error;
}

impl<C: Connection> PicoserveWriter<'_, C> {
    /// Notes that a write starts: a response is under way.
    fn writing(&self) {
        self.io.writing.set(true);
        self.io.unacknowledged.set(true);
        self.io.exchange.set(Exchange::Response);
    }
}

impl<C: Connection> picoserve::io::BaseWrite for PicoserveWriter<'_, C> {
    /// The write of the connection below the stream paths, without their state
    /// machine (and the write half's) in between: one per write of a response body.
    async fn write(&mut self, buf: &[u8]) -> Result<usize, C::Error> {
        self.writing();
        let mut turn = match self.half.turn_now() {
            Some(turn) => turn,
            None => self.half.turn().await,
        };
        let result = match turn.conn().writer() {
            Ok(conn) => conn.write(buf).await,
            Err(e) => Err(e),
        };
        drop(turn);
        self.io.wrote(&result);
        result
    }

    async fn flush(&mut self) -> Result<(), C::Error> {
        match self.flush {
            FlushMode::Queued => Ok(()),
            FlushMode::Acknowledged => {
                self.io.writing.set(true);
                let result = picoserve::io::BaseWrite::flush(&mut self.half).await;
                self.io.wrote(&result);
                if result.is_ok() {
                    self.io.unacknowledged.set(false);
                }
                result
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
        self.writing();
        let mut turn = match self.half.turn_now() {
            Some(turn) => turn,
            None => self.half.turn().await,
        };
        let result = match turn.conn().writer() {
            Ok(conn) => conn.write_all(filled).await,
            Err(e) => Err(e),
        };
        drop(turn);
        self.io.wrote(&result);
        result.map(|()| output)
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
            io: &self.io,
        };
        let writer = PicoserveWriter {
            half: write,
            flush: self.flush,
            io: &self.io,
        };
        (reader, writer)
    }

    /// Ends the connection with an RST (unless a layer knows the connection ended in
    /// order), bounded by picoserve's write timeout. The reason: a layer's, else the
    /// deadline picoserve enforced if it dropped a read or write to abort (see the
    /// [module docs](self)), else one read from the TCP state.
    async fn abort<T: Timer<EmbassyRuntime>>(
        mut self,
        timeouts: &Timeouts,
        timer: &T,
    ) -> Result<(), picoserve::Error<C::Error>> {
        let timed_out = self.io.timed_out();
        let conn = self.shared.get_mut();
        let reason = match (conn.close_reason(), timed_out) {
            (Some(known), _) => known,
            (None, Some(deadline)) => deadline,
            (None, None) => server_end_reason(conn, Ending::Abort),
        };
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
        let reason = server_end_reason(conn, Ending::Shutdown);
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
