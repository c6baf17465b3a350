//! [`WebSocket`]: the server side of one WebSocket connection over a connection whose
//! HTTP upgrade is done.

use core::ops::Range;

use embassy_futures::select::{Either, select};
use embassy_time::{Duration, Instant, Timer, with_deadline, with_timeout};
use tcp_layers_core::{CloseReason, Connection, Deadline, ErrorType, Read, Write};

use crate::frame::{
    self, Fin, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN, Opcode, Parse, ProtocolError, close_code,
};
use crate::mask::Unmasker;
use crate::utf8::Utf8Check;

/// How often the server pings a connection that sent nothing, and how long it then
/// waits for any sign of life (a pong, any frame, any byte) before it ends it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Keepalive {
    /// No pings, no deadline: a peer that vanished holds the connection until the
    /// stack gives up on it (never, while nothing is sent to it).
    Off,
    /// After `interval` without a byte from the peer, send a ping; if no byte arrives
    /// within `deadline` after the ping, end the connection with
    /// [`CloseReason::Reaped`]`(`[`Deadline::Keepalive`]`)`. A vanished peer is gone
    /// `interval + deadline` after its last byte.
    Ping {
        /// Silence after which a ping is sent.
        interval: Duration,
        /// Time after the ping within which the peer must show a sign of life.
        deadline: Duration,
    },
}

impl Keepalive {
    /// 30 s: the ping interval of most WebSocket servers (the `ws` package's heartbeat
    /// example, Jetty's and Socket.IO's defaults are 25-30 s), under the 60 s idle
    /// timeout of common proxies and home-router NAT tables, so a ping also keeps those
    /// open.
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
    /// 10 s: a pong returns within a round trip (tens of ms on Wi-Fi); 10 s leaves room
    /// for several TCP retransmissions of the ping on a lossy link before a live peer
    /// would be taken for a vanished one.
    pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);
    /// A ping after 30 s of silence, the end 10 s later.
    pub const DEFAULT: Self = Self::Ping {
        interval: Self::DEFAULT_INTERVAL,
        deadline: Self::DEFAULT_DEADLINE,
    };

    /// A ping after `interval` of silence, the end `deadline` after the ping.
    pub const fn ping(interval: Duration, deadline: Duration) -> Self {
        Self::Ping { interval, deadline }
    }
}

/// The configuration of a [`WebSocket`]: `const fn` constructors, so it can be a
/// `static`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct WsConfig {
    max_message: u64,
    keepalive: Keepalive,
    close_timeout: Duration,
}

impl WsConfig {
    /// 16 KiB: the payload cap per message, all its frames together. The reader never
    /// holds a frame or a message whole (it hands out pieces of the caller's buffer), so
    /// the cap guards the application that collects a message: 16 KiB is above any
    /// control or chat message an ESP32 app exchanges and a fraction of its free RAM.
    /// It counts whole messages, not frames: a peer cannot pass it by fragmenting.
    pub const DEFAULT_MAX_MESSAGE: u64 = 16 * 1024;
    /// 2 s: how long a local close waits for the peer's close frame. A browser answers
    /// within a round trip; 2 s covers a few retransmissions on a lossy Wi-Fi link.
    pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

    /// The defaults: a 16 KiB message cap, [`Keepalive::DEFAULT`] (ping after 30 s,
    /// end 10 s later), a 2 s close timeout.
    pub const fn new() -> Self {
        Self {
            max_message: Self::DEFAULT_MAX_MESSAGE,
            keepalive: Keepalive::DEFAULT,
            close_timeout: Self::DEFAULT_CLOSE_TIMEOUT,
        }
    }

    /// The same with a cap of `bytes` per message (the payloads of its frames
    /// together). A frame that would take its message past the cap closes the
    /// connection with 1009 as soon as its header arrives, before any of its payload is
    /// read.
    pub const fn with_max_message(mut self, bytes: u64) -> Self {
        self.max_message = bytes;
        self
    }

    /// The same with another keepalive.
    pub const fn with_keepalive(mut self, keepalive: Keepalive) -> Self {
        self.keepalive = keepalive;
        self
    }

    /// The same with another close timeout.
    pub const fn with_close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// The payload cap per message, bytes.
    pub const fn max_message(&self) -> u64 {
        self.max_message
    }

