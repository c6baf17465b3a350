//! A browser cancels a 160 kB download: the layer tells how far the response got,
//! "sent X of Y", where the raw socket only reports `ConnectionReset`.

use std::cell::Cell;
use std::rc::Rc;

use crate::simnet::{BIG, Counting, Pacing, WriteLog, serve_whole_bodies};
use tcp_layers_chunked::{ChunkedLayer, ResponseProgress};
use tcp_layers_core::Layer;
use tcp_layers_sim::{Duration, LinkConfig, Net, Timer, client, run, server};

const PORT: u16 = 80;
const CANCEL_AFTER: usize = 50_000;

#[test]
fn a_cancel_mid_response_reports_sent_x_of_y() {
    let (progress, received) = run(async {
        let net = Net::new(LinkConfig::wifi());
        let device = net.server();
        let ended: Rc<Cell<Option<ResponseProgress>>> = Rc::default();
        let seen = ended.clone();
        server::spawn_server(device.stack, PORT, 2, async move |socket| {
            let mut conn = ChunkedLayer::new().layer(Counting::new(socket, WriteLog::default()));
            serve_whole_bodies(&mut conn, Pacing::default()).await;
            seen.set(Some(conn.progress()));
        });
        let browser = net.client();
        let cut = client::cancel_after(browser.stack, device.addr(PORT), BIG, CANCEL_AFTER)
            .await
            .unwrap();
        for _ in 0..1000 {
            if let Some(progress) = ended.get() {
                return (progress, cut.received);
            }
            Timer::after(Duration::from_millis(1)).await;
        }
        panic!("the server never ended the cancelled connection");
    });
    println!("client read {received} B then reset; server side: {progress}");
    let head = 107;
    assert_eq!(progress.expected, Some(head + 160_000));
    assert!(progress.is_cut_short());
    assert!(progress.sent as usize >= received);
    assert!(progress.sent < head + 160_000);
}
