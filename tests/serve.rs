//! The `serve` helper on a real embassy-net stack in the simulated network: one slow
//! 160 kB download does not block another client, and every permit comes back.
use tcp_layers::{Buffers, ConnectionBuilder, ServeConfig, serve};
use tcp_layers_limit::{Budget, BudgetConfig, LimitLayer};
use tcp_layers_sim::client::{self, ClientError, Response};
use tcp_layers_sim::responder::{self, Routes};
use tcp_layers_sim::server::spawn_server;
use tcp_layers_sim::{Duration, LinkConfig, Net, Timer, run, spawn};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Server {
    /// What a first embassy server looks like: one socket, one handler for everything.
    OneHandler,
    /// `serve` with 4 sockets and the limit layer.
    Serve,
}

static BUDGET: Budget<4> = Budget::new(BudgetConfig::new(4, 1, 3));

/// A client downloads 160 kB and stops reading (its window closes: the transfer
/// stalls); 100 ms later a second client asks for the page.
fn slow_download_and_a_second_client(server: Server) -> Result<Response, ClientError> {
    run(async move {
        let net = Net::new(LinkConfig::wifi());
        let device = net.server();
        let stack = device.stack;
        match server {
            Server::OneHandler => {
                spawn_server(stack, 80, 1, async |socket| {
                    responder::serve(socket, &Routes::new()).await;
                });
            }
            Server::Serve => {
                let buffers: &'static mut Buffers<4, 2048, 8192> =
                    Box::leak(Box::new([([0; 2048], [0; 8192]); 4]));
                spawn(async move {
                    let layers = ConnectionBuilder::new().layer(LimitLayer::new(&BUDGET));
                    serve(
                        stack,
                        ServeConfig::new(80),
                        buffers,
                        &layers,
                        async |conn| {
                            responder::serve(conn, &Routes::new()).await;
                        },
                    )
                    .await
                });
            }
        }
        let (slow, other) = (net.client(), net.client());
        let addr = device.addr(80);
        let download = spawn(async move {
            client::slow_reader(slow.stack, addr, "/bytes/163840", Duration::from_secs(3)).await
        });
        Timer::after_millis(100).await;
        let page = client::get(other.stack, addr, "/").await;
        let hold = download.await.expect("download task");
        println!("  {server:?}: slow download {hold:?}; second client {page:?}");
        if server == Server::Serve {
            Timer::after(Duration::from_secs(1)).await;
            println!(
                "  budget: active {}, permits {}, {:?}",
                BUDGET.active(),
                BUDGET.permits_outstanding(),
                BUDGET.stats()
            );
            assert_eq!(BUDGET.active(), 0);
            assert_eq!(BUDGET.permits_outstanding(), 0);
        }
        page
    })
}

#[test]
fn one_slow_download_does_not_block_another_client() {
    let one = slow_download_and_a_second_client(Server::OneHandler);
    let served = slow_download_and_a_second_client(Server::Serve);
    let ms = served.as_ref().map(|r| r.time_to_last_byte.as_millis());
    println!(
        "second client beside a stalled 160 kB download: one handler {one:?}; serve: {ms:?} ms"
    );
    assert!(
        one.is_err(),
        "one handler for all: the second client is refused"
    );
    let page = served.expect("serve: the second client is served");
    assert_eq!(page.status, 200);
    assert!(page.time_to_last_byte < Duration::from_millis(100));
}

#[test]
fn serve_ends_what_the_handler_leaves_open() {
    use tcp_layers::core::Write;
    static OWN: Budget<2> = Budget::new(BudgetConfig::new(2, 0, 2));
    const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi";
    let hold = run(async {
        let net = Net::new(LinkConfig::wifi());
        let device = net.server();
        let stack = device.stack;
        let buffers: &'static mut Buffers<2, 1024, 1024> =
            Box::leak(Box::new([([0; 1024], [0; 1024]); 2]));
        spawn(async move {
            let layers = ConnectionBuilder::new().layer(LimitLayer::new(&OWN));
            // A handler that answers and returns without closing.
            serve(
                stack,
                ServeConfig::new(80),
                buffers,
                &layers,
                async |conn| {
                    let _ = conn.write_all(RESPONSE).await;
                },
            )
            .await
        });
        let peer = net.client();
        let hold = client::garbage(peer.stack, device.addr(80), 0, Duration::from_secs(5)).await;
        Timer::after(Duration::from_secs(1)).await;
        assert_eq!((OWN.active(), OWN.permits_outstanding()), (0, 0));
        hold
    })
    .expect("connect");
    println!("handler returned without closing; the client saw {hold:?}");
    assert_eq!(
        hold.end,
        client::PeerEnd::Fin,
        "ended with FIN, not left open or reset"
    );
    assert_eq!(hold.bytes_received, RESPONSE.len());
}
