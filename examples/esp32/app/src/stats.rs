//! Counters behind `/stats` and `/events`: what the HTTP tasks did and what the
//! layers reported through tcp-layers' event hook.
use core::{cell::Cell, fmt};

use critical_section::Mutex;
use embassy_time::Instant;
use tcp_layers::{CloseReason, event::Event};

/// Every counter the page shows. Plain integers in one `Cell`: the ESP32-C3 has no
/// atomic read-modify-write, and a snapshot must be consistent anyway.
#[derive(Clone, Copy, Default)]
pub struct Counters {
    /// Connections accepted since boot.
    pub accepted: u32,
    /// Connections being served now.
    pub open: u32,
    /// Requests for the page.
    pub pages: u32,
    /// Frames sent (started, whether or not the browser kept them).
    pub frames: u32,
    /// Bytes of frame data handed to the connection.
    pub frame_bytes: u64,
    /// Event streams opened.
    pub streams: u32,
    /// Connections picoserve ended with an error (a read or write failed or timed out).
    pub server_errors: u32,
    /// Connections ended, by the reason the layers gave (`Event::Closed`).
    pub closed: [u32; CloseReason::ALL.len()],
    /// Times the budget entered exhaustion.
    pub exhaustion: u32,
    /// Failed accepts the layers backed off from.
    pub accept_errors: u32,
    /// Streams refused because the stream budget was full.
    pub streams_refused: u32,
    /// Idle keep-alive connections closed to free a slot.
    pub evicted: u32,
}

static COUNTERS: Mutex<Cell<Counters>> = Mutex::new(Cell::new(Counters {
    accepted: 0,
    open: 0,
    pages: 0,
    frames: 0,
    frame_bytes: 0,
    streams: 0,
    server_errors: 0,
    closed: [0; CloseReason::ALL.len()],
    exhaustion: 0,
    accept_errors: 0,
    streams_refused: 0,
    evicted: 0,
}));

fn update(change: impl FnOnce(&mut Counters)) {
    critical_section::with(|cs| {
        let cell = COUNTERS.borrow(cs);
        let mut counters = cell.get();
        change(&mut counters);
        cell.set(counters);
    });
}

/// Counts a connection as accepted and open until dropped, however its serving ends.
pub struct OpenConnection(());

impl OpenConnection {
    /// A connection was accepted and is being served (a counted event, hence no
    /// `Default`).
    pub fn accepted() -> Self {
        update(|c| {
            c.accepted = c.accepted.wrapping_add(1);
            c.open = c.open.saturating_add(1);
        });
        Self(())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        update(|c| c.open = c.open.saturating_sub(1));
    }
}

/// A layer that counts each connection it wraps as accepted, and as open until the
/// wrapper is dropped: for servers that own their accept loop (edge-http's `serve`).
#[cfg(feature = "servers")]
#[derive(Clone, Copy, Debug, Default)]
pub struct CountOpen;

/// A connection counted by [`CountOpen`].
#[cfg(feature = "servers")]
pub struct Counted<C> {
    inner: C,
    _open: OpenConnection,
}

#[cfg(feature = "servers")]
impl<C: tcp_layers::Connection> tcp_layers::Layer<C> for CountOpen {
    type Service = Counted<C>;
    fn layer(&self, inner: C) -> Counted<C> {
        Counted {
            inner,
            _open: OpenConnection::accepted(),
        }
    }
}

#[cfg(feature = "servers")]
tcp_layers::core::delegate_io!(Counted, inner);

#[cfg(feature = "servers")]
impl<C: tcp_layers::Connection> tcp_layers::Connection for Counted<C> {
    tcp_layers::core::delegate_connection!(inner; state, set_nodelay, close_write, abort,
        remote, local, send_queue, recv_queue, ended_error, close_reason, set_class, end);
}

/// The page was requested.
pub fn page() {
    update(|c| c.pages = c.pages.wrapping_add(1));
}

/// A frame of `bytes` is being sent; returns its number, starting at 1.
pub fn frame(bytes: usize) -> u32 {
    let mut number = 0;
    update(|c| {
        c.frames = c.frames.wrapping_add(1);
        c.frame_bytes = c.frame_bytes.wrapping_add(bytes as u64);
        number = c.frames;
    });
    number
}

/// An event stream was opened.
pub fn stream() {
    update(|c| c.streams = c.streams.wrapping_add(1));
}

/// picoserve returned an error for a connection.
pub fn server_error() {
    update(|c| c.server_errors = c.server_errors.wrapping_add(1));
}

/// Routes the layers' events into the counters.
pub fn install_event_hook() {
    tcp_layers::event::set_hook(on_event);
}

fn on_event(event: &Event) {
    match *event {
        Event::Closed { reason, .. } => update(|c| {
            let slot = &mut c.closed[reason.index()];
            *slot = slot.wrapping_add(1);
        }),
        Event::Exhaustion { held: true, .. } => {
            update(|c| c.exhaustion = c.exhaustion.wrapping_add(1))
        }
        Event::AcceptError { .. } => update(|c| c.accept_errors = c.accept_errors.wrapping_add(1)),
        Event::StreamRefused => update(|c| c.streams_refused = c.streams_refused.wrapping_add(1)),
        Event::Evicted => update(|c| c.evicted = c.evicted.wrapping_add(1)),
        Event::NodelayUnsupported => {
            #[cfg(feature = "log")]
            log::warn!("the stack cannot turn Nagle off");
            #[cfg(feature = "defmt")]
            defmt::warn!("the stack cannot turn Nagle off");
        }
        _ => {}
    }
}

/// The counters now, with the uptime; `Display` writes them as one line of JSON.
#[derive(Clone, Copy)]
pub struct Snapshot {
    uptime_s: u64,
    counters: Counters,
}

/// Reads every counter at once.
pub fn snapshot() -> Snapshot {
    Snapshot {
        uptime_s: Instant::now().as_secs(),
        counters: critical_section::with(|cs| COUNTERS.borrow(cs).get()),
    }
}

impl fmt::Display for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.counters;
        write!(
            f,
            "{{\"uptime_s\":{},\"accepted\":{},\"open\":{},\"pages\":{},\"frames\":{},\
             \"frame_bytes\":{},\"streams\":{},\"server_errors\":{},\"exhaustion\":{},\
             \"accept_errors\":{},\"streams_refused\":{},\"evicted\":{},\"closed\":{{",
            self.uptime_s,
            c.accepted,
            c.open,
            c.pages,
            c.frames,
            c.frame_bytes,
            c.streams,
            c.server_errors,
            c.exhaustion,
            c.accept_errors,
            c.streams_refused,
            c.evicted,
        )?;
        for (i, reason) in CloseReason::ALL.iter().enumerate() {
            let separator = if i == 0 { "" } else { "," };
            write!(f, "{separator}\"{}\":{}", reason.as_str(), c.closed[i])?;
        }
        f.write_str("}}")
    }
}
