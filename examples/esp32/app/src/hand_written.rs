//! The camera app on a hand-written embassy-net server: the accept loop of the
//! tcp-layers README and a small HTTP/1.1 request loop, the way most ESP32 firmware
//! serves its page.
//!
//! One socket per accept loop, `N` loops joined in one future: each accepts with
//! [`AcceptLoop::accept_socket`] (backs off on errors, never exits), wraps the socket
//! in the layer stack, runs `serve_http` on it and ends the connection with the
//! [`CloseReason`] that returns. `serve_http` reads a request head, answers it and
//! goes on while the connection is kept alive; a `GET /ws` becomes the app's WebSocket
//! echo (`ws_echo`) on the same connection. It waits as long as the picoserve server
//! does (`server::TIMEOUTS`): 4 s for the first request, 6 s for the next one, 9 s for
//! the rest of a head, 6 s for any write to make progress.
//!
//! Every line it logs is at debug (but for a fault of its own, a response that does not
//! fit its buffer, at warn): how a connection ended is the quiet layer's to log, at the
//! level of the reason (a cancel or a reset at trace, a local fault at warn).
//! What it does on each path:
//!
//! | what happens | ends as | counted as a server error |
//! |---|---|---|
//! | the client closes between requests | `PeerClosed` | no |
//! | no request within the idle wait | `LocalClose` (FIN) | no |
//! | a read fails between requests (a reset, a layer's deadline) | `PeerReset` | yes |
//! | a read fails in the middle of a head | `ClientCancelled` | yes |
//! | the client closes in the middle of a head | `ClientCancelled` | yes |
//! | a head too slow, too large (431) or malformed (400) | `LocalClose` | yes |
//! | a write or flush fails or stalls (a browser cancel) | `ClientCancelled` | yes |
//! | `Connection: close`, HTTP/1.0, a request with a body | `LocalClose` after the answer | no |
//! | an event stream's client leaves (its read sees FIN or RST) | `PeerClosed` / `PeerReset` | no |
//!
//! A layer that ended the connection itself (a deadline, an eviction) knows its reason
//! better than these guesses, and `Connection::end` uses it.
use embassy_futures::join::join_array;
use embassy_futures::select::{Either, select};
use embassy_net::{Stack, tcp::TcpSocket};
use embassy_time::{Instant, Timer, with_timeout};
use log::{debug, warn};
use tcp_layers::{
    AcceptLoop, CloseReason, Connection, ConnectionBuilder, ConnectionClass, Layer, Pool,
};

use crate::content::{
    self, EVENT_PERIOD, EVENTS_HEADERS, EVENTS_REFUSED_BODY, EVENTS_REFUSED_HEADERS, FRAME_HEADERS,
    Frame, Header, PAGE, PAGE_HEADERS, Route, STATS_HEADERS, TEXT_HEADERS, Text,
};
use crate::server::{self, HTTP_BUFFER_BYTES, Resources, TCP_RX_BYTES, TCP_TX_BYTES, TIMEOUTS};
use crate::{stats, ws_echo};

/// Bytes of a response head: the status line, at most three headers of the app, the
/// length and `Connection`.
const HEAD_BYTES: usize = 256;

/// Serves the camera app on `port` with `N` sockets, every connection wrapped in the
/// layer stack of the picoserve server. Never returns.
pub async fn serve_layered<const N: usize>(
    stack: Stack<'static>,
    port: u16,
    resources: &'static Resources<N>,
) -> ! {
    let mut buffers = [([0; TCP_RX_BYTES], [0; TCP_TX_BYTES]); N];
    serve_with(
        stack,
        port,
        &mut buffers,
        &server::layers(resources),
        resources,
    )
    .await
}

/// The same server on the bare socket.
pub async fn serve_unlayered<const N: usize>(
    stack: Stack<'static>,
    port: u16,
    resources: &'static Resources<N>,
) -> ! {
    let mut buffers = [([0; TCP_RX_BYTES], [0; TCP_TX_BYTES]); N];
    serve_with(
        stack,
        port,
        &mut buffers,
        &ConnectionBuilder::new(),
        resources,
    )
    .await
}

/// One accept loop per buffer pair, all in this future.
async fn serve_with<'b, L, const N: usize>(
    stack: Stack<'b>,
    port: u16,
    buffers: &'b mut [([u8; TCP_RX_BYTES], [u8; TCP_TX_BYTES]); N],
    layers: &L,
    resources: &'static Resources<N>,
) -> !
where
    L: for<'c> Layer<&'c mut TcpSocket<'b>>,
    for<'c> <L as Layer<&'c mut TcpSocket<'b>>>::Service: Connection,
{
    let loops = buffers
        .each_mut()
        .map(|(rx, tx)| accept_loop(stack, port, rx, tx, layers, &resources.http_buffers));
    join_array(loops).await;
    unreachable!("accept loops never return")
}

