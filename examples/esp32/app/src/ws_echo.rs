//! `/ws`: a WebSocket that echoes every message back, on tcp-layers' WebSocket
//! (`tcp-layers-ws`) over the connection itself.
//!
//! picoserve 0.20 gives a handler no way to the raw connection after a `101`: its
//! `Response` can only carry picoserve's own bodies, and the one that upgrades (feature
//! `ws`) hands out its own frame reader, which unmasks byte by byte. So the upgrade is
//! recognised before picoserve sees the connection: [`upgrade_or_http`] reads the
//! request line of a new connection; `GET /ws` gets the handshake and the echo here,
//! every other request goes to picoserve with the bytes read so far handed back first
//! ([`Replay`]). Browsers open a new connection for every WebSocket, so looking at a
//! connection's first request is enough; a `/ws` later on a keep-alive connection is
//! picoserve's (a 404). The hand-written server reads request heads itself and hands a
//! `GET /ws` head to [`echo_after_head`], on any request of a connection.
//!
//! The WebSocket runs on the layered connection: the upgrade asks the budget for the
//! stream class (refused: `503`), the reaper sees the `101` and treats the connection as
//! a stream (its `keepalive` deadline on writes and flushes), and the WebSocket's own
//! keepalive ([`KEEPALIVE`]) ends a peer that vanished as `Reaped(Keepalive)`, which
//! `/stats` counts as `reaped_keepalive`.
use embassy_time::{Duration, with_timeout};
use tcp_layers::core::{ErrorType, Read, Write};
use tcp_layers::http::request_line::{PathMatch, RequestLine};
use tcp_layers::http::server::{Ending, server_end_reason};
use tcp_layers::ws::{Incoming, Keepalive, Relay, WebSocket, WsConfig, handshake::accept_key};
use tcp_layers::{CloseReason, Connection, ConnectionClass};

use crate::server::TIMEOUTS;

/// The path of the echo.
pub const PATH: &str = "/ws";

/// The keepalive: a ping after 5 s without a byte from the peer, the end 5 s after it
/// without an answer. A vanished peer's socket is free about 10 s after its last byte,
/// short enough for a test to watch; a live browser answers a ping within a round
/// trip, and its pong or any message resets the interval.
pub const KEEPALIVE: Keepalive = Keepalive::ping(Duration::from_secs(5), Duration::from_secs(5));

/// 64 KiB: the largest message echoed. The echo never holds a message (each piece
/// goes back as it comes), so the cap only bounds what one peer can make the device
/// send.
pub const MAX_MESSAGE_BYTES: u64 = 64 * 1024;

static CONFIG: WsConfig = WsConfig::new()
    .with_max_message(MAX_MESSAGE_BYTES)
    .with_keepalive(KEEPALIVE);

/// The most bytes of a new connection read to recognise `/ws`: a request line is
/// 20-100 bytes; one longer than this is no `GET /ws`.
const LINE_BYTES: usize = 256;

const REPLY_400: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// Reads the first request line of `conn`. `GET /ws` gets the handshake and the echo,
/// here, with `buffer` (a request buffer, 2 kB) holding the request head and then the
/// pieces echoed: `None` once the WebSocket is over and the connection ended. Anything
/// else is HTTP: the connection comes back with the bytes read so far in front.
///
/// The waits are picoserve's: a connection that sends nothing within its first-request
/// timeout is ended as picoserve ends it (with the layers, the reaper's first-byte
/// deadline acts before), and one whose request line does not end within its
/// read-request timeout is aborted.
pub async fn upgrade_or_http<C: Connection>(conn: C, buffer: &mut [u8]) -> Option<Replay<C>> {
    let mut conn = Replay::new(conn);
    let ending = match with_timeout(TIMEOUTS.start_read_request, conn.fill_first()).await {
        Ok(Ok(())) => match with_timeout(TIMEOUTS.read_request, conn.fill_line()).await {
            Ok(Ok(())) => None,
            // The peer closed or failed: picoserve ends it as it ends any connection.
            Ok(Err(_)) => return Some(conn),
            Err(_) => Some(Ending::Abort),
        },
        Ok(Err(_)) => return Some(conn),
        Err(_) => Some(Ending::Shutdown),
    };
    if let Some(ending) = ending {
        let reason = server_end_reason(&conn, ending);
        conn.end(reason).await;
        return None;
    }
    if !is_echo_request(conn.pending()) {
        return Some(conn);
    }
    // No head (too large, the peer closed, too slow) is a head without a key: a 400.
    let head = match with_timeout(TIMEOUTS.read_request, conn.read_head(buffer)).await {
        Ok(Ok(head)) => head,
        _ => 0,
    };
    echo(conn, buffer, head).await;
    None
}

