//! Small, composable layers that fix what hurts an embedded TCP server (ESP32,
//! embassy-net, ESP-IDF): wrap the socket your server already uses, keep the server.
//!
//! Each layer is its own `no_std` crate, re-exported here behind a default-on feature:
//!
//! | layer | fixes |
//! |---|---|
//! | [`QuietLayer`] | browser cancels logged at error level bury real faults; counters per close reason |
//! | [`NoDelayLayer`] | Nagle holds the body until the head is ACKed |
//! | [`ChunkedLayer`] | one 160 kB send starves other tasks; no "sent X of Y" on a cancel |
//! | [`LimitLayer`] | idle keep-alive sockets lock out a second device; streams eat page slots; accept loops that die |
//! | [`ReaperLayer`] | slowloris, stalled readers and vanished peers hold slots forever |
//! | [`TimeWaitLayer`] | closed sockets stuck in TIME_WAIT / FIN_WAIT |
//! | [`StreamPathsLayer`] | SSE and WebSocket requests counted as page loads (the server cannot call `set_class`) |
//! | [`Pool`] | a shared scratch buffer corrupts concurrent responses |
//! | [`WebSocket`] | WebSocket frames unmasked byte by byte; a vanished WebSocket peer holds its socket for good |
//!
//! [`default_stack`] puts every connection layer in the order that makes them compose;
//! [`ConnectionBuilder`] builds any other stack, top to bottom. The [`guide`] shows a
//! hand-written embassy accept loop, picoserve and edge-http gaining the layers.
#![cfg_attr(not(any(feature = "std", test)), no_std)]
#![deny(missing_docs)]

pub use tcp_layers_core as core;
pub use tcp_layers_core::{
    ClassFull, CloseReason, Connection, ConnectionClass, Deadline, Identity, Layer, SocketAddr,
    Stack, TcpState, Unsupported, event,
};

#[cfg(feature = "chunked")]
pub use tcp_layers_chunked::{self as chunked, Chunked, ChunkedLayer, ResponseProgress};
#[cfg(feature = "http")]
pub use tcp_layers_http::{self as http, StreamPaths, StreamPathsLayer};
#[cfg(feature = "limit")]
pub use tcp_layers_limit::{
    self as limit, AcceptLoop, Backoff, Budget, BudgetConfig, Limit, LimitLayer, profile,
};
#[cfg(feature = "nodelay")]
pub use tcp_layers_nodelay::{self as nodelay, Nagle, NoDelay, NoDelayLayer};
#[cfg(feature = "pool")]
pub use tcp_layers_pool::{self as pool, Buf, Pool};
#[cfg(feature = "quiet")]
pub use tcp_layers_quiet::{
    self as quiet, CounterSnapshot, Counters, Quiet, QuietConfig, QuietLayer,
};
#[cfg(feature = "reaper")]
pub use tcp_layers_reaper::{self as reaper, Reaper, ReaperConfig, ReaperLayer};
#[cfg(feature = "timewait")]
pub use tcp_layers_timewait::{self as timewait, TimeWait, TimeWaitLayer};

#[cfg(feature = "sim")]
pub use tcp_layers_sim as sim;
#[cfg(feature = "ws")]
pub use tcp_layers_ws::{self as ws, WebSocket, WsConfig};

// First: the logging macros are visible in the modules declared after it.
mod fmt;

mod builder;
pub use builder::ConnectionBuilder;

#[cfg(feature = "default-stack")]
mod stack;
#[cfg(all(
    feature = "default-stack",
    feature = "embassy-net",
    target_pointer_width = "32"
))]
pub use stack::DEFAULT_STACK_BYTES_PER_CONNECTION;
#[cfg(feature = "default-stack")]
pub use stack::{DefaultStack, default_stack};

#[cfg(all(feature = "limit", feature = "embassy-net"))]
mod serve;
#[cfg(all(feature = "limit", feature = "embassy-net"))]
pub use serve::{Buffers, ServeConfig, serve};

pub mod guide;

/// The Rust code blocks of the repository's README, compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// The names most servers need, in one `use`.
pub mod prelude {
    pub use crate::ConnectionBuilder;
    #[cfg(feature = "chunked")]
    pub use tcp_layers_chunked::ChunkedLayer;
    pub use tcp_layers_core::{
        CloseReason, Connection, ConnectionClass, Deadline, Layer, Read, TcpState, Write,
    };
    #[cfg(feature = "limit")]
    pub use tcp_layers_limit::{AcceptLoop, Budget, LimitLayer, profile};
    #[cfg(feature = "nodelay")]
    pub use tcp_layers_nodelay::NoDelayLayer;
    #[cfg(feature = "pool")]
    pub use tcp_layers_pool::Pool;
    #[cfg(feature = "quiet")]
    pub use tcp_layers_quiet::{Counters, QuietLayer};
    #[cfg(feature = "reaper")]
    pub use tcp_layers_reaper::{ReaperConfig, ReaperLayer};
    #[cfg(feature = "timewait")]
    pub use tcp_layers_timewait::TimeWaitLayer;

    #[cfg(feature = "default-stack")]
    pub use crate::default_stack;
}
