//! What the simulated-network tests share: a device that serves the sim's raw responder
//! with or without the reaper, and a record of every connection it served.

use std::cell::RefCell;
use std::rc::Rc;

use tcp_layers_core::{CloseReason, Connection, ErrorType, Layer, Read, Write};
use tcp_layers_reaper::{ReaperConfig, ReaperLayer};
use tcp_layers_sim::responder::{self, Routes};
use tcp_layers_sim::server::{ServerHandle, spawn_server};
use tcp_layers_sim::{Duration, Host, Instant, LinkConfig};

/// The link every test runs on: 20 ms round trip, 10 Mbit/s.
pub fn link() -> LinkConfig {
    LinkConfig::wifi()
}

/// smoltcp's delayed ACK: the peer's last ACK can leave this much after the data.
pub const ACK_DELAY: Duration = Duration::from_millis(10);

/// Slack for the serialization of a few small packets at 10 Mbit/s (tens of µs each).
pub const SLACK: Duration = Duration::from_millis(1);

/// The link's round trip.
pub fn rtt() -> Duration {
    let link = link();
    link.up.latency + link.down.latency
}

/// One connection as the device saw it.
#[derive(Clone, Copy, Debug)]
pub struct Served {
    /// When the handler got the connection.
    pub accepted: Instant,
    /// When the first read returned bytes (the request's arrival).
    pub first_bytes: Option<Instant>,
    /// When the last write or flush returned.
    pub last_write: Option<Instant>,
    /// When `end` returned: the socket holds nothing and the slot accepts again.
    pub ended: Instant,
    /// What the outermost connection reported as the reason.
    pub reason: Option<CloseReason>,
    /// Requests the responder answered.
    pub requests: u32,
}

/// Every connection the device finished, in order.
pub type Log = Rc<RefCell<Vec<Served>>>;

/// The sim's server with `sockets` slots serving the raw responder; each connection is
/// wrapped in the reaper with `config`, or served raw when `config` is `None`.
pub fn device(
    host: &Host,
    sockets: usize,
    config: Option<&'static ReaperConfig>,
) -> (ServerHandle, Log) {
    let log: Log = Rc::default();
    let record = log.clone();
    let server = spawn_server(host.stack, 80, sockets, async move |socket| {
        let routes = Routes::new();
        let accepted = Instant::now();
        let (probe, reason, requests) = match config {
            Some(config) => {
                let mut conn = Probe::new(ReaperLayer::new(config).layer(&mut *socket));
                let outcome = responder::serve(&mut conn, &routes).await;
                (conn.times(), conn.close_reason(), outcome.requests)
            }
            None => {
                let mut conn = Probe::new(&mut *socket);
                let outcome = responder::serve(&mut conn, &routes).await;
                (conn.times(), Some(outcome.ended), outcome.requests)
            }
        };
        record.borrow_mut().push(Served {
            accepted,
            first_bytes: probe.0,
            last_write: probe.1,
            ended: Instant::now(),
            reason,
            requests,
        });
    });
    (server, log)
}

/// Notes when the first bytes arrived and when the last write returned; passes
/// everything through.
pub struct Probe<C> {
    inner: C,
    first_bytes: Option<Instant>,
    last_write: Option<Instant>,
}

impl<C> Probe<C> {
    pub fn new(inner: C) -> Self {
        Self {
            inner,
            first_bytes: None,
            last_write: None,
        }
    }

    fn times(&self) -> (Option<Instant>, Option<Instant>) {
        (self.first_bytes, self.last_write)
    }
}

impl<C: Connection> ErrorType for Probe<C> {
    type Error = C::Error;
}

impl<C: Connection> Read for Probe<C> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, C::Error> {
        let n = self.inner.read(buf).await?;
        if n > 0 && self.first_bytes.is_none() {
            self.first_bytes = Some(Instant::now());
        }
        Ok(n)
    }
}

impl<C: Connection> Write for Probe<C> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, C::Error> {
        let n = self.inner.write(buf).await?;
        self.last_write = Some(Instant::now());
        Ok(n)
    }
    async fn flush(&mut self) -> Result<(), C::Error> {
        self.inner.flush().await?;
        self.last_write = Some(Instant::now());
        Ok(())
    }
}

impl<C: Connection> Connection for Probe<C> {
    tcp_layers_core::delegate_connection!(inner;
        state, set_nodelay, close_write, abort, remote, local, send_queue, recv_queue,
        ended_error, close_reason, set_class, end);
}

/// Milliseconds, for the printed figures.
pub fn ms(d: Duration) -> u64 {
    d.as_millis()
}