/// Whether `head` (a request head, or at least its first line) asks for the echo: a
/// `GET` of [`PATH`], with or without a query.
pub fn is_echo_request(head: &[u8]) -> bool {
    head.starts_with(b"GET ") && RequestLine::new().feed(&[PATH], head) == PathMatch::Matched
}

/// The echo for a server that reads request heads itself (the hand-written one):
/// `buffer[..head_len]` is a head that asks for the echo ([`is_echo_request`]). Answers the handshake (or 400, or 503 when the budget has no
/// stream slot left) and echoes until the peer closes or goes silent, reusing `buffer`
/// for the pieces. The connection is ended when this returns; the reason it ended
/// with is returned (for the server's own `end`, which then changes nothing).
pub async fn echo_after_head<C: Connection>(
    conn: &mut C,
    buffer: &mut [u8],
    head_len: usize,
) -> CloseReason {
    echo(Replay::new(&mut *conn), buffer, head_len).await;
    conn.close_reason().unwrap_or(CloseReason::LocalClose)
}

/// The opening handshake for the head in `buffer[..head_len]`, then the echo until the
/// peer closes or goes silent.
async fn echo<C: Connection>(mut conn: Replay<C>, buffer: &mut [u8], head_len: usize) {
    let reply = match websocket_key(&buffer[..head_len]) {
        Some(key) => Ok(accept_key(key)),
        None => Err(REPLY_400),
    };
    let accept = match reply {
        Ok(accept) => match conn.set_class(ConnectionClass::Stream) {
            Ok(()) => accept,
            Err(_) => return refuse(conn, tcp_layers::http::reply::REPLY_503).await,
        },
        Err(reply) => return refuse(conn, reply).await,
    };
    let switched = async {
        conn.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ").await?;
        conn.write_all(&accept).await?;
        conn.write_all(b"\r\n\r\n").await?;
        conn.flush().await
    };
    if switched.await.is_err() {
        let reason = server_end_reason(&conn, Ending::Abort);
        return conn.end(reason).await;
    }
    conn.queue_flushes();
    let mut ws = WebSocket::new(conn, CONFIG);
    // Each piece the reader hands out goes back as one frame of the same message.
    let mut relay = Relay::new();
    loop {
        let piece = match ws.read(buffer).await {
            Ok(Incoming::Data(piece)) => piece,
            // Closed: the close was answered and the connection ended.
            Ok(Incoming::Closed(_)) => return,
            Err(e) => return ended(&mut ws, e).await,
        };
        let (opcode, fin) = relay.frame_for(&piece);
        if let Err(e) = ws.send_frame(opcode, fin, piece.bytes).await {
            return ended(&mut ws, e).await;
        }
    }
}

/// After a WebSocket error: every error but a failed connection already ended it.
async fn ended<C: Connection, E>(ws: &mut WebSocket<Replay<C>>, error: tcp_layers::ws::WsError<E>) {
    if let tcp_layers::ws::WsError::Io(_) = error {
        let conn = ws.get_mut();
        let reason = server_end_reason(conn, Ending::Abort);
        conn.end(reason).await;
    }
}

/// Answers `reply` and closes.
async fn refuse<C: Connection>(mut conn: Replay<C>, reply: &[u8]) {
    let _ = conn.write_all(reply).await;
    let reason = server_end_reason(&conn, Ending::Shutdown);
    conn.end(reason).await
}

/// The `Sec-WebSocket-Key` of an upgrade request head, when the head asks for a
/// WebSocket (`Upgrade: websocket`, `Sec-WebSocket-Version: 13`).
fn websocket_key(head: &[u8]) -> Option<&[u8]> {
    let (mut upgrade, mut version, mut key) = (false, false, None);
    for line in head.split(|&b| b == b'\n').skip(1) {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if name.eq_ignore_ascii_case(b"upgrade") {
            upgrade = value.eq_ignore_ascii_case(b"websocket");
        } else if name.eq_ignore_ascii_case(b"sec-websocket-version") {
            version = value == b"13";
        } else if name.eq_ignore_ascii_case(b"sec-websocket-key") {
            key = Some(value);
        }
    }
    key.filter(|key| upgrade && version && !key.is_empty())
}

/// A connection with bytes already read from it in front: reads hand those out first,
/// everything else is the connection's (its `flush` too, until [`Replay::queue_flushes`]).
pub struct Replay<C> {
    inner: C,
    bytes: [u8; LINE_BYTES],
    start: usize,
    end: usize,
    queued_flush: bool,
}

impl<C: Connection> Replay<C> {
    fn new(inner: C) -> Self {
        Self {
            inner,
            bytes: [0; LINE_BYTES],
            start: 0,
            end: 0,
            queued_flush: false,
        }
    }

