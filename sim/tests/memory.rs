//! What a simulation keeps after it ends: 10 000 hosts (40 runs of a server and 249
//! clients, each run serving requests) keep at most `HOST_RETAINED_BYTES` each; socket
//! buffers, servers, clients and links are freed.
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use tcp_layers_sim::{HOST_RETAINED_BYTES, LinkConfig, Net, client, responder, run, server};

/// The system allocator, counting the bytes live.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; the counter is
// only arithmetic beside it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: as for `alloc`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: as for `alloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const RUNS: usize = 41;
const CLIENTS_PER_RUN: usize = 249;

/// One run: a server with 8 slots (rx 2 KiB, tx 8 KiB each), 249 clients, one request
/// from every tenth client.
fn one_run() {
    run(async {
        let net = Net::new(LinkConfig::lan());
        let device = net.server();
        server::spawn_server(device.stack, 80, 8, async |socket| {
            responder::serve(socket, &Default::default()).await;
        });
        for i in 0..CLIENTS_PER_RUN {
            let host = net.client();
            if i % 10 == 0 {
                let response = client::get(host.stack, device.addr(80), "/").await;
                assert_eq!(response.map(|r| r.status), Ok(200));
            }
        }
    });
}

#[test]
fn ten_thousand_hosts_keep_at_most_their_stack_resources() {
    // The first run also makes what a process keeps once (thread-locals, lazy statics).
    one_run();
    let before = LIVE.load(Ordering::SeqCst);
    for _ in 1..RUNS {
        one_run();
    }
    let hosts = (RUNS - 1) * (CLIENTS_PER_RUN + 1);
    let kept = LIVE.load(Ordering::SeqCst) - before;
    println!(
        "{hosts} hosts kept {kept} bytes: {} per host (bound {HOST_RETAINED_BYTES})",
        kept / hosts
    );
    // One run's server buffers alone (8 x 10 KiB) would show here if they leaked.
    assert!(
        kept <= hosts * HOST_RETAINED_BYTES,
        "{kept} bytes kept by {hosts} hosts"
    );
}
