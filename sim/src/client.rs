//! Scripted clients on client hosts: well-behaved ones (a single GET, a keep-alive
//! session, a browser loading a page over 6 connections, an SSE reader) and the ones
//! that hurt embedded servers (a cancel mid-transfer, a peer that vanishes, slowloris,
//! a reader that stops reading, a silent connection, garbage).
//!
//! Every figure is virtual time. Buffers live inside the client's future: nothing leaks
//! per connection.
use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::net::{SocketAddr, SocketAddrV4};
use std::rc::Rc;
use std::task::{Poll, Waker};

use embassy_futures::select::{Either, select};
use embassy_net::Stack;
use embassy_net::tcp::{ConnectError, TcpSocket};
use embassy_time::{Duration, Instant, Timer, with_deadline, with_timeout};
use embedded_io_async::Write;
use tcp_layers_core::TcpState;

use crate::executor::{JoinHandle, spawn};
use crate::net::Net;
use crate::responder::{Checksum, Routes};

/// Settings shared by the clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientOptions {
    /// Receive buffer (and so the largest window the client advertises), bytes. Default
    /// 16384: a desktop browser's window is larger still, but this keeps the server's
    /// side the bottleneck as it is with an ESP32.
    pub rx_buffer: usize,
    /// Transmit buffer, bytes. Default 2048: requests are small.
    pub tx_buffer: usize,
    /// How long a connect may take before [`ClientError::ConnectTimeout`]. Default 10 s.
    pub connect_timeout: Duration,
    /// How long one request may take, from its first byte written to the response's
    /// last byte read, before [`ClientError::Timeout`]. Default 10 s.
    pub request_timeout: Duration,
}

impl ClientOptions {
    /// The defaults listed on each field.
    pub const fn new() -> Self {
        Self {
            rx_buffer: 16384,
            tx_buffer: 2048,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
        }
    }

    /// The same with another request timeout.
    pub const fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The same with another receive buffer.
    pub const fn with_rx_buffer(mut self, bytes: usize) -> Self {
        self.rx_buffer = bytes;
        self
    }
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self::new()
    }
}

/// What went wrong with a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientError {
    /// The SYN was answered with RST: no socket was listening.
    Refused,
    /// No answer to the SYN within the connect timeout.
    ConnectTimeout,
    /// The server reset the connection after `received` bytes of this response.
    Reset {
        /// Response bytes (head included) received before the RST.
        received: usize,
    },
    /// The server closed (FIN) before the response was complete.
    Closed {
        /// Response bytes (head included) received before the FIN.
        received: usize,
    },
    /// The response was not complete within the request timeout.
    Timeout {
        /// Response bytes (head included) received in time.
        received: usize,
    },
    /// The response head could not be parsed.
    BadResponse,
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Refused => f.write_str("connection refused (RST to SYN)"),
            Self::ConnectTimeout => f.write_str("connect timed out"),
            Self::Reset { received } => write!(f, "reset after {received} bytes"),
            Self::Closed { received } => write!(f, "closed after {received} bytes"),
            Self::Timeout { received } => write!(f, "timed out after {received} bytes"),
            Self::BadResponse => f.write_str("unparsable response"),
        }
    }
}

impl std::error::Error for ClientError {}

/// One complete response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Body bytes received.
    pub body_len: usize,
    /// FNV-1a of the body ([`responder::checksum`](crate::responder::checksum)).
    pub checksum: u64,
    /// From the request's first byte written to the response's first byte read.
    pub time_to_first_byte: Duration,
    /// From the request's first byte written to the response's last byte read.
    pub time_to_last_byte: Duration,
    /// The server announced `Connection: close`.
    pub server_closes: bool,
}

/// The buffers of one client connection; a [`Session`] borrows them.
pub struct ClientBuffers {
    rx: Vec<u8>,
    tx: Vec<u8>,
}

impl ClientBuffers {
    /// Buffers sized as `options` says.
    pub fn new(options: &ClientOptions) -> Self {
        Self {
            rx: vec![0; options.rx_buffer],
            tx: vec![0; options.tx_buffer],
        }
    }
}