    /// From now on `flush` returns at once: written bytes are in the socket's send
    /// buffer, from which the stack sends them at its next poll (the picoserve
    /// adapter's `FlushMode::Queued`). The WebSocket flushes every frame it sends, and
    /// on embassy-net a flush waits for the peer's ACK: the echo would wait for the
    /// browser's delayed ACK (40 ms on Linux) after every 2 kB piece, 50 ms a piece
    /// and 0.8 s for a 32 kB message. A peer that stops acknowledging still fills the
    /// send buffer, and the reaper's keepalive ends the write that waits; one that
    /// vanished after its last message is ended by the WebSocket's keepalive.
    fn queue_flushes(&mut self) {
        self.queued_flush = true;
    }

    /// The bytes read and not yet handed out.
    fn pending(&self) -> &[u8] {
        &self.bytes[self.start..self.end]
    }

    /// Reads once: the first bytes of the connection, or none when the peer closed.
    async fn fill_first(&mut self) -> Result<(), C::Error> {
        self.end += self.inner.read(&mut self.bytes[self.end..]).await?;
        Ok(())
    }

    /// Reads until the first line ends, [`LINE_BYTES`] are read or the peer closed.
    async fn fill_line(&mut self) -> Result<(), C::Error> {
        while self.end < LINE_BYTES && !self.pending().contains(&b'\n') {
            match self.inner.read(&mut self.bytes[self.end..]).await? {
                0 => break,
                n => self.end += n,
            }
        }
        Ok(())
    }

    /// Moves the request head into `buffer` (what was read so far, then more until the
    /// blank line) and returns its length; bytes after it stay pending. `Ok(0)` when
    /// the head does not fit or the peer closed first.
    async fn read_head(&mut self, buffer: &mut [u8]) -> Result<usize, C::Error> {
        let mut have = self.pending().len().min(buffer.len());
        buffer[..have].copy_from_slice(&self.pending()[..have]);
        self.start = self.end;
        loop {
            if let Some(end) = buffer[..have].windows(4).position(|w| w == b"\r\n\r\n") {
                let head = end + 4;
                // A client sends frames only after the 101; keep what came early.
                let extra = &buffer[head..have];
                if extra.len() > LINE_BYTES {
                    return Ok(0);
                }
                self.bytes[..extra.len()].copy_from_slice(extra);
                (self.start, self.end) = (0, extra.len());
                return Ok(head);
            }
            if have == buffer.len() {
                return Ok(0);
            }
            match self.inner.read(&mut buffer[have..]).await? {
                0 => return Ok(0),
                n => have += n,
            }
        }
    }
}

impl<C: Connection> ErrorType for Replay<C> {
    type Error = C::Error;
}

impl<C: Connection> Read for Replay<C> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, C::Error> {
        if self.start == self.end {
            return self.inner.read(buf).await;
        }
        let n = self.pending().len().min(buf.len());
        buf[..n].copy_from_slice(&self.bytes[self.start..self.start + n]);
        self.start += n;
        Ok(n)
    }
}

impl<C: Connection> Write for Replay<C> {
    fn write(&mut self, buf: &[u8]) -> impl Future<Output = Result<usize, C::Error>> {
        self.inner.write(buf)
    }
    async fn flush(&mut self) -> Result<(), C::Error> {
        match self.queued_flush {
            true => Ok(()),
            false => self.inner.flush().await,
        }
    }
}

impl<C: Connection> Connection for Replay<C> {
    tcp_layers::core::delegate_connection!(inner; state, set_nodelay, close_write, abort,
        remote, local, send_queue, ended_error, close_reason, set_class, end);

    fn recv_queue(&self) -> Option<usize> {
        self.inner.recv_queue().map(|n| n + self.pending().len())
    }
}

#[cfg(test)]
mod tests {
    use super::is_echo_request;

    #[test]
    fn a_get_of_the_path_with_or_without_a_query_asks_for_the_echo() {
        assert!(is_echo_request(b"GET /ws HTTP/1.1\r\nHost: d\r\n\r\n"));
        assert!(is_echo_request(b"GET /ws?camera=1 HTTP/1.1\r\n"));
        assert!(!is_echo_request(b"GET /wsx HTTP/1.1\r\n"));
        assert!(!is_echo_request(b"GET /ws/more HTTP/1.1\r\n"));
        assert!(!is_echo_request(b"GET / HTTP/1.1\r\n"));
        assert!(!is_echo_request(b"POST /ws HTTP/1.1\r\n"));
        // A line cut before the path ends is no request for the echo yet.
        assert!(!is_echo_request(b"GET /w"));
    }
}
