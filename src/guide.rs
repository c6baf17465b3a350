//! How to add the layers to a server you already have.
//!
//! # A hand-written embassy-net accept loop
//!
//! The usual embassy server is a few tasks, each with one socket in a loop of
//! `accept`, serve, close. The layers go between the socket and your serving code:
//! build the stack once per task, wrap the socket after each accept, end the
//! connection through it. Your code keeps reading and writing as before.
//!
//! ```no_run
//! use embassy_net::{Stack, tcp::TcpSocket};
//! use tcp_layers::prelude::*;
//!
//! static COUNTERS: Counters = Counters::new(); // closes per reason, bytes, active
//! static BUDGET: Budget<8> = Budget::new(profile::ESP32_S3); // 8 slots, 2 streams
//!
//! // One of these per socket (e.g. an `#[embassy_executor::task(pool_size = 8)]`).
//! async fn http_worker(stack: Stack<'static>) -> ! {
//!     let (mut rx, mut tx) = ([0u8; 1536], [0u8; 4096]);
//!     let mut socket = TcpSocket::new(stack, &mut rx, &mut tx);
//!     let layers = default_stack(&COUNTERS, &BUDGET); // quiet, limit, reaper, timewait, chunked, nodelay
//!     let mut accepts = AcceptLoop::default(); // backs off on accept errors, never exits
//!     loop {
//!         accepts.accept_socket(&mut socket, 80).await;
//!         let mut conn = layers.wrap(&mut socket);
//!         let reason = handle_http(&mut conn).await; // your code, unchanged
//!         conn.end(reason).await; // FIN, bounded linger, RST: the socket is free
//!     }
//! }
//!
//! // Any other order or subset is a `ConnectionBuilder`, top to bottom:
//! // ConnectionBuilder::new().layer(QuietLayer::new(&COUNTERS)).layer(NoDelayLayer::new())
//!
//! // Your request loop: any code that reads and writes an embedded-io-async stream.
//! async fn handle_http(conn: &mut impl Connection) -> CloseReason {
//!     let mut head = [0u8; 1024];
//!     loop {
//!         match conn.read(&mut head).await {
//!             Ok(0) => return CloseReason::PeerClosed,
//!             Ok(_) => {}
//!             Err(_) => return CloseReason::PeerReset,
//!         }
//!         let response = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
//!         if conn.write_all(response).await.is_err() {
//!             return CloseReason::ClientCancelled;
//!         }
//!     }
//! }
//! ```
//!
//! "Your code, unchanged" asks three things of it:
//!
//! - It returns how the connection ended, a [`CloseReason`](crate::CloseReason): the
//!   quiet layer logs and counts the close by it (a peer's reset or FIN is not your
//!   fault and is not logged as one). A layer that ended the connection itself (a
//!   deadline, an eviction) wins over the reason you return.
//! - A response that streams for long (Server-Sent Events, WebSocket, long poll) calls
//!   `conn.set_class(ConnectionClass::Stream)` first: otherwise it holds a request slot
//!   for as long as it streams. A refused promotion (`Err(ClassFull)`) means the stream
//!   slots are taken.
//! - It runs on as many sockets as connections should be served at once: embassy-net
//!   has no backlog, so one task per socket (or `tcp_layers::serve`, feature
//!   `embassy-net`, which runs one accept loop per buffer pair). `Budget<8>` with
//!   `profile::ESP32_S3` serves at most 8 connections, of which at most 6 requests and
//!   2 streams, and needs 8 sockets to do it.
//!
//! # picoserve
//!
//! Wrap the accepted socket and hand it to picoserve as a
//! `tcp_layers_picoserve::PicoserveSocket` (crate `tcp-layers-picoserve`); the router and
//! `Server::serve` stay as they are, in the same accept loop as above (one per socket,
//! `AcceptLoop::accept_socket`, which never gives up on an error). Event-stream paths
//! given to `with_stream_paths` count as streams. The adapter's crate docs have the
//! whole loop as a compiled example.
//!
//! picoserve's router and response types nest deeply: the crate that serves through
//! the adapter needs `#![recursion_limit = "256"]` at its root, or rustc stops with
//! "queries overflow the depth limit!".
//!
//! Give picoserve's `Timeouts` values longer than the reaper's deadlines (first byte
//! 3 s, idle 5 s, head 4-8 s, stall 5 s), e.g. 6 s, 6 s, 9 s and 6 s, so the reaper
//! acts first. When a picoserve timeout fires first, the adapter still reports the
//! close as the matching `Reaped(..)` reason, not as a local error.
//!
//! # edge-http
//!
//! Give `Server::run` a `tcp_layers_edge_nal::LayeredAcceptor` (crate `tcp-layers-edge-nal`): it
//! owns the embassy-net sockets, wraps every connection it accepts and never fails an
//! accept, so `run` keeps serving. Its buffers are typed
//! `SocketBuffers<RxBuffer<1536>, TxBuffer<4096>>`, receive first (edge-nal-embassy's
//! `TcpBuffers` lists the transmit size first; a swap does not compile). Mark
//! event-stream paths with `with_stream_paths`, as for picoserve, and pass `run` a
//! keep-alive shorter than the reaper's idle deadline, `Some(4_000)`, so that edge-http
//! closes an idle connection in order before the reaper resets it.
