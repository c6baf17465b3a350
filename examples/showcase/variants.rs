//! The four servers every scenario runs against, on the same simulated device (8
//! sockets, the ESP32-S3 budget), and the view of their slots the scenarios measure.
use std::cell::{Cell, RefCell};
use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::OnceLock;
use std::task::{Poll, Waker};

use picoserve::response::sse::{EventSource, EventStream, EventWriter};
use picoserve::routing::{PathRouter, get, parse_path_segment};
use picoserve::{Config, Router, Timeouts};
use tcp_layers::{Budget, CloseReason, Counters, DefaultStack, Layer, default_stack, profile};
use tcp_layers_picoserve::PicoserveSocket;
use tcp_layers_sim::embassy_net::Stack as NetStack;
use tcp_layers_sim::embassy_net::tcp::TcpSocket;
use tcp_layers_sim::responder::{self, Routes};
use tcp_layers_sim::server::{self, ServerHandle, SlotPhase};
use tcp_layers_sim::{Duration, Host, Timer, spawn};

use crate::probes;

/// The port every variant listens on.
pub const PORT: u16 = 80;

/// Server sockets (slots): the ESP32-S3 profile's budget.
pub const SOCKETS: usize = 8;

/// Receive and transmit buffer per socket, bytes: the sim server's defaults (a request
/// head or two; a few segments in flight), the same for every variant.
const RX_BUFFER: usize = 2048;
const TX_BUFFER: usize = 8192;

/// picoserve's request buffer, bytes: the size its examples use.
const HTTP_BUFFER: usize = 2048;

/// Close counters of the layered variants (the quiet layer reports here).
pub static COUNTERS: Counters = Counters::new();

/// The connection budget of the layered variants: ESP32-S3, 8 slots, at most 2 streams
/// and 6 requests, 1 listener kept free.
pub static BUDGET: Budget<SOCKETS> = Budget::new(profile::ESP32_S3);

/// The facade's default stack over the showcase's statics, outermost first: QuietLayer,
/// LimitLayer, ReaperLayer (HTTP), TimeWaitLayer, Chunked, NoDelayLayer, each with its defaults.
pub fn layers() -> DefaultStack<SOCKETS> {
    default_stack(&COUNTERS, &BUDGET)
}

/// A server the scenarios compare.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Variant {
    /// The sim's hand-written accept loop (one socket per slot) and raw responder.
    Raw,
    /// The same loop and responder, every connection wrapped in the default stack.
    Layered,
    /// picoserve 0.20, default `Config` with keep-alive, on plain sockets.
    Picoserve,
    /// The same picoserve server over layered sockets (the picoserve adapter).
    PicoserveLayered,
}

impl Variant {
    /// Every variant, in the order of the table's columns.
    pub const ALL: [Variant; 4] = [
        Variant::Raw,
        Variant::Layered,
        Variant::Picoserve,
        Variant::PicoserveLayered,
    ];

    /// The position in [`Variant::ALL`] (the CPU meter's channel).
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The id in the table and the JSON lines.
    pub const fn id(self) -> &'static str {
        match self {
            Variant::Raw => "raw",
            Variant::Layered => "layered",
            Variant::Picoserve => "picoserve",
            Variant::PicoserveLayered => "picoserve_layered",
        }
    }

    /// True for the variants with the default stack.
    pub const fn is_layered(self) -> bool {
        matches!(self, Variant::Layered | Variant::PicoserveLayered)
    }

    /// The same server without layers.
    pub const fn unlayered(self) -> Variant {
        match self {
            Variant::Raw | Variant::Layered => Variant::Raw,
            Variant::Picoserve | Variant::PicoserveLayered => Variant::Picoserve,
        }
    }
}

/// Whether the server's futures run under the CPU meter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metering {
    /// Count the CPU time of every poll of the server side (jpeg_frames).
    On,
    /// Run unmetered.
    Off,
}

async fn maybe_metered<F: Future>(variant: Variant, metering: Metering, future: F) -> F::Output {
    match metering {
        Metering::On => probes::metered(variant.index(), future).await,
        Metering::Off => future.await,
    }
}

/// Resets the statics of the layered variants; every run starts from zero.
pub fn reset_statics() {
    BUDGET.reset();
    COUNTERS.reset();
}

