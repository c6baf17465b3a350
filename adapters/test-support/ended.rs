//! A layer that has already ended the connection, as a budget that refused it does:
//! reads and writes fail with `ended_error(Evicted)` and `close_reason()` is `Evicted`.
//! The adapter tests check that the server behind the adapter sees the end of the
//! stream, not an error.
use tcp_layers::core::{ErrorType, Read, Write, delegate_connection};
use tcp_layers::{CloseReason, Connection, Layer};

#[derive(Clone, Copy)]
pub struct AlreadyEnded;

pub struct Ended<C> {
    inner: C,
}

impl<C: Connection> Layer<C> for AlreadyEnded {
    type Service = Ended<C>;
    fn layer(&self, inner: C) -> Ended<C> {
        Ended { inner }
    }
}

impl<C: Connection> ErrorType for Ended<C> {
    type Error = C::Error;
}

impl<C: Connection> Read for Ended<C> {
    async fn read(&mut self, _buf: &mut [u8]) -> Result<usize, C::Error> {
        Err(self.inner.ended_error(CloseReason::Evicted))
    }
}

impl<C: Connection> Write for Ended<C> {
    async fn write(&mut self, _buf: &[u8]) -> Result<usize, C::Error> {
        Err(self.inner.ended_error(CloseReason::Evicted))
    }
    async fn flush(&mut self) -> Result<(), C::Error> {
        self.inner.flush().await
    }
}

impl<C: Connection> Connection for Ended<C> {
    delegate_connection!(inner; state, set_nodelay, close_write, abort, remote, local,
        send_queue, recv_queue, ended_error, set_class, end);
    fn close_reason(&self) -> Option<CloseReason> {
        Some(CloseReason::Evicted)
    }
}
