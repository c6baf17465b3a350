//! `into_inner` takes the connection out of the quiet layer and counts its close as a
//! drop of the wrapper would, so the counters stay balanced.
use tcp_layers_core::{CloseReason, Layer, TcpState};
use tcp_layers_mock::Mock;
use tcp_layers_quiet::{Counters, QuietLayer};
use tcp_layers_sim::run;

#[test]
fn into_inner_counts_the_close_once_and_keeps_the_counters_balanced() {
    static COUNTERS: Counters = Counters::new();
    let mock = Mock::new().with_state(TcpState::CloseWait);
    let state = run(async move {
        let conn = QuietLayer::new(&COUNTERS).layer(mock);
        let inner = conn.into_inner();
        inner.state()
    });
    let counted = COUNTERS.snapshot();
    println!("after into_inner: {counted}");
    assert_eq!(
        state,
        TcpState::CloseWait,
        "the connection itself is untouched"
    );
    assert_eq!(counted.closed_total(), 1);
    assert_eq!(counted.closed(CloseReason::PeerClosed), 1);
    assert!(counted.is_balanced());
}
