//! The simulated network: embassy-net stacks joined by an in-memory IP link with
//! latency, bandwidth and loss per direction.
use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::rc::{Rc, Weak};
use std::task::{Context, Waker};

use embassy_net::{Config, Ipv4Cidr, StackResources, StaticConfigV4};
use embassy_net_driver::{Capabilities, HardwareAddress, LinkState};
use embassy_time::{Duration, Instant};

use crate::executor::spawn;
use crate::time;
use crate::trace::{self, Fate, TracePacket};

/// The IP MTU of every device: an Ethernet/Wi-Fi frame's payload, so the TCP MSS is
/// 1460 bytes as on an ESP32.
pub const MTU: usize = 1500;

/// How many packets the trace keeps (the oldest are dropped first).
pub const TRACE_CAPACITY: usize = 20_000;

/// The most bytes a host keeps for the rest of the process: its
/// `embassy_net::StackResources` (29 176 bytes for the 64 sockets of [`Net::client`] and
/// [`Net::server`] on a 64-bit host; less with [`Net::server_with_sockets`]), and the
/// wakers the stack's state holds when the run ends (a few, 40 bytes each; 128 bytes
/// are allowed for them).
///
/// A host's `Stack<'static>` points into its resources, and a `Stack` is `Copy`: a copy
/// may outlive the run (in a `static`, in an embassy-executor task that never ended),
/// so they are never freed. Everything else a host, a server or a client allocates
/// (socket buffers, the link and its trace, the handler, the executor's queue) is freed
/// when the run ends. 10 000 hosts keep at most 293 MB (`tests/memory.rs` checks it).
pub const HOST_RETAINED_BYTES: usize = size_of::<StackResources<64>>() + 128;

/// The address of the server host ([`Net::server`]).
pub const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

/// One direction of the link.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Path {
    /// One-way propagation delay, added after serialization.
    pub latency: Duration,
    /// Bits per second of the shared medium; 0 means unlimited (no serialization delay).
    pub bandwidth_bps: u64,
    /// Probability (0.0..1.0) that a packet is lost.
    pub loss: f64,
}

impl Path {
    /// A path with `latency`, `bandwidth_bps` and no loss.
    pub const fn new(latency: Duration, bandwidth_bps: u64) -> Self {
        Self {
            latency,
            bandwidth_bps,
            loss: 0.0,
        }
    }

    /// The same path with `loss` (0.0..1.0).
    pub const fn with_loss(mut self, loss: f64) -> Self {
        self.loss = loss;
        self
    }

    /// Ticks the medium is busy sending `bytes`: `bytes * 8 / bandwidth`, rounded up.
    pub const fn serialization_ticks(&self, bytes: usize) -> u64 {
        if self.bandwidth_bps == 0 {
            return 0;
        }
        let bits = bytes as u128 * 8 * embassy_time::TICK_HZ as u128;
        bits.div_ceil(self.bandwidth_bps as u128) as u64
    }
}

/// The link between the server and the clients.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinkConfig {
    /// Client to server.
    pub up: Path,
    /// Server to client.
    pub down: Path,
    /// Seeds the loss generator and the stacks' random numbers (ports, sequence
    /// numbers): the same seed gives the same run.
    pub seed: u64,
}

impl LinkConfig {
    /// A Wi-Fi station next to its access point: 20 ms round trip (10 ms each way), 10
    /// Mbit/s each way (what an ESP32 sustains in practice), no loss. The showcase's
    /// default link.
    pub const fn wifi() -> Self {
        let p = Path::new(Duration::from_millis(10), 10_000_000);
        Self {
            up: p,
            down: p,
            seed: 1,
        }
    }

    /// A wired LAN: 1 ms round trip, 100 Mbit/s each way, no loss.
    pub const fn lan() -> Self {
        let p = Path::new(Duration::from_micros(500), 100_000_000);
        Self {
            up: p,
            down: p,
            seed: 1,
        }
    }

    /// The same `path` both ways.
    pub const fn symmetric(path: Path) -> Self {
        Self {
            up: path,
            down: path,
            seed: 1,
        }
    }

    /// The same link with another seed.
    pub const fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The same link with `loss` both ways.
    pub const fn with_loss(mut self, loss: f64) -> Self {
        self.up.loss = loss;
        self.down.loss = loss;
        self
    }
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self::wifi()
    }
}

/// Which way a packet travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Client to server.
    Up,
    /// Server to client.
    Down,
}

