//! The camera app on edge-http 0.8, over tcp-layers' `LayeredAcceptor` (crate
//! `tcp-layers-edge-nal`).
//!
//! The acceptor owns the `N` embassy-net sockets and wraps every connection it accepts
//! in the layer stack; `tcp_layers_edge_nal::serve` runs `N` handler loops, one per
//! socket, each serving its connection's requests with edge-http: its request parser
//! and response writer, the routes written as any edge-http [`Handler`] is. An
//! edge-http handler cannot reach the connection to call `set_class(Stream)`, so the
//! acceptor does it (`with_stream_paths`, the paths of the picoserve server): for
//! `/events` it asks for the stream class once edge-http has read the path, and when
//! the stream budget is full it answers the `200` `retry: 5000` event stream itself
//! and ends the request (the handler never runs).
//!
//! `serve` is edge-http's `Server::run` with the log levels of a layered server: a
//! head the reaper cut, a refused or reset connection and a browser cancel are debug
//! lines (the quiet layer logs how each connection ended, at the level of its reason),
//! where edge-http's own loop logs them at warn. A response that fails counts as a
//! server error in `/stats`, but for an event stream, whose client leaving is its
//! normal end. edge-http sets no deadline of its own (no head or write timeout):
//! without the layers a client that stops in the middle of a request holds its socket.
use core::fmt::{Debug, Display};

use edge_http::io::Error as HttpError;
use edge_http::io::server::{Connection as HttpConnection, Handler};
use edge_http::{DEFAULT_MAX_HEADERS_COUNT, Method};
use edge_nal::TcpSplit;
use embassy_futures::join::join_array;
use embassy_net::Stack;
use embassy_time::Timer;
use log::warn;
use tcp_layers::core::{Read, Write};
use tcp_layers::{Connection, ConnectionBuilder, Layer};
use tcp_layers_edge_nal::{LayeredAcceptor, RxBuffer, SocketBuffers, SocketSlot, TxBuffer};

use crate::content::{
    self, EVENT_PERIOD, EVENTS_HEADERS, FRAME_HEADERS, Frame, Header, PAGE, PAGE_HEADERS, Route,
    STATS_HEADERS, TEXT_HEADERS, Text,
};
use crate::server::{self, Resources, TCP_RX_BYTES, TCP_TX_BYTES};
use crate::stats;

/// How long edge-http keeps an idle connection open for its next request, ms: below
/// the reaper's idle deadline (5 s), so edge-http closes idle connections itself and
/// the layers only reap what it would keep.
pub const KEEP_ALIVE_MS: u32 = 4_000;

/// Headers edge-http parses per request: its default, 64 (a browser sends 10 to 20).
const MAX_HEADERS: usize = DEFAULT_MAX_HEADERS_COUNT;

/// Serves the camera app on `port` with `N` sockets, every connection wrapped in the
/// layer stack of the picoserve server. Never returns.
pub async fn serve_layered<const N: usize>(
    stack: Stack<'static>,
    port: u16,
    resources: &'static Resources<N>,
) -> ! {
    let mut buffers = SocketBuffers::<RxBuffer<TCP_RX_BYTES>, TxBuffer<TCP_TX_BYTES>>::array::<N>();
    let acceptor = LayeredAcceptor::new(
        stack,
        port,
        server::layers(resources).layer(stats::CountOpen),
        &mut buffers,
    )
    .with_stream_paths(&server::STREAM_PATHS);
    serve_with(&acceptor, resources).await
}

/// The same server on the bare sockets (the acceptor with an empty layer stack).
pub async fn serve_unlayered<const N: usize>(
    stack: Stack<'static>,
    port: u16,
    resources: &'static Resources<N>,
) -> ! {
    let mut buffers = SocketBuffers::<RxBuffer<TCP_RX_BYTES>, TxBuffer<TCP_TX_BYTES>>::array::<N>();
    let acceptor = LayeredAcceptor::new(
        stack,
        port,
        ConnectionBuilder::new().layer(stats::CountOpen),
        &mut buffers,
    )
    .with_stream_paths(&server::STREAM_PATHS);
    serve_with(&acceptor, resources).await
}

