//! The device side: N listening sockets, each in its own accept loop, as users write it
//! by hand on an ESP32 today (the "raw" server the layers are measured against).
use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::net::SocketAddr;
use std::rc::Rc;
use std::task::{Poll, Waker};

use embassy_futures::select::{Either, select};
use embassy_net::Stack;
use embassy_net::tcp::{AcceptError, TcpSocket};
use embassy_time::{Duration, Timer};
use tcp_layers_core::TcpState;

use crate::executor::{JoinHandle, spawn};

/// How a [`spawn_server`] server is set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// The port every slot listens on.
    pub port: u16,
    /// Listening sockets (slots): the most connections the server holds at once.
    pub sockets: usize,
    /// Receive buffer per slot, bytes. Default 2048: a request head or two, what ESP32
    /// servers usually give a socket.
    pub rx_buffer: usize,
    /// Transmit buffer per slot, bytes. Default 8192: a few segments in flight, within an
    /// ESP32's RAM budget for 4-8 sockets.
    pub tx_buffer: usize,
}

impl ServerConfig {
    /// `sockets` slots on `port` with the default buffers (rx 2048 B, tx 8192 B).
    pub const fn new(port: u16, sockets: usize) -> Self {
        Self {
            port,
            sockets,
            rx_buffer: 2048,
            tx_buffer: 8192,
        }
    }

    /// The same with other buffer sizes.
    pub const fn with_buffers(mut self, rx_buffer: usize, tx_buffer: usize) -> Self {
        self.rx_buffer = rx_buffer;
        self.tx_buffer = tx_buffer;
        self
    }
}

/// What a slot's loop is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotPhase {
    /// In `accept()`: the socket listens.
    Accepting,
    /// The handler has the connection.
    Handling,
    /// The handler returned; the loop runs `close(); flush().await` (which never
    /// finishes to a vanished peer).
    Closing,
    /// `accept()` answered `InvalidState` (the socket still holds the old connection,
    /// e.g. FIN_WAIT_2); the loop retries every 10 ms.
    AcceptRetry,
}

struct Slot {
    state: Cell<TcpState>,
    phase: Cell<SlotPhase>,
    remote: Cell<Option<SocketAddr>>,
    connections: Cell<u64>,
}

struct Shared {
    slots: Vec<Slot>,
    accepted: Cell<u64>,
    sampling: Cell<Option<Duration>>,
    watchers: RefCell<Vec<Waker>>,
}

impl Shared {
    fn set(&self, i: usize, state: TcpState, phase: SlotPhase) {
        let slot = &self.slots[i];
        slot.state.set(state);
        slot.phase.set(phase);
        for w in self.watchers.borrow_mut().drain(..) {
            w.wake();
        }
    }
}

/// Observes and stops a server started with [`spawn_server`].
///
/// The state of a slot is the one its loop last read from the socket: at every phase
/// change, and while a slot is `Closing` or in `AcceptRetry` also every sampling
/// interval if [`ServerHandle::set_sampling`] asked for one. While the handler has the
/// socket the loop cannot look at it (the handler holds `&mut`), so the state reads
/// `Established` from accept until the handler returns.
#[derive(Clone)]
pub struct ServerHandle {
    shared: Rc<Shared>,
    tasks: Rc<Vec<JoinHandle<()>>>,
}

impl ServerHandle {
    /// Number of slots.
    pub fn slots(&self) -> usize {
        self.shared.slots.len()
    }

    /// The TCP state of slot `i` as its loop last saw it.
    pub fn slot_state(&self, i: usize) -> TcpState {
        self.shared.slots[i].state.get()
    }

    /// What slot `i`'s loop is doing.
    pub fn slot_phase(&self, i: usize) -> SlotPhase {
        self.shared.slots[i].phase.get()
    }

    /// The peer of slot `i`'s current or last connection.
    pub fn slot_remote(&self, i: usize) -> Option<SocketAddr> {
        self.shared.slots[i].remote.get()
    }

    /// Connections slot `i` has accepted so far.
    pub fn slot_connections(&self, i: usize) -> u64 {
        self.shared.slots[i].connections.get()
    }

    /// Slots whose socket is listening (in `accept()`).
    pub fn listening(&self) -> usize {
        self.shared
            .slots
            .iter()
            .filter(|s| s.phase.get() == SlotPhase::Accepting)
            .count()
    }

