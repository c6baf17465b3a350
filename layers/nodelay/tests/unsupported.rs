//! A stack without a Nagle option: one event and one report per process, never a
//! failed connection. Its own test binary, since the report flag and the event hook are
//! process-wide.
use std::sync::atomic::{AtomicU32, Ordering};

use embassy_futures::block_on;
use tcp_layers_core::event::{self, Event};
use tcp_layers_core::{Layer, Write};
use tcp_layers_mock::Mock;
use tcp_layers_nodelay::{NoDelayLayer, reset_unsupported_report, unsupported_reported};

static UNSUPPORTED_EVENTS: AtomicU32 = AtomicU32::new(0);

fn count(e: &Event) {
    if *e == Event::NodelayUnsupported {
        UNSUPPORTED_EVENTS.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn reported_once_per_process_and_connection_still_works() {
    event::set_hook(count);
    assert!(!unsupported_reported());

    // The opt-out never reports: Nagle is already on where the option is missing.
    let _ = NoDelayLayer::keep_nagle().layer(Mock::new().without_nodelay());
    assert_eq!(UNSUPPORTED_EVENTS.load(Ordering::Relaxed), 0);

    for _ in 0..5 {
        let mut conn = NoDelayLayer::new().layer(Mock::new().without_nodelay());
        block_on(conn.write_all(b"still works")).unwrap();
        assert_eq!(conn.get_ref().written(), b"still works");
    }
    let events = UNSUPPORTED_EVENTS.load(Ordering::Relaxed);
    println!("NodelayUnsupported events after 5 unsupported connections: {events}");
    assert_eq!(events, 1);
    assert!(unsupported_reported());

    reset_unsupported_report();
    let _ = NoDelayLayer::new().layer(Mock::new().without_nodelay());
    assert_eq!(UNSUPPORTED_EVENTS.load(Ordering::Relaxed), 2);
    event::clear_hook();
}
