//! Each deadline on real embassy-net stacks in the simulated network (virtual time):
//! the hostile or broken client holds its slot forever on the raw server and is gone
//! after its deadline with the reaper.

use crate::common::{ACK_DELAY, SLACK, Served, device, link, ms, rtt};
use tcp_layers_core::{CloseReason, Deadline};
use tcp_layers_reaper::{Protocol, ReaperConfig};
use tcp_layers_sim::client::{self, ClientBuffers, ClientOptions, PeerEnd, Session};
use tcp_layers_sim::{Duration, Instant, Net, run};

static HTTP: ReaperConfig = ReaperConfig::http();
static RAW: ReaperConfig = ReaperConfig::raw();
/// Below the sim responder's own 2048-byte head buffer, so a refusal is the reaper's.
static SMALL_HEAD: ReaperConfig = ReaperConfig::http().with_max_head(1024);

/// How long a test waits for something the raw server never does.
const PATIENCE: Duration = Duration::from_secs(120);

/// The one connection a one-slot device served, if it finished.
fn only(log: &crate::common::Log) -> Option<Served> {
    let log = log.borrow();
    assert!(log.len() <= 1, "one connection expected, got {}", log.len());
    log.first().copied()
}

/// A client that connects and sends nothing: held until `first_byte` (HTTP) or `idle`
/// (raw protocol), forever without the reaper. Returns (held, how it ended, served).
fn silent(config: Option<&'static ReaperConfig>) -> (Duration, PeerEnd, Option<Served>) {
    run(async move {
        let net = Net::new(link());
        let host = net.server();
        let (_server, log) = device(&host, 1, config);
        let hold = client::silent(net.client().stack, host.addr(80), PATIENCE)
            .await
            .expect("connects");
        (hold.held, hold.end, only(&log))
    })
}

#[test]
fn a_silent_client_is_gone_after_first_byte() {
    let (raw_held, raw_end, raw_served) = silent(None);
    let (held, end, served) = silent(Some(&HTTP));
    let (raw_mode_held, raw_mode_end, raw_mode_served) = silent(Some(&RAW));
    let slot = |s: Option<Served>| s.map(|s| ms(s.ended - s.accepted));
    println!(
        "silent client, slot held on the device (ms): raw server {:?}, reaper {:?}, reaper \
         in raw mode {:?}; seen by the client: {} / {} / {} ms; first_byte {} ms, idle {} ms",
        slot(raw_served),
        slot(served),
        slot(raw_mode_served),
        ms(raw_held),
        ms(held),
        ms(raw_mode_held),
        ms(HTTP.first_byte()),
        ms(HTTP.idle())
    );
    assert_eq!(raw_end, PeerEnd::StillOpen);
    assert!(raw_served.is_none(), "the raw server let go");

    assert_eq!(end, PeerEnd::Reset);
    let served = served.expect("the reaper ended it");
    let slot_held = served.ended - served.accepted;
    assert!(slot_held >= HTTP.first_byte() && slot_held <= HTTP.first_byte() + SLACK);
    assert!(held <= HTTP.first_byte() + rtt() + SLACK);
    assert_eq!(
        served.reason,
        Some(CloseReason::Reaped(Deadline::FirstByte))
    );

    // Raw mode has no first-byte deadline: a read waits `idle`.
    assert_eq!(raw_mode_end, PeerEnd::Reset);
    let served = raw_mode_served.expect("the reaper ended it");
    let slot_held = served.ended - served.accepted;
    assert!(slot_held >= RAW.idle() && slot_held <= RAW.idle() + SLACK);
    assert_eq!(served.reason, Some(CloseReason::Reaped(Deadline::Idle)));
}

