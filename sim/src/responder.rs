//! A raw keep-alive HTTP/1.1 responder: the test fixture every layer is measured with.
//! Not a product: it answers GET with deterministic content and does what a
//! hand-written ESP32 server does, including writing head and body separately.
use embassy_futures::select::{Either, select};
use embassy_time::{Duration, Instant, Timer};
use tcp_layers_core::{CloseReason, Connection, ConnectionClass};

/// The size of the request head buffer: a longer head gets 431 and a close.
pub const HEAD_BUFFER: usize = 2048;

/// What the responder serves.
///
/// - `/`: an HTML document of `document_len` bytes that references the resources;
/// - `/r/<k>`: resource `k` (1-based), `resource_len` bytes;
/// - `/frame.jpg`: a camera frame, `frame_len` bytes (byte `i` = `i % 251`), as
///   `image/jpeg`;
/// - `/bytes/<n>`: `n` bytes, byte `i` = `i % 251`;
/// - `/sse`: an event stream, one small event every `sse_interval`, forever. Before it
///   starts, the responder calls [`Connection::set_class`] with
///   [`ConnectionClass::Stream`]: a budget layer that refuses gets a `200
///   text/event-stream` with `retry: 5000` and a close, which a browser's
///   `EventSource` reconnects after.
///
/// Anything else is a 404. A request with `Connection: close` is answered and closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Routes {
    /// Bytes of `/`. Default 2048: a small device status page.
    pub document_len: usize,
    /// Bytes of each `/r/<k>`. Default 8192: a small icon, script or stylesheet.
    pub resource_len: usize,
    /// How many resources `/` references. Default 6: one per browser connection.
    pub resources: usize,
    /// Bytes of `/frame.jpg`. Default 131072 (128 KiB): the camera app's 640x480 test
    /// card (examples/esp32/app) is 128,449 bytes.
    pub frame_len: usize,
    /// Time between two SSE events. Default 1 s: a sensor reading per second.
    pub sse_interval: Duration,
}

impl Routes {
    /// The defaults listed on each field.
    pub const fn new() -> Self {
        Self {
            document_len: 2048,
            resource_len: 8192,
            resources: 6,
            frame_len: 128 * 1024,
            sse_interval: Duration::from_secs(1),
        }
    }
}

impl Default for Routes {
    fn default() -> Self {
        Self::new()
    }
}

/// How a [`serve`] call went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServeOutcome {
    /// Requests answered (fully or not).
    pub requests: u32,
    /// Bytes read from the connection.
    pub bytes_in: u64,
    /// Bytes written to the connection.
    pub bytes_out: u64,
    /// SSE events sent.
    pub events: u64,
    /// The reason passed to [`Connection::end`] (layers may know better: see
    /// [`Connection::close_reason`]).
    pub ended: CloseReason,
}

/// FNV-1a, 64 bit: the checksum clients compute over a body.
pub fn checksum(bytes: &[u8]) -> u64 {
    let mut h = Checksum::new();
    h.update(bytes);
    h.finish()
}

/// Incremental FNV-1a, 64 bit.
#[derive(Clone, Copy, Debug)]
pub struct Checksum(u64);

impl Checksum {
    /// The empty checksum.
    pub const fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
    /// Adds `bytes`.
    pub fn update(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    /// The checksum so far.
    pub const fn finish(&self) -> u64 {
        self.0
    }
}

impl Default for Checksum {
    fn default() -> Self {
        Self::new()
    }
}

/// A route's body, generated piece by piece.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Body {
    Document,
    Resource(usize),
    Frame,
    Bytes,
}

impl Body {
    fn fill(self, routes: &Routes, offset: usize, buf: &mut [u8]) {
        match self {
            Body::Document => {
                let doc = document(routes);
                buf.copy_from_slice(&doc[offset..offset + buf.len()]);
            }
            Body::Resource(k) => {
                for (i, b) in buf.iter_mut().enumerate() {
                    *b = ((offset + i + k * 7) % 251) as u8;
                }
            }
            Body::Frame | Body::Bytes => {
                for (i, b) in buf.iter_mut().enumerate() {
                    *b = ((offset + i) % 251) as u8;
                }
            }
        }
    }
}