/// The README's loop: accept, wrap, serve, end, again, on one socket.
async fn accept_loop<'b, L, const N: usize>(
    stack: Stack<'b>,
    port: u16,
    rx: &'b mut [u8],
    tx: &'b mut [u8],
    layers: &L,
    head_buffers: &Pool<N, HTTP_BUFFER_BYTES>,
) where
    L: for<'c> Layer<&'c mut TcpSocket<'b>>,
    for<'c> <L as Layer<&'c mut TcpSocket<'b>>>::Service: Connection,
{
    let mut socket = TcpSocket::new(stack, rx, tx);
    let mut accepts = AcceptLoop::default();
    loop {
        accepts.accept_socket(&mut socket, port).await;
        let _open = stats::OpenConnection::accepted();
        let mut head = head_buffers.take().await;
        let mut conn = layers.layer(&mut socket);
        let reason = serve_http(&mut conn, &mut head[..]).await;
        conn.end(reason).await; // FIN or RST as the reason says; the layers bound the linger
        // The wrapper (and the budget permit it holds) is dropped before the next accept.
    }
}

/// What a request asked for, borrowed from the head buffer.
struct Request<'h> {
    method: &'h str,
    /// The request target: the path and any query.
    target: &'h str,
    /// HTTP/1.1 without `Connection: close`, or HTTP/1.0 with `Connection: keep-alive`.
    keep_alive: bool,
    /// A `Content-Length` other than 0 or a `Transfer-Encoding`: the app reads no
    /// bodies, so the connection closes after the answer.
    has_body: bool,
}

/// Why a head could not be read.
enum HeadError {
    /// The buffer filled up before the head ended.
    TooLarge,
    /// The client closed in the middle of the head.
    Closed,
    /// A read failed.
    Read,
}

/// Serves requests on `conn` until either side closes. `buf` holds the request head;
/// a pipelined request's first bytes stay in it for the next round. Returns how the
/// connection ended.
async fn serve_http<C: Connection>(conn: &mut C, buf: &mut [u8]) -> CloseReason {
    // `buf[..filled]`: received and not yet handled.
    let mut filled = 0;
    let mut idle_wait = TIMEOUTS.start_read_request;
    loop {
        if filled == 0 {
            match with_timeout(idle_wait, conn.read(buf)).await {
                Err(_) => {
                    debug!("http: no request for {} ms, closing", idle_wait.as_millis());
                    return CloseReason::LocalClose;
                }
                Ok(Ok(0)) => return CloseReason::PeerClosed,
                Ok(Ok(n)) => filled = n,
                Ok(Err(err)) => {
                    debug!("http: read failed between requests: {:?}", err);
                    stats::server_error();
                    return CloseReason::PeerReset;
                }
            }
        }
        idle_wait = TIMEOUTS.persistent_start_read_request;

        let head_len =
            match with_timeout(TIMEOUTS.read_request, read_head(conn, buf, &mut filled)).await {
                Ok(Ok(len)) => len,
                Ok(Err(HeadError::TooLarge)) => {
                    debug!("http: request head over {} bytes", buf.len());
                    stats::server_error();
                    let _ = send(
                        conn,
                        "431 Request Header Fields Too Large",
                        &TEXT_HEADERS,
                        &[],
                        false,
                    )
                    .await;
                    return CloseReason::LocalClose;
                }
                Ok(Err(HeadError::Closed)) => {
                    debug!("http: closed in the middle of a request head");
                    stats::server_error();
                    return CloseReason::ClientCancelled;
                }
                Ok(Err(HeadError::Read)) => {
                    stats::server_error();
                    return CloseReason::ClientCancelled;
                }
                Err(_) => {
                    debug!(
                        "http: request head not complete after {} ms",
                        TIMEOUTS.read_request.as_millis()
                    );
                    stats::server_error();
                    return CloseReason::LocalClose;
                }
            };

        let Some(request) = parse_head(&buf[..head_len]) else {
            debug!("http: malformed request head");
            stats::server_error();
            let _ = send(conn, "400 Bad Request", &TEXT_HEADERS, &[], false).await;
            return CloseReason::LocalClose;
        };
        if ws_echo::is_echo_request(&buf[..head_len]) {
            return ws_echo::echo_after_head(conn, buf, head_len).await;
        }
        let keep_alive = request.keep_alive && !request.has_body;
        if let Some(end) = respond(conn, &request, keep_alive).await {
            return end;
        }
        if !keep_alive {
            return CloseReason::LocalClose;
        }
        buf.copy_within(head_len..filled, 0);
        filled -= head_len;
    }
}

