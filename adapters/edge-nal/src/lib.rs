#![doc = include_str!("../README.md")]
#![no_std]
#![deny(missing_docs)]

mod serve;
use core::cell::{Cell, RefCell};
use core::future::poll_fn;
use core::task::Poll;
pub use serve::{handle_connection, serve};

use edge_nal::{Close, Readable, TcpShutdown, TcpSplit};
use embassy_futures::select::select;
use embassy_net::Stack;
use embassy_net::tcp::{AcceptError, Error, TcpSocket};
use embassy_sync::waitqueue::MultiWakerRegistration;
use embassy_time::{Duration, Timer};
use tcp_layers_core::{
    ClassFull, CloseReason, Connection, ConnectionClass, ErrorType, Layer, Read, SocketAddr,
    TcpState, Unsupported, Write,
};
use tcp_layers_limit::{AcceptLoop, Backoff};

use tcp_layers_http::StreamPaths;
use tcp_layers_http::server::{Ending, ReadHalf, Split, WriteHalf, quiet_read, server_end_reason};

/// How long an accept waits before it looks again at a socket that is still closing
/// (FIN_WAIT, LAST_ACK): 10 ms, one delayed ACK of smoltcp, so a socket freed by the
/// peer's last ACK is listening again within one more round of the stack.
const LINGER_POLL: Duration = Duration::from_millis(10);

/// The receive buffer of one socket, `BYTES` long.
///
/// A type of its own (as is [`TxBuffer`]) so that the two sizes of [`SocketBuffers`]
/// cannot be swapped without a compile error: edge-nal-embassy's `TcpBuffers<N, TX,
/// RX>` lists the transmit size first, this crate's order is receive first, and a
/// swapped pair of plain numbers would compile and quietly give the socket a small
/// transmit buffer.
pub struct RxBuffer<const BYTES: usize>([u8; BYTES]);

/// The transmit buffer of one socket, `BYTES` long. See [`RxBuffer`].
pub struct TxBuffer<const BYTES: usize>([u8; BYTES]);

impl<const BYTES: usize> RxBuffer<BYTES> {
    /// Zeroed (`const`, for a `static` or a `StaticCell`).
    pub const fn new() -> Self {
        Self([0; BYTES])
    }
}

impl<const BYTES: usize> TxBuffer<BYTES> {
    /// Zeroed (`const`, for a `static` or a `StaticCell`).
    pub const fn new() -> Self {
        Self([0; BYTES])
    }
}

impl<const BYTES: usize> Default for RxBuffer<BYTES> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const BYTES: usize> Default for TxBuffer<BYTES> {
    fn default() -> Self {
        Self::new()
    }
}

/// The receive and transmit buffers of one socket of a [`LayeredAcceptor`]:
/// `SocketBuffers<RxBuffer<1536>, TxBuffer<4096>>`. Only that order builds; the sizes
/// swapped (`SocketBuffers<TxBuffer<4096>, RxBuffer<1536>>`) do not:
///
/// ```compile_fail
/// use tcp_layers_edge_nal::{RxBuffer, SocketBuffers, TxBuffer};
/// let swapped: SocketBuffers<TxBuffer<4096>, RxBuffer<1536>> = SocketBuffers::new();
/// ```
pub struct SocketBuffers<Rx, Tx> {
    rx: Rx,
    tx: Tx,
}

impl<const RX: usize, const TX: usize> SocketBuffers<RxBuffer<RX>, TxBuffer<TX>> {
    /// Zeroed buffers (`const`, for a `static` or a `StaticCell`).
    pub const fn new() -> Self {
        Self {
            rx: RxBuffer::new(),
            tx: TxBuffer::new(),
        }
    }

    /// `N` pairs of zeroed buffers.
    pub const fn array<const N: usize>() -> [Self; N] {
        [const { Self::new() }; N]
    }
}

impl<const RX: usize, const TX: usize> Default for SocketBuffers<RxBuffer<RX>, TxBuffer<TX>> {
    fn default() -> Self {
        Self::new()
    }
}

/// An `edge_nal::TcpAccept` that owns `N` embassy-net sockets on one port and wraps
/// each accepted connection in the layer stack `L`. See the [module docs](self).
///
/// edge-http calls `accept` from all its handler tasks at once; each call takes one
/// socket that is free, listens on it and returns it when a client connects. Pass the
/// acceptor by reference (`&acceptor`) to `Server::run`.
pub struct LayeredAcceptor<'d, L, const N: usize> {
    /// Each socket, or `None` while an accept in progress or an accepted connection has
    /// taken it out (it comes back when its [`SocketSlot`] is dropped).
    sockets: [Cell<Option<TcpSocket<'d>>>; N],
    port: u16,
    layers: L,
    stream_paths: &'static [&'static str],
    released: RefCell<MultiWakerRegistration<N>>,
    /// The backoff and counts of the stack's accept errors, shared by every accept.
    accepts: Cell<AcceptLoop>,
}