/// How the server ended a connection the client was holding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerEnd {
    /// The server sent FIN.
    Fin,
    /// The server sent RST.
    Reset,
    /// The client gave up waiting; the server still holds the connection.
    StillOpen,
}

/// One keep-alive connection to the server, for sequential requests.
pub struct Session<'a> {
    socket: TcpSocket<'a>,
    options: ClientOptions,
    /// Bytes read past the end of the last response.
    pending: Vec<u8>,
    /// When the connection was established.
    pub connected_at: Instant,
}

/// The stack is IPv4 only (smoltcp has no `From<SocketAddr>` without IPv6).
fn endpoint(addr: SocketAddr) -> SocketAddrV4 {
    match addr {
        SocketAddr::V4(v4) => v4,
        SocketAddr::V6(_) => panic!("the simulated network is IPv4 only"),
    }
}

fn map_connect(e: ConnectError) -> ClientError {
    match e {
        ConnectError::ConnectionReset => ClientError::Refused,
        ConnectError::TimedOut | ConnectError::NoRoute | ConnectError::InvalidState => {
            ClientError::ConnectTimeout
        }
    }
}

impl<'a> Session<'a> {
    /// Connects to `server`.
    pub async fn connect(
        stack: Stack<'static>,
        buffers: &'a mut ClientBuffers,
        server: SocketAddr,
        options: ClientOptions,
    ) -> Result<Session<'a>, ClientError> {
        let mut socket = TcpSocket::new(stack, &mut buffers.rx, &mut buffers.tx);
        match with_timeout(options.connect_timeout, socket.connect(endpoint(server))).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(map_connect(e)),
            Err(_) => {
                socket.abort();
                let _ = with_timeout(Duration::from_millis(100), socket.flush()).await;
                return Err(ClientError::ConnectTimeout);
            }
        }
        Ok(Session {
            socket,
            options,
            pending: Vec::new(),
            connected_at: Instant::now(),
        })
    }

    /// The socket, for what the session does not offer.
    pub fn socket(&mut self) -> &mut TcpSocket<'a> {
        &mut self.socket
    }

    /// The TCP state of the client's socket.
    pub fn state(&self) -> TcpState {
        self.socket.state().into()
    }

    /// The client's own address.
    pub fn local(&self) -> Option<SocketAddr> {
        self.socket.local_endpoint().map(Into::into)
    }

    /// Sends `GET path` and reads the whole response.
    pub async fn get(&mut self, path: &str) -> Result<Response, ClientError> {
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: device\r\nConnection: keep-alive\r\n\r\n");
        self.request(request.as_bytes()).await
    }

    /// Sends `request` (a whole request head) and reads the whole response.
    pub async fn request(&mut self, request: &[u8]) -> Result<Response, ClientError> {
        let t0 = Instant::now();
        let deadline = t0 + self.options.request_timeout;
        match with_deadline(deadline, self.socket.write_all(request)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(ClientError::Reset { received: 0 }),
            Err(_) => return Err(ClientError::Timeout { received: 0 }),
        }
        let _ = with_deadline(deadline, self.socket.flush()).await;
        self.read_response(t0, deadline).await
    }

    async fn read_more(&mut self, deadline: Instant, received: usize) -> Result<(), ClientError> {
        let mut chunk = [0u8; 2048];
        match with_deadline(deadline, self.socket.read(&mut chunk)).await {
            Ok(Ok(0)) => Err(ClientError::Closed { received }),
            Ok(Ok(n)) => {
                self.pending.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Ok(Err(_)) => Err(ClientError::Reset { received }),
            Err(_) => Err(ClientError::Timeout { received }),
        }
    }

    async fn read_response(
        &mut self,
        t0: Instant,
        deadline: Instant,
    ) -> Result<Response, ClientError> {
        let mut first_byte: Option<Instant> = None;
        // Head.
        let head_end = loop {
            if let Some(p) = self.pending.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            let received = self.pending.len();
            self.read_more(deadline, received).await?;
            first_byte.get_or_insert_with(Instant::now);
        };
        let first_byte = first_byte.unwrap_or_else(Instant::now);
        let head =
            std::str::from_utf8(&self.pending[..head_end]).map_err(|_| ClientError::BadResponse)?;
        let status: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or(ClientError::BadResponse)?;
        let mut content_length = None;
        let mut server_closes = false;
        for line in head.split("\r\n").skip(1) {
            if let Some((k, v)) = line.split_once(':') {
                let (k, v) = (k.trim(), v.trim());
                if k.eq_ignore_ascii_case("content-length") {
                    content_length = v.parse::<usize>().ok();
                } else if k.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("close") {
                    server_closes = true;
                }
            }
        }
        self.pending.drain(..head_end);
        // Body: Content-Length bytes, or up to the server's FIN.
        let mut sum = Checksum::new();
        let mut body_len = 0;
        loop {
            let want = content_length.map_or(usize::MAX, |n| n - body_len);
            let take = want.min(self.pending.len());
            sum.update(&self.pending[..take]);
            self.pending.drain(..take);
            body_len += take;
            if Some(body_len) == content_length {
                break;
            }
            match self.read_more(deadline, head_end + body_len).await {
                Ok(()) => {}
                Err(ClientError::Closed { .. }) if content_length.is_none() => break,
                Err(e) => return Err(e),
            }
        }
        let now = Instant::now();
        Ok(Response {
            status,
            body_len,
            checksum: sum.finish(),
            time_to_first_byte: first_byte - t0,
            time_to_last_byte: now - t0,
            server_closes,
        })
    }

    /// Waits, without sending, until the server ends the connection or `max` passes.
    /// Data the server sends meanwhile is read and dropped.
    pub async fn wait_server_end(&mut self, max: Duration) -> PeerEnd {
        let deadline = Instant::now() + max;
        let mut chunk = [0u8; 1024];
        loop {
            match with_deadline(deadline, self.socket.read(&mut chunk)).await {
                Ok(Ok(0)) => return PeerEnd::Fin,
                Ok(Ok(_)) => {}
                Ok(Err(_)) => return PeerEnd::Reset,
                Err(_) => return PeerEnd::StillOpen,
            }
        }
    }

    /// Closes politely: FIN, then waits (at most 1 s) until it is acknowledged.
    pub async fn close(mut self) {
        self.socket.close();
        let _ = with_timeout(Duration::from_secs(1), self.socket.flush()).await;
    }

    /// Resets the connection (RST) and waits until the RST is out.
    pub async fn abort(mut self) {
        self.socket.abort();
        let _ = self.socket.flush().await;
    }
}

