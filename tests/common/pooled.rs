//! A handler-side wrapper shared by the soak and the cancel-safety test: every write is
//! copied through a buffer taken from a pool and held while the layers below write it,
//! as a server that formats each piece into scratch space does.
use tcp_layers_core::{Connection, ErrorType, Read, Write, delegate_connection};
use tcp_layers_pool::Pool;

pub struct Pooled<C, const N: usize, const SIZE: usize> {
    pub inner: C,
    pub pool: &'static Pool<N, SIZE>,
}

impl<C: Connection, const N: usize, const SIZE: usize> ErrorType for Pooled<C, N, SIZE> {
    type Error = C::Error;
}

impl<C: Connection, const N: usize, const SIZE: usize> Read for Pooled<C, N, SIZE> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, C::Error> {
        self.inner.read(buf).await
    }
}

impl<C: Connection, const N: usize, const SIZE: usize> Write for Pooled<C, N, SIZE> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, C::Error> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut scratch = self.pool.take().await;
        let n = buf.len().min(scratch.len());
        scratch[..n].copy_from_slice(&buf[..n]);
        self.inner.write(&scratch[..n]).await
    }

    async fn flush(&mut self) -> Result<(), C::Error> {
        self.inner.flush().await
    }
}

impl<C: Connection, const N: usize, const SIZE: usize> Connection for Pooled<C, N, SIZE> {
    delegate_connection!(inner; state, set_nodelay, close_write, abort, remote, local,
        send_queue, recv_queue, ended_error, close_reason, set_class, end);
}