    /// The keepalive.
    pub const fn keepalive(&self) -> Keepalive {
        self.keepalive
    }

    /// How long a local close waits for the peer's close frame.
    pub const fn close_timeout(&self) -> Duration {
        self.close_timeout
    }
}

impl Default for WsConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// What a [`WebSocket`] needs of the connection under it: reads, writes and a way to
/// end it. Every [`Connection`] is one (its [`Connection::end`]); [`IoOnly`] makes a
/// plain embedded-io-async `Read + Write` one, [`Halves`] a separate reader and writer.
#[allow(async_fn_in_trait)] // embassy-net sockets are !Send
pub trait Transport: Read + Write {
    /// Ends the connection for `reason` and waits until the stack acted on it.
    async fn end(&mut self, reason: CloseReason);
}

impl<C: Connection> Transport for C {
    async fn end(&mut self, reason: CloseReason) {
        Connection::end(self, reason).await
    }
}

/// A plain embedded-io-async `Read + Write` (the socket a server hands a WebSocket
/// handler after the upgrade, when it is not a [`Connection`]) as a [`Transport`]:
/// its `end` only flushes, and the server that owns the socket closes it when the
/// handler returns. The keepalive's deadline still ends the WebSocket; the socket is
/// freed when the handler returns.
pub struct IoOnly<T>(pub T);

impl<T: ErrorType> ErrorType for IoOnly<T> {
    type Error = T::Error;
}

impl<T: Read> Read for IoOnly<T> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, T::Error> {
        self.0.read(buf).await
    }
}

impl<T: Write> Write for IoOnly<T> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, T::Error> {
        self.0.write(buf).await
    }
    async fn flush(&mut self) -> Result<(), T::Error> {
        self.0.flush().await
    }
}

impl<T: Read + Write> Transport for IoOnly<T> {
    async fn end(&mut self, _reason: CloseReason) {
        let _ = self.0.flush().await;
    }
}

/// A read half and a write half as one [`Transport`]: for a server whose upgrade hands
/// the WebSocket handler a separate reader and writer (picoserve's `WebSocketCallback`
/// does). Like [`IoOnly`], its `end` only flushes the writer; the server closes the
/// socket when the handler returns.
pub struct Halves<R, W> {
    /// The read half.
    pub read: R,
    /// The write half.
    pub write: W,
}

impl<R: ErrorType, W> ErrorType for Halves<R, W> {
    type Error = R::Error;
}

impl<R: Read, W> Read for Halves<R, W> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, R::Error> {
        self.read.read(buf).await
    }
}

impl<R: Read, W: Write<Error = R::Error>> Write for Halves<R, W> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, R::Error> {
        self.write.write(buf).await
    }
    async fn flush(&mut self) -> Result<(), R::Error> {
        self.write.flush().await
    }
}

impl<R: Read, W: Write<Error = R::Error>> Transport for Halves<R, W> {
    async fn end(&mut self, _reason: CloseReason) {
        let _ = self.write.flush().await;
    }
}

/// The kind of a data message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum DataKind {
    /// UTF-8 text. The reader does not validate it: a piece may end inside a
    /// character; the application decodes the message it assembles.
    Text,
    /// Bytes.
    Binary,
}

impl DataKind {
    /// The opcode of a message's first frame of this kind.
    pub const fn opcode(self) -> Opcode {
        match self {
            Self::Text => Opcode::Text,
            Self::Binary => Opcode::Binary,
        }
    }
}

/// Where a [`Piece`] ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum PieceEnd {
    /// More of the same frame follows.
    More,
    /// The frame ends here; the message goes on in continuation frames.
    Frame,
    /// The message ends here.
    Message,
}

/// A piece of a data message's payload, unmasked, in the caller's buffer.
#[derive(Debug, PartialEq, Eq)]
pub struct Piece<'b> {
    /// Text or binary (for every piece of the message, continuation frames included).
    pub kind: DataKind,
    /// The unmasked bytes (empty for an empty frame).
    pub bytes: &'b mut [u8],
    /// Whether the frame or the message ends with this piece.
    pub end: PieceEnd,
}