/// One request, then the client keeps the connection open and says nothing more.
/// Returns (time from the response to the server's end, how it ended, served).
fn idle_after_one_request(
    config: Option<&'static ReaperConfig>,
) -> (Duration, PeerEnd, Option<Served>) {
    run(async move {
        let net = Net::new(link());
        let host = net.server();
        let (_server, log) = device(&host, 1, config);
        let options = ClientOptions::new();
        let mut buffers = ClientBuffers::new(&options);
        let mut session =
            Session::connect(net.client().stack, &mut buffers, host.addr(80), options)
                .await
                .expect("connects");
        let response = session.get("/").await.expect("served");
        assert_eq!(response.status, 200);
        let done = Instant::now();
        let end = session.wait_server_end(PATIENCE).await;
        (Instant::now() - done, end, only(&log))
    })
}

#[test]
fn an_idle_keep_alive_connection_is_gone_after_idle() {
    let (raw_idle, raw_end, _) = idle_after_one_request(None);
    let (idle, end, served) = idle_after_one_request(Some(&HTTP));
    let served = served.expect("the reaper ended it");
    let slot_idle = served.ended - served.last_write.expect("a response was written");
    println!(
        "idle keep-alive, seen by the client after its response: raw server {} ms \
         ({raw_end:?}), reaper {} ms ({end:?}); on the device from the response's flush \
         to the slot free: {} ms; idle {} ms",
        ms(raw_idle),
        ms(idle),
        ms(slot_idle),
        ms(HTTP.idle())
    );
    assert_eq!(raw_end, PeerEnd::StillOpen);
    assert_eq!(end, PeerEnd::Reset);
    // The device's idle time starts when its flush returns (the client's ACK of the
    // response's last segment arrived); the client sees the RST half a round trip after.
    assert!(slot_idle >= HTTP.idle() && slot_idle <= HTTP.idle() + SLACK);
    assert!(idle <= HTTP.idle() + rtt() + ACK_DELAY + SLACK);
    assert_eq!(served.reason, Some(CloseReason::Reaped(Deadline::Idle)));
    assert_eq!(served.requests, 1);
}

/// The 160 KiB frame of a camera, as the showcase's scenarios request it.
const FRAME: &str = "/bytes/163840";

/// A client that requests a frame and never reads. Returns the device's time from the
/// request's arrival to the slot being free, if it was freed.
fn slow_reader(config: Option<&'static ReaperConfig>) -> Option<(Duration, Served)> {
    run(async move {
        let net = Net::new(link());
        let host = net.server();
        let (_server, log) = device(&host, 1, config);
        let hold = client::slow_reader(net.client().stack, host.addr(80), FRAME, PATIENCE)
            .await
            .expect("connects");
        assert!(hold.bytes_received < 163_840, "the client never read");
        only(&log).map(|s| (s.ended - s.first_bytes.expect("request arrived"), s))
    })
}

#[test]
fn a_slow_reader_is_gone_after_stall() {
    let raw = slow_reader(None);
    let http = slow_reader(Some(&HTTP));
    let raw_mode = slow_reader(Some(&RAW));
    let figure = |r: &Option<(Duration, Served)>| r.map(|(d, _)| ms(d));
    println!(
        "slow reader of a 160 KiB response, slot free after the request's arrival (ms): \
         raw server {:?}, reaper {:?}, reaper in raw mode {:?}; stall + 1 RTT + ACK delay \
         = {} ms",
        figure(&raw),
        figure(&http),
        figure(&raw_mode),
        ms(HTTP.stall() + rtt() + ACK_DELAY)
    );
    assert!(raw.is_none(), "the raw server let go");
    // The reader's stack still takes its first window (1 KiB): the device's last send
    // progress is that window's ACK, one round trip plus the delayed ACK after the
    // request; the stall runs from there.
    for (freed, served) in [http, raw_mode].map(|r| r.expect("the reaper freed the slot")) {
        assert!(freed >= HTTP.stall() && freed <= HTTP.stall() + rtt() + ACK_DELAY + SLACK);
        assert_eq!(served.reason, Some(CloseReason::Reaped(Deadline::Stall)));
    }
}