/// Reads until `buf[..*filled]` holds a whole request head; returns its length (up to
/// and including the blank line).
async fn read_head<C: Connection>(
    conn: &mut C,
    buf: &mut [u8],
    filled: &mut usize,
) -> Result<usize, HeadError> {
    loop {
        if let Some(end) = buf[..*filled].windows(4).position(|w| w == b"\r\n\r\n") {
            return Ok(end + 4);
        }
        if *filled == buf.len() {
            return Err(HeadError::TooLarge);
        }
        match conn.read(&mut buf[*filled..]).await {
            Ok(0) => return Err(HeadError::Closed),
            Ok(n) => *filled += n,
            Err(err) => {
                debug!("http: read failed in a request head: {:?}", err);
                return Err(HeadError::Read);
            }
        }
    }
}

/// The request line and the headers the app cares about; `None` for a head that is
/// not HTTP/1.x (or not UTF-8, which no client of this app sends).
fn parse_head(head: &[u8]) -> Option<Request<'_>> {
    let head = core::str::from_utf8(head).ok()?;
    let mut lines = head.split("\r\n");
    let mut words = lines.next()?.split(' ');
    let (method, target, version) = (words.next()?, words.next()?, words.next()?);
    if words.next().is_some() || method.is_empty() || !target.starts_with('/') {
        return None;
    }
    let mut keep_alive = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        _ => return None,
    };
    let mut has_body = false;
    for line in lines.take_while(|line| !line.is_empty()) {
        let (name, value) = line.split_once(':')?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("connection") {
            for option in value.split(',').map(str::trim) {
                if option.eq_ignore_ascii_case("close") {
                    keep_alive = false;
                } else if option.eq_ignore_ascii_case("keep-alive") {
                    keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case("content-length") {
            has_body |= value != "0";
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            has_body = true;
        }
    }
    Some(Request {
        method,
        target,
        keep_alive,
        has_body,
    })
}

/// Answers one request. `None`: answered, the connection may go on; `Some`: it ended.
async fn respond<C: Connection>(
    conn: &mut C,
    request: &Request<'_>,
    keep_alive: bool,
) -> Option<CloseReason> {
    let Some(route) = Route::find(request.target) else {
        return send(
            conn,
            "404 Not Found",
            &TEXT_HEADERS,
            &[b"not found\n"],
            keep_alive,
        )
        .await;
    };
    if request.method != "GET" {
        let body: &[u8] = b"method not allowed\n";
        return send(
            conn,
            "405 Method Not Allowed",
            &TEXT_HEADERS,
            &[body],
            keep_alive,
        )
        .await;
    }
    match route {
        Route::Page => {
            stats::page();
            send(
                conn,
                "200 OK",
                &PAGE_HEADERS,
                &[PAGE.as_bytes()],
                keep_alive,
            )
            .await
        }
        Route::Frame => {
            let frame = Frame::next();
            send(conn, "200 OK", &FRAME_HEADERS, &frame.pieces(), keep_alive).await
        }
        Route::Stats => match content::stats_json() {
            Ok(json) => {
                send(
                    conn,
                    "200 OK",
                    &STATS_HEADERS,
                    &[json.as_bytes()],
                    keep_alive,
                )
                .await
            }
            Err(_) => local_fault(conn, "the counters do not fit their buffer").await,
        },
        Route::Events => Some(stream_events(conn).await),
    }
}

/// Writes a whole response: the head with `Content-Length` (the length of `pieces`)
/// and `Connection`, then the pieces, then waits until the client has it all.
async fn send<C: Connection>(
    conn: &mut C,
    status: &str,
    headers: &[Header],
    pieces: &[&[u8]],
    keep_alive: bool,
) -> Option<CloseReason> {
    let length = pieces.iter().map(|piece| piece.len()).sum();
    let Some(head) = response_head(status, headers, Some(length), keep_alive) else {
        return local_fault(conn, "a response head does not fit its buffer").await;
    };
    if let Err(reason) = write_all(conn, head.as_bytes()).await {
        return Some(reason);
    }
    for piece in pieces {
        if let Err(reason) = write_all(conn, piece).await {
            return Some(reason);
        }
    }
    flush(conn).await.err()
}

/// A response head; `None` if it does not fit in [`HEAD_BYTES`] (the app's heads do).
fn response_head(
    status: &str,
    headers: &[Header],
    length: Option<usize>,
    keep_alive: bool,
) -> Option<Text<HEAD_BYTES>> {
    struct Head<'a> {
        status: &'a str,
        headers: &'a [Header],
        length: Option<usize>,
        keep_alive: bool,
    }
    impl core::fmt::Display for Head<'_> {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            write!(f, "HTTP/1.1 {}\r\n", self.status)?;
            for (name, value) in self.headers {
                write!(f, "{name}: {value}\r\n")?;
            }
            if let Some(length) = self.length {
                write!(f, "Content-Length: {length}\r\n")?;
            }
            let connection = if self.keep_alive {
                "keep-alive"
            } else {
                "close"
            };
            write!(f, "Connection: {connection}\r\n\r\n")
        }
    }
    let head = Head {
        status,
        headers,
        length,
        keep_alive,
    };
    Text::format(format_args!("{head}")).ok()
}

