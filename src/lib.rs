//! Small, composable layers that fix what hurts an embedded TCP server (ESP32,
//! embassy-net, ESP-IDF): wrap the socket your server already uses, keep the server.
//!
//! ```ignore
//! use tcp_layers::prelude::*;
//!
//! let layers = ConnectionBuilder::new()
//!     .layer(Quiet::new(&COUNTERS))   // outermost: sees how the connection ended
//!     .layer(NoDelay::new())          // innermost: talks to the socket
//! ;
//! let mut conn = layers.wrap(socket);
//! ```
//!
//! Each layer is its own crate, re-exported here behind a default-on feature; see the
//! README for the symptom each one fixes.
#![cfg_attr(not(any(feature = "std", test)), no_std)]
#![deny(missing_docs)]

pub use tcp_layers_core as core;
pub use tcp_layers_core::{
    ClassFull, CloseReason, Connection, ConnectionClass, Deadline, Identity, Layer, SocketAddr,
    Stack, TcpState, Unsupported, event,
};

#[cfg(feature = "sim")]
pub use tcp_layers_sim as sim;

mod builder;
pub use builder::ConnectionBuilder;

#[cfg(all(feature = "limit", feature = "embassy-net"))]
mod serve;
#[cfg(all(feature = "limit", feature = "embassy-net"))]
pub use serve::{Buffers, ServeConfig, serve};

#[cfg(any(feature = "picoserve", feature = "edge-nal"))]
pub mod adapters;
pub mod guide;

/// The names most servers need, in one `use`.
pub mod prelude {
    pub use crate::ConnectionBuilder;
    pub use tcp_layers_core::{CloseReason, Connection, Deadline, Layer, TcpState};
}