/// `GET path` on a new connection, then a polite close.
pub async fn get(
    stack: Stack<'static>,
    server: SocketAddr,
    path: &str,
) -> Result<Response, ClientError> {
    get_with(stack, server, path, ClientOptions::new()).await
}

/// [`get`] with options.
pub async fn get_with(
    stack: Stack<'static>,
    server: SocketAddr,
    path: &str,
    options: ClientOptions,
) -> Result<Response, ClientError> {
    let mut buffers = ClientBuffers::new(&options);
    let mut session = Session::connect(stack, &mut buffers, server, options).await?;
    let r = session.get(path).await;
    session.close().await;
    r
}

/// One connection, the `paths` requested one after the other, then a polite close. A
/// failed connect fails every request with the same error; after a failed request the
/// rest are not sent and report the same error.
pub async fn keep_alive(
    stack: Stack<'static>,
    server: SocketAddr,
    paths: &[&str],
) -> Vec<Result<Response, ClientError>> {
    keep_alive_with(stack, server, paths, ClientOptions::new()).await
}

/// [`keep_alive`] with options.
pub async fn keep_alive_with(
    stack: Stack<'static>,
    server: SocketAddr,
    paths: &[&str],
    options: ClientOptions,
) -> Vec<Result<Response, ClientError>> {
    let mut buffers = ClientBuffers::new(&options);
    let mut session = match Session::connect(stack, &mut buffers, server, options).await {
        Ok(s) => s,
        Err(e) => return paths.iter().map(|_| Err(e)).collect(),
    };
    let mut results = Vec::with_capacity(paths.len());
    for path in paths {
        match results.last() {
            Some(Err(e)) => results.push(Err(*e)),
            _ => results.push(session.get(path).await),
        }
    }
    session.close().await;
    results
}