/// `/events`: asks for the stream class first, then sends the counters once a second
/// until the client leaves, reading meanwhile to notice that at once. A refused stream
/// gets a `200` that only asks the browser to come back in 5 s, then a FIN.
async fn stream_events<C: Connection>(conn: &mut C) -> CloseReason {
    if let Err(full) = conn.set_class(ConnectionClass::Stream) {
        debug!("http: /events refused: {}", full);
        // No length: the body ends with the connection (the same bytes as the answer
        // tcp-layers' picoserve adapter gives).
        let Some(head) = response_head("200 OK", &EVENTS_REFUSED_HEADERS, None, false) else {
            return CloseReason::LocalError;
        };
        for bytes in [head.as_bytes(), EVENTS_REFUSED_BODY.as_bytes()] {
            if let Err(reason) = write_all(conn, bytes).await {
                return reason;
            }
        }
        return flush(conn).await.err().unwrap_or(CloseReason::LocalClose);
    }
    stats::stream();
    let Some(head) = response_head("200 OK", &EVENTS_HEADERS, None, false) else {
        return CloseReason::LocalError;
    };
    if let Err(reason) = write_all(conn, head.as_bytes()).await {
        return reason;
    }
    let mut scratch = [0u8; 64];
    loop {
        let Ok(event) = content::stats_event() else {
            warn!("http: the counters do not fit their buffer");
            return CloseReason::LocalError;
        };
        if let Err(reason) = write_all(conn, event.as_bytes()).await {
            return reason;
        }
        if let Err(reason) = flush(conn).await {
            return reason;
        }
        let next = Instant::now() + EVENT_PERIOD;
        loop {
            match select(conn.read(&mut scratch), Timer::at(next)).await {
                Either::First(Ok(0)) => return CloseReason::PeerClosed,
                Either::First(Ok(_)) => {} // nothing to answer: the client only listens
                Either::First(Err(err)) => {
                    debug!("http: event stream ended: {:?}", err);
                    return CloseReason::PeerReset;
                }
                Either::Second(()) => break,
            }
        }
    }
}

/// `write_all` where every write must make progress within `TIMEOUTS.write`. A
/// failure is the client's doing as far as this server can tell (a cancel, a reset,
/// a reader that stopped); the quiet layer knows better and says so.
async fn write_all<C: Connection>(conn: &mut C, mut bytes: &[u8]) -> Result<(), CloseReason> {
    while !bytes.is_empty() {
        match with_timeout(TIMEOUTS.write, conn.write(bytes)).await {
            Ok(Ok(0)) => return Err(write_failed("the connection took no bytes")),
            Ok(Ok(n)) => bytes = &bytes[n..],
            Ok(Err(err)) => {
                debug!("http: write failed: {:?}", err);
                return Err(write_failed("the client is gone"));
            }
            Err(_) => return Err(write_failed("a write stalled")),
        }
    }
    Ok(())
}

/// Waits until the client has acknowledged everything written, within
/// `TIMEOUTS.write`.
async fn flush<C: Connection>(conn: &mut C) -> Result<(), CloseReason> {
    match with_timeout(TIMEOUTS.write, conn.flush()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => {
            debug!("http: flush failed: {:?}", err);
            Err(write_failed("the client is gone"))
        }
        Err(_) => Err(write_failed("the client stopped acknowledging")),
    }
}

/// A response the client did not take: counted as a server error (as picoserve's
/// `Write` errors are), ended as a cancel.
fn write_failed(why: &str) -> CloseReason {
    debug!("http: response not delivered: {}", why);
    stats::server_error();
    CloseReason::ClientCancelled
}

/// The answer to a request this server failed on itself.
const INTERNAL_ERROR: &[u8] =
    b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// A fault of this server, not of the client: a `500`, closing, logged at warn.
async fn local_fault<C: Connection>(conn: &mut C, what: &str) -> Option<CloseReason> {
    warn!("http: {}", what);
    stats::server_error();
    let _ = write_all(conn, INTERNAL_ERROR).await;
    Some(CloseReason::LocalError)
}
