//! The budget's numbers, the chip profiles and the rules checked at compile time.
//!
//! Every constructor here is a `const fn` that panics on a broken rule. Used in a
//! `static` or a `const`, a panic is a compile error whose text names the rule, so a
//! budget that cannot work on the device never reaches it.

use embassy_time::Duration;

/// lwIP's default `MEMP_NUM_TCP_PCB` on ESP-IDF: at most 16 TCP connections (PCBs) exist
/// at once, listeners and `TIME_WAIT` leftovers included. The 17th is refused.
pub const LWIP_PCB_LIMIT: u8 = 16;

/// The sockets embassy-net takes from `StackResources` for itself, beside the server's.
///
/// `StackResources<SOCK>` counts every socket of the stack: the DHCP client takes one
/// (feature `dhcpv4` with `Config::dhcpv4`), the DNS resolver takes one (feature `dns`).
/// Running out is no error value: embassy-net panics with "adding a socket to a full
/// SocketSet".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StackServices {
    /// Static address, no resolver.
    None,
    /// DHCP client only.
    Dhcp,
    /// DNS resolver only.
    Dns,
    /// DHCP client and DNS resolver (the usual Wi-Fi station).
    DhcpAndDns,
}

impl StackServices {
    /// How many sockets these services take.
    pub const fn sockets(self) -> usize {
        match self {
            Self::None => 0,
            Self::Dhcp | Self::Dns => 1,
            Self::DhcpAndDns => 2,
        }
    }
}

/// The numbers of a [`Budget`](crate::Budget).
///
/// - `total`: connection slots, one per server socket (on embassy-net: the accept loops
///   of `serve`, each with its own socket). A connection past it is refused.
/// - `request`, `stream`: caps per [`ConnectionClass`](tcp_layers_core::ConnectionClass).
///   Their sum may be below `total` but not above it, so a stream can never take the
///   last slot a page load needs.
/// - `reserve`: listeners kept free. When an accepted connection leaves fewer free, the
///   least recently active idle keep-alive connection is evicted at once; and while
///   fewer are free, a connection idle for `idle_grace` evicts the least recently
///   active one, so listeners are free *before* the next client's SYNs arrive (a SYN
///   that finds no listener is reset, and a browser opens 6 connections in the same
///   millisecond: to take a second browser's page load whole, set the reserve to 6).
///   Default 1: one free listener answers the next SYN instead of a reset.
/// - `idle_grace`: how long a connection must be idle before it is evicted to
///   refill the reserve. Default 1000 ms: a browser sends the next request of a page
///   load within a few round trips, so a connection idle for a second is between page
///   loads, and closing it costs a reconnect later, not a broken page now.
/// - `exhaustion_at`: connections held at which the budget counts as exhausted: it then
///   evicts an idle connection at every accept and raises
///   [`Event::Exhaustion`](tcp_layers_core::event::Event::Exhaustion) (logged at info:
///   one browser's page load reaches it). Streams within their cap are still admitted:
///   the stream slots are a reservation. Default `total - 2`: two slots before the
///   stack refuses, time enough for the application to react.
/// - `per_peer`: sockets one remote address may hold at once, as nginx's `limit_conn`
///   keyed by the client address. A connection past it is closed at once unless the
///   peer has an idle keep-alive connection to give up for it, so one device never
///   takes the sockets another needs. Default `total - 2` (all of them for a budget of
///   1 or 2): room for a second device's page and its stream. Of the request slots, a
///   peer is served at most `request - 1` at once ([`BudgetConfig::peer_request_share`]),
///   so one is always left for another device; its further requests wait (see
///   `queue_wait`).
/// - `queue_wait`: how long a request that does not fit (its peer at its share, or
///   the requests at their cap) may wait for a slot before it is refused. Its request
///   is read meanwhile; only its response waits, until one of its peer's connections
///   goes idle (which it then takes over) or ends. Default 2000 ms: a page's next
///   request starts within a response time; a refused one is answered with
///   `refusal_reply` and closed.
/// - `displace_after`: when every socket is taken, the connection that has been
///   reading its request head the longest is closed for the newcomer, if it has been
///   at it this long. Default 1000 ms: a real client sends its head in one round trip,
///   a slowloris client takes seconds per line.
/// - `refusal_reply`: the bytes a refused request is answered with before the FIN
///   (this crate knows TCP, not HTTP: an HTTP server passes its `503 Service
///   Unavailable` with `Retry-After`, `tcp_layers_http::reply::REPLY_503`). Default empty: a
///   FIN without an answer.
/// - `pcb_threshold`: the socket count, in lwIP PCBs, at which to act (listeners,
///   connections and their `TIME_WAIT` leftovers, which outlive a closed connection
///   by 120 s on lwIP). It is the point at which a device on ESP-IDF is near its
///   [`LWIP_PCB_LIMIT`] and should shed or restart. The budget cannot count the PCBs
///   lwIP keeps after a close, so this number is a sizing rule, checked at compile time
///   to stay below the limit; the runtime threshold is `exhaustion_at`, in connections
///   this budget holds. Default 12: four PCBs of headroom below lwIP's 16.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BudgetConfig {
    /// Connection slots (server sockets).
    pub total: u8,
    /// Cap of `Stream` connections.
    pub stream: u8,
    /// Cap of `Request` connections.
    pub request: u8,
    /// Listeners kept free by evicting idle keep-alive connections.
    pub reserve: u8,
    /// Connections held at which the budget counts as exhausted.
    pub exhaustion_at: u8,
    /// lwIP PCBs at which the device counts as near its PCB limit (sizing rule).
    pub pcb_threshold: u8,
    /// How long a connection must be idle before it is evicted to refill the reserve.
    pub idle_grace: Duration,
    /// Sockets one remote address may hold at once.
    pub per_peer: u8,
    /// How long a request that does not fit may wait for a slot.
    pub queue_wait: Duration,
    /// How long a request head must have been read before it may be displaced.
    pub displace_after: Duration,
    /// The answer to a refused request, written before the FIN.
    pub refusal_reply: &'static [u8],
}

