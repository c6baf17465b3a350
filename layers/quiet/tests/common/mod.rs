//! The baseline both test binaries compare the layer with: the logging users write
//! today, `error!` on every failed read, write or flush. (The log line counter and the
//! seeded generator are in `tcp-layers-mock`.)

use tcp_layers_core::{Connection, ErrorType, Read, Write};

/// The baseline: what a hand-written server does today, `error!` on every failed read,
/// write or flush, and nothing else.
pub struct NaiveLog<C> {
    pub inner: C,
}

impl<C: Connection> ErrorType for NaiveLog<C> {
    type Error = C::Error;
}

impl<C: Connection> Read for NaiveLog<C> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, C::Error> {
        let r = self.inner.read(buf).await;
        if let Err(e) = &r {
            log::error!("read failed: {e:?}");
        }
        r
    }
}

impl<C: Connection> Write for NaiveLog<C> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, C::Error> {
        let r = self.inner.write(buf).await;
        if let Err(e) = &r {
            log::error!("write failed: {e:?}");
        }
        r
    }
    async fn flush(&mut self) -> Result<(), C::Error> {
        let r = self.inner.flush().await;
        if let Err(e) = &r {
            log::error!("flush failed: {e:?}");
        }
        r
    }
}

impl<C: Connection> Connection for NaiveLog<C> {
    tcp_layers_core::delegate_connection!(inner; state, set_nodelay, close_write, abort, remote,
        local, send_queue, recv_queue, ended_error, close_reason, set_class, end);
}
