//! The WebSocket on real embassy-net stacks in the simulated network (virtual time): a
//! client completes an exchange, then vanishes (no FIN, no RST, no ACK ever again).
//! With the keepalive the device's socket is free `interval + deadline` after the
//! client's last byte; without it the socket is held for good.
use std::cell::RefCell;
use std::rc::Rc;

use embedded_io_async::{Read, Write};
use std::net::SocketAddr;
use tcp_layers_core::TcpState;
use tcp_layers_sim::client::{ClientBuffers, ClientOptions, Session};

use embassy_futures::select::{Either, select};
use tcp_layers_sim::server::{ServerHandle, spawn_server};
use tcp_layers_sim::{Duration, Instant, LinkConfig, Net, Timer, run};
use tcp_layers_ws::mask::unmask_bytewise;
use tcp_layers_ws::{Incoming, Keepalive, WebSocket, WsConfig, WsError};

/// How long a test waits for what the device without keepalive never does.
const PATIENCE: Duration = Duration::from_secs(600);

/// How the device's WebSocket handler finished: `true` when the keepalive ended it
/// ([`WsError::PeerSilent`]).
type Ended = bool;

/// When the client vanishes after reading the echo.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Vanish {
    /// At once: its delayed ACK of the echo never leaves, so the device's `send` is
    /// still waiting in its flush.
    BeforeItsAck,
    /// 100 ms later, after its ACK: the device is waiting in `read` for the next
    /// message.
    WhileIdle,
}

impl Vanish {
    /// How long the client stays after reading the echo.
    fn linger(self) -> Duration {
        match self {
            Self::BeforeItsAck => Duration::from_ticks(0),
            Self::WhileIdle => Duration::from_millis(100),
        }
    }
}

/// A device with one socket that speaks WebSocket from the first byte (the HTTP upgrade
/// is the server's, not this crate's: the test starts after it) and echoes every piece.
fn device(net: &Net, config: WsConfig) -> (ServerHandle, SocketAddr, Rc<RefCell<Option<Ended>>>) {
    let host = net.server();
    let addr = host.addr(80);
    let record: Rc<RefCell<Option<Ended>>> = Rc::default();
    let log = record.clone();
    let server = spawn_server(host.stack, 80, 1, async move |socket| {
        let mut ws = WebSocket::new(&mut *socket, config);
        let mut buf = [0u8; 256];
        let silent = loop {
            let (kind, echo) = match ws.read(&mut buf).await {
                Ok(Incoming::Data(piece)) => (piece.kind, piece.bytes.to_vec()),
                Ok(Incoming::Closed(_)) => break false,
                Err(e) => break e == WsError::PeerSilent,
            };
            if let Err(e) = ws.send(kind, &echo).await {
                break e == WsError::PeerSilent;
            }
        };
        *log.borrow_mut() = Some(silent);
    });
    (server, addr, record)
}

/// Connects, sends one masked text message, reads its echo, then vanishes. Returns the
/// device's socket time from the vanish to free (`None`: still held after `PATIENCE`)
/// and the handler's record.
fn exchange_then_vanish(config: WsConfig, vanish: Vanish) -> (Option<Duration>, Option<Ended>) {
    run(async move {
        let net = Net::new(LinkConfig::wifi());
        let (server, addr, record) = device(&net, config);
        let options = ClientOptions::new();
        let mut buffers = ClientBuffers::new(&options);
        let mut session = Session::connect(net.client().stack, &mut buffers, addr, options)
            .await
            .expect("connects");
        let key = [9, 8, 7, 6];
        let mut payload = *b"hello device";
        unmask_bytewise(&mut payload, key, 0);
        let mut frame = vec![0x81, 0x80 | payload.len() as u8];
        frame.extend_from_slice(&key);
        frame.extend_from_slice(&payload);
        session.socket().write_all(&frame).await.unwrap();
        let mut echo = [0u8; 14];
        session.socket().read_exact(&mut echo).await.unwrap();
        assert_eq!(&echo[..2], [0x81, 12]);
        assert_eq!(&echo[2..], b"hello device");

        Timer::after(vanish.linger()).await;
        let local = session.local().expect("connected");
        net.vanish(local);
        drop(session);
        let vanished = Instant::now();

        let freed = async {
            server
                .wait_until(|s| s.accepted() == 1 && s.slot_state(0).is_free())
                .await;
            Instant::now() - vanished
        };
        let freed = match select(freed, Timer::after(PATIENCE)).await {
            Either::First(d) => Some(d),
            Either::Second(()) => {
                assert_eq!(server.slot_state(0), TcpState::Established);
                None
            }
        };
        let ended = *record.borrow();
        (freed, ended)
    })
}

/// The link's round trip (20 ms on the sim's Wi-Fi link).
fn rtt() -> Duration {
    let link = LinkConfig::wifi();
    link.up.latency + link.down.latency
}

#[test]
fn a_vanished_peer_is_freed_within_interval_plus_deadline_plus_one_rtt() {
    let config = WsConfig::new();
    let Keepalive::Ping { interval, deadline } = config.keepalive() else {
        panic!("the default has a keepalive")
    };
    let bound = interval + deadline + rtt();
    for vanish in [Vanish::WhileIdle, Vanish::BeforeItsAck] {
        let (freed, silent) = exchange_then_vanish(config, vanish);
        let (raw_freed, raw_ended) =
            exchange_then_vanish(config.with_keepalive(Keepalive::Off), vanish);
        println!(
            "vanished WebSocket peer ({vanish:?}), device socket free after the vanish (ms): \
             keepalive {:?}, without keepalive {:?} (still held after {} s); goal <= \
             interval + deadline + 1 RTT = {} ms",
            freed.map(|d| d.as_millis()),
            raw_freed.map(|d| d.as_millis()),
            PATIENCE.as_secs(),
            bound.as_millis()
        );
        let freed = freed.expect("the keepalive freed the socket");
        // The device last heard the client (its message; an ACK carries no data and is no
        // sign of life) half a round trip before the client read the echo, and
        // `linger` before the vanish.
        assert!(freed <= bound, "freed after {freed:?}");
        assert!(
            freed + rtt() + vanish.linger() >= interval + deadline,
            "freed after {freed:?}"
        );
        assert_eq!(silent, Some(true));

        assert!(
            raw_freed.is_none(),
            "without keepalive the socket was freed"
        );
        assert!(
            raw_ended.is_none(),
            "without keepalive the handler returned"
        );
    }
}

#[test]
fn a_short_keepalive_frees_the_socket_sooner() {
    let keepalive = Keepalive::ping(Duration::from_secs(5), Duration::from_secs(2));
    let config = WsConfig::new().with_keepalive(keepalive);
    let bound = Duration::from_secs(7) + rtt();
    for vanish in [Vanish::WhileIdle, Vanish::BeforeItsAck] {
        let (freed, silent) = exchange_then_vanish(config, vanish);
        let freed = freed.expect("the keepalive freed the socket");
        assert!(freed <= bound, "{freed:?}");
        assert!(
            freed + rtt() + vanish.linger() >= Duration::from_secs(7),
            "{freed:?}"
        );
        assert_eq!(silent, Some(true));
    }
}
