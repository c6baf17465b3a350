//! A simulated network for testing embassy-net servers on the host, deterministically
//! and in virtual time.
//!
//! What an ESP32 web server suffers (a browser's six idle keep-alive sockets taking
//! every slot, Nagle holding a response, a peer that vanishes mid-transfer, a socket
//! stuck in TIME_WAIT) depends on timing that is slow and flaky to reproduce on real
//! hardware. This crate runs real embassy-net 0.9 stacks (the same smoltcp code as the
//! device) joined by an in-memory IP link with latency, bandwidth and loss, on a virtual
//! clock: a 10 s TIME_WAIT takes microseconds of wall time, and the same seed gives the
//! same packets every run.
//!
//! - [`run`] / [`spawn`]: a single-threaded executor; when no task is ready the clock
//!   jumps to the next timer.
//! - [`Net`]: the link; [`Net::server`] and [`Net::client`] make [`Host`]s, each an
//!   embassy-net stack; [`Net::trace`] records every packet.
//! - [`server::spawn_server`]: N listening sockets in accept loops, as written by hand
//!   on the device; [`responder::serve`]: a raw keep-alive HTTP responder.
//! - [`client`]: scripted clients, polite and hostile.
//! - [`fault::FailWrites`]: injects a local write error.
//!
//! # Testing your own server
//!
//! ```
//! use tcp_layers_sim::{client, run, server, LinkConfig, Net};
//!
//! run(async {
//!     let net = Net::new(LinkConfig::wifi());
//!     let device = net.server();
//!     // Your handler gets each accepted embassy-net TcpSocket.
//!     server::spawn_server(device.stack, 80, 4, async |socket| {
//!         tcp_layers_sim::responder::serve(socket, &Default::default()).await;
//!     });
//!     let browser = net.client();
//!     let response = client::get(browser.stack, device.addr(80), "/").await.unwrap();
//!     assert_eq!(response.status, 200);
//!     println!("first byte after {} ms", response.time_to_first_byte.as_millis());
//! });
//! ```
//!
//! # The time driver
//!
//! This crate *is* an embassy-time driver (`embassy_time_driver::time_driver_impl!`): a
//! binary that links it must not link another one (do not enable embassy-time's `std`
//! or `mock-driver` features, nor a HAL's time driver, in the same test binary).
//! Simulations in one process run one at a time (a global lock): the clock is global.
//!
//! Its timer queue has the semantics of a device's: one wake-up per waker, the
//! earliest (embassy-executor's integrated queue keeps one per task, the generic queue
//! one per waker). A later instant registered while an earlier one is pending changes
//! nothing, and a timer dropped before it fires still wakes its task once, so a server
//! is polled as often here as on the chip.
//!
//! Hosts, servers and clients belong to the [`run`] that made them; do not carry them
//! into another run.
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
