//! edge-http 0.8 / edge-nal 0.7: a layered acceptor over embassy-net.
//!
//! edge-http's `Server::run` takes an `edge_nal::TcpAccept`. edge-nal-embassy's acceptor
//! hides the embassy socket, so no layer could set Nagle or send an RST through it;
//! [`LayeredAcceptor`] owns `N` embassy-net sockets itself, wraps every accepted one in
//! the layer stack and hands edge-http an [`EdgeConnection`]:
//!
//! ```ignore
//! static BUFFERS: StaticCell<[SocketBuffers<1536, 4096>; 4]> = StaticCell::new();
//! let acceptor = LayeredAcceptor::new(stack, 80, layers, BUFFERS.init(SocketBuffers::array()));
//! let mut server = edge_http::io::server::DefaultServer::new();
//! server.run(Some(5_000), &acceptor, handler).await?;
//! ```
//!
//! edge-http's `run` stops at the first accept error, so this acceptor never returns
//! one: when every socket is in use it waits for one to come back, a socket still
//! lingering after a close is waited for, and an error of the stack is retried with a
//! bounded backoff (reported through [`event::Event::AcceptError`]).
use core::cell::{Cell, RefCell, RefMut};
use core::future::poll_fn;
use core::task::Poll;

use edge_nal::{Close, Readable, TcpShutdown, TcpSplit};
use embassy_futures::select::select;
use embassy_net::Stack;
use embassy_net::tcp::{Error, TcpSocket};
use embassy_sync::waitqueue::MultiWakerRegistration;
use embassy_time::{Duration, Timer};
use tcp_layers_core::event::{self, Event};
use tcp_layers_core::{
    ClassFull, CloseReason, Connection, ConnectionClass, ErrorType, Layer, Read, SocketAddr,
    TcpState, Unsupported, Write, emit_log,
};

use super::split::{ReadHalf, Shared, WriteHalf};
use super::{Ending, end_reason};

/// How long an accept waits before it looks again at a socket that is still closing
/// (FIN_WAIT, LAST_ACK): 10 ms, one delayed ACK of smoltcp, so a socket freed by the
/// peer's last ACK is listening again within one more round of the stack.
const LINGER_POLL: Duration = Duration::from_millis(10);

/// First wait after an accept error of the stack; doubled per consecutive error.
const BACKOFF_START: Duration = Duration::from_millis(10);
/// Longest wait between two accept attempts: 1 s keeps a broken stack from spinning
/// while a recovered one is back in service within a second.
const BACKOFF_CAP: Duration = Duration::from_secs(1);

/// The receive and transmit buffers of one socket of a [`LayeredAcceptor`].
pub struct SocketBuffers<const RX: usize, const TX: usize> {
    rx: [u8; RX],
    tx: [u8; TX],
}

impl<const RX: usize, const TX: usize> SocketBuffers<RX, TX> {
    /// Zeroed buffers (`const`, for a `static` or a `StaticCell`).
    pub const fn new() -> Self {
        Self {
            rx: [0; RX],
            tx: [0; TX],
        }
    }

    /// `N` pairs of zeroed buffers.
    pub const fn array<const N: usize>() -> [Self; N] {
        [const { Self::new() }; N]
    }
}

impl<const RX: usize, const TX: usize> Default for SocketBuffers<RX, TX> {
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
    sockets: [RefCell<TcpSocket<'d>>; N],
    port: u16,
    layers: L,
    released: RefCell<MultiWakerRegistration<N>>,
    accept_errors: Cell<u32>,
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
        buffers: &'d mut [SocketBuffers<RX, TX>; N],
    ) -> Self {
        assert!(port != 0, "an acceptor needs a port");
        Self {
            sockets: buffers
                .each_mut()
                .map(|b| RefCell::new(TcpSocket::new(stack, &mut b.rx, &mut b.tx))),
            port,
            layers,
            released: RefCell::new(MultiWakerRegistration::new()),
            accept_errors: Cell::new(0),
        }
    }

    /// Sockets held by an accept in progress or an accepted connection right now.
    pub fn in_use(&self) -> usize {
        self.sockets
            .iter()
            .filter(|s| s.try_borrow_mut().is_err())
            .count()
    }

