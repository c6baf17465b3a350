//! What tcp-layers knows of HTTP/1, in one crate: every other layer knows TCP only.
//!
//! - [`head`]: the streaming scanner that finds the end of a request head
//!   (`\r\n\r\n`) across reads of any size, with a size cap. The reaper's head
//!   deadline and `431` use it.
//! - [`request_line`]: follows a request line across reads and tells whether its path
//!   is one of a few given paths.
//! - [`response`]: what the first bytes of a response say (`1xx` interim, `101`
//!   switching protocols, a final status).
//! - [`reply`]: complete answers a layer sends on its own: `431`, `503` with
//!   `Retry-After`, and the event stream that tells an `EventSource` to come back later.
//! - [`StreamPathsLayer`]: requests for the given paths (SSE, WebSocket) become
//!   [`ConnectionClass::Stream`](tcp_layers_core::ConnectionClass::Stream) before the
//!   server sees them; the same layer for picoserve, edge-http and a hand-written
//!   server.
//! - [`server`]: what an adapter that hands a layered connection to an existing server
//!   needs: read and write halves that take turns on one connection, the read result a
//!   server handles quietly, and the close reason of a server's shutdown or abort.
#![no_std]
#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod head;
pub mod reply;
pub mod request_line;
pub mod response;
pub mod server;
pub mod stream_paths;

pub use stream_paths::{StreamPaths, StreamPathsLayer};
