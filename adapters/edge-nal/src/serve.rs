//! edge-http's connection loop with the log levels of a layered server.
//!
//! edge-http's own `handle_connection` (what `Server::run` runs) logs at warn every
//! error of a connection: a reset while it waits for a request, a head cut off by a
//! close, a response write that fails. Behind the layers those are the reaper's
//! deadlines, the budget's refusals and browser cancels, which the quiet layer already
//! logs once, at the level of their reason; a head the reaper cut mid-way reaches
//! edge-http as a head without its end (`IncompleteHeaders`), a form no server can
//! take for a clean close. [`handle_connection`] is the same loop (the same requests,
//! the same `close` or `abort` at the end) with those lines at debug; an error of the
//! handler itself stays a warning while its peer is still connected. [`serve`] runs one such loop per buffer, as
//! `Server::run` does.
use edge_http::io::Error as HttpError;
use edge_http::io::server::{Handler, HandlerError, handle_request};
use edge_nal::{Close, Readable, TcpShutdown, WithTimeoutError, with_timeout};
use embassy_futures::join::join_array;
use embassy_net::tcp::Error;
use tcp_layers_core::{Connection, Layer};

use crate::{EdgeConnection, LayeredAcceptor, SocketSlot};

/// Logs `error` with `Debug` (`{:?}` in `text`): on `defmt`, formatted on the device.
macro_rules! log_error {
    ($level:ident, $text:literal, $error:expr) => {{
        #[cfg(feature = "log")]
        ::log::$level!($text, $error);
        #[cfg(feature = "defmt")]
        ::defmt::$level!($text, ::defmt::Debug2Format($error));
        let _ = $error;
    }};
}

/// Serves the requests of one accepted connection with `handler`, then closes it
/// (`close` after an error or a `Connection: close`, `abort` when the client closed
/// first), as edge-http's `handle_connection` does. `HEADERS` is edge-http's
/// `N`, the headers parsed per request. `keepalive_ms`: how long to wait for the next
/// request; give it less than the reaper's idle deadline (`Some(4_000)` with the
/// default 5 s), so the close of an idle connection is this loop's orderly one.
pub async fn handle_connection<C, H, const HEADERS: usize>(
    io: &mut EdgeConnection<C>,
    buf: &mut [u8],
    keepalive_ms: Option<u32>,
    task_id: usize,
    handler: &H,
) where
    C: Connection,
    H: Handler,
{
    let close = loop {
        if let Some(ms) = keepalive_ms {
            match with_timeout(ms, io.readable()).await {
                Ok(()) => {}
                Err(WithTimeoutError::Timeout) => break true,
                Err(WithTimeoutError::Error(error)) => {
                    log_error!(
                        debug,
                        "edge-http: read between requests failed: {:?}",
                        &error
                    );
                    break true;
                }
            }
        }
        match handle_request::<_, _, HEADERS>(buf, &mut *io, task_id, handler).await {
            Ok(needs_close) if needs_close => break true,
            Ok(_) => {}
            Err(HandlerError::Connection(HttpError::ConnectionClosed)) => break false,
            // edge-http reports a response write that failed (a browser cancel) as the
            // handler's error once its own error answer cannot be sent either: a
            // warning only while the peer is still there and no layer ended it.
            Err(HandlerError::Handler(error)) if connection_lost(io) => {
                log_error!(debug, "edge-http: the handler stopped: {:?}", &error);
                break true;
            }
            Err(HandlerError::Handler(error)) => {
                log_error!(warn, "edge-http: the handler failed: {:?}", &error);
                break true;
            }
            Err(error) => {
                log_error!(debug, "edge-http: request ended: {:?}", &error);
                break true;
            }
        }
    };
    // Both go through `Connection::end`: the layers' close discipline applies.
    let _ = if close {
        io.close(Close::Both).await
    } else {
        io.abort().await
    };
}

/// True once the peer can no longer take data or a layer ended the connection.
fn connection_lost<C: Connection>(io: &mut EdgeConnection<C>) -> bool {
    let conn = io.get_mut();
    conn.close_reason().is_some() || !conn.state().may_send()
}

/// `edge_http::io::server::Server::run` over a [`LayeredAcceptor`], with the log levels
/// of [`handle_connection`]: one handler loop per buffer of `buffers` (`P` loops; as
/// many as the acceptor has sockets keeps every free socket in accept), each buffer
/// edge-http's work area for one request (2048 bytes hold a browser's head). Never
/// returns: the acceptor never fails an accept.
pub async fn serve<'d, L, H, const N: usize, const P: usize, const HEADERS: usize>(
    acceptor: &LayeredAcceptor<'d, L, N>,
    buffers: [&mut [u8]; P],
    keepalive_ms: Option<u32>,
    handler: &H,
) -> !
where
    L: for<'a> Layer<SocketSlot<'a, 'd, N>>,
    for<'a> <L as Layer<SocketSlot<'a, 'd, N>>>::Service: Connection<Error = Error>,
    H: Handler,
{
    let mut task_id = 0;
    let loops = buffers.map(|buf| {
        task_id += 1;
        let task_id = task_id;
        async move {
            loop {
                let Ok((_, mut io)) = edge_nal::TcpAccept::accept(acceptor).await else {
                    continue;
                };
                handle_connection::<_, _, HEADERS>(&mut io, buf, keepalive_ms, task_id, handler)
                    .await;
            }
        }
    });
    join_array(loops).await;
    unreachable!("the handler loops never return")
}