impl BudgetConfig {
    /// `total` slots, of which at most `stream` streams and `request` requests, with the
    /// defaults for the rest (reserve 1, exhaustion at and per peer `total - 2` (`total`
    /// for a budget of 1 or 2), PCB threshold 12, idle grace 1000 ms, queue wait 2000 ms,
    /// displacement after 1000 ms, no refusal reply).
    ///
    /// # Panics
    /// At compile time when used in a `const` or `static`, if a rule breaks: see
    /// [`BudgetConfig::validated`].
    pub const fn new(total: u8, stream: u8, request: u8) -> Self {
        Self {
            total,
            stream,
            request,
            reserve: 1,
            exhaustion_at: if total > 2 { total - 2 } else { total },
            pcb_threshold: 12,
            idle_grace: Duration::from_millis(1000),
            per_peer: if total > 2 { total - 2 } else { total },
            queue_wait: Duration::from_millis(2000),
            displace_after: Duration::from_millis(1000),
            refusal_reply: &[],
        }
        .validated()
    }

    /// The same budget with `sockets` per remote address (`total` turns the per-peer
    /// share off).
    pub const fn with_per_peer(self, sockets: u8) -> Self {
        Self {
            per_peer: sockets,
            ..self
        }
        .validated()
    }

    /// The same budget with another queue bound.
    pub const fn with_queue_wait(self, queue_wait: Duration) -> Self {
        Self { queue_wait, ..self }.validated()
    }

    /// The same budget with another minimum age before a request head is displaced.
    pub const fn with_displace_after(self, displace_after: Duration) -> Self {
        Self {
            displace_after,
            ..self
        }
        .validated()
    }

    /// The same budget answering refused requests with `reply` before the FIN.
    pub const fn with_refusal_reply(self, reply: &'static [u8]) -> Self {
        Self {
            refusal_reply: reply,
            ..self
        }
        .validated()
    }

    /// The request slots one peer is served at once: `request - 1` (at least 1), and
    /// no more than `per_peer`, so a request slot is always left for another device.
    pub const fn peer_request_share(&self) -> u8 {
        let share = if self.request > 1 {
            self.request - 1
        } else {
            1
        };
        if share < self.per_peer {
            share
        } else {
            self.per_peer
        }
    }

    /// The same budget with another idle grace.
    pub const fn with_idle_grace(self, idle_grace: Duration) -> Self {
        Self { idle_grace, ..self }.validated()
    }

    /// The same budget with `reserve` listeners kept free.
    pub const fn with_reserve(self, reserve: u8) -> Self {
        Self { reserve, ..self }.validated()
    }

    /// The same budget, exhausted from `connections` held on. `total + 1` turns
    /// exhaustion off.
    pub const fn with_exhaustion_at(self, connections: u8) -> Self {
        Self {
            exhaustion_at: connections,
            ..self
        }
        .validated()
    }

    /// The same budget with another PCB threshold (lwIP sizing).
    pub const fn with_pcb_threshold(self, pcbs: u8) -> Self {
        Self {
            pcb_threshold: pcbs,
            ..self
        }
        .validated()
    }

    /// Checks that the server sockets of this budget and the stack's own fit a
    /// `StackResources<stack_resources>`; returns `self` so it chains in a `const`.
    ///
    /// ```
    /// use tcp_layers_limit::{BudgetConfig, StackServices, profile};
    /// // ESP32: 6 server sockets + DHCP + DNS = 8.
    /// const CONFIG: BudgetConfig = profile::ESP32.fits_stack(8, StackServices::DhcpAndDns);
    /// ```
    ///
    /// ```compile_fail,E0080
    /// use tcp_layers_limit::{BudgetConfig, StackServices, profile};
    /// // 6 server sockets + DHCP + DNS do not fit 7 sockets: does not compile.
    /// const CONFIG: BudgetConfig = profile::ESP32.fits_stack(7, StackServices::DhcpAndDns);
    /// ```
    pub const fn fits_stack(self, stack_resources: usize, services: StackServices) -> Self {
        assert!(
            self.total as usize + services.sockets() <= stack_resources,
            "budget rule: total server sockets plus the stack's own (DHCP, DNS) exceed StackResources"
        );
        self
    }