/// Counters of one direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirectionStats {
    /// Packets handed to the link (dropped ones included).
    pub packets: u64,
    /// TCP payload bytes handed to the link (dropped ones included).
    pub payload_bytes: u64,
    /// Packets with RST set.
    pub rsts: u64,
    /// Packets with FIN set.
    pub fins: u64,
    /// Packets with SYN set.
    pub syns: u64,
    /// Packets dropped (loss, vanish, no route).
    pub dropped: u64,
}

/// Counters of the whole link.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Client to server.
    pub up: DirectionStats,
    /// Server to client.
    pub down: DirectionStats,
}

/// splitmix64: a tiny deterministic generator; enough for loss decisions and seeds.
pub(crate) fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

struct InFlight {
    at: u64,
    seq: u64,
    packet: Vec<u8>,
}
impl PartialEq for InFlight {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for InFlight {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

/// A host's end of the link.
struct Port {
    ip: Ipv4Addr,
    is_server: bool,
    /// Packets on their way to this host, by arrival time.
    inbox: BinaryHeap<Reverse<InFlight>>,
    /// The host runner's waker, from its last look at the inbox.
    waker: Option<Waker>,
}

struct NetState {
    config: LinkConfig,
    rng: u64,
    ports: Vec<Port>,
    /// Tick at which each direction's medium is free again ([Up, Down]).
    medium_free: [u64; 2],
    vanished: Vec<SocketAddrV4>,
    vanished_hosts: Vec<Ipv4Addr>,
    trace: VecDeque<TracePacket>,
    stats: NetStats,
    seq: u64,
    next_client: u8,
}

pub(crate) struct NetInner {
    state: RefCell<NetState>,
}

/// The simulated network: a cheap handle (clone it freely) to the link and its hosts.
///
/// Create it inside [`run`](crate::run): hosts spawn their stack runner as a task.
#[derive(Clone)]
pub struct Net {
    inner: Rc<NetInner>,
}

thread_local! {
    static REGISTRY: RefCell<Vec<Weak<NetInner>>> = const { RefCell::new(Vec::new()) };
}

pub(crate) fn reset_registry() {
    REGISTRY.with(|r| r.borrow_mut().clear());
}

pub(crate) fn print_registered_traces(last_n: usize) {
    let nets: Vec<Net> = REGISTRY.with(|r| {
        r.borrow()
            .iter()
            .filter_map(Weak::upgrade)
            .map(|inner| Net { inner })
            .collect()
    });
    for (i, net) in nets.iter().enumerate() {
        eprintln!("--- last packets of net #{i} ---");
        net.print_trace(last_n);
    }
}

impl Net {
    /// A network with `config` and no hosts yet.
    pub fn new(config: LinkConfig) -> Net {
        let inner = Rc::new(NetInner {
            state: RefCell::new(NetState {
                config,
                rng: config.seed,
                ports: Vec::new(),
                medium_free: [0; 2],
                vanished: Vec::new(),
                vanished_hosts: Vec::new(),
                trace: VecDeque::new(),
                stats: NetStats::default(),
                seq: 0,
                next_client: 2,
            }),
        });
        REGISTRY.with(|r| r.borrow_mut().push(Rc::downgrade(&inner)));
        Net { inner }
    }

    /// The link's configuration.
    pub fn config(&self) -> LinkConfig {
        self.inner.state.borrow().config
    }

    /// Creates the server host at [`SERVER_IP`] (10.0.0.1) with room for 64 sockets.
    pub fn server(&self) -> Host {
        self.server_with_sockets::<64>()
    }

    /// Creates the server host with room for `N` sockets in its stack
    /// (`embassy_net::StackResources<N>`): one more socket than that panics, as on a
    /// device.
    ///
    /// # Panics
    /// If the server host already exists.
    pub fn server_with_sockets<const N: usize>(&self) -> Host {
        assert!(
            !self.inner.state.borrow().ports.iter().any(|p| p.is_server),
            "the server host already exists"
        );
        self.add_host::<N>(SERVER_IP, true)
    }

    /// Creates a client host at the next free address: 10.0.0.2, 10.0.0.3, ... Each has
    /// its own stack with 64 sockets (a browser and a second device are two clients).
    pub fn client(&self) -> Host {
        let ip = {
            let mut s = self.inner.state.borrow_mut();
            let n = s.next_client;
            s.next_client = n.checked_add(1).expect("at most 253 client hosts");
            Ipv4Addr::new(10, 0, 0, n)
        };
        self.add_host::<64>(ip, false)
    }

