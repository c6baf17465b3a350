//! Helpers shared by the simulated-network tests: a wrapper that stamps the moment the
//! server ends a connection, the server variants, and clients that ask the server to
//! close (`Connection: close`) and then behave in a given way.

use std::cell::Cell;
use std::rc::Rc;

use embassy_net::Stack;
use embassy_net::tcp::TcpSocket;
use embassy_time::with_timeout;
use tcp_layers_core::{CloseReason, Connection, Layer};
use tcp_layers_sim::client::{
    ClientBuffers, ClientError, ClientOptions, PeerEnd, Response, Session,
};
use tcp_layers_sim::responder::{self, Routes};
use tcp_layers_sim::server::{ServerHandle, SlotPhase};
use tcp_layers_sim::{Duration, Instant, Net, Timer};
use tcp_layers_timewait::TimeWaitLayer;

/// The port the device serves on.
pub const PORT: u16 = 80;

/// One round trip of `LinkConfig::wifi()`.
pub const RTT: Duration = Duration::from_millis(20);

/// smoltcp's delayed ACK: a client's ACK of the server's FIN can leave this much later.
pub const ACK_DELAY: Duration = Duration::from_millis(10);

/// How long a test waits for something raw never does.
pub const GIVE_UP: Duration = Duration::from_secs(120);

/// A moment shared between the server's handler and the test.
pub type Stamp = Rc<Cell<Option<Instant>>>;

pub fn stamp() -> Stamp {
    Rc::new(Cell::new(None))
}

/// Waits (at most [`GIVE_UP`]) until the only slot of `slots`, having served a
/// connection, accepts again; how long that was after the moment in `since`, `None`
/// when it never did.
pub async fn slot_back_after(slots: &ServerHandle, since: &Stamp) -> Option<Duration> {
    let back = with_timeout(
        GIVE_UP,
        slots.wait_until(|s| s.slot_connections(0) >= 1 && s.slot_phase(0) == SlotPhase::Accepting),
    )
    .await;
    let back_at = Instant::now();
    let since = since.get().expect("the server stamped the moment");
    back.ok().map(|()| back_at - since)
}

/// Records when `end` is called, then passes it on: the moment the server closes.
/// With `vanish`, the peer also vanishes from the network at that moment: it received
/// and acknowledged the whole response and walks away before the server's FIN.
pub struct EndStamp<C: Connection> {
    inner: C,
    at: Stamp,
    vanish: Option<Net>,
}

impl<C: Connection> EndStamp<C> {
    pub fn new(inner: C, at: &Stamp, vanish: Option<Net>) -> Self {
        Self {
            inner,
            at: at.clone(),
            vanish,
        }
    }
}

tcp_layers_core::delegate_io!(EndStamp, inner);

impl<C: Connection> Connection for EndStamp<C> {
    tcp_layers_core::delegate_connection!(inner;
        state, set_nodelay, close_write, abort, remote, local, send_queue, recv_queue,
        ended_error, close_reason, set_class);

    async fn end(&mut self, reason: CloseReason) {
        self.at.set(Some(Instant::now()));
        if let (Some(net), Some(peer)) = (&self.vanish, self.inner.remote()) {
            net.vanish(peer);
        }
        self.inner.end(reason).await
    }
}

/// How the device's handler closes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Server {
    /// The socket as accepted: the responder's `end` is `close(); flush().await`.
    Raw,
    /// Wrapped in `TimeWaitLayer::new()` (linger 2 s).
    Layered,
    /// `TimeWaitLayer::with_linger(0)`: RST at once, the quick fix that frees the slot
    /// without this layer's wait.
    AbortAtOnce,
}

impl Server {
    /// Serves `socket` with the raw responder, stamping when it ends the connection.
    pub async fn serve(self, socket: &mut TcpSocket<'_>, ended: &Stamp) {
        self.serve_vanishing(socket, ended, None).await
    }

    /// Serves `socket` with [`write_and_end`] (no flush before `end`).
    pub async fn write_and_end(self, socket: &mut TcpSocket<'_>, ended: &Stamp) {
        match self {
            Server::Raw => write_and_end(&mut EndStamp::new(socket, ended, None)).await,
            Server::Layered => {
                let conn = TimeWaitLayer::new().layer(socket);
                write_and_end(&mut EndStamp::new(conn, ended, None)).await
            }
            Server::AbortAtOnce => {
                let conn = TimeWaitLayer::with_linger(Duration::from_millis(0)).layer(socket);
                write_and_end(&mut EndStamp::new(conn, ended, None)).await
            }
        }
    }