/// Starts `variant` on `device`: `SOCKETS` slots on `port`.
pub fn spawn_server(variant: Variant, device: &Host, port: u16, metering: Metering) -> Slots {
    match variant {
        Variant::Raw => Slots::Sim(server::spawn_server(
            device.stack,
            port,
            SOCKETS,
            async move |socket: &mut TcpSocket<'_>| {
                let outcome =
                    maybe_metered(variant, metering, responder::serve(socket, &Routes::new()))
                        .await;
                // A hand-written server logs every failed read or write as an error.
                if matches!(
                    outcome.ended,
                    CloseReason::ClientCancelled | CloseReason::PeerReset
                ) {
                    log::error!(
                        "http: connection failed ({}) after {} B out",
                        outcome.ended,
                        outcome.bytes_out
                    );
                }
            },
        )),
        Variant::Layered => Slots::Sim(server::spawn_server(
            device.stack,
            port,
            SOCKETS,
            async move |socket: &mut TcpSocket<'_>| {
                maybe_metered(variant, metering, async {
                    let mut conn = layers().wrap(socket);
                    // The quiet layer logs the close; the server logs nothing itself.
                    responder::serve(&mut conn, &Routes::new()).await;
                })
                .await;
            },
        )),
        Variant::Picoserve | Variant::PicoserveLayered => {
            let slots = Rc::new(OwnSlots::new(SOCKETS));
            let app: &'static Router<_> = Box::leak(Box::new(picoserve_app()));
            for i in 0..SOCKETS {
                spawn(picoserve_slot(
                    i,
                    device.stack,
                    port,
                    slots.clone(),
                    app,
                    variant,
                    metering,
                ));
            }
            Slots::Own(slots)
        }
    }
}

/// The routes of `picoserve_app` that stream: the adapter counts them in the budget's
/// stream class (a picoserve handler cannot reach the connection to do it).
static STREAM_PATHS: [&str; 1] = ["/sse"];

/// picoserve's defaults (5 s to the first request, 1 s between keep-alive requests,
/// 3 s per request, 1 s per write) with keep-alive on.
static PICOSERVE_CONFIG: Config = Config::new(Timeouts::const_default()).keep_connection_alive();

/// One picoserve slot, the loop of picoserve's own `listen_and_serve`: a new socket per
/// connection, TCP keep-alive 30 s and timeout 45 s, errors logged, the socket dropped
/// when the connection is done. The layered variant wraps the socket and hands
/// picoserve the adapter; the quiet layer logs its close.
async fn picoserve_slot<P: PathRouter>(
    i: usize,
    stack: NetStack<'static>,
    port: u16,
    slots: Rc<OwnSlots>,
    app: &'static Router<P>,
    variant: Variant,
    metering: Metering,
) {
    let mut rx = vec![0u8; RX_BUFFER];
    let mut tx = vec![0u8; TX_BUFFER];
    let mut http_buffer = vec![0u8; HTTP_BUFFER];
    loop {
        slots.set(i, OwnPhase::Accepting, None);
        let mut socket = TcpSocket::new(stack, &mut rx, &mut tx);
        if socket.accept(port).await.is_err() {
            continue;
        }
        slots.set(
            i,
            OwnPhase::Serving,
            socket.remote_endpoint().map(Into::into),
        );
        socket.set_keep_alive(Some(Duration::from_secs(30)));
        socket.set_timeout(Some(Duration::from_secs(45)));
        let server = picoserve::Server::new(app, &PICOSERVE_CONFIG, &mut http_buffer);
        if variant.is_layered() {
            maybe_metered(variant, metering, async {
                let conn = layers().wrap(&mut socket);
                let socket = PicoserveSocket::new(conn).with_stream_paths(&STREAM_PATHS);
                let _ = server.serve(socket).await;
            })
            .await;
        } else if let Err(e) = maybe_metered(variant, metering, server.serve(socket)).await {
            log::error!("picoserve: {e:?}");
        }
    }
}

/// The bytes every `/bytes/<n>` body is a prefix of (byte i = i % 251, as the sim's
/// responder sends); resource k is the slice from k * 7.
fn body_bytes() -> &'static [u8] {
    static BODY: OnceLock<Vec<u8>> = OnceLock::new();
    BODY.get_or_init(|| (0..BODY_MAX).map(|i| (i % 251) as u8).collect())
}

/// The largest `/bytes/<n>` picoserve serves: the 160 KiB of the biggest scenario.
pub const BODY_MAX: usize = 160 * 1024;
const _: () = assert!(
    Routes::new().frame_len <= BODY_MAX,
    "a frame is a prefix of the body"
);