/// A one-shot flag tasks can wait on.
#[derive(Default)]
struct Flag {
    set: Cell<bool>,
    waiters: RefCell<Vec<Waker>>,
}

impl Flag {
    fn raise(&self) {
        self.set.set(true);
        for w in self.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }
    async fn wait(&self) {
        poll_fn(|cx| {
            if self.set.get() {
                Poll::Ready(())
            } else {
                self.waiters.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}

/// A page as a browser loads it: the document, then its resources.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    /// The document's path, loaded first.
    pub document: String,
    /// The resources' paths, loaded once the document is in.
    pub resources: Vec<String>,
    /// Parallel connections. Default 6: what desktop browsers open per host.
    pub connections: usize,
}

impl Page {
    /// The page [`responder::serve`](crate::responder::serve) serves: `/` and
    /// `/r/1..=routes.resources`, over 6 connections.
    pub fn new(routes: &Routes) -> Self {
        Self {
            document: "/".into(),
            resources: (1..=routes.resources).map(|k| format!("/r/{k}")).collect(),
            connections: 6,
        }
    }

    /// The same page over `n` parallel connections.
    pub fn with_connections(mut self, n: usize) -> Self {
        self.connections = n;
        self
    }
}

impl Default for Page {
    fn default() -> Self {
        Self::new(&Routes::new())
    }
}

/// What the browser does with its connections once the page is loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterLoad {
    /// Keeps them open and idle (as browsers do for minutes) until
    /// [`IdleConnections::close`] or the handle is dropped. A connection the server
    /// closes meanwhile is closed by the browser too.
    StayIdle,
    /// Closes them (FIN) right away.
    Close,
}

struct BrowserShared {
    document_loaded: Flag,
    release: Flag,
    loaded: Cell<usize>,
    all_loaded: Flag,
    results: RefCell<Vec<Result<Response, ClientError>>>,
    open: Cell<usize>,
    closed_by_server: Cell<usize>,
    reset_by_server: Cell<usize>,
}

/// The browser's connections after the page load.
pub struct IdleConnections {
    shared: Rc<BrowserShared>,
    tasks: Vec<JoinHandle<()>>,
}

impl IdleConnections {
    /// Connections still open on the browser's side.
    pub fn open(&self) -> usize {
        self.shared.open.get()
    }

    /// Connections the server ended with FIN while they were idle.
    pub fn closed_by_server(&self) -> usize {
        self.shared.closed_by_server.get()
    }

    /// Connections the server ended with RST while they were idle.
    pub fn reset_by_server(&self) -> usize {
        self.shared.reset_by_server.get()
    }

    /// Closes every connection (FIN) and waits until the browser is done with them.
    pub async fn close(mut self) {
        self.shared.release.raise();
        for t in std::mem::take(&mut self.tasks) {
            let _ = t.await;
        }
    }
}

impl Drop for IdleConnections {
    fn drop(&mut self) {
        self.shared.release.raise();
    }
}

/// The result of [`browser`].
pub struct PageLoad {
    /// The document and every resource loaded with status 200.
    pub ok: bool,
    /// Resources (document excluded) loaded with status 200.
    pub resources_ok: usize,
    /// From the browser's start to its last response.
    pub elapsed: Duration,
    /// Every failed request.
    pub errors: Vec<ClientError>,
    /// The connections, open or closed as `after` said.
    pub connections: IdleConnections,
}

/// A browser loads `page`: opens `page.connections` connections at once, loads the
/// document on the first, then the resources spread over all of them (resource `k` on
/// connection `k % connections`), keep-alive. Returns once every request finished or
/// failed; the connections then stay idle or close as `after` says.
pub async fn browser(
    stack: Stack<'static>,
    server: SocketAddr,
    page: &Page,
    after: AfterLoad,
) -> PageLoad {
    let start = Instant::now();
    let n = page.connections.max(1);
    let shared = Rc::new(BrowserShared {
        document_loaded: Flag::default(),
        release: Flag::default(),
        loaded: Cell::new(0),
        all_loaded: Flag::default(),
        results: RefCell::new(Vec::new()),
        open: Cell::new(0),
        closed_by_server: Cell::new(0),
        reset_by_server: Cell::new(0),
    });
    let mut work: Vec<Vec<String>> = vec![Vec::new(); n];
    work[0].push(page.document.clone());
    for (k, r) in page.resources.iter().enumerate() {
        work[k % n].push(r.clone());
    }
    let tasks = work
        .into_iter()
        .enumerate()
        .map(|(i, paths)| {
            let shared = shared.clone();
            spawn(browser_connection(
                stack, server, i, paths, after, n, shared,
            ))
        })
        .collect();
    shared.all_loaded.wait().await;
    let results = shared.results.borrow().clone();
    let errors: Vec<ClientError> = results.iter().filter_map(|r| r.err()).collect();
    let expected = 1 + page.resources.len();
    let ok_count = results
        .iter()
        .filter(|r| matches!(r, Ok(resp) if resp.status == 200))
        .count();
    let document_ok = results
        .first()
        .is_some_and(|r| matches!(r, Ok(resp) if resp.status == 200));
    PageLoad {
        ok: ok_count == expected && results.len() == expected,
        resources_ok: ok_count - usize::from(document_ok),
        elapsed: Instant::now() - start,
        errors,
        connections: IdleConnections { shared, tasks },
    }
}

async fn browser_connection(
    stack: Stack<'static>,
    server: SocketAddr,
    index: usize,
    paths: Vec<String>,
    after: AfterLoad,
    connections: usize,
    shared: Rc<BrowserShared>,
) {
    let report = |shared: &BrowserShared, r: Result<Response, ClientError>, is_document: bool| {
        // The document's result goes first so PageLoad can find it.
        if is_document {
            shared.results.borrow_mut().insert(0, r);
            shared.document_loaded.raise();
        } else {
            shared.results.borrow_mut().push(r);
        }
    };
    let done = |shared: &BrowserShared| {
        shared.loaded.set(shared.loaded.get() + 1);
        if shared.loaded.get() == connections {
            shared.all_loaded.raise();
        }
    };
    let options = ClientOptions::new();
    let mut buffers = ClientBuffers::new(&options);
    let mut session = match Session::connect(stack, &mut buffers, server, options).await {
        Ok(s) => s,
        Err(e) => {
            for (j, _) in paths.iter().enumerate() {
                report(&shared, Err(e), index == 0 && j == 0);
            }
            if index == 0 && paths.is_empty() {
                shared.document_loaded.raise();
            }
            done(&shared);
            return;
        }
    };
    shared.open.set(shared.open.get() + 1);
    let mut failed = None;
    for (j, path) in paths.iter().enumerate() {
        let is_document = index == 0 && j == 0;
        if !is_document {
            shared.document_loaded.wait().await;
        }
        let r = match failed {
            Some(e) => Err(e),
            None => session.get(path).await,
        };
        if let Err(e) = r {
            failed = Some(e);
        }
        report(&shared, r, is_document);
    }
    done(&shared);
    if failed.is_some() {
        session.abort().await;
        shared.open.set(shared.open.get() - 1);
        return;
    }
    if after == AfterLoad::StayIdle {
        let end = {
            let mut chunk = [0u8; 256];
            let read_end = async {
                loop {
                    match session.socket().read(&mut chunk).await {
                        Ok(0) => return PeerEnd::Fin,
                        Ok(_) => {}
                        Err(_) => return PeerEnd::Reset,
                    }
                }
            };
            match select(shared.release.wait(), read_end).await {
                Either::First(()) => PeerEnd::StillOpen,
                Either::Second(end) => end,
            }
        };
        match end {
            PeerEnd::Fin => shared
                .closed_by_server
                .set(shared.closed_by_server.get() + 1),
            PeerEnd::Reset => {
                shared.reset_by_server.set(shared.reset_by_server.get() + 1);
                shared.open.set(shared.open.get() - 1);
                return;
            }
            PeerEnd::StillOpen => {}
        }
    }
    session.close().await;
    shared.open.set(shared.open.get() - 1);
}

/// The result of [`cancel_after`] and [`vanish_after`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interrupted {
    /// Response bytes (head included) read before the client stopped.
    pub received: usize,
    /// The client's address (the endpoint that vanished, for [`vanish_after`]).
    pub local: SocketAddr,
    /// When the client stopped.
    pub at: Instant,
}

/// Reads the response to `GET path` until at least `k_bytes` (head included) are in,
/// or the response ends.
async fn request_and_read(
    session: &mut Session<'_>,
    path: &str,
    k_bytes: usize,
) -> Result<usize, ClientError> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: device\r\n\r\n");
    let deadline = Instant::now() + session.options.request_timeout;
    match with_deadline(deadline, session.socket.write_all(request.as_bytes())).await {
        Ok(Ok(())) => {}
        Ok(Err(_)) => return Err(ClientError::Reset { received: 0 }),
        Err(_) => return Err(ClientError::Timeout { received: 0 }),
    }
    let mut received = 0;
    let mut chunk = [0u8; 512];
    while received < k_bytes {
        let want = (k_bytes - received).min(chunk.len());
        match with_deadline(deadline, session.socket.read(&mut chunk[..want])).await {
            Ok(Ok(0)) => return Err(ClientError::Closed { received }),
            Ok(Ok(n)) => received += n,
            Ok(Err(_)) => return Err(ClientError::Reset { received }),
            Err(_) => return Err(ClientError::Timeout { received }),
        }
    }
    Ok(received)
}

