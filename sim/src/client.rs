//! Scripted clients on client hosts: well-behaved ones (a single GET, a keep-alive
//! session, a browser loading a page over 6 connections, a browser keeping a camera page
//! busy with its EventSource, an SSE reader) and the ones that hurt embedded servers (a
//! cancel mid-transfer, a peer that vanishes, slowloris, slowhttptest's slow headers, a
//! reader that stops reading, a silent connection, garbage).
//!
//! Every figure is virtual time. Buffers live inside the client's future: nothing leaks
//! per connection.
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
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

    /// The same with another connect timeout.
    pub const fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
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

/// A parsed response head.
struct Head {
    status: u16,
    content_length: Option<usize>,
    server_closes: bool,
    /// `Content-Type: text/event-stream`.
    event_stream: bool,
    first_byte: Instant,
    /// Bytes of the head, its blank line included.
    head_len: usize,
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

    /// Reads more bytes into `pending`; `deadline` `None` waits as long as the
    /// connection lives.
    async fn read_more(
        &mut self,
        deadline: Option<Instant>,
        received: usize,
    ) -> Result<(), ClientError> {
        let mut chunk = [0u8; 2048];
        let read = self.socket.read(&mut chunk);
        let result = match deadline {
            Some(deadline) => with_deadline(deadline, read).await,
            None => Ok(read.await),
        };
        match result {
            Ok(Ok(0)) => Err(ClientError::Closed { received }),
            Ok(Ok(n)) => {
                self.pending.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Ok(Err(_)) => Err(ClientError::Reset { received }),
            Err(_) => Err(ClientError::Timeout { received }),
        }
    }

    /// Reads and parses a response head; the bytes after it stay in `pending`.
    async fn read_head(&mut self, deadline: Option<Instant>) -> Result<Head, ClientError> {
        let mut first_byte: Option<Instant> = None;
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
        let mut parsed = Head {
            status,
            content_length: None,
            server_closes: false,
            event_stream: false,
            first_byte,
            head_len: head_end,
        };
        for line in head.split("\r\n").skip(1) {
            if let Some((k, v)) = line.split_once(':') {
                let (k, v) = (k.trim(), v.trim());
                if k.eq_ignore_ascii_case("content-length") {
                    parsed.content_length = v.parse::<usize>().ok();
                } else if k.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("close") {
                    parsed.server_closes = true;
                } else if k.eq_ignore_ascii_case("content-type") {
                    let essence = v.split(';').next().unwrap_or("").trim();
                    parsed.event_stream = essence.eq_ignore_ascii_case("text/event-stream");
                }
            }
        }
        self.pending.drain(..head_end);
        Ok(parsed)
    }

    async fn read_response(
        &mut self,
        t0: Instant,
        deadline: Instant,
    ) -> Result<Response, ClientError> {
        let Head {
            status,
            content_length,
            server_closes,
            first_byte,
            head_len,
            ..
        } = self.read_head(Some(deadline)).await?;
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
            match self.read_more(Some(deadline), head_len + body_len).await {
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

/// `GET path` on a new connection that must be done within `max`, connect included,
/// then a polite close: what `curl -m <max>` does, the way tests/real_network.py's
/// second device and legitimate client ask. A refused connect fails at once, as curl's
/// does.
pub async fn get_within(
    stack: Stack<'static>,
    server: SocketAddr,
    path: &str,
    max: Duration,
) -> Result<Response, ClientError> {
    let deadline = Instant::now() + max;
    let options = ClientOptions::new().with_connect_timeout(max);
    let mut buffers = ClientBuffers::new(&options);
    let mut session = Session::connect(stack, &mut buffers, server, options).await?;
    session.options.request_timeout = deadline.saturating_duration_since(Instant::now());
    let r = session.get(path).await;
    match r {
        // curl exits with the answer half read: its socket closes with data unread,
        // which is an RST.
        Err(ClientError::Timeout { .. }) => session.abort().await,
        _ => session.close().await,
    }
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
    fn is_raised(&self) -> bool {
        self.set.get()
    }
    async fn wait(&self) {
        poll_fn(|cx| {
            if self.set.get() {
                Poll::Ready(())
            } else {
                register(&self.waiters, cx.waker());
                Poll::Pending
            }
        })
        .await
    }
}

/// Adds `waker` to `waiters` unless it is there already: a future polled on every
/// packet of a long transfer must not add one per poll.
fn register(waiters: &RefCell<Vec<Waker>>, waker: &Waker) {
    let mut waiters = waiters.borrow_mut();
    if !waiters.iter().any(|w| w.will_wake(waker)) {
        waiters.push(waker.clone());
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
///
/// This browser goes quiet once its page is in. A page that keeps the browser's
/// connections busy (tiles loading frames back to back, an EventSource opened during
/// that burst), as real pages do, is [`camera_page`].
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

// ---------------------------------------------------------------------------------------
// A browser's connections to one host, as Chromium uses them. Fitted to headless
// Chromium against embassy-net over a TAP device (tests/real_network.sh, README "Run
// your embassy server on your PC"), where a page with 6 busy tiles and an EventSource
// behaved as modelled here and as `browser` above does not; each rule is measured by
// tests/browser_model.py (named figures below), which CI runs against headless
// Chromium and compares with these constants.

/// The most connections a browser keeps to one host: 6, Chromium's HTTP/1.1 limit per
/// host. Measured with headless Chromium against embassy-net over a TAP device
/// (tests/real_network.sh): a page with images keeps up to 6 connections busy, back to
/// back, and its EventSource counts against the same 6. tests/browser_model.py:
/// `peak_connections` 6 (12 slow images), `peak_connections_beside_a_stream` 5 (the
/// same with the page's EventSource open), `requests_per_connection` 2.0 (keep-alive
/// reuse).
pub const CONNECTIONS_PER_HOST: usize = 6;

/// How long an EventSource waits before it reconnects when the server has sent no
/// `retry:` field: 3 s, Chromium's default reconnection time. tests/browser_model.py:
/// `event_source_retry_ms` about 3000 (a stream that ended), and
/// `event_source_retry_after_reset_ms` about 3000 (a reset before any answer).
pub const EVENT_SOURCE_RETRY: Duration = Duration::from_secs(3);

/// How often the browser sweeps its idle connections, closing those the server has
/// closed: every 10 s, the cleanup timer of Chromium's socket pool. Until that sweep,
/// or until the browser picks the connection for a request, a server's FIN on an idle
/// connection stays unanswered (measured with headless Chromium against embassy-net
/// over a TAP device, tests/real_network.sh: an eviction that waits for the peer's FIN
/// waits out its whole linger).
pub const IDLE_SWEEP: Duration = Duration::from_secs(10);

/// How a [`ConnectionPool`] uses its connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolConfig {
    /// Connections open at once, at most. Default [`CONNECTIONS_PER_HOST`].
    pub max_connections: usize,
    /// Buffers and timeouts of each connection; a stream has no request timeout.
    pub client: ClientOptions,
    /// How often idle connections the server closed are closed. Default
    /// [`IDLE_SWEEP`].
    pub idle_sweep: Duration,
}

impl PoolConfig {
    /// The defaults listed on each field.
    pub const fn new() -> Self {
        Self {
            max_connections: CONNECTIONS_PER_HOST,
            client: ClientOptions::new(),
            idle_sweep: IDLE_SWEEP,
        }
    }
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// What a [`ConnectionPool`] did so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Connections open now (connecting included).
    pub open: usize,
    /// The most connections open at once.
    pub peak_open: usize,
    /// Connections established.
    pub opened: usize,
    /// Connects that failed (refused, timed out).
    pub connect_errors: usize,
    /// Requests sent again on a new connection because the reused one ended before
    /// any byte of the answer.
    pub retried: usize,
    /// Server FINs noticed on idle connections and left unanswered until the
    /// connection was picked for a request or swept.
    pub fins_unanswered: usize,
}

/// A browser's connections to one host: at most `max_connections` open, reused while
/// the server keeps them alive, and a queue of requests, each dispatched first come
/// first served to an idle connection or, below the limit, a new one; measured with
/// headless Chromium against embassy-net over a TAP device (tests/real_network.sh):
///
/// - a request waits in the queue while every connection is busy: a page with 6 tiles
///   and an EventSource serves them on 6 connections, the 7th waits for a free one;
/// - an idle connection the server closed (FIN) stays half open: the browser closes it
///   only when it picks it for a request (the request then goes to a new connection)
///   or at the next [`PoolConfig::idle_sweep`];
/// - a request on a reused connection that ends before any byte of the answer is sent
///   again once, on a new connection (tests/browser_model.py: `retried_on_reused_reset`
///   1, `fetch_ok_after_reset` 1);
/// - a failed connect fails the request at the head of the queue.
///
/// Requests and streams go through [`ConnectionPool::get`] and
/// [`ConnectionPool::event_source`]. [`ConnectionPool::close`] closes every connection
/// (FIN; a transfer in flight is reset, as closing a socket with unread data does).
pub struct ConnectionPool {
    inner: Rc<PoolInner>,
}

struct PoolInner {
    stack: Stack<'static>,
    server: SocketAddr,
    config: PoolConfig,
    started: Instant,
    queue: RefCell<VecDeque<Job>>,
    /// Connections connecting, their first job not yet taken.
    connecting: Cell<usize>,
    /// Connections waiting for a job.
    idle: Cell<usize>,
    /// Idle connections to wake when a job arrives or the pool closes.
    waiters: RefCell<Vec<Waker>>,
    closed: Flag,
    stats: Cell<PoolStats>,
    connections: RefCell<Vec<JoinHandle<()>>>,
}

/// A request waiting for a connection.
enum Job {
    Get {
        path: String,
        retried: bool,
        reply: Rc<Reply<Result<Response, ClientError>>>,
    },
    Stream {
        path: String,
        retried: bool,
        source: Rc<SourceShared>,
        reply: Rc<Reply<StreamEnd>>,
    },
}

impl Job {
    fn fail(self, e: ClientError) {
        match self {
            Job::Get { reply, .. } => reply.send(Err(e)),
            Job::Stream { reply, .. } => reply.send(StreamEnd::NetworkError),
        }
    }
}

/// One answer from a connection task to the task that queued the request.
struct Reply<T> {
    value: Cell<Option<T>>,
    waker: RefCell<Option<Waker>>,
}

impl<T> Reply<T> {
    fn new() -> Rc<Self> {
        Rc::new(Self {
            value: Cell::new(None),
            waker: RefCell::new(None),
        })
    }

    fn send(&self, value: T) {
        self.value.set(Some(value));
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }

    async fn wait(&self) -> T {
        poll_fn(|cx| match self.value.take() {
            Some(v) => Poll::Ready(v),
            None => {
                *self.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}

/// How an EventSource request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StreamEnd {
    /// No answer (refused, reset, closed before the head), or a stream reset.
    NetworkError,
    /// A 200 event stream the server closed (FIN).
    Closed,
    /// An answer other than 200 `text/event-stream`: the source gives up.
    Refused(u16),
    /// The pool closed.
    Shutdown,
}

/// How a connection task ends its connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ConnectionEnd {
    /// FIN, as a browser closes a connection it is done with.
    Close,
    /// RST: a transfer in flight is dropped.
    Abort,
    /// The server reset it: nothing left to send.
    Gone,
}

impl PoolInner {
    fn update(&self, f: impl FnOnce(&mut PoolStats)) {
        let mut stats = self.stats.get();
        f(&mut stats);
        stats.peak_open = stats.peak_open.max(stats.open);
        self.stats.set(stats);
    }

    fn wake_idle(&self) {
        for w in self.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }

    /// Queues `job` and finds it a connection.
    fn submit(self: &Rc<Self>, job: Job) {
        self.queue.borrow_mut().push_back(job);
        self.dispatch();
    }

    /// Wakes an idle connection for every queued job and opens new ones, below the
    /// limit, for the jobs no idle or connecting connection will take.
    fn dispatch(self: &Rc<Self>) {
        if self.closed.is_raised() {
            return;
        }
        if !self.queue.borrow().is_empty() {
            self.wake_idle();
        }
        while self.queue.borrow().len() > self.idle.get() + self.connecting.get()
            && self.stats.get().open < self.config.max_connections
        {
            self.update(|s| s.open += 1);
            self.connecting.set(self.connecting.get() + 1);
            let task = spawn(connection_task(self.clone()));
            let mut connections = self.connections.borrow_mut();
            connections.retain(|t| !t.is_finished());
            connections.push(task);
        }
    }
}

impl ConnectionPool {
    /// A pool of connections from `stack` to `server`, none open yet.
    pub fn new(stack: Stack<'static>, server: SocketAddr, config: PoolConfig) -> Self {
        Self {
            inner: Rc::new(PoolInner {
                stack,
                server,
                config,
                started: Instant::now(),
                queue: RefCell::new(VecDeque::new()),
                connecting: Cell::new(0),
                idle: Cell::new(0),
                waiters: RefCell::new(Vec::new()),
                closed: Flag::default(),
                stats: Cell::new(PoolStats::default()),
                connections: RefCell::new(Vec::new()),
            }),
        }
    }

    /// `GET path`, queued until a connection is free.
    pub async fn get(&self, path: &str) -> Result<Response, ClientError> {
        pool_get(&self.inner, path).await
    }

    /// Opens an EventSource on `path`: its request is queued like any other, and it
    /// reconnects or gives up as [`EventSource`] says. It lives until the pool closes.
    pub fn event_source(&self, path: &str) -> EventSource {
        open_event_source(&self.inner, path)
    }

    /// What the pool did so far.
    pub fn stats(&self) -> PoolStats {
        self.inner.stats.get()
    }

    /// Closes every connection and waits until each is closed: idle and streaming ones
    /// with FIN, one with a transfer in flight with RST. Queued requests are dropped.
    pub async fn close(self) {
        close_pool(&self.inner).await;
    }
}

async fn pool_get(pool: &Rc<PoolInner>, path: &str) -> Result<Response, ClientError> {
    let reply = Reply::new();
    pool.submit(Job::Get {
        path: path.to_string(),
        retried: false,
        reply: reply.clone(),
    });
    reply.wait().await
}

async fn close_pool(pool: &Rc<PoolInner>) {
    pool.closed.raise();
    pool.wake_idle();
    for job in pool.queue.borrow_mut().drain(..) {
        if let Job::Stream { reply, .. } = job {
            reply.send(StreamEnd::Shutdown);
        }
    }
    let connections = std::mem::take(&mut *pool.connections.borrow_mut());
    for c in connections {
        let _ = c.await;
    }
}

/// One connection: connects, then serves jobs from the queue until it ends.
async fn connection_task(pool: Rc<PoolInner>) {
    let options = pool.config.client;
    let mut buffers = ClientBuffers::new(&options);
    let connect = Session::connect(pool.stack, &mut buffers, pool.server, options);
    let connected = match select(pool.closed.wait(), connect).await {
        Either::First(()) => None,
        Either::Second(r) => Some(r),
    };
    pool.connecting.set(pool.connecting.get() - 1);
    let mut session = match connected {
        // The pool closed before the handshake finished: the socket is dropped.
        None => {
            pool.update(|s| s.open -= 1);
            return;
        }
        Some(Err(e)) => {
            pool.update(|s| {
                s.open -= 1;
                s.connect_errors += 1;
            });
            let job = pool.queue.borrow_mut().pop_front();
            if let Some(job) = job {
                job.fail(e);
            }
            pool.dispatch();
            return;
        }
        Some(Ok(session)) => session,
    };
    pool.update(|s| s.opened += 1);
    let end = serve_jobs(&pool, &mut session).await;
    // The connection leaves the pool's count at once, as a browser's socket pool
    // forgets a socket it closes; the close itself finishes in the background.
    pool.update(|s| s.open -= 1);
    pool.dispatch();
    match end {
        ConnectionEnd::Close => session.close().await,
        ConnectionEnd::Abort => session.abort().await,
        ConnectionEnd::Gone => {}
    }
}

/// What an idle connection woke up for.
enum Next {
    Job(Job),
    End(ConnectionEnd),
}

/// Serves jobs on `session` until the connection ends.
async fn serve_jobs(pool: &Rc<PoolInner>, session: &mut Session<'_>) -> ConnectionEnd {
    let mut reused = false;
    let mut peer_closed = false;
    loop {
        let job = match next_job(pool, session, &mut peer_closed).await {
            Next::Job(job) => job,
            Next::End(end) => return end,
        };
        // Picked for a request, a connection the server closed is closed, and the
        // request goes to a new one.
        match session.state() {
            TcpState::Established => {}
            TcpState::Closed => {
                pool.queue.borrow_mut().push_front(job);
                return ConnectionEnd::Gone;
            }
            _ => {
                pool.queue.borrow_mut().push_front(job);
                return ConnectionEnd::Close;
            }
        }
        match job {
            Job::Get {
                path,
                retried,
                reply,
            } => {
                let result = match select(pool.closed.wait(), session.get(&path)).await {
                    Either::First(()) => return ConnectionEnd::Abort,
                    Either::Second(r) => r,
                };
                match result {
                    Ok(response) => {
                        reply.send(Ok(response));
                        if response.server_closes {
                            return ConnectionEnd::Close;
                        }
                    }
                    Err(
                        e @ (ClientError::Closed { received: 0 }
                        | ClientError::Reset { received: 0 }),
                    ) if reused && !retried => {
                        pool.update(|s| s.retried += 1);
                        pool.queue.borrow_mut().push_front(Job::Get {
                            path,
                            retried: true,
                            reply,
                        });
                        return end_after(e);
                    }
                    Err(e) => {
                        reply.send(Err(e));
                        return end_after(e);
                    }
                }
            }
            Job::Stream {
                path,
                retried,
                source,
                reply,
            } => {
                let exchange = stream_exchange(session, &path, &source);
                let outcome = match select(pool.closed.wait(), exchange).await {
                    Either::First(()) => {
                        reply.send(StreamEnd::Shutdown);
                        return ConnectionEnd::Close;
                    }
                    Either::Second(outcome) => outcome,
                };
                let (end, connection) = match outcome {
                    Exchange::NoAnswer(
                        e @ (ClientError::Closed { received: 0 }
                        | ClientError::Reset { received: 0 }),
                    ) if reused && !retried => {
                        pool.update(|s| s.retried += 1);
                        pool.queue.borrow_mut().push_front(Job::Stream {
                            path,
                            retried: true,
                            source,
                            reply,
                        });
                        return end_after(e);
                    }
                    Exchange::NoAnswer(e) => (StreamEnd::NetworkError, end_after(e)),
                    Exchange::Refused(status) => (StreamEnd::Refused(status), ConnectionEnd::Close),
                    Exchange::Ended(e) => {
                        let end = match e {
                            ClientError::Closed { .. } => StreamEnd::Closed,
                            _ => StreamEnd::NetworkError,
                        };
                        (end, end_after(e))
                    }
                };
                reply.send(end);
                // A stream's connection is not reused: its answer has no end but the
                // connection's, and a refusal closes it too.
                return connection;
            }
        }
        reused = true;
    }
}

/// How a connection ends after `e`.
fn end_after(e: ClientError) -> ConnectionEnd {
    match e {
        ClientError::Reset { .. } | ClientError::Refused => ConnectionEnd::Gone,
        ClientError::Closed { .. } => ConnectionEnd::Close,
        _ => ConnectionEnd::Abort,
    }
}

/// Takes the next queued job, waiting idle while there is none. An idle connection
/// watches its socket: a server RST ends it; a server FIN is noted and left unanswered
/// until the connection is picked for a job or the next sweep closes it.
async fn next_job(pool: &PoolInner, session: &mut Session<'_>, peer_closed: &mut bool) -> Next {
    enum Woke {
        Queue,
        PeerFin,
        PeerReset,
        Data,
        Sweep,
    }
    loop {
        if pool.closed.is_raised() {
            return Next::End(ConnectionEnd::Close);
        }
        if let Some(job) = pool.queue.borrow_mut().pop_front() {
            return Next::Job(job);
        }
        pool.idle.set(pool.idle.get() + 1);
        let queue = poll_fn(|cx| {
            if pool.closed.is_raised() || !pool.queue.borrow().is_empty() {
                Poll::Ready(())
            } else {
                register(&pool.waiters, cx.waker());
                Poll::Pending
            }
        });
        let woke = if *peer_closed {
            let sweeps = (Instant::now() - pool.started).as_ticks()
                / pool.config.idle_sweep.as_ticks().max(1)
                + 1;
            let sweep =
                pool.started + Duration::from_ticks(sweeps * pool.config.idle_sweep.as_ticks());
            match select(queue, Timer::at(sweep)).await {
                Either::First(()) => Woke::Queue,
                Either::Second(()) => Woke::Sweep,
            }
        } else {
            let mut chunk = [0u8; 256];
            match select(queue, session.socket.read(&mut chunk)).await {
                Either::First(()) => Woke::Queue,
                Either::Second(Ok(0)) => Woke::PeerFin,
                Either::Second(Ok(_)) => Woke::Data,
                Either::Second(Err(_)) => Woke::PeerReset,
            }
        };
        pool.idle.set(pool.idle.get() - 1);
        match woke {
            Woke::Queue | Woke::Data => {}
            Woke::PeerFin => {
                *peer_closed = true;
                pool.update(|s| s.fins_unanswered += 1);
            }
            Woke::PeerReset => return Next::End(ConnectionEnd::Gone),
            Woke::Sweep => return Next::End(ConnectionEnd::Close),
        }
    }
}

/// How an EventSource request went on one connection.
enum Exchange {
    /// No answer head: the request could not be sent, or the connection ended first.
    NoAnswer(ClientError),
    /// An answer other than 200 `text/event-stream`, with its status.
    Refused(u16),
    /// A 200 event stream, read until the connection ended (`Closed` for FIN).
    Ended(ClientError),
}

/// Sends the EventSource request and reads its stream, counting events into `source`.
async fn stream_exchange(session: &mut Session<'_>, path: &str, source: &SourceShared) -> Exchange {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: device\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
    );
    if session.socket.write_all(request.as_bytes()).await.is_err() {
        return Exchange::NoAnswer(ClientError::Reset { received: 0 });
    }
    let head = match session.read_head(None).await {
        Ok(head) => head,
        Err(e) => return Exchange::NoAnswer(e),
    };
    if head.status != 200 || !head.event_stream {
        return Exchange::Refused(head.status);
    }
    source.update(|s| s.opened += 1);
    let mut parser = EventParser::default();
    loop {
        let bytes = std::mem::take(&mut session.pending);
        parser.feed(&bytes, |field| match field {
            Field::Event => source.update(|s| {
                s.events += 1;
                if s.attempts > 1 {
                    s.events_after_reconnect += 1;
                }
            }),
            Field::Retry(ms) => source.update(|s| s.retry = Duration::from_millis(ms)),
        });
        if let Err(e) = session.read_more(None, 0).await {
            return Exchange::Ended(e);
        }
    }
}

/// What the event stream parser reports.
enum Field {
    /// A blank line after at least one `data` field: an event is dispatched.
    Event,
    /// A `retry` field with a valid number of milliseconds.
    Retry(u64),
}

/// The event stream format's line parser (WHATWG HTML, "Interpreting an event
/// stream"): lines end in CRLF, LF or CR; `:` starts a comment; a blank line dispatches
/// an event when a `data` field came before it.
#[derive(Default)]
struct EventParser {
    line: Vec<u8>,
    has_data: bool,
    /// The last byte was a CR: an LF right after it ends no second line.
    after_cr: bool,
}

impl EventParser {
    fn feed(&mut self, bytes: &[u8], mut report: impl FnMut(Field)) {
        for &b in bytes {
            let after_cr = std::mem::replace(&mut self.after_cr, b == b'\r');
            match b {
                b'\n' if after_cr => {}
                b'\r' | b'\n' => {
                    if let Some(field) = self.line_done() {
                        report(field);
                    }
                }
                _ => self.line.push(b),
            }
        }
    }

    fn line_done(&mut self) -> Option<Field> {
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            return std::mem::take(&mut self.has_data).then_some(Field::Event);
        }
        if line[0] == b':' {
            return None;
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(p) => {
                let value = &line[p + 1..];
                (&line[..p], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (&line[..], &[][..]),
        };
        match name {
            b"data" => {
                self.has_data = true;
                None
            }
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                std::str::from_utf8(value)
                    .ok()?
                    .parse()
                    .ok()
                    .map(Field::Retry)
            }
            _ => None,
        }
    }
}

/// What an [`EventSource`] did so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventSourceStats {
    /// Requests the source sent (the first and every reconnect).
    pub attempts: usize,
    /// Answers 200 `text/event-stream`.
    pub opened: usize,
    /// Events received (a blank line after a `data` field).
    pub events: usize,
    /// Events received after the first attempt failed or ended: a reconnect served.
    pub events_after_reconnect: usize,
    /// Network errors and closed streams the source reconnected after.
    pub reconnects: usize,
    /// The source gave up for good: an answer other than 200 `text/event-stream`.
    pub given_up: bool,
    /// The status of the answer it gave up on.
    pub refused_with: Option<u16>,
    /// The reconnection time: [`EVENT_SOURCE_RETRY`] until a `retry:` field sets it.
    pub retry: Duration,
}

impl Default for EventSourceStats {
    fn default() -> Self {
        Self {
            attempts: 0,
            opened: 0,
            events: 0,
            events_after_reconnect: 0,
            reconnects: 0,
            given_up: false,
            refused_with: None,
            retry: EVENT_SOURCE_RETRY,
        }
    }
}

struct SourceShared {
    stats: Cell<EventSourceStats>,
}

impl SourceShared {
    fn update(&self, f: impl FnOnce(&mut EventSourceStats)) {
        let mut stats = self.stats.get();
        f(&mut stats);
        self.stats.set(stats);
    }
}

/// A browser's `EventSource`, opened on a [`ConnectionPool`]: its request waits in the
/// pool's queue like any other. Measured with headless Chromium against embassy-net
/// over a TAP device (tests/real_network.sh):
///
/// - after a network error (refused, reset, closed before an answer) it reconnects
///   once its reconnection time has passed;
/// - after a 200 `text/event-stream` answer that carried `retry: <ms>` and then closed
///   it reconnects after those milliseconds (without `retry:`, after
///   [`EVENT_SOURCE_RETRY`], as the HTML standard's reconnection rule says);
///   tests/browser_model.py: `event_source_retry_field_ms` about 1000 after
///   `retry: 1000`;
/// - after any other answer (a 503, a 204, another content type) it gives up for good
///   (tests/browser_model.py: `event_source_requests_after_503` 0).
pub struct EventSource {
    shared: Rc<SourceShared>,
}

impl EventSource {
    /// What the source did so far.
    pub fn stats(&self) -> EventSourceStats {
        self.shared.stats.get()
    }
}

fn open_event_source(pool: &Rc<PoolInner>, path: &str) -> EventSource {
    let shared = Rc::new(SourceShared {
        stats: Cell::new(EventSourceStats::default()),
    });
    let (pool, path, source) = (pool.clone(), path.to_string(), shared.clone());
    // Detached: the task ends when the source gives up or the pool closes.
    drop(spawn(async move {
        loop {
            source.update(|s| s.attempts += 1);
            let reply = Reply::new();
            pool.submit(Job::Stream {
                path: path.clone(),
                retried: false,
                source: source.clone(),
                reply: reply.clone(),
            });
            match reply.wait().await {
                StreamEnd::Refused(status) => {
                    source.update(|s| {
                        s.given_up = true;
                        s.refused_with = Some(status);
                    });
                    return;
                }
                StreamEnd::Shutdown => return,
                StreamEnd::NetworkError | StreamEnd::Closed => {
                    source.update(|s| s.reconnects += 1);
                    let retry = source.stats.get().retry;
                    if let Either::First(()) = select(pool.closed.wait(), Timer::after(retry)).await
                    {
                        return;
                    }
                }
            }
        }
    }));
    EventSource { shared }
}

/// The camera page of examples/esp32/app (`page.html`), as a browser runs it: the
/// document, then `tiles` tiles each fetching `frame` back to back (the next fetch as
/// soon as the previous one finished; after a failed one, `frame_retry` later), and an
/// EventSource on `events` opened in the same instant, during the burst. Measured with
/// headless Chromium against embassy-net over a TAP device (tests/real_network.sh,
/// `/?tiles=6`): the tiles keep all 6 connections to the device busy and the
/// EventSource's request waits in the queue for one of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CameraPage {
    /// The document, loaded first. Default `/`.
    pub document: String,
    /// What every tile fetches. Default `/frame.jpg`.
    pub frame: String,
    /// Tiles. Default 6.
    pub tiles: usize,
    /// The EventSource's path, if the page opens one. Default `/sse` (the responder's
    /// stream).
    pub events: Option<String>,
    /// How long a tile waits after a failed fetch: 1 s, the page's own retry.
    pub frame_retry: Duration,
    /// The browser's connections.
    pub pool: PoolConfig,
}

impl CameraPage {
    /// The defaults listed on each field.
    pub fn new() -> Self {
        Self {
            document: "/".into(),
            frame: "/frame.jpg".into(),
            tiles: 6,
            events: Some("/sse".into()),
            frame_retry: Duration::from_secs(1),
            pool: PoolConfig::new(),
        }
    }

    /// The same page with `n` tiles.
    pub fn with_tiles(mut self, n: usize) -> Self {
        self.tiles = n;
        self
    }

    /// The same page with its EventSource on `path`, or none.
    pub fn with_events(mut self, path: Option<&str>) -> Self {
        self.events = path.map(Into::into);
        self
    }
}

impl Default for CameraPage {
    fn default() -> Self {
        Self::new()
    }
}

/// What a [`CameraView`] saw so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CameraStats {
    /// The document's answer, once it is in.
    pub document: Option<Result<Response, ClientError>>,
    /// Frames answered 200.
    pub frames: usize,
    /// Fetches that failed or were not answered 200.
    pub frame_errors: usize,
    /// The EventSource, once the page opened it.
    pub events: Option<EventSourceStats>,
    /// The browser's connections.
    pub pool: PoolStats,
}

#[derive(Default)]
struct CameraShared {
    document: Cell<Option<Result<Response, ClientError>>>,
    frames: Cell<usize>,
    frame_errors: Cell<usize>,
    source: RefCell<Option<EventSource>>,
    tiles: RefCell<Vec<JoinHandle<()>>>,
}

/// A browser showing a [`CameraPage`]; [`CameraView::close`] closes the tab.
pub struct CameraView {
    pool: ConnectionPool,
    shared: Rc<CameraShared>,
    page: JoinHandle<()>,
}

/// Opens `page` on `server` in a browser on `stack` and returns at once; the page loads
/// and runs in tasks of its own until [`CameraView::close`].
pub fn camera_page(stack: Stack<'static>, server: SocketAddr, page: &CameraPage) -> CameraView {
    let pool = ConnectionPool::new(stack, server, page.pool);
    let shared = Rc::new(CameraShared::default());
    let (inner, state, page) = (pool.inner.clone(), shared.clone(), page.clone());
    let task = spawn(async move {
        let document = pool_get(&inner, &page.document).await;
        state.document.set(Some(document));
        if !matches!(document, Ok(r) if r.status == 200) {
            return;
        }
        // The page's script starts the tiles first, then opens its EventSource: their
        // requests are queued in that order.
        for _ in 0..page.tiles {
            let (inner, tile, path) = (inner.clone(), state.clone(), page.frame.clone());
            let retry = page.frame_retry;
            state.tiles.borrow_mut().push(spawn(async move {
                loop {
                    match pool_get(&inner, &path).await {
                        Ok(r) if r.status == 200 => tile.frames.set(tile.frames.get() + 1),
                        _ => {
                            tile.frame_errors.set(tile.frame_errors.get() + 1);
                            Timer::after(retry).await;
                        }
                    }
                }
            }));
        }
        if let Some(events) = &page.events {
            *state.source.borrow_mut() = Some(open_event_source(&inner, events));
        }
    });
    CameraView {
        pool,
        shared,
        page: task,
    }
}

impl CameraView {
    /// What the page saw so far.
    pub fn stats(&self) -> CameraStats {
        CameraStats {
            document: self.shared.document.get(),
            frames: self.shared.frames.get(),
            frame_errors: self.shared.frame_errors.get(),
            events: self.shared.source.borrow().as_ref().map(EventSource::stats),
            pool: self.pool.stats(),
        }
    }

    /// Closes the tab: the page's script stops, then every connection closes (FIN; a
    /// transfer in flight is reset). Returns once every connection is closed.
    pub async fn close(self) {
        self.page.abort();
        for tile in self.shared.tiles.borrow_mut().drain(..) {
            tile.abort();
        }
        self.pool.close().await;
    }
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

/// slowhttptest in slowloris mode (`slowhttptest -H`), as tests/real_network.py runs it
/// against the device: sends an unfinished request head at once, then one more header
/// line every `follow_up_every`, until the server ends the connection or `until`
/// passes (then it resets the connection). It does not reopen a connection the server
/// refused or closed: slowhttptest counts it closed, and on the real network every
/// legitimate request was answered once the device's read timeouts had freed the
/// sockets it held.
pub async fn slow_headers(
    stack: Stack<'static>,
    server: SocketAddr,
    follow_up_every: Duration,
    until: Instant,
) -> Result<Hold, ClientError> {
    let options = ClientOptions::new();
    let mut buffers = ClientBuffers::new(&options);
    let mut session = Session::connect(stack, &mut buffers, server, options).await?;
    let start = session.connected_at;
    let mut sent = 0;
    let mut received = Vec::new();
    let mut next = Instant::now();
    let mut line = 0u32;
    let end = loop {
        let bytes = if line == 0 {
            "GET / HTTP/1.1\r\nHost: device\r\nUser-Agent: slowhttptest\r\n".to_string()
        } else {
            format!("X-{line:x}: {line}\r\n")
        };
        match session.socket.write_all(bytes.as_bytes()).await {
            Ok(()) => sent += bytes.len(),
            Err(_) => break PeerEnd::Reset,
        }
        line += 1;
        next += follow_up_every;
        match read_until_end(&mut session.socket, next.min(until), &mut received).await {
            PeerEnd::StillOpen if next < until => {}
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

/// Opens `/sse` (the responder's stream) and reads `events` events (or until the
/// server ends it or `max` passes), then closes.
pub async fn sse(
    stack: Stack<'static>,
    server: SocketAddr,
    events: usize,
    max: Duration,
) -> Result<SseOutcome, ClientError> {
    sse_on(stack, server, "/sse", events, max).await
}

/// [`sse`] on the stream at `path` (`curl -N <path>` as a client of a device would).
pub async fn sse_on(
    stack: Stack<'static>,
    server: SocketAddr,
    path: &str,
    events: usize,
    max: Duration,
) -> Result<SseOutcome, ClientError> {
    let options = ClientOptions::new();
    let mut buffers = ClientBuffers::new(&options);
    let mut session = Session::connect(stack, &mut buffers, server, options).await?;
    let t0 = Instant::now();
    let deadline = t0 + max;
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: device\r\nAccept: text/event-stream\r\n\r\n");
    if session.socket.write_all(request.as_bytes()).await.is_err() {
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
                // An event is a block with data; a block of only `retry:` or a comment
                // dispatches nothing (the HTML standard's event stream rules).
                let block = &buf[..p];
                if block.starts_with(b"data:") || block.windows(6).any(|w| w == b"\ndata:") {
                    seen += 1;
                }
                buf.drain(..p + 2);
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

#[cfg(test)]
mod tests {
    use super::{EventParser, Field};

    fn parse(chunks: &[&[u8]]) -> (usize, Vec<u64>) {
        let mut parser = EventParser::default();
        let (mut events, mut retries) = (0, Vec::new());
        for chunk in chunks {
            parser.feed(chunk, |f| match f {
                Field::Event => events += 1,
                Field::Retry(ms) => retries.push(ms),
            });
        }
        (events, retries)
    }

    #[test]
    fn the_event_parser_follows_the_event_stream_format() {
        // LF, CRLF and a lone CR end lines, also across chunks.
        assert_eq!(
            parse(&[b"data: a\n\ndata: b\r\n\r\ndata: c\r\r"]),
            (3, vec![])
        );
        assert_eq!(parse(&[b"data: a\r", b"\n\r", b"\n"]), (1, vec![]));
        // Comments and a blank line without data dispatch nothing.
        assert_eq!(parse(&[b":\n\n: keep-alive\n\nevent: x\n\n"]), (0, vec![]));
        // picoserve's shape: an event name, then data.
        assert_eq!(parse(&[b"event:tick\ndata:event 0\n\n"]), (1, vec![]));
        // `retry` takes digits only.
        assert_eq!(
            parse(&[b"retry: 500\nretry: 5s\nretry:\nretry:250\n"]),
            (0, vec![500, 250])
        );
        // An unfinished event is not dispatched.
        assert_eq!(parse(&[b"data: a\n"]), (0, vec![]));
    }
}
