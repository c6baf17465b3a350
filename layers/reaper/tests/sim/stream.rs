//! A stream whose peer vanished without a FIN or RST, on real embassy-net stacks in
//! the simulated network (virtual time): the sim responder's `/sse` sends an event
//! every second and flushes it; the reaper's `keepalive` deadline on that flush frees
//! the slot, where the raw server streams into the void until its send buffer fills.

use crate::common::{Served, device, link, ms, rtt};
use tcp_layers_core::Write;
use tcp_layers_core::{CloseReason, Deadline};
use tcp_layers_reaper::ReaperConfig;
use tcp_layers_sim::client::{ClientBuffers, ClientOptions, Session};
use tcp_layers_sim::responder::Routes;
use tcp_layers_sim::{Duration, Instant, Net, Timer, run};

static HTTP: ReaperConfig = ReaperConfig::http();
/// A shorter keepalive deadline, to show the figure follows the configuration.
static QUICK: ReaperConfig = ReaperConfig::http().with_keepalive(Duration::from_secs(2));

/// How long the test waits for the raw server to let go, which it never does.
const PATIENCE: Duration = Duration::from_secs(120);

/// Reads the stream until `events` events arrived, then the client vanishes from the
/// net. Returns the time from the vanish to the slot being free, if it was freed.
fn vanished_stream(config: Option<&'static ReaperConfig>) -> Option<(Duration, Served)> {
    run(async move {
        let net = Net::new(link());
        let host = net.server();
        let (server, log) = device(&host, 1, config);
        let stack = net.client().stack;
        let options = ClientOptions::new();
        let mut buffers = ClientBuffers::new(&options);
        let mut session = Session::connect(stack, &mut buffers, host.addr(80), options)
            .await
            .expect("connects");
        let local = session.local().expect("connected");
        let socket = session.socket();
        socket
            .write_all(b"GET /sse HTTP/1.1\r\nHost: device\r\n\r\n")
            .await
            .expect("request sent");
        let mut received = Vec::new();
        let mut chunk = [0u8; 256];
        while received.windows(6).filter(|w| w == b"data: ").count() < 2 {
            let n = socket.read(&mut chunk).await.expect("stream open");
            assert!(n > 0, "the stream ended early");
            received.extend_from_slice(&chunk[..n]);
        }
        let gone = Instant::now();
        net.vanish(local);
        drop(session);
        Timer::after(PATIENCE).await;
        assert_eq!(server.accepted(), 1);
        let log = log.borrow();
        log.first().map(|s| (s.ended - gone, *s))
    })
}

#[test]
fn a_vanished_stream_peer_is_gone_after_one_interval_and_the_keepalive_deadline() {
    let raw = vanished_stream(None);
    let reaped = vanished_stream(Some(&HTTP));
    let quick = vanished_stream(Some(&QUICK));
    let interval = Routes::new().sse_interval;
    println!(
        "stream peer vanished, slot free after the vanish (ms): raw server {:?}, reaper \
         {:?}, reaper with a 2 s keepalive {:?}; goal <= interval + keepalive + 1 RTT = {} ms",
        raw.map(|(d, _)| ms(d)),
        reaped.map(|(d, _)| ms(d)),
        quick.map(|(d, _)| ms(d)),
        ms(interval + HTTP.keepalive() + rtt())
    );
    assert!(raw.is_none(), "the raw server let go");
    for (config, result) in [(&HTTP, reaped), (&QUICK, quick)] {
        let (freed, served) = result.expect("the reaper freed the slot");
        assert!(
            freed <= interval + config.keepalive() + rtt(),
            "{}",
            ms(freed)
        );
        // Not before the deadline: the flush of the first unacknowledged event waits it
        // out, and that flush started at most a round trip before the vanish (the last
        // event read may not have been acknowledged yet).
        assert!(freed + rtt() >= config.keepalive(), "{}", ms(freed));
        assert_eq!(
            served.reason,
            Some(CloseReason::Reaped(Deadline::Keepalive))
        );
    }
}