    /// The TCP state of socket `i` (`None` while an accept or a connection holds it).
    pub fn socket_state(&self, i: usize) -> Option<TcpState> {
        let socket = self.sockets[i].try_borrow().ok()?;
        Some(Connection::state(&*socket))
    }

    /// Accept errors of the stack so far (each retried after a backoff).
    pub fn accept_errors(&self) -> u32 {
        self.accept_errors.get()
    }

    /// A socket that can accept now, best first: one a client already connected to
    /// while nobody was accepting on it (a cancelled accept leaves the socket
    /// listening), then a listening one, then a closed one. `Err(true)` when a free
    /// socket is still closing, `Err(false)` when all are held.
    fn try_claim(&self) -> Result<RefMut<'_, TcpSocket<'d>>, bool> {
        let mut best: Option<(u8, RefMut<'_, TcpSocket<'d>>)> = None;
        let mut closing = false;
        for cell in &self.sockets {
            let Ok(socket) = cell.try_borrow_mut() else {
                continue;
            };
            let rank = match Connection::state(&*socket) {
                TcpState::Established | TcpState::CloseWait => 0,
                TcpState::Listen => 1,
                TcpState::Closed => 2,
                TcpState::TimeWait => 3,
                _ => {
                    closing = true;
                    continue;
                }
            };
            if best.as_ref().is_none_or(|(r, _)| rank < *r) {
                best = Some((rank, socket));
            }
        }
        best.map(|(_, socket)| socket).ok_or(closing)
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

    async fn claim(&self) -> RefMut<'_, TcpSocket<'d>> {
        loop {
            match self.try_claim() {
                Ok(socket) => return socket,
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
    // The socket's `RefCell` borrow is what marks it taken: holding it across the
    // accept is the point. Every other access to the cells uses `try_borrow*`.
    #[allow(clippy::await_holding_refcell_ref)]
    async fn accept(&self) -> Result<(SocketAddr, Self::Socket<'_>), Error> {
        let mut backoff = BACKOFF_START;
        loop {
            let mut socket = self.claim().await;
            if !matches!(
                Connection::state(&*socket),
                TcpState::Established | TcpState::CloseWait
            ) && let Err(error) = socket.accept(self.port).await
            {
                drop(socket);
                let consecutive = self.accept_errors.get().saturating_add(1);
                self.accept_errors.set(consecutive);
                emit_log!(warn, "accept error {:?}, retrying", error);
                event::emit(Event::AcceptError {
                    consecutive,
                    backoff_ms: backoff.as_millis() as u32,
                });
                Timer::after(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_CAP);
                continue;
            }
            // A handshake the peer reset ends `accept` with a closed socket: listen again.
            let Some(remote) = Connection::remote(&*socket) else {
                continue;
            };
            let slot = SocketSlot {
                socket,
                released: &self.released,
            };
            return Ok((remote, EdgeConnection::new(self.layers.layer(slot))));
        }
    }
}

/// A socket of a [`LayeredAcceptor`], held by one accepted connection: the innermost
/// [`Connection`] the layers wrap. Dropping it gives the socket back; a connection
/// dropped without being ended is reset, so the next client never inherits it.
pub struct SocketSlot<'a, 'd, const N: usize> {
    socket: RefMut<'a, TcpSocket<'d>>,
    released: &'a RefCell<MultiWakerRegistration<N>>,
}

impl<const N: usize> Drop for SocketSlot<'_, '_, N> {
    fn drop(&mut self) {
        let state = Connection::state(&*self.socket);
        if matches!(
            state,
            TcpState::SynReceived | TcpState::Established | TcpState::CloseWait
        ) {
            // Dropped without being ended: reset. The socket stays in the stack's set,
            // so the RST leaves with the stack's next poll.
            Connection::abort(&mut *self.socket);
        }
        self.released.borrow_mut().wake();
    }
}

impl<const N: usize> ErrorType for SocketSlot<'_, '_, N> {
    type Error = Error;
}

impl<const N: usize> Read for SocketSlot<'_, '_, N> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        Read::read(&mut *self.socket, buf).await
    }
}

impl<const N: usize> Write for SocketSlot<'_, '_, N> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Error> {
        Write::write(&mut *self.socket, buf).await
    }
    async fn flush(&mut self) -> Result<(), Error> {
        Write::flush(&mut *self.socket).await
    }
}

impl<const N: usize> Connection for SocketSlot<'_, '_, N> {
    fn state(&self) -> TcpState {
        Connection::state(&*self.socket)
    }
    fn set_nodelay(&mut self, on: bool) -> Result<(), Unsupported> {
        Connection::set_nodelay(&mut *self.socket, on)
    }
    fn close_write(&mut self) {
        Connection::close_write(&mut *self.socket)
    }
    fn abort(&mut self) {
        Connection::abort(&mut *self.socket)
    }
    fn remote(&self) -> Option<SocketAddr> {
        Connection::remote(&*self.socket)
    }
    fn local(&self) -> Option<SocketAddr> {
        Connection::local(&*self.socket)
    }
    fn send_queue(&self) -> Option<usize> {
        Connection::send_queue(&*self.socket)
    }
    fn recv_queue(&self) -> Option<usize> {
        Connection::recv_queue(&*self.socket)
    }
    fn ended_error(&self, reason: CloseReason) -> Error {
        Connection::ended_error(&*self.socket, reason)
    }
    fn set_class(&mut self, class: ConnectionClass) -> Result<(), ClassFull> {
        Connection::set_class(&mut *self.socket, class)
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
    shared: Shared<C>,
    read_ahead: Cell<ReadAhead>,
}

impl<C: Connection> EdgeConnection<C> {
    /// Wraps a (layered) connection for edge-nal.
    pub fn new(conn: C) -> Self {
        Self {
            shared: Shared::new(conn),
            read_ahead: Cell::new(ReadAhead::Nothing),
        }
    }