/// `tcp_layers_edge_nal::serve` with one request buffer of the pool per socket.
async fn serve_with<'d, L, const N: usize>(
    acceptor: &LayeredAcceptor<'d, L, N>,
    resources: &'static Resources<N>,
) -> !
where
    L: for<'a> Layer<SocketSlot<'a, 'd, N>>,
    for<'a> <L as Layer<SocketSlot<'a, 'd, N>>>::Service:
        Connection<Error = embassy_net::tcp::Error>,
{
    let mut held = join_array(core::array::from_fn::<_, N, _>(|_| {
        resources.http_buffers.take()
    }))
    .await;
    let buffers = held.each_mut().map(|buf| &mut buf[..]);
    tcp_layers_edge_nal::serve::<_, _, N, N, MAX_HEADERS>(
        acceptor,
        buffers,
        Some(KEEP_ALIVE_MS),
        &CameraApp,
    )
    .await
}

/// The camera app's routes as an edge-http handler.
struct CameraApp;

impl Handler for CameraApp {
    type Error<E>
        = HttpError<E>
    where
        E: Debug;

    async fn handle<T, const H: usize>(
        &self,
        _task_id: impl Display + Copy,
        conn: &mut HttpConnection<'_, T, H>,
    ) -> Result<(), Self::Error<T::Error>>
    where
        T: Read + Write + TcpSplit,
    {
        let headers = conn.headers()?;
        let route = Route::find(headers.path);
        let get = headers.method == Method::Get;
        let result = respond(conn, route, get).await;
        // A stream notices its client left only when a write fails: its normal end.
        if result.is_err() && !(get && route == Some(Route::Events)) {
            stats::server_error();
        }
        result
    }
}

/// The routes, as an edge-http handler writes them.
async fn respond<T: Read + Write, const H: usize>(
    conn: &mut HttpConnection<'_, T, H>,
    route: Option<Route>,
    get: bool,
) -> Result<(), HttpError<T::Error>> {
    let Some(route) = route else {
        return send(conn, 404, "Not Found", &TEXT_HEADERS, &[b"not found\n"]).await;
    };
    if !get {
        let body: &[u8] = b"method not allowed\n";
        return send(conn, 405, "Method Not Allowed", &TEXT_HEADERS, &[body]).await;
    }
    match route {
        Route::Page => {
            stats::page();
            send(conn, 200, "OK", &PAGE_HEADERS, &[PAGE.as_bytes()]).await
        }
        Route::Frame => {
            let frame = Frame::next();
            send(conn, 200, "OK", &FRAME_HEADERS, &frame.pieces()).await
        }
        Route::Stats => match content::stats_json() {
            Ok(json) => send(conn, 200, "OK", &STATS_HEADERS, &[json.as_bytes()]).await,
            Err(_) => {
                warn!("edge-http: the counters do not fit their buffer");
                Err(HttpError::InvalidState)
            }
        },
        Route::Events => stream_events(conn).await,
    }
}

/// A whole response: `headers` and `Content-Length` (of `pieces`), then the pieces.
/// edge-http flushes when the request completes.
async fn send<T: Read + Write, const H: usize>(
    conn: &mut HttpConnection<'_, T, H>,
    status: u16,
    reason: &str,
    headers: &[Header],
    pieces: &[&[u8]],
) -> Result<(), HttpError<T::Error>> {
    let length = pieces.iter().map(|piece| piece.len()).sum::<usize>();
    let length =
        Text::<20>::format(format_args!("{length}")).map_err(|_| HttpError::InvalidState)?;
    let mut all = [("", ""); 3];
    let mut count = 0;
    let extra = ("Content-Length", length.as_str());
    for (slot, header) in all.iter_mut().zip(headers.iter().chain([&extra])) {
        *slot = *header;
        count += 1;
    }
    conn.initiate_response(status, Some(reason), &all[..count])
        .await?;
    for piece in pieces {
        conn.write_all(piece).await?;
    }
    Ok(())
}

/// `/events` on an admitted stream (the acceptor answered a refused one): the counters
/// once a second until a write fails.
/// No `Content-Length`: edge-http sends the stream chunked.
async fn stream_events<T: Read + Write, const H: usize>(
    conn: &mut HttpConnection<'_, T, H>,
) -> Result<(), HttpError<T::Error>> {
    stats::stream();
    conn.initiate_response(200, Some("OK"), &EVENTS_HEADERS)
        .await?;
    loop {
        let Ok(event) = content::stats_event() else {
            warn!("edge-http: the counters do not fit their buffer");
            return Err(HttpError::InvalidState);
        };
        conn.write_all(event.as_bytes()).await?;
        conn.flush().await?;
        Timer::after(EVENT_PERIOD).await;
    }
}
