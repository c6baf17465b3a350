//! picoserve 0.20: any layered [`Connection`] as a `picoserve::io::Socket`.
//!
//! picoserve's `Server::serve` takes a socket it can split into a read half and a write
//! half (it reads for a disconnect while it writes an event stream), abort and shut
//! down. [`PicoserveSocket`] gives it that over the layered connection, so the router
//! and the server stay as they are. One accept loop per socket, as embassy-net has no
//! backlog; `tcp_layers::AcceptLoop` keeps it running through accept errors:
//!
//! ```no_run
//! #![recursion_limit = "256"] // picoserve's router types need it in your crate
//! # mod doc {
//! use embassy_net::{Stack, tcp::TcpSocket};
//! use picoserve::routing::{PathRouter, get};
//! use picoserve::time::Duration;
//! use picoserve::{Config, Router, Server, Timeouts};
//! use tcp_layers_picoserve::PicoserveSocket;
//! use tcp_layers::prelude::*;
//!
//! static COUNTERS: Counters = Counters::new();
//! static BUDGET: Budget<8> = Budget::new(profile::ESP32_S3);
//! static STREAM_PATHS: [&str; 1] = ["/events"];
//! // Longer than the reaper's deadlines (first byte 3 s, idle 5 s, head 4-8 s, stall
//! // 5 s), so the reaper acts first: see "Which deadline acts first" below.
//! static CONFIG: Config = Config::new(Timeouts {
//!     start_read_request: Duration::from_secs(6),
//!     persistent_start_read_request: Duration::from_secs(6),
//!     read_request: Duration::from_secs(9),
//!     write: Duration::from_secs(6),
//! })
//! .keep_connection_alive();
//!
//! pub fn app() -> Router<impl PathRouter> {
//!     Router::new().route("/", get(|| async { "hello" }))
//! }
//!
//! // One of these per socket (e.g. an `#[embassy_executor::task(pool_size = 8)]`).
//! pub async fn http_worker(stack: Stack<'static>, app: &Router<impl PathRouter>) -> ! {
//!     let (mut rx, mut tx, mut http_buffer) = ([0u8; 1536], [0u8; 4096], [0u8; 2048]);
//!     let mut socket = TcpSocket::new(stack, &mut rx, &mut tx);
//!     let layers = default_stack(&COUNTERS, &BUDGET);
//!     let mut accepts = AcceptLoop::default(); // backs off on accept errors, never exits
//!     loop {
//!         accepts.accept_socket(&mut socket, 80).await;
//!         let conn = PicoserveSocket::new(layers.wrap(&mut socket)).with_stream_paths(&STREAM_PATHS);
//!         // An error ended this connection only (the quiet layer logged and counted
//!         // it): the loop goes on with the next one.
//!         let _ = Server::new(app, &CONFIG, &mut http_buffer).serve(conn).await;
//!     }
//! }
//! # }
//! # fn main() {}
//! ```
//!
//! picoserve's router and response types are deeply nested generics: a crate that
//! serves through this adapter needs `#![recursion_limit = "256"]` at its root, or
//! rustc stops with "queries overflow the depth limit!".
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
//! the path is one of them, and when the stream budget is full answers a short event
//! stream that asks the browser to reconnect in 5 s (see
//! [`with_stream_paths`](PicoserveSocket::with_stream_paths)) and closes, so the
//! handler never runs.
//!
//! # Which deadline acts first
//!
//! picoserve 0.20 enforces its own [`Timeouts`]: `start_read_request` (default 5 s)
//! and `persistent_start_read_request` (1 s) for the first byte of a request,
//! `read_request` (3 s) for the rest of it, `write` (1 s) per write. The reaper of
//! `default_stack` (`ReaperConfig::http()`) has first byte 3 s, idle 5 s, head 4 s
//! (growing with the bytes received, at most 8 s) and stall 5 s. Whichever is shorter
//! ends the connection. Give picoserve the longer ones (as in the
//! example: 6 s, 6 s, 9 s, 6 s) so that the reaper acts first: it knows the request
//! phase, answers an oversized head with 431, keeps a write going while the peer still
//! takes data, and names the deadline in the close reason; and picoserve's 1 s
//! keep-alive would close the connections of a dashboard that polls every 1-2 s.
//!
//! When a picoserve timeout fires first, picoserve drops the read or write it waits on
//! and aborts the connection. The adapter sees which was pending and ends the
//! connection with the reaped reason that matches, so the quiet layer logs a deadline
//! at debug, as the reaper's own, instead of a local error at warn:
//!
//! | picoserve gave up on | close reason |
//! |---|---|
//! | a write or flush (`write`) | `Reaped(Stall)` |
//! | a read, no byte of the connection's first request yet | `Reaped(FirstByte)` |
//! | a read, no byte of a later request yet | `Reaped(Idle)` |
//! | a read after bytes of the request (`read_request`: its head, or its body) | `Reaped(Request)` |
//!
//! A reason a layer decided comes first, and an abort that follows a failed read or
//! write, or with nothing pending (a handler's error), keeps the reason read from the
//! TCP state: `LocalError` for a connection still established, a genuine local fault.
//! picoserve ends a keep-alive connection whose next request does not start in time
//! with an orderly shutdown, not an abort: that is a `LocalClose`.
//!
//! A read of a connection that a layer already ended (a deadline, an eviction, a
//! refusal) returns the end of the stream, see [`tcp_layers_http::server`]: picoserve then
//! ends the connection without an error.
#![no_std]
#![deny(missing_docs)]
use core::cell::Cell;

use picoserve::io::{ErrorType, Read, Socket};
use picoserve::mem::BorrowedCursor;
use picoserve::time::Timer;
use picoserve::{EmbassyRuntime, Timeouts};
use tcp_layers_core::{CloseReason, Connection, Deadline, Write as _};

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

/// Where the current request/response exchange stands, as picoserve's reads and writes
/// show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Exchange {
    /// No byte read yet on this connection.
    Fresh,
    /// Bytes of the current request were read, no response byte written since.
    Request,
    /// A response was written; the next bytes read start the next request.
    Responded,
}

/// What the two halves record for the socket as a whole.
struct IoState {
    /// Bytes were written since the last flush that waited for the acknowledgement.
    unacknowledged: Cell<bool>,
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
                Exchange::Responded => Deadline::Idle,
                Exchange::Request => Deadline::Request,
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
            Ok(_) => io.exchange.set(Exchange::Request),
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
        self.io.exchange.set(Exchange::Responded);
    }
}

impl<C: Connection> picoserve::io::BaseWrite for PicoserveWriter<'_, C> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, C::Error> {
        self.writing();
        let result = picoserve::io::BaseWrite::write(&mut self.half, buf).await;
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
        let result = self
            .half
            .with_conn(async |conn: &mut StreamPaths<C>| conn.write_all(filled).await)
            .await;
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