    fn add_host<const N: usize>(&self, ip: Ipv4Addr, is_server: bool) -> Host {
        let (index, seed) = {
            let mut s = self.inner.state.borrow_mut();
            s.ports.push(Port {
                ip,
                is_server,
                inbox: BinaryHeap::new(),
                waker: None,
            });
            let mut seed = s.config.seed ^ u64::from(ip.to_bits()).rotate_left(32);
            (s.ports.len() - 1, splitmix64(&mut seed))
        };
        let device = SimDevice {
            net: self.clone(),
            port: index,
        };
        let config = Config::ipv4_static(StaticConfigV4 {
            address: Ipv4Cidr::new(ip, 24),
            gateway: None,
            dns_servers: Default::default(),
        });
        // The stack borrows its resources for 'static: they are never freed (see
        // HOST_RETAINED_BYTES).
        let resources: &'static mut StackResources<N> = Box::leak(Box::new(StackResources::new()));
        let (stack, mut runner) = embassy_net::new(device, config, resources, seed);
        spawn(async move { runner.run().await });
        Host {
            stack,
            ip,
            net: self.clone(),
        }
    }

    /// Drops every later packet from or to `endpoint`, both directions: the peer is
    /// gone without a FIN or RST (walked out of Wi-Fi range, battery died).
    pub fn vanish(&self, endpoint: SocketAddr) {
        let SocketAddr::V4(ep) = endpoint else {
            panic!("the simulated network is IPv4 only");
        };
        self.inner.state.borrow_mut().vanished.push(ep);
    }

    /// Drops every later packet from or to the host at `ip`.
    pub fn vanish_host(&self, ip: Ipv4Addr) {
        self.inner.state.borrow_mut().vanished_hosts.push(ip);
    }

    /// Changes the loss probability of one direction from now on.
    pub fn set_loss(&self, direction: Direction, loss: f64) {
        let mut s = self.inner.state.borrow_mut();
        match direction {
            Direction::Up => s.config.up.loss = loss,
            Direction::Down => s.config.down.loss = loss,
        }
    }

    /// Every packet recorded so far (the last [`TRACE_CAPACITY`]), oldest first.
    pub fn trace(&self) -> Vec<TracePacket> {
        self.inner.state.borrow().trace.iter().copied().collect()
    }

    /// Prints the last `last_n` packets of the trace to stderr, one line each.
    pub fn print_trace(&self, last_n: usize) {
        let s = self.inner.state.borrow();
        let skip = s.trace.len().saturating_sub(last_n);
        for p in s.trace.iter().skip(skip) {
            eprintln!("{p}");
        }
    }

    /// The link's counters so far.
    pub fn stats(&self) -> NetStats {
        self.inner.state.borrow().stats
    }

    /// Packets in flight (sent, not yet delivered) toward any host.
    pub fn in_flight(&self) -> usize {
        self.inner
            .state
            .borrow()
            .ports
            .iter()
            .map(|p| p.inbox.len())
            .sum()
    }

