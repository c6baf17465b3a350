//! A small in-memory `Connection` for unit tests: records what the layer asked of it.
#![allow(dead_code)]

use core::convert::Infallible;

use tcp_layers_core::{CloseReason, Connection, ErrorType, Read, TcpState, Unsupported, Write};

/// Whether the mock stack has a Nagle option.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Option_ {
    Supported,
    Missing,
}

#[derive(Debug)]
pub struct MockConn {
    pub nagle_option: Option_,
    /// Every `set_nodelay` argument, in order.
    pub nodelay_calls: Vec<bool>,
    pub written: Vec<u8>,
    pub to_read: Vec<u8>,
    pub closed_write: bool,
    pub aborted: bool,
}

impl MockConn {
    pub fn new(nagle_option: Option_) -> Self {
        Self {
            nagle_option,
            nodelay_calls: Vec::new(),
            written: Vec::new(),
            to_read: Vec::new(),
            closed_write: false,
            aborted: false,
        }
    }
}

impl ErrorType for MockConn {
    type Error = Infallible;
}

impl Read for MockConn {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        let n = buf.len().min(self.to_read.len());
        buf[..n].copy_from_slice(&self.to_read[..n]);
        self.to_read.drain(..n);
        Ok(n)
    }
}

impl Write for MockConn {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        self.written.extend_from_slice(buf);
        Ok(buf.len())
    }
    async fn flush(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}

impl Connection for MockConn {
    fn state(&self) -> TcpState {
        TcpState::Established
    }
    fn set_nodelay(&mut self, on: bool) -> Result<(), Unsupported> {
        match self.nagle_option {
            Option_::Supported => {
                self.nodelay_calls.push(on);
                Ok(())
            }
            Option_::Missing => Err(Unsupported),
        }
    }
    fn close_write(&mut self) {
        self.closed_write = true;
    }
    fn abort(&mut self) {
        self.aborted = true;
    }
    fn ended_error(&self, _reason: CloseReason) -> Infallible {
        unreachable!("the mock never fails")
    }
    fn close_reason(&self) -> Option<CloseReason> {
        Some(CloseReason::Evicted)
    }
}