/// `/`, `/r/<k>`, `/frame.jpg`, `/bytes/<n>` and `/sse` as the sim's responder serves
/// them.
fn picoserve_app() -> Router<impl PathRouter> {
    // The body is generated here, before any connection: generated by the first
    // request, it would count in that request's CPU time (about 2 M instructions, a
    // third of what serving 50 frames costs picoserve).
    body_bytes();
    let routes = Routes::new();
    let frame_len = routes.frame_len;
    let document: &'static [u8] = Box::leak(
        responder::body_of("/", &routes)
            .expect("the responder serves /")
            .into_boxed_slice(),
    );
    let resource_len = routes.resource_len;
    Router::new()
        .route("/", get(move || async move { document }))
        .route(
            ("/r", parse_path_segment::<usize>()),
            get(move |k: usize| async move {
                let start = (k * 7).min(BODY_MAX - resource_len);
                &body_bytes()[start..start + resource_len]
            }),
        )
        .route(
            "/frame.jpg",
            get(move || async move { &body_bytes()[..frame_len] }),
        )
        .route(
            ("/bytes", parse_path_segment::<usize>()),
            get(|n: usize| async move { &body_bytes()[..n.min(BODY_MAX)] }),
        )
        .route("/sse", get(|| async { EventStream(EverySecond) }))
}

/// An event a second, forever, like the responder's `/sse`.
struct EverySecond;

impl EventSource for EverySecond {
    async fn write_events<W: picoserve::io::Write>(
        self,
        mut writer: EventWriter<'_, W>,
    ) -> Result<(), W::Error> {
        let mut n = 0u64;
        loop {
            Timer::after(Routes::new().sse_interval).await;
            writer
                .write_event("tick", format_args!("event {n}"))
                .await?;
            n += 1;
        }
    }
}

/// What a picoserve slot is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OwnPhase {
    /// Its socket is in `accept()`.
    Accepting,
    /// picoserve has the connection (or is closing it).
    Serving,
}

/// The slots of the picoserve variants, as the sim's `ServerHandle` shows its own.
pub struct OwnSlots {
    phase: Vec<Cell<OwnPhase>>,
    remote: Vec<Cell<Option<SocketAddr>>>,
    watchers: RefCell<Vec<Waker>>,
}

impl OwnSlots {
    fn new(n: usize) -> Self {
        Self {
            phase: (0..n).map(|_| Cell::new(OwnPhase::Serving)).collect(),
            remote: (0..n).map(|_| Cell::new(None)).collect(),
            watchers: RefCell::new(Vec::new()),
        }
    }

    fn set(&self, i: usize, phase: OwnPhase, remote: Option<SocketAddr>) {
        self.phase[i].set(phase);
        if remote.is_some() {
            self.remote[i].set(remote);
        }
        for w in self.watchers.borrow_mut().drain(..) {
            w.wake();
        }
    }
}

/// The slots of a running server, whichever variant.
#[derive(Clone)]
pub enum Slots {
    /// The sim's accept loops (raw, layered).
    Sim(ServerHandle),
    /// The picoserve loops.
    Own(Rc<OwnSlots>),
}

impl Slots {
    /// Slots whose socket is in `accept()`.
    pub fn listening(&self) -> usize {
        (0..SOCKETS).filter(|&i| self.is_accepting(i)).count()
    }

    /// True while slot `i` listens.
    pub fn is_accepting(&self, i: usize) -> bool {
        match self {
            Slots::Sim(h) => h.slot_phase(i) == SlotPhase::Accepting,
            Slots::Own(s) => s.phase[i].get() == OwnPhase::Accepting,
        }
    }

    /// The slot whose current or last connection came from `peer`.
    pub fn slot_of(&self, peer: SocketAddr) -> Option<usize> {
        (0..SOCKETS).find(|&i| {
            let remote = match self {
                Slots::Sim(h) => h.slot_remote(i),
                Slots::Own(s) => s.remote[i].get(),
            };
            remote == Some(peer)
        })
    }

    /// Waits until `cond` holds; re-checked at every change of a slot.
    pub async fn wait_until(&self, mut cond: impl FnMut(&Slots) -> bool) {
        match self {
            Slots::Sim(h) => h.wait_until(|_| cond(self)).await,
            Slots::Own(s) => {
                poll_fn(|cx| {
                    if cond(self) {
                        Poll::Ready(())
                    } else {
                        s.watchers.borrow_mut().push(cx.waker().clone());
                        Poll::Pending
                    }
                })
                .await
            }
        }
    }

    /// Waits until every slot listens.
    pub async fn wait_all_listening(&self) {
        self.wait_until(|s| s.listening() == SOCKETS).await
    }
}

/// Bytes the default stack adds to a connection: the layered connection over a socket
/// minus the socket (host sizes: 64-bit pointers).
pub fn layered_bytes_per_connection() -> usize {
    type Socket = TcpSocket<'static>;
    type Layered = <DefaultStack<SOCKETS> as Layer<Socket>>::Service;
    size_of::<Layered>() - size_of::<Socket>()
}