/// A browser cancel: requests `path`, reads `k_bytes` of the response, then resets the
/// connection (RST) and waits until the RST is out.
pub async fn cancel_after(
    stack: Stack<'static>,
    server: SocketAddr,
    path: &str,
    k_bytes: usize,
) -> Result<Interrupted, ClientError> {
    interrupt_after(stack, server, path, k_bytes, Interruption::Reset).await
}

/// A peer that walks away: requests `path`, reads `k_bytes` of the response, then its
/// endpoint vanishes from `net` (no FIN, no RST, no ACK ever again).
pub async fn vanish_after(
    net: &Net,
    stack: Stack<'static>,
    server: SocketAddr,
    path: &str,
    k_bytes: usize,
) -> Result<Interrupted, ClientError> {
    interrupt_after(stack, server, path, k_bytes, Interruption::Vanish(net)).await
}

/// How a client stops in the middle of a response.
enum Interruption<'a> {
    /// An RST, sent before the function returns.
    Reset,
    /// The endpoint vanishes from the net.
    Vanish(&'a Net),
}

async fn interrupt_after(
    stack: Stack<'static>,
    server: SocketAddr,
    path: &str,
    k_bytes: usize,
    interruption: Interruption<'_>,
) -> Result<Interrupted, ClientError> {
    let options = ClientOptions::new();
    let mut buffers = ClientBuffers::new(&options);
    let mut session = Session::connect(stack, &mut buffers, server, options).await?;
    let local = session.local().expect("connected");
    let received = request_and_read(&mut session, path, k_bytes).await?;
    let at = Instant::now();
    match interruption {
        Interruption::Reset => session.abort().await,
        Interruption::Vanish(net) => {
            net.vanish(local);
            // The socket is dropped: the client's stack forgets it and, the endpoint
            // being vanished, nothing it would say reaches the server anyway.
            drop(session);
        }
    }
    Ok(Interrupted {
        received,
        local,
        at,
    })
}

