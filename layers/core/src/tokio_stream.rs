//! [`Connection`] for a tokio `TcpStream`, with the real socket options: `TCP_NODELAY`,
//! `shutdown(Write)` for FIN and `SO_LINGER 0` then close for RST.
//!
//! On ESP-IDF (std, lwIP) this is the one adapter that frees a PCB at once: lwIP keeps
//! a closed PCB in TIME_WAIT for 120 s of its 16, an RST releases it immediately.
use std::io;
use std::net::Shutdown;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{CloseReason, Connection, ErrorType, Read, SocketAddr, TcpState, Unsupported, Write};

/// A tokio `TcpStream` as a [`Connection`].
///
/// The operating system does not expose the TCP state portably, so [`Connection::state`]
/// answers from what happened on this stream: `Established` after connect/accept,
/// `CloseWait` after the peer's FIN was read, `FinWait1` after [`Connection::close_write`],
/// `Closed` after [`Connection::abort`] or an error.
#[derive(Debug)]
pub struct TokioStream {
    stream: Option<TcpStream>,
    state: TcpState,
    remote: Option<SocketAddr>,
    local: Option<SocketAddr>,
}

impl TokioStream {
    /// Wraps a connected stream.
    pub fn new(stream: TcpStream) -> Self {
        let remote = stream.peer_addr().ok();
        let local = stream.local_addr().ok();
        Self {
            stream: Some(stream),
            state: TcpState::Established,
            remote,
            local,
        }
    }

    /// The stream, unless [`Connection::abort`] already closed it.
    pub fn get_ref(&self) -> Option<&TcpStream> {
        self.stream.as_ref()
    }

    /// Gives the stream back, unless [`Connection::abort`] already closed it.
    pub fn into_inner(self) -> Option<TcpStream> {
        self.stream
    }

    fn stream(&mut self) -> io::Result<&mut TcpStream> {
        self.stream
            .as_mut()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "connection aborted"))
    }

    fn failed(&mut self, e: io::Error) -> io::Error {
        self.state = TcpState::Closed;
        e
    }
}

impl From<TcpStream> for TokioStream {
    fn from(stream: TcpStream) -> Self {
        Self::new(stream)
    }
}

impl ErrorType for TokioStream {
    type Error = io::Error;
}

impl Read for TokioStream {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, io::Error> {
        match self.stream()?.read(buf).await {
            Ok(0) if !buf.is_empty() => {
                self.state = match self.state {
                    TcpState::FinWait1 | TcpState::FinWait2 => TcpState::TimeWait,
                    TcpState::Established => TcpState::CloseWait,
                    other => other,
                };
                Ok(0)
            }
            Ok(n) => Ok(n),
            Err(e) => Err(self.failed(e)),
        }
    }
}

impl Write for TokioStream {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, io::Error> {
        match self.stream()?.write(buf).await {
            Ok(n) => Ok(n),
            Err(e) => Err(self.failed(e)),
        }
    }

    async fn flush(&mut self) -> Result<(), io::Error> {
        match self.stream.as_mut() {
            // An aborted stream has nothing left to flush: the RST went with the close.
            None => Ok(()),
            Some(s) => s.flush().await,
        }
    }
}

impl Connection for TokioStream {
    fn state(&self) -> TcpState {
        self.state
    }

    fn set_nodelay(&mut self, on: bool) -> Result<(), Unsupported> {
        match &self.stream {
            Some(s) => s.set_nodelay(on).map_err(|_| Unsupported),
            None => Ok(()),
        }
    }

    fn close_write(&mut self) {
        if let Some(s) = &self.stream {
            let _ = socket2::SockRef::from(s).shutdown(Shutdown::Write);
            self.state = match self.state {
                TcpState::CloseWait => TcpState::LastAck,
                _ => TcpState::FinWait1,
            };
        }
    }

    /// `SO_LINGER 0`, then close: the kernel (or lwIP) sends RST and frees the socket
    /// at once instead of keeping it in TIME_WAIT.
    fn abort(&mut self) {
        if let Some(s) = self.stream.take() {
            let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
            drop(s);
        }
        self.state = TcpState::Closed;
    }

    fn remote(&self) -> Option<SocketAddr> {
        self.remote
    }

    fn local(&self) -> Option<SocketAddr> {
        self.local
    }

    fn ended_error(&self, reason: CloseReason) -> io::Error {
        let kind = match reason {
            CloseReason::Reaped(_) => io::ErrorKind::TimedOut,
            CloseReason::PeerClosed | CloseReason::ClientCancelled | CloseReason::PeerReset => {
                io::ErrorKind::ConnectionReset
            }
            _ => io::ErrorKind::ConnectionAborted,
        };
        io::Error::new(kind, reason.as_str())
    }
}
