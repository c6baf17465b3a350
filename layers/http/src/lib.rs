#![doc = include_str!("../README.md")]
#![no_std]
#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod head;
pub mod reply;
pub mod request_line;
pub mod response;
pub mod server;
pub mod sse;
pub mod stream_paths;

pub use stream_paths::{StreamPaths, StreamPathsLayer};