/// Reads a socket of `cell` that no accept or connection holds (`None` when one does).
fn peek<R>(cell: &Cell<Option<TcpSocket<'_>>>, f: impl FnOnce(&TcpSocket<'_>) -> R) -> Option<R> {
    let socket = cell.take()?;
    let result = f(&socket);
    cell.set(Some(socket));
    Some(result)
}

impl<'d, L, const N: usize> LayeredAcceptor<'d, L, N> {
    /// `N` sockets of `stack`, one per pair of `buffers`, accepting on `port`; every
    /// accepted connection is wrapped by `layers` (a `ConnectionBuilder` or one layer).
    ///
    /// `N` must not exceed the sockets the stack's `StackResources` has left, or
    /// embassy-net panics with "adding a socket to a full SocketSet".
    pub fn new<const RX: usize, const TX: usize>(
        stack: Stack<'d>,
        port: u16,
        layers: L,
        buffers: &'d mut [SocketBuffers<RxBuffer<RX>, TxBuffer<TX>>; N],
    ) -> Self {
        assert!(port != 0, "an acceptor needs a port");
        Self {
            sockets: buffers
                .each_mut()
                .map(|b| Cell::new(Some(TcpSocket::new(stack, &mut b.rx.0, &mut b.tx.0)))),
            port,
            layers,
            stream_paths: &[],
            released: RefCell::new(MultiWakerRegistration::new()),
            accepts: Cell::new(AcceptLoop::new(Backoff::DEFAULT)),
        }
    }

    /// Requests for these paths are streams (SSE, WebSocket, long poll): each accepted
    /// connection calls [`Connection::set_class`] with `Stream` once edge-http has read
    /// such a request's path, before the handler runs. The matching and the answer to a
    /// refused stream are the picoserve adapter's, see
    /// `tcp_layers_picoserve::PicoserveSocket::with_stream_paths` and
    /// [`tcp_layers_http::StreamPathsLayer`].
    pub fn with_stream_paths(mut self, paths: &'static [&'static str]) -> Self {
        self.stream_paths = paths;
        self
    }

    /// Sockets held by an accept in progress or an accepted connection right now.
    pub fn in_use(&self) -> usize {
        self.sockets
            .iter()
            .filter(|cell| peek(cell, |_| ()).is_none())
            .count()
    }

    /// The TCP state of socket `i` (`None` while an accept or a connection holds it, or
    /// for an `i` of no socket).
    pub fn socket_state(&self, i: usize) -> Option<TcpState> {
        peek(self.sockets.get(i)?, |socket| Connection::state(socket))
    }

    /// Accept errors of the stack so far (each retried after a backoff).
    pub fn accept_errors(&self) -> u32 {
        self.accepts.get().failures()
    }

    /// A socket that can accept now, best first: one a client already connected to
    /// while nobody was accepting on it (a cancelled accept leaves the socket
    /// listening), then a listening one, then a closed one. `Err(true)` when a free
    /// socket is still closing, `Err(false)` when all are held.
    fn try_claim(&self) -> Result<SocketSlot<'_, 'd, N>, bool> {
        let mut best: Option<(u8, usize)> = None;
        let mut closing = false;
        for (i, cell) in self.sockets.iter().enumerate() {
            let rank = match peek(cell, |socket| Connection::state(socket)) {
                None => continue,
                Some(TcpState::Established | TcpState::CloseWait) => 0,
                Some(TcpState::Listen) => 1,
                Some(TcpState::Closed) => 2,
                Some(TcpState::TimeWait) => 3,
                Some(_) => {
                    closing = true;
                    continue;
                }
            };
            if best.is_none_or(|(r, _)| rank < r) {
                best = Some((rank, i));
            }
        }
        let home = best.and_then(|(_, i)| self.sockets.get(i)).ok_or(closing)?;
        let socket = home.take().ok_or(closing)?;
        Ok(SocketSlot {
            socket: Some(socket),
            home,
            released: &self.released,
            accepted: false,
        })
    }

    /// Resolves once a socket was given back after this future was first polled.
    async fn next_release(&self) {
        let mut registered = false;
        poll_fn(|cx| {
            if registered {
                return Poll::Ready(());
            }
            registered = true;
            self.released.borrow_mut().register(cx.waker());
            Poll::Pending
        })
        .await
    }

    async fn claim(&self) -> SocketSlot<'_, 'd, N> {
        loop {
            match self.try_claim() {
                Ok(slot) => return slot,
                Err(true) => {
                    select(self.next_release(), Timer::after(LINGER_POLL)).await;
                }
                Err(false) => self.next_release().await,
            }
        }
    }
}

