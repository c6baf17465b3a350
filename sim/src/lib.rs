#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod client;
mod executor;
pub mod fault;
mod net;
pub mod responder;
pub mod server;
mod time;
mod trace;

/// The embassy-net version the hosts run (for `TcpSocket` and friends).
pub use embassy_net;
/// The embassy-time version the clock drives.
pub use embassy_time;
pub use embassy_time::{Duration, Instant, Timer};
pub use executor::{
    Aborted, JoinHandle, TimeLimit, now, polls, run, run_with_limit, spawn, yield_now,
};
pub use net::{
    Direction, DirectionStats, Host, LinkConfig, MTU, Net, NetStats, Path, SERVER_IP,
    TRACE_CAPACITY,
};
pub use trace::{Fate, TcpFlags, TracePacket};

#[cfg(test)]
mod tests;
