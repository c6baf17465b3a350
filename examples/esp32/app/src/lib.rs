//! The camera page: one app, compiled into the ESP32 firmware and into the host binary
//! that serves it on embassy-net over a Linux TAP device.
//!
//! Everything the device does on the network lives here: the routes ([`routes`]), the
//! counters behind `/stats` and `/events` ([`stats`]) and the HTTP server with its layer
//! stack and accept loops ([`server`]). What differs between the firmware and the host
//! binary is only how the network comes up: Wi-Fi and DHCP on the chip, a TAP device
//! and a static address on the PC.
//!
//! The feature `servers` (the host binary's, never the firmware's) adds the same app on
//! the two other servers users run on embassy-net, with the same layer stack, routes,
//! bytes and counters: a hand-written accept loop and request loop ([`hand_written`]),
//! and edge-http over tcp-layers' `LayeredAcceptor` ([`edge`]).
#![no_std]
// picoserve's router and response types nest deeply; the server's futures need more
// than the default 128 levels to lay out (clippy computes their layout too).
#![recursion_limit = "256"]

mod content;
#[cfg(feature = "servers")]
pub mod edge;
#[cfg(feature = "servers")]
pub mod hand_written;
pub mod routes;
pub mod server;
pub mod stats;
pub mod ws_echo;