impl<'d, L, const N: usize> edge_nal::TcpAccept for LayeredAcceptor<'d, L, N>
where
    L: for<'a> Layer<SocketSlot<'a, 'd, N>>,
    for<'a> <L as Layer<SocketSlot<'a, 'd, N>>>::Service: Connection<Error = Error>,
{
    type Error = Error;
    type Socket<'a>
        = EdgeConnection<<L as Layer<SocketSlot<'a, 'd, N>>>::Service>
    where
        Self: 'a;

    /// Waits for a client; never fails (edge-http's `run` would stop for good).
    /// Cancel-safe: a dropped accept gives its socket back, still listening.
    async fn accept(&self) -> Result<(SocketAddr, Self::Socket<'_>), Error> {
        loop {
            let mut slot = self.claim().await;
            if !matches!(slot.state(), TcpState::Established | TcpState::CloseWait)
                && let Err(error) = slot.listen(self.port).await
            {
                drop(slot);
                let mut accepts = self.accepts.get();
                let backoff = accepts.failed(&error);
                self.accepts.set(accepts);
                Timer::after(backoff).await;
                continue;
            }
            // A handshake the peer reset ends `accept` with a closed socket: listen again.
            let Some(remote) = slot.remote() else {
                continue;
            };
            slot.accepted = true;
            let mut accepts = self.accepts.get();
            accepts.succeeded();
            self.accepts.set(accepts);
            let conn = EdgeConnection::new(self.layers.layer(slot));
            return Ok((remote, conn.with_stream_paths(self.stream_paths)));
        }
    }
}

/// A socket of a [`LayeredAcceptor`], held by one accepted connection: the innermost
/// [`Connection`] the layers wrap. Dropping it gives the socket back; a connection
/// dropped without being ended is reset, so the next client never inherits it.
pub struct SocketSlot<'a, 'd, const N: usize> {
    /// Always `Some` until the slot is dropped, which puts the socket back in `home`.
    socket: Option<TcpSocket<'d>>,
    home: &'a Cell<Option<TcpSocket<'d>>>,
    released: &'a RefCell<MultiWakerRegistration<N>>,
    /// A connection was accepted on it (an accept in progress is not reset when given
    /// back: a cancelled accept leaves the socket listening, for the next one).
    accepted: bool,
}

impl<const N: usize> SocketSlot<'_, '_, N> {
    /// `accept` on the socket: listens on `port` until a client connects.
    async fn listen(&mut self, port: u16) -> Result<(), AcceptError> {
        match &mut self.socket {
            Some(socket) => socket.accept(port).await,
            None => Err(AcceptError::InvalidState),
        }
    }
}

impl<const N: usize> Drop for SocketSlot<'_, '_, N> {
    fn drop(&mut self) {
        if let Some(mut socket) = self.socket.take() {
            let state = Connection::state(&socket);
            if self.accepted
                && matches!(
                    state,
                    TcpState::SynReceived | TcpState::Established | TcpState::CloseWait
                )
            {
                // Dropped without being ended: reset. The socket stays in the stack's
                // set, so the RST leaves with the stack's next poll.
                Connection::abort(&mut socket);
            }
            self.home.set(Some(socket));
        }
        self.released.borrow_mut().wake();
    }
}

impl<const N: usize> ErrorType for SocketSlot<'_, '_, N> {
    type Error = Error;
}

impl<const N: usize> Read for SocketSlot<'_, '_, N> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        match &mut self.socket {
            Some(socket) => Read::read(socket, buf).await,
            None => Err(Error::ConnectionReset),
        }
    }
}

impl<const N: usize> Write for SocketSlot<'_, '_, N> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Error> {
        match &mut self.socket {
            Some(socket) => Write::write(socket, buf).await,
            None => Err(Error::ConnectionReset),
        }
    }
    async fn flush(&mut self) -> Result<(), Error> {
        match &mut self.socket {
            Some(socket) => Write::flush(socket).await,
            None => Err(Error::ConnectionReset),
        }
    }
}