    /// Hands a packet from host `from` to the link: trace, drop decision, timing.
    fn send(&self, from: usize, packet: Vec<u8>) {
        let now = time::now_ticks();
        let mut guard = self.inner.state.borrow_mut();
        let s = &mut *guard;
        let Some(parsed) = trace::parse(&packet) else {
            return;
        };
        let direction = if s.ports[from].is_server {
            Direction::Down
        } else {
            Direction::Up
        };
        let (path, dir_index) = match direction {
            Direction::Up => (s.config.up, 0),
            Direction::Down => (s.config.down, 1),
        };
        let dest = s.ports.iter().position(|p| p.ip == *parsed.dst.ip());
        let vanished = s
            .vanished
            .iter()
            .any(|e| *e == parsed.src || *e == parsed.dst)
            || s.vanished_hosts
                .iter()
                .any(|ip| ip == parsed.src.ip() || ip == parsed.dst.ip());
        let fate = if vanished {
            Fate::Vanished
        } else if dest.is_none() {
            Fate::NoRoute
        } else {
            // A lost packet still occupied the air.
            let start = now.max(s.medium_free[dir_index]);
            let done = start + path.serialization_ticks(packet.len());
            s.medium_free[dir_index] = done;
            let lost = path.loss > 0.0 && {
                let r = (splitmix64(&mut s.rng) >> 11) as f64 / (1u64 << 53) as f64;
                r < path.loss
            };
            if lost {
                Fate::Lost
            } else {
                Fate::Delivered(Instant::from_ticks(done + path.latency.as_ticks()))
            }
        };

        let stats = match direction {
            Direction::Up => &mut s.stats.up,
            Direction::Down => &mut s.stats.down,
        };
        stats.packets += 1;
        stats.payload_bytes += parsed.len as u64;
        stats.rsts += u64::from(parsed.flags.rst());
        stats.fins += u64::from(parsed.flags.fin());
        stats.syns += u64::from(parsed.flags.syn());
        stats.dropped += u64::from(fate.dropped());

        if s.trace.len() == TRACE_CAPACITY {
            s.trace.pop_front();
        }
        s.trace.push_back(TracePacket {
            at: Instant::from_ticks(now),
            src: parsed.src,
            dst: parsed.dst,
            flags: parsed.flags,
            seq: parsed.seq,
            ack: parsed.ack,
            window: parsed.window,
            len: parsed.len,
            wire_len: packet.len(),
            fate,
        });

        if let (Fate::Delivered(at), Some(dest)) = (fate, dest) {
            let at = at.as_ticks();
            let seq = s.seq;
            s.seq += 1;
            let port = &mut s.ports[dest];
            port.inbox.push(Reverse(InFlight { at, seq, packet }));
            if let Some(w) = port.waker.clone() {
                drop(guard);
                embassy_time_driver::schedule_wake(at, &w);
            }
        }
    }

    /// The next packet for host `port` that has arrived by now; otherwise arranges for
    /// the waker to run when the earliest one arrives.
    fn receive(&self, port: usize, cx: &mut Context<'_>) -> Option<Vec<u8>> {
        let now = time::now_ticks();
        let mut s = self.inner.state.borrow_mut();
        let p = &mut s.ports[port];
        if p.waker.as_ref().is_none_or(|w| !w.will_wake(cx.waker())) {
            p.waker = Some(cx.waker().clone());
        }
        match p.inbox.peek() {
            Some(Reverse(f)) if f.at <= now => p.inbox.pop().map(|Reverse(f)| f.packet),
            Some(Reverse(f)) => {
                let at = f.at;
                drop(s);
                embassy_time_driver::schedule_wake(at, cx.waker());
                None
            }
            None => None,
        }
    }
}

/// A host on the simulated network: an embassy-net stack with its runner spawned.
#[derive(Clone)]
pub struct Host {
    /// The host's stack: make sockets on it as on a device.
    pub stack: embassy_net::Stack<'static>,
    /// The host's address.
    pub ip: Ipv4Addr,
    /// The network the host is on.
    pub net: Net,
}

impl Host {
    /// `ip:port` of this host.
    pub fn addr(&self, port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.ip), port)
    }
}

/// The host's network device: Medium::Ip, MTU 1500, link always up.
struct SimDevice {
    net: Net,
    port: usize,
}

/// A received packet.
pub(crate) struct SimRx(Vec<u8>);

/// Permission to send one packet from a host.
pub(crate) struct SimTx {
    net: Net,
    port: usize,
}

impl embassy_net_driver::RxToken for SimRx {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(mut self, f: F) -> R {
        f(&mut self.0)
    }
}

impl embassy_net_driver::TxToken for SimTx {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut packet = vec![0; len];
        let r = f(&mut packet);
        self.net.send(self.port, packet);
        r
    }
}

impl embassy_net_driver::Driver for SimDevice {
    type RxToken<'a>
        = SimRx
    where
        Self: 'a;
    type TxToken<'a>
        = SimTx
    where
        Self: 'a;

    fn receive(&mut self, cx: &mut Context) -> Option<(SimRx, SimTx)> {
        let packet = self.net.receive(self.port, cx)?;
        Some((
            SimRx(packet),
            SimTx {
                net: self.net.clone(),
                port: self.port,
            },
        ))
    }

    fn transmit(&mut self, _cx: &mut Context) -> Option<SimTx> {
        // The link queues without bound: the medium's busy time is the only back-pressure.
        Some(SimTx {
            net: self.net.clone(),
            port: self.port,
        })
    }

    fn link_state(&mut self, _cx: &mut Context) -> LinkState {
        LinkState::Up
    }

    fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::default();
        caps.max_transmission_unit = MTU;
        caps
    }

    fn hardware_address(&self) -> HardwareAddress {
        HardwareAddress::Ip
    }
}
