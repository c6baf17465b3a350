#![doc = include_str!("../README.md")]
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
