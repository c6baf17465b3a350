//! What the deadlines cost a server that streams large responses: the times its task is
//! polled, on real embassy-net stacks in the simulated network (virtual time).
//!
//! A buffer-bound transfer waits for room in the socket's send buffer about once per
//! acknowledgement, and every such wait registers a timer for its `stall` deadline that
//! is dropped when the room comes. The task must not be woken once more for each of
//! those waits after they are over: the polls of a server with the reaper stay within
//! one per response of the same server without it. That holds because a device's timer
//! queue keeps one wake-up per task, the earliest, and the simulator's does the same;
//! a queue that kept every instant it was given would add about 21 polls per frame
//! here (68.2 against 47.0), and so would a reaper that polled its deadlines.
use std::cell::Cell;
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::rc::Rc;

use tcp_layers_core::Layer;
use tcp_layers_reaper::{ReaperConfig, ReaperLayer};
use tcp_layers_sim::client::{ClientBuffers, ClientOptions, Session};
use tcp_layers_sim::responder::{self, Routes};
use tcp_layers_sim::server::spawn_server;
use tcp_layers_sim::{LinkConfig, Net, run};

static HTTP: ReaperConfig = ReaperConfig::http();

/// Frames fetched one after the other on one keep-alive connection: 120 KiB each, about
/// 0.3 s each through the server's 8 KiB send buffer on a 20 ms link, so the transfer
/// lasts beyond `stall` (5 s) and a wake-up left behind by an early wait comes while
/// later frames are still being served.
const FRAMES: u32 = 24;
const FRAME_BYTES: usize = 120 * 1024;

/// Runs `future`, counting its polls into `polls`.
async fn counted<F: Future>(polls: &Cell<u64>, future: F) -> F::Output {
    let mut future = pin!(future);
    poll_fn(|cx| {
        polls.set(polls.get() + 1);
        future.as_mut().poll(cx)
    })
    .await
}

/// Polls of the server's connection handler while a client fetches the frames, with the
/// reaper (`Some`) or on the bare socket.
fn handler_polls(config: Option<&'static ReaperConfig>) -> u64 {
    run(async move {
        let net = Net::new(LinkConfig::wifi());
        let host = net.server();
        let polls = Rc::new(Cell::new(0));
        let count = polls.clone();
        let _server = spawn_server(host.stack, 80, 1, async move |socket| {
            let routes = Routes::new();
            match config {
                Some(config) => {
                    let mut conn = ReaperLayer::new(config).layer(&mut *socket);
                    counted(&count, responder::serve(&mut conn, &routes)).await;
                }
                None => {
                    counted(&count, responder::serve(&mut *socket, &routes)).await;
                }
            }
        });
        let options = ClientOptions::new();
        let mut buffers = ClientBuffers::new(&options);
        let mut session =
            Session::connect(net.client().stack, &mut buffers, host.addr(80), options)
                .await
                .expect("connects");
        let path = format!("/bytes/{FRAME_BYTES}");
        for _ in 0..FRAMES {
            let response = session.get(&path).await.expect("a frame");
            assert_eq!(response.body_len, FRAME_BYTES);
        }
        polls.get()
    })
}

#[test]
fn waits_for_room_in_the_socket_leave_no_wake_ups_behind() {
    let bare = handler_polls(None);
    let reaped = handler_polls(Some(&HTTP));
    let frames = u64::from(FRAMES);
    println!(
        "handler polls for {FRAMES} frames of {FRAME_BYTES} B: bare socket {bare} ({:.1} per \
         frame), reaper {reaped} ({:.1} per frame)",
        bare as f64 / frames as f64,
        reaped as f64 / frames as f64
    );
    // The dropped timers of the waits add at most one early poll per `stall` (5 s);
    // one per frame is a generous bound that still fails at one per wait.
    assert!(
        reaped <= bare + frames,
        "the reaper woke the task {} more times than the bare socket",
        reaped.saturating_sub(bare)
    );
}
