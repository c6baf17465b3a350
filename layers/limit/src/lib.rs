//! Admission for embedded TCP servers: one browser's idle keep-alive sockets, a few
//! SSE streams or a burst near the socket limit no longer lock out every other client.
//!
//! On embassy-net a server has exactly as many connections as it has sockets in
//! `accept()`; a SYN that finds none gets a reset. A browser opens six keep-alive
//! connections and leaves them idle, so a second device is refused; SSE streams take
//! the slots page loads need; near exhaustion nothing reacts until the stack refuses
//! or panics; and an accept error ends a hand-written accept loop for good. This crate
//! gives the server:
//!
//! - a [`Budget`]: a `static` shared by every server socket, with total slots, a
//!   reserve of listeners kept free, and caps per [`ConnectionClass`] (`Request`,
//!   `Stream`). The [`LimitLayer`] layer admits each accepted connection as `Request`;
//!   [`Connection::set_class`](tcp_layers_core::Connection::set_class) promotes it to
//!   `Stream` (a reservation: admitted within the stream cap whatever the requests
//!   hold) or answers [`ClassFull`];
//! - a fair share per remote address ([`BudgetConfig::per_peer`] sockets,
//!   [`BudgetConfig::peer_request_share`] requests at once), so one browser never takes
//!   the sockets a second device needs; a request that does not fit waits for a slot
//!   (its response, not its reading) and is refused with a reply after
//!   [`BudgetConfig::queue_wait`];
//! - slowloris: when every socket is taken, the connection longest in its request head
//!   is displaced for the newcomer;
//! - LRU purge: when an accepted connection leaves fewer free listeners than the
//!   reserve, or once a connection has been idle for the grace period while fewer are
//!   free, the least recently active idle keep-alive connection is told to close (its
//!   pending read returns `Ok(0)`, its close reason is `Evicted`); busy connections and
//!   streams are never evicted;
//! - exhaustion: from [`BudgetConfig::exhaustion_at`] connections on, the budget sheds
//!   (an idle eviction at every accept) and raises
//!   [`Event::Exhaustion`](tcp_layers_core::event::Event::Exhaustion) once per change;
//! - the ESP32 family's budgets as [`profile`] constants, with rules checked at compile
//!   time ([`BudgetConfig::validated`], [`BudgetConfig::fits_stack`]);
//! - an [`AcceptLoop`] that backs off exponentially on accept errors instead of
//!   exiting or spinning.
//!
//! ```
//! use tcp_layers_core::{Connection, ConnectionClass, Layer};
//! use tcp_layers_limit::{Budget, LimitLayer, profile};
//!
//! static BUDGET: Budget<6> = Budget::new(profile::ESP32);
//! let limit = LimitLayer::new(&BUDGET);
//! // In each accept loop: let mut conn = limit.layer(socket); serve(&mut conn).await;
//! // Starting an SSE stream: if conn.set_class(ConnectionClass::Stream).is_err() { 503 }
//! # let _ = limit;
//! ```
#![no_std]
#![deny(missing_docs)]
#![deny(unsafe_code)]

// First: the logging macros are visible in the modules declared after it.
mod fmt;

mod accept;
mod budget;
mod config;
mod layer;

#[cfg(feature = "embassy-net")]
pub use accept::HANDSHAKE_TIMEOUT;
pub use accept::{AcceptLoop, Backoff};
pub use budget::{Budget, BudgetStats};
pub use config::{BudgetConfig, LWIP_PCB_LIMIT, StackServices, profile};
pub use layer::{Limit, LimitLayer};
pub use tcp_layers_core::{ClassFull, ConnectionClass};