/// A client that reads 20 kB of a frame and vanishes. Returns the time from the vanish
/// to the slot being free, if it was freed.
fn vanished_peer(config: Option<&'static ReaperConfig>) -> Option<(Duration, Served)> {
    run(async move {
        let net = Net::new(link());
        let host = net.server();
        let (server, log) = device(&host, 1, config);
        let gone = client::vanish_after(&net, net.client().stack, host.addr(80), FRAME, 20_000)
            .await
            .expect("connects");
        // The raw server's slot sits in `close(); flush()` forever: wait long enough.
        tcp_layers_sim::Timer::after(PATIENCE).await;
        assert_eq!(server.accepted(), 1);
        only(&log).map(|s| (s.ended - gone.at, s))
    })
}

#[test]
fn a_vanished_peer_is_gone_after_stall() {
    let raw = vanished_peer(None);
    let reaped = vanished_peer(Some(&HTTP));
    println!(
        "peer vanished mid-response, slot free after the vanish (ms): raw server {:?}, \
         reaper {:?}; goal <= stall + 1 RTT = {} ms",
        raw.map(|(d, _)| ms(d)),
        reaped.map(|(d, _)| ms(d)),
        ms(HTTP.stall() + rtt())
    );
    // The raw responder's write fails only when the stack gives up retransmitting, and
    // the accept loop's close then waits on a FIN nobody acknowledges.
    assert!(raw.is_none(), "the raw server let go");
    let (freed, served) = reaped.expect("the reaper freed the slot");
    assert!(freed <= HTTP.stall() + rtt());
    assert_eq!(served.reason, Some(CloseReason::Reaped(Deadline::Stall)));
}

/// A request whose head is exactly `len` bytes, terminator included.
fn head_of(len: usize) -> Vec<u8> {
    let start = b"GET / HTTP/1.1\r\nHost: device\r\nX-Pad: ";
    let mut head = start.to_vec();
    head.resize(len - 4, b'p');
    head.extend_from_slice(b"\r\n\r\n");
    assert_eq!(head.len(), len);
    head
}

/// Sends one head of `len` bytes; returns the response status (or `None` for no
/// response) and what the device recorded.
fn head_request(config: Option<&'static ReaperConfig>, len: usize) -> (Option<u16>, Served) {
    run(async move {
        let net = Net::new(link());
        let host = net.server();
        let (_server, log) = device(&host, 1, config);
        let options = ClientOptions::new();
        let mut buffers = ClientBuffers::new(&options);
        let mut session =
            Session::connect(net.client().stack, &mut buffers, host.addr(80), options)
                .await
                .expect("connects");
        let status = session.request(&head_of(len)).await.ok().map(|r| r.status);
        session.close().await;
        tcp_layers_sim::Timer::after(Duration::from_secs(10)).await;
        (status, only(&log).expect("the connection ended"))
    })
}

#[test]
fn a_head_longer_than_max_head_is_refused_and_one_of_max_head_is_served() {
    let max = usize::from(SMALL_HEAD.max_head());
    let (exact, exact_served) = head_request(Some(&SMALL_HEAD), max);
    let (over, over_served) = head_request(Some(&SMALL_HEAD), max + 1);
    let (raw_over, _) = head_request(None, max + 1);
    println!(
        "max_head {max}: head of {max} B -> {exact:?}, of {} B -> {over:?} ({:?}); \
         raw server, {} B -> {raw_over:?}",
        max + 1,
        over_served.reason,
        max + 1
    );
    assert_eq!(exact, Some(200));
    assert_eq!(exact_served.requests, 1);
    assert_ne!(
        exact_served.reason,
        Some(CloseReason::Reaped(Deadline::RequestTooLarge))
    );
    assert_eq!(over, Some(431));
    assert_eq!(
        over_served.reason,
        Some(CloseReason::Reaped(Deadline::RequestTooLarge))
    );
    assert_eq!(over_served.requests, 0, "the server never saw the request");
    assert_eq!(raw_over, Some(200), "the raw server serves the long head");
}

#[test]
fn the_default_config_is_http_and_raw_differs_only_in_protocol() {
    assert_eq!(HTTP.protocol(), Protocol::Http);
    assert_eq!(RAW.protocol(), Protocol::Raw);
    assert_eq!(RAW.with_protocol(Protocol::Http), HTTP);
}
