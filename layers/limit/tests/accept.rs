//! The accept loop: backoff under injected errors, and the embassy-net convenience on
//! a real stack in the simulated network (virtual time).
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use embassy_futures::select::{Either, select};
use embassy_net::tcp::TcpSocket;
use tcp_layers_core::event::{self, Event};
use tcp_layers_limit::{AcceptLoop, Backoff};
use tcp_layers_sim::client::{self, ClientError};
use tcp_layers_sim::{Duration, Instant, LinkConfig, Net, Timer, run};

/// Counts how often the wrapped future returned `Pending`: each is a yield to the
/// executor.
struct CountYields<'a, F> {
    fut: Pin<Box<F>>,
    yields: &'a Cell<u64>,
}

impl<F: Future> Future for CountYields<'_, F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let r = self.fut.as_mut().poll(cx);
        if r.is_pending() {
            self.yields.set(self.yields.get() + 1);
        }
        r
    }
}

thread_local! {
    static BACKOFFS: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
}

fn record_backoff(e: &Event) {
    if let Event::AcceptError { backoff, .. } = *e {
        let backoff_ms = u32::try_from(backoff.as_millis()).expect("backoff below 49 days");
        BACKOFFS.with(|b| b.borrow_mut().push(backoff_ms));
    }
}

/// An accept that fails `errors` times, then succeeds with the number of calls.
fn flaky(errors: u32, calls: &Cell<u32>) -> impl AsyncFnMut() -> Result<u32, ()> + '_ {
    async move || {
        calls.set(calls.get() + 1);
        if calls.get() <= errors {
            Err(())
        } else {
            Ok(calls.get())
        }
    }
}

#[test]
fn thousand_accept_errors_yield_back_off_and_recover() {
    BACKOFFS.with(|b| b.borrow_mut().clear());
    let (naive_yields, yields, elapsed, backoffs, accepted, after_reset) = run(async {
        // Raw: retry at once, as a hand-written loop does when it does not give up.
        let calls = Cell::new(0);
        let naive_yields = Cell::new(0);
        let mut accept = flaky(1000, &calls);
        CountYields {
            fut: Box::pin(async {
                loop {
                    if let Ok(v) = accept().await {
                        break v;
                    }
                }
            }),
            yields: &naive_yields,
        }
        .await;

        event::set_hook(record_backoff);
        let calls = Cell::new(0);
        let yields = Cell::new(0);
        let mut accepts = AcceptLoop::new(Backoff::DEFAULT);
        let start = Instant::now();
        let accepted = CountYields {
            fut: Box::pin(accepts.accept(flaky(1000, &calls))),
            yields: &yields,
        }
        .await;
        let elapsed = Instant::now() - start;
        assert_eq!(accepts.failures(), 1000);
        assert_eq!(accepts.consecutive(), 0, "a success resets the backoff");
        // After the success the next failure waits the first step again.
        let calls = Cell::new(0);
        accepts.accept(flaky(1, &calls)).await;
        let after_reset = BACKOFFS.with(|b| *b.borrow().last().unwrap());
        event::clear_hook();
        (
            naive_yields.get(),
            yields.get(),
            elapsed,
            BACKOFFS.with(|b| b.borrow().clone()),
            accepted,
            after_reset,
        )
    });
    let max = *backoffs.iter().max().unwrap();
    println!(
        "1000 accept errors: naive loop yielded {naive_yields} times; AcceptLoop yielded {yields} times, \
         waited {} s of virtual time, backoff {}..{max} ms, then accepted (call {accepted}); \
         first wait after a success: {after_reset} ms",
        elapsed.as_secs(),
        backoffs[0]
    );
    assert_eq!(naive_yields, 0, "the naive loop spins");
    assert!(yields >= 1000, "every error yields");
    assert_eq!(backoffs.len(), 1001);
    assert_eq!(&backoffs[..8], [10, 20, 40, 80, 160, 320, 640, 1000]);
    assert_eq!(max, 1000, "bounded by the cap");
    assert_eq!(accepted, 1001, "the loop accepts after the errors");
    assert_eq!(after_reset, 10);
    // 10 + 20 + ... + 640 ms, then 993 waits of 1 s.
    assert_eq!(elapsed.as_millis(), 1270 + 993 * 1000);
}

#[test]
fn accept_socket_recovers_from_a_stray_listen() {
    let (failures, connected) = run(async {
        let net = Net::new(LinkConfig::lan());
        let device = net.server();
        let browser = net.client();
        let (mut rx, mut tx) = ([0u8; 1024], [0u8; 1024]);
        let mut socket = TcpSocket::new(device.stack, &mut rx, &mut tx);
        // A cancelled accept on another port leaves the socket listening there:
        // embassy-net's accept on port 80 now fails with InvalidState, every time.
        let _ = select(socket.accept(81), Timer::after_millis(1)).await;
        assert!(socket.accept(80).await.is_err());
        let addr = device.addr(80);
        // The client comes after the first backoff (10 ms).
        let connect = tcp_layers_sim::spawn(async move {
            Timer::after_millis(50).await;
            client::get(browser.stack, addr, "/").await
        });
        let mut accepts = AcceptLoop::default();
        accepts.accept_socket(&mut socket, 80).await;
        let connected = socket.remote_endpoint().is_some();
        socket.abort();
        let _ = socket.flush().await;
        let _ = connect.await;
        (accepts.failures(), connected)
    });
    println!("stray listen: {failures} failed accept(s), then connected: {connected}");
    assert_eq!(failures, 1);
    assert!(connected);
}

/// Cancels an accept, then a client connects: returns how the connect went.
fn connect_after_cancelled_accept(use_loop: bool) -> Result<(), ClientError> {
    run(async move {
        let net = Net::new(LinkConfig::lan());
        let device = net.server();
        let browser = net.client();
        let (mut rx, mut tx) = ([0u8; 1024], [0u8; 1024]);
        let mut socket = TcpSocket::new(device.stack, &mut rx, &mut tx);
        if use_loop {
            let mut accepts = AcceptLoop::default();
            let _ = select(
                accepts.accept_socket(&mut socket, 80),
                Timer::after_millis(5),
            )
            .await;
        } else {
            let _ = select(socket.accept(80), Timer::after_millis(5)).await;
        }
        // Nobody serves the socket any more; a client comes.
        let options = client::ClientOptions::new().with_request_timeout(Duration::from_secs(2));
        let mut buffers = client::ClientBuffers::new(&options);
        let result =
            match client::Session::connect(browser.stack, &mut buffers, device.addr(80), options)
                .await
            {
                Ok(mut session) => {
                    match select(session.get("/"), Timer::after(Duration::from_secs(3))).await {
                        Either::First(r) => r.map(|_| ()),
                        Either::Second(()) => Err(ClientError::Timeout { received: 0 }),
                    }
                }
                Err(e) => Err(e),
            };
        drop(socket);
        result
    })
}

#[test]
fn cancelled_accept_socket_stops_listening() {
    let raw = connect_after_cancelled_accept(false);
    let with_loop = connect_after_cancelled_accept(true);
    println!("client after a cancelled accept: raw {raw:?}, accept_socket {with_loop:?}");
    assert!(
        matches!(raw, Err(ClientError::Timeout { .. })),
        "raw: handshake done, nobody answers"
    );
    assert_eq!(
        with_loop,
        Err(ClientError::Refused),
        "refused at once instead of hanging"
    );
}