fn document(routes: &Routes) -> Vec<u8> {
    let mut s = String::from("<!doctype html><html><head><title>device</title></head><body>");
    for k in 1..=routes.resources {
        s.push_str(&format!("<img src=\"/r/{k}\">"));
    }
    s.push_str("</body></html>");
    let mut v = s.into_bytes();
    // Padding as an HTML comment-free run of spaces keeps the length exact.
    v.resize(routes.document_len.max(v.len()), b' ');
    v.truncate(routes.document_len);
    v
}

enum Route {
    Body(Body, usize),
    Sse,
    NotFound,
}

fn route(path: &str, routes: &Routes) -> Route {
    if path == "/" {
        return Route::Body(Body::Document, routes.document_len);
    }
    if path == "/sse" {
        return Route::Sse;
    }
    if path == "/frame.jpg" {
        return Route::Body(Body::Frame, routes.frame_len);
    }
    if let Some(k) = path
        .strip_prefix("/r/")
        .and_then(|k| k.parse::<usize>().ok())
        && (1..=routes.resources).contains(&k)
    {
        return Route::Body(Body::Resource(k), routes.resource_len);
    }
    if let Some(n) = path.strip_prefix("/bytes/").and_then(|n| n.parse().ok()) {
        return Route::Body(Body::Bytes, n);
    }
    Route::NotFound
}

/// The body `serve` sends for `path` (`None` for `/sse` and unknown paths), for tests
/// that check what a client received.
pub fn body_of(path: &str, routes: &Routes) -> Option<Vec<u8>> {
    match route(path, routes) {
        Route::Body(body, len) => {
            let mut v = vec![0; len];
            body.fill(routes, 0, &mut v);
            Some(v)
        }
        _ => None,
    }
}

struct Request<'a> {
    path: &'a str,
    close: bool,
}

fn parse_head(head: &[u8]) -> Option<Request<'_>> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let _method = first.next()?;
    let path = first.next()?;
    let close = lines.any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("connection") && v.trim().eq_ignore_ascii_case("close")
        })
    });
    Some(Request { path, close })
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// Serves `conn` until it ends: reads request heads (across reads, up to
/// [`HEAD_BUFFER`] bytes), answers each with its head and body as two separate
/// `write_all` calls (which is what exposes Nagle's stall), flushes, and loops.
///
/// It ends the connection with [`Connection::end`]: `PeerClosed` on the peer's FIN
/// between requests, `PeerReset` on a read error while idle, `ClientCancelled` on a
/// write error mid-response, `LocalClose` after `Connection: close`, a 431 or a refused
/// stream.
pub async fn serve<C: Connection>(conn: &mut C, routes: &Routes) -> ServeOutcome {
    let mut out = ServeOutcome {
        requests: 0,
        bytes_in: 0,
        bytes_out: 0,
        events: 0,
        ended: CloseReason::LocalClose,
    };
    let mut buf = [0u8; HEAD_BUFFER];
    let mut filled = 0;
    let reason = loop {
        // Read one head.
        let head_len = loop {
            if let Some(end) = find_head_end(&buf[..filled]) {
                break Some(end);
            }
            if filled == buf.len() {
                break None;
            }
            match conn.read(&mut buf[filled..]).await {
                Ok(0) => break Some(0),
                Ok(n) => {
                    filled += n;
                    out.bytes_in += n as u64;
                }
                Err(_) => break Some(usize::MAX),
            }
        };
        let head_len = match head_len {
            Some(0) => break CloseReason::PeerClosed,
            Some(usize::MAX) => break CloseReason::PeerReset,
            Some(n) => n,
            None => {
                out.requests += 1;
                break refuse(conn, &mut out, "431 Request Header Fields Too Large").await;
            }
        };
        out.requests += 1;
        let (route_kind, close) = match parse_head(&buf[..head_len]) {
            Some(req) => (route(req.path, routes), req.close),
            None => (Route::NotFound, true),
        };
        buf.copy_within(head_len..filled, 0);
        filled -= head_len;

        let result = match route_kind {
            Route::NotFound => {
                write_head(conn, &mut out, "404 Not Found", "text/plain", 0, close).await
            }
            Route::Body(body, len) => write_body(conn, &mut out, routes, body, len, close).await,
            Route::Sse => {
                if conn.set_class(ConnectionClass::Stream).is_err() {
                    break refuse_stream(conn, &mut out).await;
                }
                break stream_events(conn, &mut out, routes).await;
            }
        };
        if result.is_err() {
            break CloseReason::ClientCancelled;
        }
        if close {
            break CloseReason::LocalClose;
        }
    };
    out.ended = reason;
    conn.end(reason).await;
    out
}