impl<const N: usize> Connection for SocketSlot<'_, '_, N> {
    fn state(&self) -> TcpState {
        self.socket
            .as_ref()
            .map_or(TcpState::Closed, Connection::state)
    }
    fn set_nodelay(&mut self, on: bool) -> Result<(), Unsupported> {
        match &mut self.socket {
            Some(socket) => Connection::set_nodelay(socket, on),
            None => Err(Unsupported),
        }
    }
    fn close_write(&mut self) {
        if let Some(socket) = &mut self.socket {
            Connection::close_write(socket)
        }
    }
    fn abort(&mut self) {
        if let Some(socket) = &mut self.socket {
            Connection::abort(socket)
        }
    }
    fn remote(&self) -> Option<SocketAddr> {
        Connection::remote(self.socket.as_ref()?)
    }
    fn local(&self) -> Option<SocketAddr> {
        Connection::local(self.socket.as_ref()?)
    }
    fn send_queue(&self) -> Option<usize> {
        Connection::send_queue(self.socket.as_ref()?)
    }
    fn recv_queue(&self) -> Option<usize> {
        Connection::recv_queue(self.socket.as_ref()?)
    }
    /// embassy-net has one error, `ConnectionReset`; the reason is kept by the layer.
    fn ended_error(&self, _reason: CloseReason) -> Error {
        Error::ConnectionReset
    }
    fn set_class(&mut self, class: ConnectionClass) -> Result<(), ClassFull> {
        match &mut self.socket {
            Some(socket) => Connection::set_class(socket, class),
            None => Ok(()),
        }
    }
}

/// What a `readable()` read ahead of the caller: edge-http asks whether a keep-alive
/// connection has data before it reads, and the layered connection has no way to wait
/// for data without reading it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ReadAhead {
    Nothing,
    Byte(u8),
    End,
}

/// A layered connection as an edge-nal socket (`Read`, `Write`, `Readable`,
/// `TcpSplit`, `TcpShutdown`). Closing and aborting go through [`Connection::end`], so
/// the stack's close discipline applies.
pub struct EdgeConnection<C: Connection> {
    shared: Split<StreamPaths<C>>,
    read_ahead: Cell<ReadAhead>,
}

impl<C: Connection> EdgeConnection<C> {
    /// Wraps a (layered) connection for edge-nal, with no stream paths.
    pub fn new(conn: C) -> Self {
        Self {
            shared: Split::new(StreamPaths::new(conn, &[])),
            read_ahead: Cell::new(ReadAhead::Nothing),
        }
    }

    /// Requests for these paths are streams: see
    /// [`LayeredAcceptor::with_stream_paths`], which sets them on every connection it
    /// accepts.
    pub fn with_stream_paths(mut self, paths: &'static [&'static str]) -> Self {
        self.shared.get_mut().set_paths(paths);
        self
    }

    /// The connection, for code that drives an `EdgeConnection` itself (a server loop
    /// of its own, a test). edge-http's handlers never see it: `Server::run` keeps the
    /// socket inside its own connection type, so how a connection ended is counted and
    /// logged by the quiet layer, not read here.
    pub fn get_mut(&mut self) -> &mut C {
        self.shared.get_mut().get_mut()
    }
}

/// Hands out what `readable` read ahead; `None` when nothing was.
fn take_read_ahead(read_ahead: &Cell<ReadAhead>, buf: &mut [u8]) -> Option<usize> {
    match read_ahead.replace(ReadAhead::Nothing) {
        ReadAhead::Nothing => None,
        ReadAhead::End => Some(0),
        ReadAhead::Byte(b) => match buf.first_mut() {
            Some(first) => {
                *first = b;
                Some(1)
            }
            None => {
                read_ahead.set(ReadAhead::Byte(b));
                Some(0)
            }
        },
    }
}

/// Waits for data (or the end of the stream) by reading one byte ahead with `read`.
async fn read_one_ahead<E>(
    read_ahead: &Cell<ReadAhead>,
    read: impl AsyncFnOnce(&mut [u8]) -> Result<usize, E>,
) -> Result<(), E> {
    if read_ahead.get() != ReadAhead::Nothing {
        return Ok(());
    }
    let mut byte = [0u8; 1];
    let ahead = match read(&mut byte).await? {
        0 => ReadAhead::End,
        _ => ReadAhead::Byte(byte[0]),
    };
    read_ahead.set(ahead);
    Ok(())
}