/// The frames that send a message on piece by piece as [`WebSocket::read`] hands it
/// out (an echo, a relay to another peer), so no message is ever held whole: the
/// first frame carries the message's kind, the others are continuations, and the
/// frame of the message's last piece has FIN.
///
/// Plain state, no future: one per direction of a relay.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Relay {
    /// Whether a message was started and not yet finished.
    mid_message: bool,
}

impl Relay {
    /// Before any message.
    pub const fn new() -> Self {
        Self { mid_message: false }
    }

    /// The opcode and FIN of the frame that sends `piece` on, for
    /// [`WebSocket::send_frame`].
    pub fn frame_for(&mut self, piece: &Piece<'_>) -> (Opcode, Fin) {
        let opcode = if self.mid_message {
            Opcode::Continuation
        } else {
            piece.kind.opcode()
        };
        let fin = match piece.end {
            PieceEnd::Message => Fin::Final,
            PieceEnd::More | PieceEnd::Frame => Fin::More,
        };
        self.mid_message = fin == Fin::More;
        (opcode, fin)
    }
}

/// How the peer closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum CloseStatus {
    /// A close frame with this status code.
    Code(u16),
    /// A close frame without a status code.
    NoCode,
    /// The TCP connection ended (FIN) without a close frame.
    NoCloseFrame,
}

/// What [`WebSocket::read`] returns.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming<'b> {
    /// A piece of a text or binary message.
    Data(Piece<'b>),
    /// The peer closed; the close frame was answered and the connection ended
    /// ([`CloseReason::PeerClosed`], or [`CloseReason::LocalClose`] when this side
    /// started the close).
    Closed(CloseStatus),
}

/// Why a [`WebSocket`] operation failed. After every error but
/// [`WsError::InvalidFrame`] the WebSocket is over: later calls answer
/// [`WsError::Closed`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum WsError<E> {
    /// The connection failed (reset, timed out); it is left for the caller to end.
    Io(E),
    /// The peer broke the protocol: a close frame with the error's code
    /// ([`ProtocolError::close_code`]: 1002, 1007 or 1009) was sent and the connection
    /// ended with [`CloseReason::LocalClose`].
    Protocol(ProtocolError),
    /// The peer went silent: no byte within the keepalive deadline after a ping (or the
    /// ping could not even be written within it). The connection was ended with
    /// [`CloseReason::Reaped`]`(`[`Deadline::Keepalive`]`)`.
    PeerSilent,
    /// The WebSocket is already closed.
    Closed,
    /// This side may not send that frame: a control frame over 125 bytes or without
    /// FIN. Nothing was sent.
    InvalidFrame,
}

impl<E: core::fmt::Debug> core::fmt::Display for WsError<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Io(e) => write!(f, "connection failed: {e:?}"),
            Self::Protocol(e) => write!(f, "protocol error ({}): {e}", e.close_code()),
            Self::PeerSilent => f.write_str("the peer went silent past the keepalive deadline"),
            Self::Closed => f.write_str("the WebSocket is closed"),
            Self::InvalidFrame => f.write_str("control frame over 125 bytes or fragmented"),
        }
    }
}

impl<E: core::fmt::Debug> core::error::Error for WsError<E> {}

/// Where the reader is in the byte stream.
#[derive(Clone, Copy, Debug)]
enum ReadState {
    /// Collecting a header in `head`.
    Header,
    /// Handing out a data frame's payload.
    Payload {
        kind: DataKind,
        fin: Fin,
        unmasker: Unmasker,
        remaining: u64,
    },
    /// Collecting a control frame's payload in `control`.
    Control {
        opcode: Opcode,
        unmasker: Unmasker,
        len: u8,
        have: u8,
    },
    /// The WebSocket is over.
    Ended,
}

/// Whether this side sent its close frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Closing {
    Open,
    CloseSent,
}

/// A control frame waiting to be written (a pong, a ping, a close); written bytes
/// are counted, so a cancelled write resumes where it stopped.
struct Outgoing {
    buf: [u8; 2 + MAX_CONTROL_PAYLOAD],
    start: u8,
    end: u8,
}

impl Outgoing {
    const fn new() -> Self {
        Self {
            buf: [0; 2 + MAX_CONTROL_PAYLOAD],
            start: 0,
            end: 0,
        }
    }

