//! Fault injection: wrappers that make a healthy connection fail on purpose.
use tcp_layers_core::{CloseReason, Connection, ErrorType, Read, Write};

/// A connection whose writes fail after `K` bytes, with the error the inner connection
/// builds for [`CloseReason::LocalError`]: a local write error (the stack failed, not
/// the peer) to see how layers classify and log it.
///
/// The write that crosses the limit writes what still fits and succeeds; every write
/// after it fails. [`Connection::close_reason`] then answers `LocalError`.
pub struct FailWrites<C> {
    inner: C,
    remaining: usize,
    failed: bool,
}

impl<C: Connection> FailWrites<C> {
    /// Wraps `inner`; writes fail once `after_bytes` bytes were written.
    pub fn new(inner: C, after_bytes: usize) -> Self {
        Self {
            inner,
            remaining: after_bytes,
            failed: false,
        }
    }

    /// True once a write has failed.
    pub fn has_failed(&self) -> bool {
        self.failed
    }

    /// The wrapped connection.
    pub fn into_inner(self) -> C {
        self.inner
    }
}

impl<C: Connection> ErrorType for FailWrites<C> {
    type Error = C::Error;
}

impl<C: Connection> Read for FailWrites<C> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        self.inner.read(buf).await
    }
}

impl<C: Connection> Write for FailWrites<C> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.remaining == 0 {
            self.failed = true;
            return Err(self.inner.ended_error(CloseReason::LocalError));
        }
        let n = buf.len().min(self.remaining);
        let written = self.inner.write(&buf[..n]).await?;
        self.remaining -= written;
        Ok(written)
    }

    async fn flush(&mut self) -> Result<(), Self::Error> {
        if self.failed {
            return Err(self.inner.ended_error(CloseReason::LocalError));
        }
        self.inner.flush().await
    }
}

impl<C: Connection> Connection for FailWrites<C> {
    tcp_layers_core::delegate_connection!(inner; state, set_nodelay, close_write, abort, remote, local, send_queue, recv_queue, ended_error, set_class);

    fn close_reason(&self) -> Option<CloseReason> {
        if self.failed {
            Some(CloseReason::LocalError)
        } else {
            self.inner.close_reason()
        }
    }

    async fn end(&mut self, reason: CloseReason) {
        let reason = self.end_reason(reason);
        self.inner.end(reason).await
    }
}
