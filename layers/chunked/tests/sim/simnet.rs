//! Helpers for the tests on the simulated network: a counting wrapper that records
//! every write that reaches the socket, and a handler that sends a whole body with one
//! `write_all` (the "one big send" the layer exists for).

use std::cell::RefCell;
use std::rc::Rc;

use tcp_layers_core::{CloseReason, Connection, ErrorType, Read, Write, delegate_connection};
use tcp_layers_sim::responder::{self, Routes};
use tcp_layers_sim::{Duration, Instant, Timer, polls};

/// One write that reached the socket.
#[derive(Clone, Copy, Debug)]
pub struct SocketWrite {
    /// Which response it belongs to: the request's path.
    pub path: &'static str,
    /// Bytes the socket accepted.
    pub len: usize,
    /// The executor's poll count when it happened.
    pub poll: u64,
}

pub type WriteLog = Rc<RefCell<Vec<SocketWrite>>>;

/// Sits right above the socket and logs every accepted write.
pub struct Counting<C> {
    inner: C,
    log: WriteLog,
    pub path: &'static str,
}

impl<C> Counting<C> {
    pub fn new(inner: C, log: WriteLog) -> Self {
        Self {
            inner,
            log,
            path: "",
        }
    }
}

impl<C: Connection> ErrorType for Counting<C> {
    type Error = C::Error;
}

impl<C: Connection> Read for Counting<C> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, C::Error> {
        self.inner.read(buf).await
    }
}

impl<C: Connection> Write for Counting<C> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, C::Error> {
        let n = self.inner.write(buf).await?;
        self.log.borrow_mut().push(SocketWrite {
            path: self.path,
            len: n,
            poll: polls(),
        });
        Ok(n)
    }
    async fn flush(&mut self) -> Result<(), C::Error> {
        self.inner.flush().await
    }
}

impl<C: Connection> Connection for Counting<C> {
    delegate_connection!(inner;
        state, set_nodelay, close_write, abort, remote, local, send_queue, recv_queue,
        ended_error, close_reason, set_class, end);
}

/// Lets a test reach the counting wrapper through the layer above it.
pub trait Tagged {
    fn tag(&mut self, path: &'static str);
}

impl<C> Tagged for Counting<C> {
    fn tag(&mut self, path: &'static str) {
        self.path = path;
    }
}

impl<C: Connection, const N: usize> Tagged for tcp_layers_chunked::Chunked<Counting<C>, N> {
    fn tag(&mut self, path: &'static str) {
        self.get_mut().path = path;
    }
}

/// The paths the handler knows, as `'static` tags for the log.
pub const BIG: &str = "/bytes/160000";
pub const SMALL: &str = "/bytes/512";
pub const ONE_SEGMENT_BODY: &str = "/bytes/1000";

/// When the handler's writes happen.
#[derive(Clone, Copy, Debug, Default)]
pub struct Pacing {
    /// Each response waits until this virtual instant before its first write, so two
    /// connections become ready together.
    pub gate: Option<Instant>,
    /// A pause between head and body, as a server that writes the head and then reads
    /// the body from flash: the stack runs in between and sends the head alone.
    pub pause_after_head: Option<Duration>,
}

/// Serves keep-alive requests for the paths above: the head with one `write_all`, the
/// whole body with one more, then flush, paced as `pacing` says.
pub async fn serve_whole_bodies<C: Connection + Tagged>(conn: &mut C, pacing: Pacing) {
    let mut head = [0u8; 1024];
    let reason = 'conn: loop {
        let mut filled = 0;
        while !head[..filled].windows(4).any(|w| w == b"\r\n\r\n") {
            match conn.read(&mut head[filled..]).await {
                Ok(0) => break 'conn CloseReason::PeerClosed,
                Ok(n) => filled += n,
                Err(_) => break 'conn CloseReason::PeerReset,
            }
        }
        let request = std::str::from_utf8(&head[..filled]).unwrap();
        let path = request.split(' ').nth(1).unwrap();
        let path = [BIG, SMALL, ONE_SEGMENT_BODY]
            .into_iter()
            .find(|p| *p == path)
            .unwrap();
        conn.tag(path);
        let body = responder::body_of(path, &Routes::new()).unwrap();
        if let Some(at) = pacing.gate {
            Timer::at(at).await;
        }
        let response_head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: keep-alive\r\n\r\n",
            body.len()
        );
        let sent = async {
            conn.write_all(response_head.as_bytes()).await?;
            if let Some(pause) = pacing.pause_after_head {
                Timer::after(pause).await;
            }
            conn.write_all(&body).await?;
            conn.flush().await
        };
        if sent.await.is_err() {
            break CloseReason::ClientCancelled;
        }
    };
    conn.end(reason).await;
}

/// The checksum the client must see for `path`.
pub fn expected_checksum(path: &str) -> u64 {
    responder::checksum(&responder::body_of(path, &Routes::new()).unwrap())
}