    /// Queues a control frame; the queue must be empty. `payload` is cut to 125 bytes.
    fn set(&mut self, opcode: Opcode, payload: &[u8]) {
        let len = payload.len().min(MAX_CONTROL_PAYLOAD);
        self.buf[0] = 0x80 | opcode.bits();
        self.buf[1] = len as u8;
        self.buf[2..2 + len].copy_from_slice(&payload[..len]);
        self.start = 0;
        self.end = 2 + len as u8;
    }

    /// Writes what is queued, then flushes.
    async fn flush<C: Write>(&mut self, conn: &mut C) -> Result<(), C::Error> {
        while self.start < self.end {
            let n = conn
                .write(&self.buf[usize::from(self.start)..usize::from(self.end)])
                .await?;
            if n == 0 {
                break;
            }
            self.start += n as u8;
        }
        conn.flush().await
    }
}

/// The peer's last sign of life and the keepalive ping in flight.
#[derive(Clone, Copy, Debug)]
struct Alive {
    last_seen: Instant,
    ping_sent: Option<Instant>,
}

impl Alive {
    /// When the keepalive acts next: the ping, or the end.
    fn next(&self, keepalive: Keepalive) -> Option<Instant> {
        match keepalive {
            Keepalive::Off => None,
            Keepalive::Ping { interval, deadline } => Some(match self.ping_sent {
                None => self.last_seen + interval,
                Some(sent) => sent + deadline,
            }),
        }
    }
}

/// Why a read from the connection stopped.
enum Stop<E> {
    Io(E),
    Silent,
}

/// Reads into `dst`, sending the keepalive's ping when the peer was silent for its
/// interval; `Stop::Silent` when the deadline after the ping passed too.
async fn read_alive<C: Transport>(
    conn: &mut C,
    alive: &mut Alive,
    out: &mut Outgoing,
    keepalive: Keepalive,
    dst: &mut [u8],
) -> Result<usize, Stop<C::Error>> {
    loop {
        let result = match alive.next(keepalive) {
            None => conn.read(dst).await,
            Some(at) => match select(conn.read(dst), Timer::at(at)).await {
                Either::First(result) => result,
                Either::Second(()) => {
                    let (Keepalive::Ping { deadline, .. }, None) = (keepalive, alive.ping_sent)
                    else {
                        return Err(Stop::Silent);
                    };
                    let now = Instant::now();
                    alive.ping_sent = Some(now);
                    trace!("ws: peer silent, ping");
                    let ping = async {
                        out.flush(conn).await?;
                        out.set(Opcode::Ping, &[]);
                        out.flush(conn).await
                    };
                    match with_deadline(now + deadline, ping).await {
                        Ok(Ok(())) => continue,
                        Ok(Err(e)) => return Err(Stop::Io(e)),
                        Err(_) => return Err(Stop::Silent),
                    }
                }
            },
        };
        return match result {
            Ok(n) => {
                if n > 0 {
                    alive.last_seen = Instant::now();
                    alive.ping_sent = None;
                }
                Ok(n)
            }
            Err(e) => Err(Stop::Io(e)),
        };
    }
}

/// What a control frame this side writes carries.
#[derive(Clone, Copy)]
enum Body {
    Empty,
    /// A close status code.
    Code(u16),
    /// The first `len` bytes of the received control frame (a ping's payload).
    Echo(usize),
}

/// Which of its own buffers the WebSocket reads into.
enum Own {
    Head(Range<usize>),
    Control(Range<usize>),
}

/// The server side of one WebSocket connection (RFC 6455), over a connection whose
/// HTTP upgrade (`101 Switching Protocols`) is done.
///
/// [`WebSocket::read`] hands out the payload of the client's text and binary frames,
/// unmasked in place, in pieces of the caller's buffer: no frame is ever held whole,
/// and a piece is as large as the buffer and what the stack has received allow. It
/// answers pings, enforces the protocol (masked client frames, control-frame rules,
/// fragmentation order, the payload cap) and runs the keepalive. The `send` methods
/// write unmasked server frames.
///
/// Cancel safety: dropping a `read` future at any await loses nothing (header bytes,
/// the unmask phase and a half-written pong are kept in the WebSocket), so `read` can
/// sit in a `select` beside what the application sends. Dropping a `send` future after
/// part of a frame was written leaves that frame unfinished: end the connection then.
///
/// RAM: about 290 bytes besides the connection (a header buffer, a control frame's
/// payload, one outgoing control frame).
pub struct WebSocket<C> {
    conn: C,
    config: WsConfig,
    state: ReadState,
    /// The kind of the fragmented data message in progress.
    message: Option<DataKind>,
    /// The payload bytes of the message in progress, its current frame's included.
    message_len: u64,
    /// The text message in progress so far is UTF-8 (up to an unfinished character).
    text: Utf8Check,
    closing: Closing,
    head: [u8; MAX_HEADER_LEN],
    head_len: u8,
    control: [u8; MAX_CONTROL_PAYLOAD],
    out: Outgoing,
    alive: Alive,
}

