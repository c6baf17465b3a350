//! The `Sweeper` on the real embassy-net stack: one task owns its sockets (the only
//! arrangement in which a sweep can reach them), closes with a plain `close(); flush()`
//! and no linger, and its clients stay silent. Raw, those sockets stay in FIN_WAIT_2;
//! swept every 30 s with a 30 s limit, they are free within a minute. A connection that
//! is merely idle (ESTABLISHED) is never touched.

use crate::common::*;
use embassy_net::tcp::TcpSocket;
use tcp_layers_core::{Connection, TcpState};
use tcp_layers_sim::client::{ClientBuffers, ClientOptions, Session};
use tcp_layers_sim::{Duration, Instant, LinkConfig, Net, Timer, run, spawn};
use tcp_layers_timewait::Sweeper;

const INTERVAL: Duration = Sweeper::<3>::DEFAULT_INTERVAL;

/// A client that sends a keep-alive request, reads the response and then idles.
async fn idle_keep_alive(stack: embassy_net::Stack<'static>, server: std::net::SocketAddr) {
    let options = ClientOptions::new();
    let mut buffers = ClientBuffers::new(&options);
    let mut session = Session::connect(stack, &mut buffers, server, options)
        .await
        .expect("connect");
    session.get("/bytes/100").await.expect("response");
    Timer::after(GIVE_UP * 2).await;
}

struct Outcome {
    /// From the close of each closed socket to the moment it was seen free.
    freed_after: [Option<Duration>; 2],
    /// The idle keep-alive socket's state at the end.
    idle_state: TcpState,
    aborted: usize,
}

fn owned_sockets(sweep: bool) -> Outcome {
    run(async move {
        let net = Net::new(LinkConfig::wifi());
        let device = net.server();
        let stack = device.stack;
        let bufs: Vec<&'static mut [u8]> = (0..6)
            .map(|_| &mut *Box::leak(vec![0u8; 8192].into_boxed_slice()))
            .collect();
        let mut bufs = bufs.into_iter();
        let mut sockets: [TcpSocket<'static>; 3] = core::array::from_fn(|_| {
            TcpSocket::new(stack, bufs.next().unwrap(), bufs.next().unwrap())
        });
        let phone = net.client();
        let tablet = net.client();
        let laptop = net.client();
        // Sockets 0 and 1: a Connection: close request each, served raw (FIN and flush
        // only, the responder's `end`), whose clients never send their FIN.
        let mut closed_at = [None; 2];
        for (i, socket) in sockets[..2].iter_mut().enumerate() {
            let client = [&phone, &tablet][i];
            spawn(close_request(
                client.stack,
                device.addr(PORT),
                "/bytes/100",
                After::StaySilent,
                GIVE_UP * 2,
            ));
            socket.accept(PORT).await.expect("accept");
            let ended = stamp();
            write_and_end(&mut EndStamp::new(&mut *socket, &ended, None)).await;
            closed_at[i] = ended.get();
        }
        // Socket 2: a keep-alive request answered; the connection stays open and idle.
        spawn(idle_keep_alive(laptop.stack, device.addr(PORT)));
        sockets[2].accept(PORT).await.expect("accept");
        let mut head = [0u8; 512];
        let _ = sockets[2].read(&mut head).await;
        let _ = embedded_io_async::Write::write_all(
            &mut sockets[2],
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n",
        )
        .await;
        let _ = embedded_io_async::Write::write_all(&mut sockets[2], &[7u8; 100]).await;
        assert_eq!(Connection::state(&sockets[0]), TcpState::FinWait2);

        let mut sweeper = Sweeper::<3>::new();
        let mut freed_at = [None; 2];
        let mut aborted = 0;
        let start = Instant::now();
        while Instant::now() - start < GIVE_UP {
            if sweep {
                let mut refs: [&mut TcpSocket<'static>; 3] = {
                    let [a, b, c] = &mut sockets;
                    [a, b, c]
                };
                aborted += sweeper.sweep(&mut refs);
                // The RSTs leave with the next poll of the stack.
                for s in refs.iter_mut() {
                    let _ = s.flush().await;
                }
            }
            for (i, socket) in sockets[..2].iter().enumerate() {
                let state: TcpState = socket.state().into();
                if state.is_free() && freed_at[i].is_none() {
                    freed_at[i] = Some(Instant::now());
                }
            }
            Timer::after(INTERVAL).await;
        }
        let freed_after = core::array::from_fn(|i| {
            freed_at[i]
                .zip(closed_at[i])
                .map(|(f, c): (Instant, Instant)| f - c)
        });
        Outcome {
            freed_after,
            idle_state: sockets[2].state().into(),
            aborted,
        }
    })
}

#[test]
fn sweeper_frees_sockets_stuck_closing_and_spares_idle_ones() {
    let raw = owned_sockets(false);
    let swept = owned_sockets(true);
    println!(
        "sockets closed behind silent clients, sweep every {} s, limit {} s: \
         raw freed after {} / {}; swept freed after {} / {} ({} aborted); idle keep-alive socket: raw {:?}, swept {:?}",
        INTERVAL.as_secs(),
        Sweeper::<3>::DEFAULT_LIMIT.as_secs(),
        ms(raw.freed_after[0]),
        ms(raw.freed_after[1]),
        ms(swept.freed_after[0]),
        ms(swept.freed_after[1]),
        swept.aborted,
        raw.idle_state,
        swept.idle_state,
    );
    assert_eq!(raw.freed_after, [None, None], "raw must stay in FIN_WAIT_2");
    let bound = Sweeper::<3>::DEFAULT_LIMIT + INTERVAL;
    for freed in swept.freed_after {
        let freed = freed.expect("swept sockets are freed");
        assert!(freed >= Sweeper::<3>::DEFAULT_LIMIT && freed <= bound);
    }
    assert_eq!(swept.aborted, 2);
    assert_eq!(swept.idle_state, TcpState::Established);
}