/// How a connection the client held open against the server ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hold {
    /// From the connection's establishment to the server's FIN or RST (or to the
    /// client giving up).
    pub held: Duration,
    /// How it ended.
    pub end: PeerEnd,
    /// Bytes the client sent.
    pub bytes_sent: usize,
    /// Bytes the client received.
    pub bytes_received: usize,
    /// The status of the response the server sent, if any (e.g. 408, 431).
    pub status: Option<u16>,
}

fn status_of(bytes: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(bytes.get(..12)?).ok()?;
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// Reads until FIN, RST or `deadline`, collecting what arrives.
async fn read_until_end(
    socket: &mut TcpSocket<'_>,
    deadline: Instant,
    into: &mut Vec<u8>,
) -> PeerEnd {
    let mut chunk = [0u8; 1024];
    loop {
        match with_deadline(deadline, socket.read(&mut chunk)).await {
            Ok(Ok(0)) => return PeerEnd::Fin,
            Ok(Ok(n)) => into.extend_from_slice(&chunk[..n]),
            Ok(Err(_)) => return PeerEnd::Reset,
            Err(_) => return PeerEnd::StillOpen,
        }
    }
}

/// Slowloris: sends a request head one byte every `byte_interval` and never finishes
/// it. Reports how long the server kept the connection (gives up after `max`).
pub async fn slowloris(
    stack: Stack<'static>,
    server: SocketAddr,
    byte_interval: Duration,
    max: Duration,
) -> Result<Hold, ClientError> {
    let options = ClientOptions::new();
    let mut buffers = ClientBuffers::new(&options);
    let mut session = Session::connect(stack, &mut buffers, server, options).await?;
    let start = session.connected_at;
    let deadline = start + max;
    let head = b"GET / HTTP/1.1\r\nHost: device\r\nX-Slow: ";
    let mut sent = 0;
    let mut received = Vec::new();
    let mut next = Instant::now();
    let end = loop {
        let byte = head.get(sent).copied().unwrap_or(b'a');
        match session.socket.write_all(&[byte]).await {
            Ok(()) => sent += 1,
            Err(_) => break PeerEnd::Reset,
        }
        next += byte_interval;
        if next > deadline {
            break read_until_end(&mut session.socket, deadline, &mut received).await;
        }
        match read_until_end(&mut session.socket, next, &mut received).await {
            PeerEnd::StillOpen => {}
            end => break end,
        }
    };
    let held = Instant::now() - start;
    let status = status_of(&received);
    let bytes_received = received.len();
    finish(session, end).await;
    Ok(Hold {
        held,
        end,
        bytes_sent: sent,
        bytes_received,
        status,
    })
}

async fn finish(session: Session<'_>, end: PeerEnd) {
    match end {
        PeerEnd::Reset => {}
        PeerEnd::Fin => session.close().await,
        PeerEnd::StillOpen => session.abort().await,
    }
}

/// A reader that stops reading: sends `GET path` with a 1024-byte receive buffer and
/// never reads, so its window closes and the server's send stalls. Watches its socket's
/// state every 10 ms (reading would open the window) and reports when the server reset
/// or closed it (gives up after `max`).
pub async fn slow_reader(
    stack: Stack<'static>,
    server: SocketAddr,
    path: &str,
    max: Duration,
) -> Result<Hold, ClientError> {
    let options = ClientOptions::new().with_rx_buffer(1024);
    let mut buffers = ClientBuffers::new(&options);
    let mut session = Session::connect(stack, &mut buffers, server, options).await?;
    let start = session.connected_at;
    let request = format!("GET {path} HTTP/1.1\r\nHost: device\r\n\r\n");
    if session.socket.write_all(request.as_bytes()).await.is_err() {
        return Err(ClientError::Reset { received: 0 });
    }
    let deadline = start + max;
    let end = loop {
        match session.state() {
            TcpState::Closed => break PeerEnd::Reset,
            TcpState::CloseWait => break PeerEnd::Fin,
            _ => {}
        }
        if Instant::now() >= deadline {
            break PeerEnd::StillOpen;
        }
        Timer::after(Duration::from_millis(10)).await;
    };
    let held = Instant::now() - start;
    let bytes_received = session.socket.recv_queue();
    finish(session, end).await;
    Ok(Hold {
        held,
        end,
        bytes_sent: request.len(),
        bytes_received,
        status: None,
    })
}

/// Connects and sends nothing. Reports when the server ended the connection (gives up
/// after `max`).
pub async fn silent(
    stack: Stack<'static>,
    server: SocketAddr,
    max: Duration,
) -> Result<Hold, ClientError> {
    send_and_hold(stack, server, &[], max).await
}

/// Sends `n_bytes` of junk without a line end, then waits for the server to answer or
/// end the connection (gives up after `max`).
pub async fn garbage(
    stack: Stack<'static>,
    server: SocketAddr,
    n_bytes: usize,
    max: Duration,
) -> Result<Hold, ClientError> {
    let junk: Vec<u8> = (0..n_bytes).map(|i| b'A' + (i % 26) as u8).collect();
    send_and_hold(stack, server, &junk, max).await
}

async fn send_and_hold(
    stack: Stack<'static>,
    server: SocketAddr,
    bytes: &[u8],
    max: Duration,
) -> Result<Hold, ClientError> {
    let options = ClientOptions::new();
    let mut buffers = ClientBuffers::new(&options);
    let mut session = Session::connect(stack, &mut buffers, server, options).await?;
    let start = session.connected_at;
    let deadline = start + max;
    let mut received = Vec::new();
    let mut sent = 0;
    let mut end = None;
    for chunk in bytes.chunks(512) {
        match with_deadline(deadline, session.socket.write_all(chunk)).await {
            Ok(Ok(())) => sent += chunk.len(),
            Ok(Err(_)) => {
                end = Some(PeerEnd::Reset);
                break;
            }
            Err(_) => {
                end = Some(PeerEnd::StillOpen);
                break;
            }
        }
    }
    let end = match end {
        Some(end) => end,
        None => read_until_end(&mut session.socket, deadline, &mut received).await,
    };
    let held = Instant::now() - start;
    let status = status_of(&received);
    let bytes_received = received.len();
    finish(session, end).await;
    Ok(Hold {
        held,
        end,
        bytes_sent: sent,
        bytes_received,
        status,
    })
}

/// The result of [`sse`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SseOutcome {
    /// The response status.
    pub status: u16,
    /// Events received.
    pub events: usize,
    /// From the request to the last event (or the end).
    pub elapsed: Duration,
    /// `StillOpen` when the client read its `events` and closed; otherwise how the
    /// server ended the stream early.
    pub end: PeerEnd,
}