/// A read of `conn` as edge-http should see it: the end of the stream once a layer
/// ended the connection.
async fn read_quietly<C: Connection>(conn: &mut C, buf: &mut [u8]) -> Result<usize, C::Error> {
    let result = conn.read(buf).await;
    quiet_read(conn, result)
}

impl<C: Connection> ErrorType for EdgeConnection<C> {
    type Error = C::Error;
}

impl<C: Connection> Read for EdgeConnection<C> {
    /// Reads from the connection; the end of the stream once a layer ended it.
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, C::Error> {
        match take_read_ahead(&self.read_ahead, buf) {
            Some(n) => Ok(n),
            None => read_quietly(self.shared.get_mut(), buf).await,
        }
    }
}

impl<C: Connection> Write for EdgeConnection<C> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, C::Error> {
        self.shared.get_mut().write(buf).await
    }
    async fn flush(&mut self) -> Result<(), C::Error> {
        self.shared.get_mut().flush().await
    }
}

impl<C: Connection> Readable for EdgeConnection<C> {
    async fn readable(&mut self) -> Result<(), C::Error> {
        let conn = self.shared.get_mut();
        read_one_ahead(&self.read_ahead, async |byte: &mut [u8]| {
            read_quietly(conn, byte).await
        })
        .await
    }
}

impl<C: Connection> TcpShutdown for EdgeConnection<C> {
    /// `Read` reads and drops until the peer's FIN; `Write` and `Both` end the
    /// connection through [`Connection::end`] (`LocalClose`, or the reason a layer
    /// knows), which sends FIN and lets the close discipline of the stack bound the
    /// linger.
    async fn close(&mut self, what: Close) -> Result<(), C::Error> {
        match what {
            Close::Read => {
                let mut scratch = [0u8; 32];
                while self.read(&mut scratch).await? > 0 {}
                Ok(())
            }
            Close::Write | Close::Both => {
                let conn = self.shared.get_mut();
                let reason = server_end_reason(conn, Ending::Shutdown);
                conn.end(reason).await;
                Ok(())
            }
        }
    }

    /// Ends the connection through [`Connection::end`] with the reason a layer knows or,
    /// failing that, one read from the TCP state: edge-http also aborts after the peer's
    /// clean FIN, which ends as `PeerClosed` (our FIN answers theirs) rather than with
    /// an RST; anything else resets.
    async fn abort(&mut self) -> Result<(), C::Error> {
        let conn = self.shared.get_mut();
        let reason = server_end_reason(conn, Ending::Abort);
        conn.end(reason).await;
        Ok(())
    }
}

/// The read half of a split [`EdgeConnection`].
pub struct EdgeReadHalf<'s, C: Connection> {
    half: ReadHalf<'s, StreamPaths<C>>,
    read_ahead: &'s Cell<ReadAhead>,
}

/// The write half of a split [`EdgeConnection`].
pub struct EdgeWriteHalf<'s, C: Connection>(WriteHalf<'s, StreamPaths<C>>);

impl<C: Connection> ErrorType for EdgeReadHalf<'_, C> {
    type Error = C::Error;
}

impl<C: Connection> Read for EdgeReadHalf<'_, C> {
    /// Reads from the connection; the end of the stream once a layer ended it.
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, C::Error> {
        match take_read_ahead(self.read_ahead, buf) {
            Some(n) => Ok(n),
            None => self.half.read(buf).await,
        }
    }
}

impl<C: Connection> Readable for EdgeReadHalf<'_, C> {
    async fn readable(&mut self) -> Result<(), C::Error> {
        let half = &mut self.half;
        read_one_ahead(self.read_ahead, async |byte: &mut [u8]| {
            half.read(byte).await
        })
        .await
    }
}

impl<C: Connection> ErrorType for EdgeWriteHalf<'_, C> {
    type Error = C::Error;
}

impl<C: Connection> Write for EdgeWriteHalf<'_, C> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, C::Error> {
        self.0.write(buf).await
    }
    async fn flush(&mut self) -> Result<(), C::Error> {
        self.0.flush().await
    }
}

impl<C: Connection> TcpSplit for EdgeConnection<C> {
    type Read<'a>
        = EdgeReadHalf<'a, C>
    where
        Self: 'a;
    type Write<'a>
        = EdgeWriteHalf<'a, C>
    where
        Self: 'a;

    fn split(&mut self) -> (Self::Read<'_>, Self::Write<'_>) {
        let (read, write) = self.shared.halves();
        (
            EdgeReadHalf {
                half: read,
                read_ahead: &self.read_ahead,
            },
            EdgeWriteHalf(write),
        )
    }
}