    /// The connection, for what edge-nal does not do (state, close reason).
    pub fn get_mut(&mut self) -> &mut C {
        self.shared.get_mut()
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

/// Waits for data (or the peer's FIN) by reading one byte ahead.
async fn read_one_ahead<R: Read>(
    read_ahead: &Cell<ReadAhead>,
    reader: &mut R,
) -> Result<(), R::Error> {
    if read_ahead.get() != ReadAhead::Nothing {
        return Ok(());
    }
    let mut byte = [0u8; 1];
    let ahead = match reader.read(&mut byte).await? {
        0 => ReadAhead::End,
        _ => ReadAhead::Byte(byte[0]),
    };
    read_ahead.set(ahead);
    Ok(())
}

impl<C: Connection> ErrorType for EdgeConnection<C> {
    type Error = C::Error;
}

impl<C: Connection> Read for EdgeConnection<C> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, C::Error> {
        match take_read_ahead(&self.read_ahead, buf) {
            Some(n) => Ok(n),
            None => self.shared.get_mut().read(buf).await,
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
        read_one_ahead(&self.read_ahead, self.shared.get_mut()).await
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
                let reason = end_reason(conn, Ending::Shutdown);
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
        let reason = end_reason(conn, Ending::Abort);
        conn.end(reason).await;
        Ok(())
    }
}

/// The read half of a split [`EdgeConnection`].
pub struct EdgeReadHalf<'s, C: Connection> {
    half: ReadHalf<'s, C>,
    read_ahead: &'s Cell<ReadAhead>,
}

/// The write half of a split [`EdgeConnection`].
pub struct EdgeWriteHalf<'s, C: Connection>(WriteHalf<'s, C>);

impl<C: Connection> ErrorType for EdgeReadHalf<'_, C> {
    type Error = C::Error;
}

impl<C: Connection> Read for EdgeReadHalf<'_, C> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, C::Error> {
        match take_read_ahead(self.read_ahead, buf) {
            Some(n) => Ok(n),
            None => self.half.read(buf).await,
        }
    }
}

impl<C: Connection> Readable for EdgeReadHalf<'_, C> {
    async fn readable(&mut self) -> Result<(), C::Error> {
        read_one_ahead(self.read_ahead, &mut self.half).await
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
