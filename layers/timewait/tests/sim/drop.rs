//! What happens when the server forgets `end` (drops the wrapper) or gives up on it
//! half-way (drops the `end` future): the slot still comes back, and no byte of the
//! response is lost. Real embassy-net stack, simulated network, virtual time.

use crate::common::*;
use embassy_futures::select::{Either, select};
use embassy_net::tcp::TcpSocket;
use tcp_layers_core::{CloseReason, Connection, Layer, Write};
use tcp_layers_sim::responder::{self, Routes};
use tcp_layers_sim::server;
use tcp_layers_sim::{Duration, Instant, LinkConfig, Net, Timer, run, spawn};
use tcp_layers_timewait::TimeWaitLayer;

/// Reads one request head and writes the response to `/bytes/<n>`, without ending.
async fn respond<C: Connection>(conn: &mut C) {
    let mut head = [0u8; 512];
    let mut filled = 0;
    while !head[..filled].windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut head[filled..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => filled += n,
        }
    }
    let text = std::str::from_utf8(&head[..filled]).unwrap_or("");
    let path = text.split(' ').nth(1).unwrap_or("/");
    let body = responder::body_of(path, &Routes::new()).unwrap_or_default();
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = conn.write_all(head.as_bytes()).await;
    let _ = conn.write_all(&body).await;
}

/// How the handler leaves the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Handler {
    /// Flushes (everything acknowledged), then returns without `end`: raw socket.
    RawForgets,
    /// The same through `TimeWaitLayer`: the wrapper is dropped without `end`.
    LayeredForgets,
    /// Raw `end` (FIN, flush) given up after `GIVE_UP_ON_END`.
    RawEndCancelled,
    /// `TimeWaitLayer`'s `end` given up after `GIVE_UP_ON_END`, then the wrapper dropped.
    LayeredEndCancelled,
}

/// Shorter than the round trip in which the FIN is acknowledged: once everything is
/// acknowledged `end` returns within that round trip, so a server that gives up later
/// finds it finished and there is no linger left to cut.
const GIVE_UP_ON_END: Duration = Duration::from_millis(5);

async fn handle(handler: Handler, socket: &mut TcpSocket<'_>, done: &Stamp) {
    match handler {
        Handler::RawForgets => {
            respond(socket).await;
            let _ = socket.flush().await;
        }
        Handler::LayeredForgets => {
            let mut conn = TimeWaitLayer::new().layer(&mut *socket);
            respond(&mut conn).await;
            let _ = conn.flush().await;
        }
        Handler::RawEndCancelled => {
            respond(socket).await;
            let _ = socket.flush().await;
            let _ = select(
                Connection::end(socket, CloseReason::LocalClose),
                Timer::after(GIVE_UP_ON_END),
            )
            .await;
        }
        Handler::LayeredEndCancelled => {
            let mut conn = TimeWaitLayer::new().layer(&mut *socket);
            respond(&mut conn).await;
            let _ = conn.flush().await;
            let cancelled = select(
                conn.end(CloseReason::LocalClose),
                Timer::after(GIVE_UP_ON_END),
            );
            assert!(matches!(cancelled.await, Either::Second(())));
        }
    }
    done.set(Some(Instant::now()));
}

/// From the handler's return to its slot accepting again; the client stays silent.
fn handler_return_to_listen(handler: Handler) -> Option<Duration> {
    run(async move {
        let net = Net::new(LinkConfig::wifi());
        let device = net.server();
        let done = stamp();
        let done_in = done.clone();
        let slots = server::spawn_server(device.stack, PORT, 1, async move |socket| {
            handle(handler, socket, &done_in).await
        });
        let phone = net.client();
        spawn(close_request(
            phone.stack,
            device.addr(PORT),
            "/bytes/2048",
            After::StaySilent,
            GIVE_UP * 2,
        ));
        slot_back_after(&slots, &done).await
    })
}

/// A handler that returns without `end`, everything acknowledged, to a silent client:
/// raw, the accept loop's own `close(); flush()` leaves the socket in FIN_WAIT_2 for
/// good; layered, the wrapper's drop resets it and the slot listens again at once.
#[test]
fn forgotten_end_after_everything_acked_frees_the_slot() {
    raw_stuck_layered_free(
        "handler forgets end",
        Handler::RawForgets,
        Handler::LayeredForgets,
    );
}

/// `end` dropped mid-linger (the server gave up after `GIVE_UP_ON_END`, the FIN still
/// unacknowledged), then the wrapper: every byte of the response was acknowledged, so
/// the drop resets the connection and the slot listens again. Raw, giving up on
/// `close(); flush()` leaves the socket in FIN_WAIT_2 once the FIN is acknowledged.
#[test]
fn end_cancelled_mid_linger_then_dropped_frees_the_slot() {
    raw_stuck_layered_free(
        &format!("end given up after {} ms", GIVE_UP_ON_END.as_millis()),
        Handler::RawEndCancelled,
        Handler::LayeredEndCancelled,
    );
}

/// Asserts that with the `raw` handler the slot never accepts again (FIN_WAIT_2 behind
/// the silent client) and with the `layered` one it does within a round trip.
fn raw_stuck_layered_free(what: &str, raw: Handler, layered: Handler) {
    let raw = handler_return_to_listen(raw);
    let layered = handler_return_to_listen(layered);
    println!(
        "{what}, silent client: slot accepting raw {}, layered {} after the handler returned",
        ms(raw),
        ms(layered)
    );
    assert_eq!(raw, None, "raw must stay stuck in FIN_WAIT_2");
    let layered = layered.expect("layered must free the slot");
    assert!(layered <= RTT, "layered took {} ms", layered.as_millis());
}

/// Dropped without `end` while bytes are still in flight: the drop sends a FIN after
/// them (not an RST), so the client receives the whole 64 KiB response.
#[test]
fn forgotten_end_with_bytes_in_flight_loses_nothing() {
    const PATH: &str = "/bytes/65536";
    let in_flight = std::rc::Rc::new(std::cell::Cell::new(0usize));
    let seen = in_flight.clone();
    let saw = run(async move {
        let net = Net::new(LinkConfig::wifi());
        let device = net.server();
        server::spawn_server(device.stack, PORT, 1, async move |socket| {
            let mut conn = TimeWaitLayer::new().layer(&mut *socket);
            respond(&mut conn).await;
            seen.set(conn.send_queue().unwrap_or(0));
        });
        let phone = net.client();
        close_request(phone.stack, device.addr(PORT), PATH, After::Close, GIVE_UP).await
    });
    let expected = responder::checksum(&responder::body_of(PATH, &Routes::new()).unwrap());
    let r = saw.response.expect("complete response");
    println!(
        "dropped with {} bytes unacknowledged: client got {} of 65536 body bytes, checksum {}, server end {:?}",
        in_flight.get(),
        r.body_len,
        if r.checksum == expected {
            "ok"
        } else {
            "WRONG"
        },
        saw.end
    );
    assert!(
        in_flight.get() > 0,
        "the drop must happen with bytes in flight"
    );
    assert_eq!((r.body_len, r.checksum), (65536, expected));
    assert_eq!(saw.end, Some(tcp_layers_sim::client::PeerEnd::Fin));
}