/// Opens `/sse` and reads `events` events (or until the server ends it or `max`
/// passes), then closes.
pub async fn sse(
    stack: Stack<'static>,
    server: SocketAddr,
    events: usize,
    max: Duration,
) -> Result<SseOutcome, ClientError> {
    let options = ClientOptions::new();
    let mut buffers = ClientBuffers::new(&options);
    let mut session = Session::connect(stack, &mut buffers, server, options).await?;
    let t0 = Instant::now();
    let deadline = t0 + max;
    let request = b"GET /sse HTTP/1.1\r\nHost: device\r\nAccept: text/event-stream\r\n\r\n";
    if session.socket.write_all(request).await.is_err() {
        return Err(ClientError::Reset { received: 0 });
    }
    let mut buf = Vec::new();
    let mut chunk = [0u8; 512];
    let mut status = None;
    let mut seen = 0;
    let end = loop {
        if status.is_none()
            && let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n")
        {
            status = Some(status_of(&buf).ok_or(ClientError::BadResponse)?);
            buf.drain(..p + 4);
        }
        if status.is_some() {
            while let Some(p) = buf.windows(2).position(|w| w == b"\n\n") {
                buf.drain(..p + 2);
                seen += 1;
            }
            if seen >= events {
                break PeerEnd::StillOpen;
            }
        }
        match with_deadline(deadline, session.socket.read(&mut chunk)).await {
            Ok(Ok(0)) => break PeerEnd::Fin,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Ok(Err(_)) => break PeerEnd::Reset,
            Err(_) => break PeerEnd::StillOpen,
        }
    };
    let elapsed = Instant::now() - t0;
    match end {
        PeerEnd::Reset => {}
        _ => session.close().await,
    }
    Ok(SseOutcome {
        status: status.ok_or(ClientError::Closed {
            received: buf.len(),
        })?,
        events: seen,
        elapsed,
        end,
    })
}