impl<C: Transport> WebSocket<C> {
    /// A WebSocket over `conn`, the connection of a completed upgrade; the keepalive's
    /// first interval starts now.
    pub fn new(conn: C, config: WsConfig) -> Self {
        Self {
            conn,
            config,
            state: ReadState::Header,
            message: None,
            message_len: 0,
            text: Utf8Check::default(),
            closing: Closing::Open,
            head: [0; MAX_HEADER_LEN],
            head_len: 0,
            control: [0; MAX_CONTROL_PAYLOAD],
            out: Outgoing::new(),
            alive: Alive {
                last_seen: Instant::now(),
                ping_sent: None,
            },
        }
    }

    /// The configuration.
    pub fn config(&self) -> &WsConfig {
        &self.config
    }

    /// The connection.
    pub fn get_ref(&self) -> &C {
        &self.conn
    }

    /// The connection, mutably (writing to it directly breaks the framing).
    pub fn get_mut(&mut self) -> &mut C {
        &mut self.conn
    }

    /// The connection back.
    pub fn into_inner(self) -> C {
        self.conn
    }

    /// True once the WebSocket is over (closed, failed or ended by the keepalive).
    pub fn is_closed(&self) -> bool {
        matches!(self.state, ReadState::Ended)
    }

    /// Waits for the next piece of a text or binary message and returns it, unmasked,
    /// in `buf` (at most `buf.len()` bytes, never more than the frame has left, so
    /// nothing of the next frame is read).
    ///
    /// On the way it answers pings with pongs, takes pongs as signs of life, sends the
    /// keepalive's ping and ends a connection that stayed silent past its deadline
    /// ([`WsError::PeerSilent`]). A close frame from the peer is echoed and the
    /// connection ended: [`Incoming::Closed`]. A frame that breaks the protocol or
    /// takes its message past the cap closes with 1002, 1007 or 1009: [`WsError::Protocol`].
    /// An empty `buf` in the middle of a frame returns an empty piece
    /// ([`PieceEnd::More`]).
    pub async fn read<'b>(&mut self, buf: &'b mut [u8]) -> Result<Incoming<'b>, WsError<C::Error>> {
        loop {
            match self.state {
                ReadState::Ended => return Err(WsError::Closed),
                ReadState::Header => {
                    let have = usize::from(self.head_len);
                    let header = match frame::parse_header(&self.head[..have]) {
                        Err(e) => return Err(self.fail(e).await),
                        Ok(Parse::Incomplete { needed }) => {
                            match self.recv_own(Own::Head(have..have + needed)).await? {
                                0 => return self.peer_gone().await,
                                n => self.head_len += n as u8,
                            }
                            continue;
                        }
                        Ok(Parse::Complete { header, .. }) => header,
                    };
                    self.head_len = 0;
                    let Some(key) = header.mask else {
                        return Err(self.fail(ProtocolError::Unmasked).await);
                    };
                    let unmasker = Unmasker::new(key);
                    if header.opcode.is_control() {
                        // parse_header checked: at most 125 bytes.
                        self.state = ReadState::Control {
                            opcode: header.opcode,
                            unmasker,
                            len: header.payload_len as u8,
                            have: 0,
                        };
                        continue;
                    }
                    let kind = match (header.opcode, self.message) {
                        (Opcode::Continuation, Some(kind)) => kind,
                        (Opcode::Continuation, None) => {
                            return Err(self.fail(ProtocolError::UnexpectedContinuation).await);
                        }
                        (_, Some(_)) => {
                            return Err(self.fail(ProtocolError::ExpectedContinuation).await);
                        }
                        (Opcode::Text, None) => {
                            self.text = Utf8Check::default();
                            DataKind::Text
                        }
                        (_, None) => DataKind::Binary,
                    };
                    let before = match header.opcode {
                        Opcode::Continuation => self.message_len,
                        _ => 0,
                    };
                    let len = before.saturating_add(header.payload_len);
                    if len > self.config.max_message {
                        let max = self.config.max_message;
                        return Err(self.fail(ProtocolError::TooLarge { len, max }).await);
                    }
                    self.message_len = len;
                    self.message = match header.fin {
                        Fin::More => Some(kind),
                        Fin::Final => None,
                    };
                    if header.payload_len == 0 {
                        let last = header.fin == Fin::Final;
                        if kind == DataKind::Text && self.text.feed(&[], last).is_err() {
                            return Err(self.fail(ProtocolError::InvalidText).await);
                        }
                        return Ok(Incoming::Data(Piece {
                            kind,
                            bytes: &mut buf[..0],
                            end: frame_end(header.fin),
                        }));
                    }
                    self.state = ReadState::Payload {
                        kind,
                        fin: header.fin,
                        unmasker,
                        remaining: header.payload_len,
                    };
                }
                ReadState::Payload {
                    kind,
                    fin,
                    mut unmasker,
                    remaining,
                } => {
                    let want = usize::try_from(remaining).map_or(buf.len(), |r| r.min(buf.len()));
                    let n = match read_alive(
                        &mut self.conn,
                        &mut self.alive,
                        &mut self.out,
                        self.config.keepalive,
                        &mut buf[..want],
                    )
                    .await
                    {
                        Ok(0) if want > 0 => return self.peer_gone().await,
                        Ok(n) => n,
                        Err(stop) => return Err(self.stopped(stop).await),
                    };
                    let bytes = &mut buf[..n];
                    unmasker.apply(bytes);
                    let remaining = remaining - n as u64;
                    let end = if remaining == 0 {
                        self.state = ReadState::Header;
                        frame_end(fin)
                    } else {
                        self.state = ReadState::Payload {
                            kind,
                            fin,
                            unmasker,
                            remaining,
                        };
                        PieceEnd::More
                    };
                    let last = end == PieceEnd::Message;
                    if kind == DataKind::Text && self.text.feed(bytes, last).is_err() {
                        return Err(self.fail(ProtocolError::InvalidText).await);
                    }
                    return Ok(Incoming::Data(Piece { kind, bytes, end }));
                }
                ReadState::Control {
                    opcode,
                    mut unmasker,
                    len,
                    have,
                } => {
                    if have < len {
                        let range = usize::from(have)..usize::from(len);
                        match self.recv_own(Own::Control(range)).await? {
                            0 => return self.peer_gone().await,
                            n => {
                                self.state = ReadState::Control {
                                    opcode,
                                    unmasker,
                                    len,
                                    have: have + n as u8,
                                }
                            }
                        }
                        continue;
                    }
                    let len = usize::from(len);
                    unmasker.apply(&mut self.control[..len]);
                    self.state = ReadState::Header;
                    match opcode {
                        Opcode::Ping if self.closing == Closing::Open => self.pong(len).await?,
                        Opcode::Close => return self.peer_closed(len).await,
                        // A pong's bytes were already a sign of life.
                        _ => {}
                    }
                }
            }
        }
    }

    /// Sends one whole message as one unmasked frame.
    pub async fn send(&mut self, kind: DataKind, payload: &[u8]) -> Result<(), WsError<C::Error>> {
        self.send_frame(kind.opcode(), Fin::Final, payload).await
    }

    /// Sends one frame: a fragment of a message (`Text`/`Binary` then `Continuation`,
    /// the last with [`Fin::Final`]) or a control frame (at most 125 bytes, `Final`;
    /// else [`WsError::InvalidFrame`] and nothing is sent). A queued pong goes out first,
    /// so control frames never land inside a data frame.
    ///
    /// Returns when the frame is written and flushed; on embassy-net a flush waits
    /// until the peer acknowledged everything (one round trip). With a keepalive, a send
    /// that has not finished `interval + deadline` after it started (the peer
    /// acknowledges nothing: it vanished, or stopped reading) ends the connection like a
    /// silent reader: [`WsError::PeerSilent`], [`CloseReason::Reaped`]`(`[`Deadline::Keepalive`]`)`.
    pub async fn send_frame(
        &mut self,
        opcode: Opcode,
        fin: Fin,
        payload: &[u8],
    ) -> Result<(), WsError<C::Error>> {
        if opcode.is_control() && (payload.len() > MAX_CONTROL_PAYLOAD || fin == Fin::More) {
            return Err(WsError::InvalidFrame);
        }
        if self.is_closed() || self.closing == Closing::CloseSent {
            return Err(WsError::Closed);
        }
        let mut head = [0u8; 10];
        let n = frame::write_header(fin, opcode, payload.len() as u64, &mut head);
        let write = async {
            self.out.flush(&mut self.conn).await?;
            self.conn.write_all(&head[..n]).await?;
            self.conn.write_all(payload).await?;
            self.conn.flush().await
        };
        let result = match self.config.keepalive {
            Keepalive::Off => Ok(write.await),
            Keepalive::Ping { interval, deadline } => {
                with_timeout(interval + deadline, write).await
            }
        };
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.stopped(Stop::Io(e)).await),
            Err(_) => Err(self.stopped(Stop::Silent).await),
        }
    }

    /// Sends a ping with `payload` (at most 125 bytes). The pong comes back through
    /// [`WebSocket::read`], as a sign of life.
    pub async fn ping(&mut self, payload: &[u8]) -> Result<(), WsError<C::Error>> {
        self.send_frame(Opcode::Ping, Fin::Final, payload).await
    }

    /// Closes with `code` ([`close_code`]): sends a close frame, waits up to the close
    /// timeout for the peer's (data frames meanwhile are read and dropped), then ends
    /// the connection with [`CloseReason::LocalClose`].
    pub async fn close(&mut self, code: u16) -> Result<(), WsError<C::Error>> {
        if self.is_closed() || self.closing == Closing::CloseSent {
            return Err(WsError::Closed);
        }
        self.closing = Closing::CloseSent;
        let timeout = self.config.close_timeout;
        let sent = self
            .write_control(Opcode::Close, Body::Code(code), Some(timeout))
            .await;
        if let Err(Some(e)) = sent {
            self.state = ReadState::Ended;
            return Err(WsError::Io(e));
        }
        let answered = with_timeout(timeout, async {
            let mut scratch = [0u8; 64];
            loop {
                match self.read(&mut scratch).await {
                    Ok(Incoming::Data(_)) => continue,
                    Ok(Incoming::Closed(_)) => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
        })
        .await;
        match answered {
            Ok(result) => result,
            Err(_) => {
                debug!("ws: no close frame from the peer within the close timeout");
                self.end(CloseReason::LocalClose).await;
                Ok(())
            }
        }
    }

    /// Writes what is pending, then a control frame carrying `body`, within `limit`
    /// (`None`: no limit). `Err(None)`: the limit passed first.
    async fn write_control(
        &mut self,
        opcode: Opcode,
        body: Body,
        limit: Option<Duration>,
    ) -> Result<(), Option<C::Error>> {
        let write = async {
            self.out.flush(&mut self.conn).await?;
            let code;
            let payload: &[u8] = match body {
                Body::Empty => &[],
                Body::Code(c) => {
                    code = c.to_be_bytes();
                    &code
                }
                Body::Echo(len) => &self.control[..len],
            };
            self.out.set(opcode, payload);
            self.out.flush(&mut self.conn).await
        };
        match limit {
            None => write.await.map_err(Some),
            Some(limit) => match with_timeout(limit, write).await {
                Ok(result) => result.map_err(Some),
                Err(_) => Err(None),
            },
        }
    }

    /// Reads into one of the WebSocket's own buffers, with the keepalive.
    async fn recv_own(&mut self, own: Own) -> Result<usize, WsError<C::Error>> {
        let dst = match own {
            Own::Head(range) => &mut self.head[range],
            Own::Control(range) => &mut self.control[range],
        };
        match read_alive(
            &mut self.conn,
            &mut self.alive,
            &mut self.out,
            self.config.keepalive,
            dst,
        )
        .await
        {
            Ok(n) => Ok(n),
            Err(stop) => Err(self.stopped(stop).await),
        }
    }

    /// Answers a ping whose payload is `control[..len]`. The pong is written within the
    /// keepalive's deadline: a peer that pings but does not read is a silent one.
    async fn pong(&mut self, len: usize) -> Result<(), WsError<C::Error>> {
        let limit = match self.config.keepalive {
            Keepalive::Off => None,
            Keepalive::Ping { deadline, .. } => Some(deadline),
        };
        match self
            .write_control(Opcode::Pong, Body::Echo(len), limit)
            .await
        {
            Ok(()) => Ok(()),
            Err(Some(e)) => Err(self.stopped(Stop::Io(e)).await),
            Err(None) => Err(self.stopped(Stop::Silent).await),
        }
    }

    /// The peer's close frame, its payload in `control[..len]`: echoed (unless this
    /// side closed first), then the end.
    async fn peer_closed<'b>(&mut self, len: usize) -> Result<Incoming<'b>, WsError<C::Error>> {
        let status = match &self.control[..len] {
            [] => CloseStatus::NoCode,
            [_] => return Err(self.fail(ProtocolError::InvalidClose).await),
            [hi, lo, reason @ ..] => {
                let code = u16::from_be_bytes([*hi, *lo]);
                if !close_code::is_sendable(code) {
                    return Err(self.fail(ProtocolError::InvalidClose).await);
                }
                if core::str::from_utf8(reason).is_err() {
                    return Err(self.fail(ProtocolError::InvalidCloseReason).await);
                }
                CloseStatus::Code(code)
            }
        };
        let reason = match self.closing {
            Closing::CloseSent => CloseReason::LocalClose,
            Closing::Open => {
                self.closing = Closing::CloseSent;
                let echo = match status {
                    CloseStatus::Code(code) => Body::Code(code),
                    _ => Body::Empty,
                };
                let limit = Some(self.config.close_timeout);
                let _ = self.write_control(Opcode::Close, echo, limit).await;
                CloseReason::PeerClosed
            }
        };
        self.end(reason).await;
        Ok(Incoming::Closed(status))
    }

    /// The peer's FIN without a close frame: the end ([`CloseReason::LocalClose`] when
    /// this side had started the close).
    async fn peer_gone<'b>(&mut self) -> Result<Incoming<'b>, WsError<C::Error>> {
        debug!("ws: the peer closed the connection without a close frame");
        let reason = match self.closing {
            Closing::CloseSent => CloseReason::LocalClose,
            Closing::Open => CloseReason::PeerClosed,
        };
        self.end(reason).await;
        Ok(Incoming::Closed(CloseStatus::NoCloseFrame))
    }

    /// A protocol error: a close frame with its code (bounded by the close timeout),
    /// then the end.
    async fn fail(&mut self, e: ProtocolError) -> WsError<C::Error> {
        debug!(
            "ws: protocol error {}, closing with {}",
            e.as_str(),
            e.close_code()
        );
        if self.closing == Closing::Open {
            self.closing = Closing::CloseSent;
            let limit = Some(self.config.close_timeout);
            let body = Body::Code(e.close_code());
            let _ = self.write_control(Opcode::Close, body, limit).await;
        }
        self.end(CloseReason::LocalClose).await;
        WsError::Protocol(e)
    }

    /// A read that stopped: an I/O error leaves the connection to the caller; silence
    /// past the keepalive deadline ends it.
    async fn stopped(&mut self, stop: Stop<C::Error>) -> WsError<C::Error> {
        match stop {
            Stop::Io(e) => {
                self.state = ReadState::Ended;
                WsError::Io(e)
            }
            Stop::Silent => {
                debug!("ws: no sign of life from the peer within the keepalive deadline");
                self.end(CloseReason::Reaped(Deadline::Keepalive)).await;
                WsError::PeerSilent
            }
        }
    }

    async fn end(&mut self, reason: CloseReason) {
        self.state = ReadState::Ended;
        self.conn.end(reason).await;
    }
}

const fn frame_end(fin: Fin) -> PieceEnd {
    match fin {
        Fin::Final => PieceEnd::Message,
        Fin::More => PieceEnd::Frame,
    }
}
