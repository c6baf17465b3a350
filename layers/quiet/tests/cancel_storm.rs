//! quiet: 100 clients cancel a 160 kB response at random offsets (fixed seed).
//! With the layer: 0 lines at warn or above and 100 counted client cancels. Without it
//! (the naive `error!` on every failed I/O, as servers log today): 100 error lines.
mod common;

use common::NaiveLog;
use tcp_layers_core::{CloseReason, Layer};
use tcp_layers_mock::Rng;
use tcp_layers_mock::log_lines::{Lines, lines, start_counting};
use tcp_layers_quiet::{Counters, QuietLayer};
use tcp_layers_sim::{Duration, LinkConfig, Net, client, responder, run_with_limit, server, spawn};

const CLIENTS: usize = 100;
const CLIENT_HOSTS: usize = 4;
const SOCKETS: usize = 8;
const BODY: usize = 160_000;
const PATH: &str = "/bytes/160000";

#[derive(Clone, Copy)]
enum Logging {
    /// `error!` on every failed read, write or flush.
    Naive,
    /// The quiet layer around the socket.
    QuietLayer(&'static Counters),
}

/// Runs the storm and returns the log lines of the run and how many cancels the clients
/// completed (a cancel whose client read its `k` bytes and sent RST).
fn storm(logging: Logging) -> (Lines, usize) {
    start_counting();
    let cancelled = run_with_limit(Duration::from_secs(600), async move {
        let net = Net::new(LinkConfig::wifi());
        let device = net.server();
        let routes = responder::Routes::new();
        let handle =
            server::spawn_server(
                device.stack,
                80,
                SOCKETS,
                async move |socket| match logging {
                    Logging::Naive => {
                        responder::serve(&mut NaiveLog { inner: socket }, &routes).await;
                    }
                    Logging::QuietLayer(counters) => {
                        responder::serve(&mut QuietLayer::new(counters).layer(socket), &routes)
                            .await;
                    }
                },
            );
        handle.wait_listening(SOCKETS).await;
        // Offsets anywhere in the body. A client that resets only after its stack has
        // acknowledged the last byte would be seen, rightly, as a reset after a complete
        // response; these clients reset as soon as they have read `k` bytes, before the
        // delayed ACK of the tail leaves, so every one is a cancel on the server's side.
        let mut rng = Rng::new(0x5eed_0003);
        let offsets: Vec<usize> = (0..CLIENTS)
            .map(|_| rng.range(1, BODY as u64 + 1) as usize)
            .collect();
        let server = device.addr(80);
        let tasks: Vec<_> = (0..CLIENT_HOSTS)
            .map(|h| {
                let host = net.client();
                let mine: Vec<usize> = offsets
                    .iter()
                    .skip(h)
                    .step_by(CLIENT_HOSTS)
                    .copied()
                    .collect();
                spawn(async move {
                    let mut done = 0;
                    for k in mine {
                        if client::cancel_after(host.stack, server, PATH, k)
                            .await
                            .is_ok()
                        {
                            done += 1;
                        }
                    }
                    done
                })
            })
            .collect();
        let mut cancelled = 0;
        for t in tasks {
            cancelled += t.await.expect("client task");
        }
        // Every slot back in accept(): every handler has ended its connection.
        handle.wait_listening(SOCKETS).await;
        cancelled
    })
    .expect("the storm ends within its virtual time limit");
    (lines(), cancelled)
}

#[test]
fn a_cancel_storm_logs_nothing_loud_and_counts_every_cancel() {
    let (naive, naive_cancels) = storm(Logging::Naive);
    println!(
        "layer off (naive logging): {naive_cancels} cancels -> {} lines at warn or above",
        naive.warn_or_above()
    );
    assert_eq!(naive_cancels, CLIENTS);
    assert_eq!(
        naive.warn_or_above(),
        CLIENTS,
        "the baseline logs one error per cancel"
    );

    static COUNTERS: Counters = Counters::new();
    let (quiet, cancels) = storm(Logging::QuietLayer(&COUNTERS));
    let s = COUNTERS.snapshot();
    println!(
        "layer on: {cancels} cancels -> {} lines at warn or above, {} trace lines; counters: {s}",
        quiet.warn_or_above(),
        quiet.trace
    );
    for line in &quiet.loud {
        println!("  {line}");
    }
    assert_eq!(cancels, CLIENTS);
    assert_eq!(quiet.warn_or_above(), 0);
    assert_eq!(s.closed(CloseReason::ClientCancelled), CLIENTS as u64);
    assert_eq!(s.closed_total(), CLIENTS as u64);
    assert_eq!(quiet.trace, CLIENTS, "one trace line per close");
    assert_eq!(quiet.closed_events.len(), CLIENTS, "one event per close");
    assert!(
        quiet
            .closed_events
            .iter()
            .all(|r| *r == CloseReason::ClientCancelled)
    );
    assert_eq!((s.accepted, s.active), (CLIENTS as u64, 0));
    assert!(s.is_balanced());
}
