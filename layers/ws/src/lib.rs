#![doc = include_str!("../README.md")]
#![no_std]
#![deny(missing_docs)]
#![deny(unsafe_code)]

mod fmt;

pub mod frame;
#[cfg(feature = "handshake")]
pub mod handshake;
pub mod mask;
mod socket;
mod utf8;

pub use frame::{Fin, Opcode, ProtocolError, close_code};
pub use socket::{
    CloseStatus, DataKind, Halves, Incoming, IoOnly, Keepalive, Piece, PieceEnd, Relay, Transport,
    WebSocket, WsConfig, WsError,
};