    /// Checks every rule and returns `self`. Each rule panics with its own message:
    ///
    /// - `total` is at least 1;
    /// - `stream + request <= total` (classes exceed the total);
    /// - `reserve < total` (a reserve of every slot would evict every idle connection);
    /// - `1 <= exhaustion_at <= total + 1` (`total + 1` = never exhausted);
    /// - `1 <= per_peer <= total`;
    /// - `pcb_threshold < LWIP_PCB_LIMIT` (shedding must start before lwIP refuses).
    ///
    /// ```compile_fail,E0080
    /// use tcp_layers_limit::BudgetConfig;
    /// // 2 streams + 5 requests > 6 slots: does not compile.
    /// const CONFIG: BudgetConfig = BudgetConfig::new(6, 2, 5);
    /// ```
    ///
    /// ```compile_fail,E0080
    /// use tcp_layers_limit::BudgetConfig;
    /// // A threshold at lwIP's 16 PCBs is too late: does not compile.
    /// const CONFIG: BudgetConfig = BudgetConfig::new(6, 1, 5).with_pcb_threshold(16);
    /// ```
    ///
    /// ```compile_fail,E0080
    /// use tcp_layers_limit::BudgetConfig;
    /// // A reserve of all 6 listeners: does not compile.
    /// const CONFIG: BudgetConfig = BudgetConfig::new(6, 1, 5).with_reserve(6);
    /// ```
    ///
    /// ```compile_fail,E0080
    /// use tcp_layers_limit::BudgetConfig;
    /// // No socket at all for a peer: does not compile.
    /// const CONFIG: BudgetConfig = BudgetConfig::new(6, 1, 5).with_per_peer(0);
    /// ```
    ///
    /// ```compile_fail,E0080
    /// use tcp_layers_limit::BudgetConfig;
    /// // Exhausted at 0 connections: does not compile.
    /// const CONFIG: BudgetConfig = BudgetConfig::new(6, 1, 5).with_exhaustion_at(0);
    /// ```
    pub const fn validated(self) -> Self {
        assert!(self.total >= 1, "budget rule: total must be at least 1");
        assert!(
            self.stream as u16 + self.request as u16 <= self.total as u16,
            "budget rule: stream + request classes exceed the total"
        );
        assert!(
            self.reserve < self.total,
            "budget rule: reserve must be below total"
        );
        assert!(
            self.exhaustion_at >= 1 && self.exhaustion_at as u16 <= self.total as u16 + 1,
            "budget rule: exhaustion_at must be within 1..=total + 1"
        );
        assert!(
            self.per_peer >= 1 && self.per_peer <= self.total,
            "budget rule: per_peer must be within 1..=total"
        );
        assert!(
            self.pcb_threshold < LWIP_PCB_LIMIT,
            "budget rule: pcb_threshold must be below the lwIP PCB limit (16)"
        );
        self
    }
}

/// The ESP32 family's budgets (total / stream / request, PCB threshold), from what
/// their RAM and lwIP's 16 PCBs allow with a Wi-Fi station running beside the server.
/// Exhaustion and the per-peer share at `total - 2` as in [`BudgetConfig::new`].
///
/// ```
/// use tcp_layers_limit::{Budget, profile};
/// static BUDGET: Budget<6> = Budget::new(profile::ESP32);
/// ```
pub mod profile {
    use super::BudgetConfig;

    // The reserve of each profile is `total - 2`: a browser opens up to six
    // connections in the same millisecond, and a SYN that finds no listening socket is
    // reset at once, so a second device only loads its page if enough listeners are
    // already free when its burst arrives. Evicting at accept time is too late for the
    // rest of the burst; evicting idle keep-alive connections after the idle grace
    // (1 s) keeps listeners free ahead of time and still lets two connections stay
    // warm between requests.

    /// ESP32: 6 slots, 1 stream, 5 requests, reserve 4, PCB threshold 12.
    pub const ESP32: BudgetConfig = BudgetConfig::new(6, 1, 5)
        .with_reserve(4)
        .with_pcb_threshold(12);
    /// ESP32-S3: 8 slots, 2 streams, 6 requests, reserve 6, PCB threshold 14.
    pub const ESP32_S3: BudgetConfig = BudgetConfig::new(8, 2, 6)
        .with_reserve(6)
        .with_pcb_threshold(14);
    /// ESP32-C3: 4 slots, 1 stream, 3 requests, reserve 2, PCB threshold 10.
    pub const ESP32_C3: BudgetConfig = BudgetConfig::new(4, 1, 3)
        .with_reserve(2)
        .with_pcb_threshold(10);
    /// ESP32-C6: 6 slots, 1 stream, 5 requests, reserve 4, PCB threshold 12.
    pub const ESP32_C6: BudgetConfig = BudgetConfig::new(6, 1, 5)
        .with_reserve(4)
        .with_pcb_threshold(12);
}