    /// Connections accepted so far, all slots.
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.get()
    }

    /// Sets how often a `Closing` or `AcceptRetry` slot re-reads its socket's state
    /// (`None`, the default, only at phase changes and every accept retry). A test that
    /// times a lingering state precisely sets e.g. 1 ms.
    pub fn set_sampling(&self, every: Option<Duration>) {
        self.shared.sampling.set(every);
    }

    /// Waits until at least `n` slots listen.
    pub async fn wait_listening(&self, n: usize) {
        self.wait_until(|h| h.listening() >= n).await
    }

    /// Waits until at least `n` connections were accepted.
    pub async fn wait_accepted(&self, n: u64) {
        self.wait_until(|h| h.accepted() >= n).await
    }

    /// Waits until `cond` holds; re-checked at every slot state change.
    pub async fn wait_until(&self, mut cond: impl FnMut(&ServerHandle) -> bool) {
        poll_fn(|cx| {
            if cond(self) {
                Poll::Ready(())
            } else {
                self.shared.watchers.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    /// Drops every slot task and its socket where it stands: embassy-net sends nothing
    /// for a dropped socket.
    pub fn stop(&self) {
        for t in self.tasks.iter() {
            t.abort();
        }
    }
}

/// Starts `sockets` slots listening on `port`, each calling `handler` with every
/// connection it accepts. See [`spawn_server_with`].
pub fn spawn_server<H>(stack: Stack<'static>, port: u16, sockets: usize, handler: H) -> ServerHandle
where
    H: for<'a> AsyncFn(&mut TcpSocket<'a>) + 'static,
{
    spawn_server_with(stack, ServerConfig::new(port, sockets), handler)
}

/// Starts the server: `config.sockets` slots, each a task with its own `TcpSocket`
/// (buffers per slot, reused across connections, freed with the task when the server
/// stops or the run ends) in its own loop:
///
/// 1. `accept(port)`; a SYN that finds no slot listening is reset by the stack, as on
///    the device;
/// 2. `handler(&mut socket)`;
/// 3. if the handler left the connection open for sending: `close()`; then
///    `flush().await` (to a vanished peer this never finishes and the slot is lost: the
///    raw behaviour the layers fix);
/// 4. accept again; on `InvalidState` (the socket still in FIN_WAIT_2, CLOSING, ...)
///    wait 10 ms and retry. smoltcp's `listen()` resets a TIME_WAIT socket, so a slot
///    whose peer closed cleanly is reusable at once.
pub fn spawn_server_with<H>(stack: Stack<'static>, config: ServerConfig, handler: H) -> ServerHandle
where
    H: for<'a> AsyncFn(&mut TcpSocket<'a>) + 'static,
{
    let handler = Rc::new(handler);
    let shared = Rc::new(Shared {
        slots: (0..config.sockets)
            .map(|_| Slot {
                state: Cell::new(TcpState::Closed),
                phase: Cell::new(SlotPhase::AcceptRetry),
                remote: Cell::new(None),
                connections: Cell::new(0),
            })
            .collect(),
        accepted: Cell::new(0),
        sampling: Cell::new(None),
        watchers: RefCell::new(Vec::new()),
    });
    let tasks = (0..config.sockets)
        .map(|i| {
            let shared = shared.clone();
            let handler = handler.clone();
            spawn(async move {
                // One socket per slot for the whole run, as a device allocates them
                // once. The buffers belong to the slot's task: freed with it when the
                // server stops or the run ends.
                let mut rx = vec![0; config.rx_buffer];
                let mut tx = vec![0; config.tx_buffer];
                let mut socket = TcpSocket::new(stack, &mut rx, &mut tx);
                slot_loop(i, &shared, &mut socket, config.port, &*handler).await
            })
        })
        .collect();
    ServerHandle {
        shared,
        tasks: Rc::new(tasks),
    }
}

async fn slot_loop<H>(i: usize, shared: &Shared, socket: &mut TcpSocket<'_>, port: u16, handler: &H)
where
    H: for<'a> AsyncFn(&mut TcpSocket<'a>),
{
    loop {
        shared.set(i, TcpState::Listen, SlotPhase::Accepting);
        match socket.accept(port).await {
            Ok(()) => {
                let slot = &shared.slots[i];
                slot.connections.set(slot.connections.get() + 1);
                slot.remote.set(socket.remote_endpoint().map(Into::into));
                shared.accepted.set(shared.accepted.get() + 1);
                shared.set(i, state_of(socket), SlotPhase::Handling);
                handler(socket).await;
                shared.set(i, state_of(socket), SlotPhase::Closing);
                if state_of(socket).may_send() {
                    socket.close();
                }
                flush_sampling(i, shared, socket).await;
                shared.set(i, state_of(socket), SlotPhase::Closing);
            }
            Err(AcceptError::InvalidState) => {
                shared.set(i, state_of(socket), SlotPhase::AcceptRetry);
                retry_wait(i, shared, socket).await;
            }
            // A SYN that was reset before the handshake finished: listen again.
            Err(AcceptError::ConnectionReset) => {}
            Err(AcceptError::InvalidPort) => panic!("port {port} cannot be listened on"),
        }
    }
}

/// `flush().await`, re-reading the state every sampling interval when one is set.
async fn flush_sampling(i: usize, shared: &Shared, socket: &mut TcpSocket<'_>) {
    loop {
        let Some(every) = shared.sampling.get() else {
            let _ = socket.flush().await;
            return;
        };
        // flush() is a poll of the socket's state, so dropping it at the timer loses
        // nothing.
        match select(socket.flush(), Timer::after(every)).await {
            Either::First(_) => return,
            Either::Second(()) => shared.set(i, state_of(socket), SlotPhase::Closing),
        }
    }
}

async fn retry_wait(i: usize, shared: &Shared, socket: &TcpSocket<'_>) {
    const RETRY: Duration = Duration::from_millis(10);
    let mut left = RETRY;
    while let Some(every) = shared.sampling.get().filter(|e| *e < left) {
        Timer::after(every).await;
        left -= every;
        shared.set(i, state_of(socket), SlotPhase::AcceptRetry);
    }
    Timer::after(left).await;
}

fn state_of(socket: &TcpSocket<'_>) -> TcpState {
    socket.state().into()
}
