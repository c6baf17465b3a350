//! A WebSocket over the quiet layer: the keepalive's end of a vanished peer is counted
//! under its own reason (`reaped_keepalive`) and logged below warn, as a peer-caused
//! close.
use tcp_layers::ws::{Keepalive, WebSocket, WsConfig, WsError};
use tcp_layers_core::{CloseReason, Deadline, Layer};
use tcp_layers_mock::Mock;
use tcp_layers_mock::log_lines::{lines, start_counting};
use tcp_layers_quiet::{Counters, QuietLayer};
use tcp_layers_sim::{Duration, Instant, run};

#[test]
fn a_silent_websocket_peer_is_counted_as_reaped_keepalive_and_logged_quietly() {
    static COUNTERS: Counters = Counters::new();
    start_counting();
    let keepalive = Keepalive::ping(Duration::from_secs(30), Duration::from_secs(10));
    let mock = Mock::new();
    let (error, at) = run({
        let mock = mock.clone();
        async move {
            let conn = QuietLayer::new(&COUNTERS).layer(mock);
            let mut ws = WebSocket::new(conn, WsConfig::new().with_keepalive(keepalive));
            let mut buf = [0u8; 64];
            let error = ws.read(&mut buf).await.err();
            (error, Instant::now() - Instant::from_ticks(0))
        }
    });
    let counted = COUNTERS.snapshot();
    let seen = lines();
    println!(
        "after the keepalive's end: {counted}; lines at warn or above: {:?}",
        seen.loud
    );
    assert_eq!(error, Some(WsError::PeerSilent));
    assert_eq!(at, Duration::from_secs(40));
    assert_eq!(mock.ends(), [CloseReason::Reaped(Deadline::Keepalive)]);
    assert_eq!(counted.closed(CloseReason::Reaped(Deadline::Keepalive)), 1);
    assert_eq!(counted.closed_total(), 1);
    assert_eq!(seen.warn_or_above(), 0, "{:?}", seen.loud);
}
