#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod client;
#[cfg(feature = "embassy-executor")]
mod embassy;
mod executor;
pub mod fault;
mod net;
pub mod responder;
pub mod server;
mod time;
mod trace;

/// The embassy-executor version whose tasks [`spawner`] spawns.
#[cfg(feature = "embassy-executor")]
pub use embassy_executor;
/// The embassy-net version the hosts run (for `TcpSocket` and friends).
pub use embassy_net;
/// The embassy-time version the clock drives.
pub use embassy_time;
pub use embassy_time::{Duration, Instant, Timer};
#[cfg(feature = "embassy-executor")]
pub use executor::spawner;
pub use executor::{
    Aborted, JoinHandle, TimeLimit, now, polls, run, run_with_limit, spawn, yield_now,
};
pub use net::{
    Direction, DirectionStats, HOST_RETAINED_BYTES, Host, LinkConfig, MTU, Net, NetStats, Path,
    SERVER_IP, TRACE_CAPACITY,
};
pub use trace::{Fate, TcpFlags, TracePacket};

#[cfg(test)]
mod tests;
