//! [`Connection`] for embassy-net's `TcpSocket`.
use embassy_net::tcp::{Error, State, TcpSocket};

use crate::{CloseReason, Connection, SocketAddr, TcpState, Unsupported};

impl From<State> for TcpState {
    fn from(s: State) -> Self {
        match s {
            State::Closed => TcpState::Closed,
            State::Listen => TcpState::Listen,
            State::SynSent => TcpState::SynSent,
            State::SynReceived => TcpState::SynReceived,
            State::Established => TcpState::Established,
            State::FinWait1 => TcpState::FinWait1,
            State::FinWait2 => TcpState::FinWait2,
            State::CloseWait => TcpState::CloseWait,
            State::Closing => TcpState::Closing,
            State::LastAck => TcpState::LastAck,
            State::TimeWait => TcpState::TimeWait,
        }
    }
}

impl Connection for TcpSocket<'_> {
    fn state(&self) -> TcpState {
        TcpSocket::state(self).into()
    }

    fn set_nodelay(&mut self, on: bool) -> Result<(), Unsupported> {
        self.set_nagle_enabled(!on);
        Ok(())
    }

    fn close_write(&mut self) {
        self.close();
    }

    fn abort(&mut self) {
        TcpSocket::abort(self);
    }

    fn remote(&self) -> Option<SocketAddr> {
        self.remote_endpoint().map(Into::into)
    }

    fn local(&self) -> Option<SocketAddr> {
        self.local_endpoint().map(Into::into)
    }

    fn send_queue(&self) -> Option<usize> {
        Some(TcpSocket::send_queue(self))
    }

    fn recv_queue(&self) -> Option<usize> {
        Some(TcpSocket::recv_queue(self))
    }

    /// embassy-net has one error, `ConnectionReset`; the reason is kept by the layer.
    fn ended_error(&self, _reason: CloseReason) -> Error {
        Error::ConnectionReset
    }
}
