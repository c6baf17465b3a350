//! The camera page: one app, compiled into the ESP32 firmware and into the host binary
//! that serves it on embassy-net over a Linux TAP device.
//!
//! Everything the device does on the network lives here: the routes ([`routes`]), the
//! counters behind `/stats` and `/events` ([`stats`]) and the HTTP server with its layer
//! stack and accept loops ([`server`]). What differs between the firmware and the host
//! binary is only how the network comes up: Wi-Fi and DHCP on the chip, a TAP device
//! and a static address on the PC.
#![no_std]
// picoserve's router and response types nest deeply; the server's futures need more
// than the default 128 levels to lay out (clippy computes their layout too).
#![recursion_limit = "256"]

pub mod routes;
pub mod server;
pub mod stats;
