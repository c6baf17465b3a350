//! The camera app on edge-http 0.8, over tcp-layers' `LayeredAcceptor` (the facade's
//! feature `edge-nal`).
//!
//! The acceptor owns the `N` embassy-net sockets and wraps every connection it accepts
//! in the layer stack; `N` handler loops, one per socket, each accept a connection and
//! serve its requests with edge-http: its request parser and response writer
//! (`edge_http::io::server::Connection`), the routes written as any edge-http handler
//! is. An edge-http handler cannot reach the connection to call `set_class(Stream)`, so
//! the acceptor does it (`with_stream_paths`, the paths of the picoserve server): for
//! `/events` it asks for the stream class once edge-http has read the path, and when
//! the stream budget is full it answers the `200` `retry: 5000` event stream itself
//! and ends the request (the handler never runs).
//!
//! The loops are those of edge-http's `Server::run` with `handle_connection`, but for
//! the log levels: `handle_connection` logs at warn a reset while it waits for a
//! request, a head cut off by a close or a reset, and any error of a response (a
//! browser cancel), and an idle close at info. Here each is a debug line: how a
//! connection ended is the quiet layer's to log, at the level of its reason. What is
//! done on each path is edge-http's:
//!
//! | what happens | edge-http ends it with | counted as a server error |
//! |---|---|---|
//! | no request within [`KEEP_ALIVE_MS`] (4 s) | `close` (FIN) | no |
//! | the client closes between requests | `abort` (our FIN answers theirs) | no |
//! | a read fails waiting for a request, or the head is cut off or malformed | `close` | yes |
//! | a refused stream (the acceptor answered, the head reads as cut off) | `close` | yes |
//! | a response write fails (a browser cancel) | `close` | yes |
//! | an event stream's write fails: its client left | `close` | no |
//! | `Connection: close` | `close` after the answer | no |
//!
//! `close` and `abort` go through `Connection::end` (the adapter's `TcpShutdown`), so a
//! layer that ended the connection itself (a deadline, an eviction) gives the reason.
//! edge-http sets no other deadline (no head or write timeout): without the layers a
//! client that stops in the middle of a request holds its socket.
use edge_http::io::Error as HttpError;
use edge_http::io::server::Connection as HttpConnection;
use edge_http::{DEFAULT_MAX_HEADERS_COUNT, Method};
use edge_nal::{Close, Readable, TcpAccept, TcpShutdown, WithTimeoutError, with_timeout};
use embassy_futures::join::join_array;
use embassy_net::Stack;
use embassy_time::Timer;
use log::{debug, warn};
use tcp_layers::core::{Read, Write};
use tcp_layers::{Connection, ConnectionBuilder, Layer, Pool};
use tcp_layers_edge_nal::{
    EdgeConnection, LayeredAcceptor, RxBuffer, SocketBuffers, SocketSlot, TxBuffer,
};

use crate::content::{
    self, EVENT_PERIOD, EVENTS_HEADERS, FRAME_HEADERS, Frame, Header, PAGE, PAGE_HEADERS, Route,
    STATS_HEADERS, TEXT_HEADERS, Text,
};
use crate::server::{self, HTTP_BUFFER_BYTES, Resources, TCP_RX_BYTES, TCP_TX_BYTES};
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
    let acceptor = LayeredAcceptor::new(stack, port, server::layers(resources), &mut buffers)
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
    let acceptor = LayeredAcceptor::new(stack, port, ConnectionBuilder::new(), &mut buffers)
        .with_stream_paths(&server::STREAM_PATHS);
    serve_with(&acceptor, resources).await
}

/// One handler loop per socket, all in this future (edge-http's `Server::run` with as
/// many handler tasks as sockets, so every free socket is in `accept`).
async fn serve_with<'d, L, const N: usize>(
    acceptor: &LayeredAcceptor<'d, L, N>,
    resources: &'static Resources<N>,
) -> !
where
    L: for<'a> Layer<SocketSlot<'a, 'd, N>>,
    for<'a> <L as Layer<SocketSlot<'a, 'd, N>>>::Service:
        Connection<Error = embassy_net::tcp::Error>,
{
    let loops: [_; N] = core::array::from_fn(|_| handler_loop(acceptor, &resources.http_buffers));
    join_array(loops).await;
    unreachable!("handler loops never return")
}

/// Accept, serve every request of the connection, again.
async fn handler_loop<'d, L, const N: usize>(
    acceptor: &LayeredAcceptor<'d, L, N>,
    request_buffers: &Pool<N, HTTP_BUFFER_BYTES>,
) where
    L: for<'a> Layer<SocketSlot<'a, 'd, N>>,
    for<'a> <L as Layer<SocketSlot<'a, 'd, N>>>::Service:
        Connection<Error = embassy_net::tcp::Error>,
{
    loop {
        // Never an error: the acceptor waits for a free socket and backs off from the
        // stack's errors itself (edge-http's `run` would stop at the first one).
        let Ok((_, mut io)) = acceptor.accept().await else {
            continue;
        };
        let _open = stats::OpenConnection::accepted();
        let mut buf = request_buffers.take().await;
        serve_connection(&mut io, &mut buf[..]).await;
    }
}

/// How a request ended the connection.
enum Ended {
    /// The client closed before a request: edge-http aborts (`ConnectionClosed`).
    Closed,
    /// Something failed: edge-http closes.
    Failed,
}

/// edge-http's `handle_connection`: requests until one side closes, then `close` or
/// `abort` as edge-http chooses; every log line at debug.
async fn serve_connection<C: Connection>(io: &mut EdgeConnection<C>, buf: &mut [u8]) {
    let close = loop {
        match with_timeout(KEEP_ALIVE_MS, io.readable()).await {
            Ok(()) => {}
            Err(WithTimeoutError::Timeout) => {
                debug!("edge-http: no request for {} ms, closing", KEEP_ALIVE_MS);
                break true;
            }
            Err(WithTimeoutError::Error(err)) => {
                debug!("edge-http: read failed between requests: {:?}", err);
                stats::server_error();
                break true;
            }
        }
        match handle_request(io, buf).await {
            Ok(false) => {}
            Ok(true) => break true,
            Err(Ended::Closed) => break false,
            Err(Ended::Failed) => break true,
        }
    };
    // Both end through `Connection::end` and never fail.
    if close {
        let _ = io.close(Close::Both).await;
    } else {
        let _ = io.abort().await;
    }
}

/// edge-http's `handle_request`. `Ok(true)`: answered, and the connection must close.
async fn handle_request<C: Connection>(
    io: &mut EdgeConnection<C>,
    buf: &mut [u8],
) -> Result<bool, Ended> {
    let mut conn = match HttpConnection::<_, MAX_HEADERS>::new(buf, &mut *io).await {
        Ok(conn) => conn,
        Err(HttpError::ConnectionClosed) => return Err(Ended::Closed),
        Err(err) => {
            debug!("edge-http: request failed: {:?}", err);
            stats::server_error();
            return Err(Ended::Failed);
        }
    };
    let headers = conn.headers().map_err(|_| Ended::Failed)?;
    let route = Route::find(headers.path);
    let get = headers.method == Method::Get;

    if let Err(err) = respond(&mut conn, route, get).await {
        debug!("edge-http: response failed: {:?}", err);
        // A stream notices its client left only when a write fails: its normal end.
        if !(get && route == Some(Route::Events)) {
            stats::server_error();
        }
        return Err(Ended::Failed);
    }
    if let Err(err) = conn.complete().await {
        debug!("edge-http: response failed: {:?}", err);
        stats::server_error();
        return Err(Ended::Failed);
    }
    Ok(conn.needs_close())
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