    /// [`Server::serve`]; with `vanish`, the peer vanishes when the server ends the
    /// connection.
    pub async fn serve_vanishing(
        self,
        socket: &mut TcpSocket<'_>,
        ended: &Stamp,
        vanish: Option<Net>,
    ) {
        let routes = Routes::new();
        match self {
            Server::Raw => {
                responder::serve(&mut EndStamp::new(socket, ended, vanish), &routes).await;
            }
            Server::Layered => {
                let conn = TimeWaitLayer::new().layer(socket);
                responder::serve(&mut EndStamp::new(conn, ended, vanish), &routes).await;
            }
            Server::AbortAtOnce => {
                let conn = TimeWaitLayer::with_linger(Duration::from_millis(0)).layer(socket);
                responder::serve(&mut EndStamp::new(conn, ended, vanish), &routes).await;
            }
        }
    }
}

/// A server that writes its response and closes without a flush of its own (as many
/// hand-written handlers do): reads one request head, writes a `Connection: close`
/// response of `/bytes/<n>` (head, then body in one `write_all`), then `end`. Up to
/// a transmit buffer of the body is still unacknowledged when `end` starts.
pub async fn write_and_end<C: Connection>(conn: &mut C) {
    let mut head = [0u8; 512];
    let mut filled = 0;
    while !head[..filled].windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut head[filled..]).await {
            Ok(0) | Err(_) => return conn.end(CloseReason::PeerReset).await,
            Ok(n) => filled += n,
        }
    }
    let text = std::str::from_utf8(&head[..filled]).unwrap_or("");
    let path = text.split(' ').nth(1).unwrap_or("/");
    let body = responder::body_of(path, &Routes::new()).unwrap_or_default();
    let response_head = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let written = async {
        conn.write_all(response_head.as_bytes()).await?;
        conn.write_all(&body).await
    };
    let reason = match written.await {
        Ok(()) => CloseReason::LocalClose,
        Err(_) => CloseReason::ClientCancelled,
    };
    conn.end(reason).await;
}

/// What the client does once it has the whole response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum After {
    /// Reads the server's FIN, then closes its side (what a browser does).
    Close,
    /// Stays connected and silent: never sends its FIN (a client that keeps the
    /// socket open, a half-dead app).
    StaySilent,
}

/// What a [`close_request`] client saw.
#[derive(Clone, Copy, Debug)]
pub struct ClientSaw {
    pub response: Result<Response, ClientError>,
    /// How the server ended the connection after the response.
    pub end: Option<PeerEnd>,
}

/// Connects, sends `GET path` with `Connection: close`, reads the whole response, then
/// does what `after` says; a silent client keeps its socket for `hold`.
pub async fn close_request(
    stack: Stack<'static>,
    server: std::net::SocketAddr,
    path: &str,
    after: After,
    hold: Duration,
) -> ClientSaw {
    let options = ClientOptions::new().with_request_timeout(Duration::from_secs(30));
    let mut buffers = ClientBuffers::new(&options);
    let mut session = Session::connect(stack, &mut buffers, server, options)
        .await
        .expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: device\r\nConnection: close\r\n\r\n");
    let response = session.request(request.as_bytes()).await;
    if response.is_err() {
        return ClientSaw {
            response,
            end: None,
        };
    }
    match after {
        After::Close => {
            let end = session.wait_server_end(Duration::from_secs(30)).await;
            session.close().await;
            ClientSaw {
                response,
                end: Some(end),
            }
        }
        After::StaySilent => {
            // Keeps the socket, reading nothing: its stack still acknowledges the
            // server's FIN, the application never closes.
            Timer::after(hold).await;
            drop(session);
            ClientSaw {
                response,
                end: None,
            }
        }
    }
}

/// Polls `socket`'s state every millisecond until it holds no connection; the moment
/// it was seen free, or `None` after `max`.
pub async fn wait_free(socket: &TcpSocket<'_>, max: Duration) -> Option<Instant> {
    let deadline = Instant::now() + max;
    loop {
        let state: tcp_layers_core::TcpState = socket.state().into();
        if state.is_free() {
            return Some(Instant::now());
        }
        if Instant::now() >= deadline {
            return None;
        }
        Timer::after(Duration::from_millis(1)).await;
    }
}

/// Milliseconds with three decimals, for the printed figures.
pub fn ms(d: Option<Duration>) -> String {
    match d {
        Some(d) => format!("{:.3} ms", d.as_micros() as f64 / 1000.0),
        None => format!("never (gave up after {} s)", GIVE_UP.as_secs()),
    }
}