async fn write_all<C: Connection>(
    conn: &mut C,
    out: &mut ServeOutcome,
    bytes: &[u8],
) -> Result<(), C::Error> {
    conn.write_all(bytes).await?;
    out.bytes_out += bytes.len() as u64;
    Ok(())
}

/// Answers `status` with an empty body and `Connection: close`; how the connection
/// ends after it.
async fn refuse<C: Connection>(conn: &mut C, out: &mut ServeOutcome, status: &str) -> CloseReason {
    match write_head(conn, out, status, "text/plain", 0, true).await {
        Ok(()) => CloseReason::LocalClose,
        Err(_) => CloseReason::ClientCancelled,
    }
}

/// A stream the budget refuses is told to come back: `200 text/event-stream` with
/// `retry: 5000`, then a close. A browser's `EventSource` reconnects after it; after a
/// 503 it would give up for good.
async fn refuse_stream<C: Connection>(conn: &mut C, out: &mut ServeOutcome) -> CloseReason {
    const REPLY: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\
Cache-Control: no-store\r\nConnection: close\r\n\r\nretry: 5000\n\n";
    match write_all(conn, out, REPLY).await {
        Ok(()) => {
            let _ = conn.flush().await;
            CloseReason::LocalClose
        }
        Err(_) => CloseReason::ClientCancelled,
    }
}

async fn write_head<C: Connection>(
    conn: &mut C,
    out: &mut ServeOutcome,
    status: &str,
    content_type: &str,
    len: usize,
    close: bool,
) -> Result<(), C::Error> {
    let connection = if close { "close" } else { "keep-alive" };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len}\r\nConnection: {connection}\r\n\r\n"
    );
    write_all(conn, out, head.as_bytes()).await?;
    if len == 0 {
        conn.flush().await?;
    }
    Ok(())
}

async fn write_body<C: Connection>(
    conn: &mut C,
    out: &mut ServeOutcome,
    routes: &Routes,
    body: Body,
    len: usize,
    close: bool,
) -> Result<(), C::Error> {
    let content_type = match body {
        Body::Document => "text/html",
        Body::Frame => "image/jpeg",
        _ => "application/octet-stream",
    };
    write_head(conn, out, "200 OK", content_type, len, close).await?;
    // The body is a second write (or a run of 4 KiB writes for a big body), as a server
    // that formats its head first and then streams the content does.
    const CHUNK: usize = 4096;
    let mut chunk = vec![0u8; len.min(CHUNK)];
    let mut offset = 0;
    while offset < len {
        let n = (len - offset).min(CHUNK);
        body.fill(routes, offset, &mut chunk[..n]);
        write_all(conn, out, &chunk[..n]).await?;
        offset += n;
    }
    conn.flush().await
}

async fn stream_events<C: Connection>(
    conn: &mut C,
    out: &mut ServeOutcome,
    routes: &Routes,
) -> CloseReason {
    let head =
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\r\n";
    if write_all(conn, out, head.as_bytes()).await.is_err() || conn.flush().await.is_err() {
        return CloseReason::ClientCancelled;
    }
    let mut scratch = [0u8; 64];
    let mut next = Instant::now() + routes.sse_interval;
    loop {
        // Watch the read side between events, so a peer's FIN or RST ends the stream at
        // once instead of at the next event.
        match select(Timer::at(next), conn.read(&mut scratch)).await {
            Either::First(()) => next += routes.sse_interval,
            Either::Second(Ok(0)) => return CloseReason::PeerClosed,
            Either::Second(Ok(n)) => {
                out.bytes_in += n as u64;
                continue;
            }
            Either::Second(Err(_)) => return CloseReason::ClientCancelled,
        }
        let event = format!("data: event {}\n\n", out.events);
        if write_all(conn, out, event.as_bytes()).await.is_err() || conn.flush().await.is_err() {
            return CloseReason::ClientCancelled;
        }
        out.events += 1;
    }
}
