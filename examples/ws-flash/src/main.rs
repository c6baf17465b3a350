//! A tiny riscv32imc `no_std` binary whose only job is to be measured: `size.sh` builds
//! it with and without the feature `ws` and prints the difference of `.text`, the
//! flash the WebSocket reader and writer add to an ESP32-C3 firmware.
//!
//! With `ws` the handler is a WebSocket echo (`WebSocket::read` pieces sent back with
//! `send_frame`, the default config: keepalive, payload cap, close handshake); without
//! it the same handler echoes raw bytes. Both read and write through the same opaque
//! connection (`Pipe`, whose I/O the compiler cannot see through) and link the same
//! dummy time driver, so the difference is the crate's code and the embassy-time calls
//! it makes, as a firmware that already has embassy-time pays for them.
#![no_std]
#![no_main]

use core::convert::Infallible;
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use embedded_io_async::{ErrorType, Read, Write};

/// A connection whose bytes come from and go to memory the compiler cannot predict.
struct Pipe;

static INPUT: AtomicUsize = AtomicUsize::new(0);
static OUTPUT: AtomicUsize = AtomicUsize::new(0);

impl ErrorType for Pipe {
    type Error = Infallible;
}

impl Read for Pipe {
    #[inline(never)]
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        let n = INPUT.load(Ordering::Relaxed).min(buf.len());
        for b in &mut buf[..n] {
            *b = INPUT.load(Ordering::Relaxed) as u8;
        }
        Ok(n)
    }
}

impl Write for Pipe {
    #[inline(never)]
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        for b in buf {
            // No atomic read-modify-write on riscv32imc: a load and a store.
            let sum = OUTPUT.load(Ordering::Relaxed) + usize::from(*b);
            OUTPUT.store(sum, Ordering::Relaxed);
        }
        Ok(buf.len())
    }
    #[inline(never)]
    async fn flush(&mut self) -> Result<(), Infallible> {
        OUTPUT.store(0, Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(feature = "ws")]
async fn handler(conn: Pipe) {
    use tcp_layers_ws::{Incoming, IoOnly, Relay, WebSocket, WsConfig};
    let mut ws = WebSocket::new(IoOnly(conn), WsConfig::new());
    let mut buf = [0u8; 512];
    let mut relay = Relay::new();
    while let Ok(Incoming::Data(piece)) = ws.read(&mut buf).await {
        let (opcode, fin) = relay.frame_for(&piece);
        if ws.send_frame(opcode, fin, piece.bytes).await.is_err() {
            break;
        }
    }
    let _ = ws.close(1000).await;
}

#[cfg(not(feature = "ws"))]
async fn handler(mut conn: Pipe) {
    let mut buf = [0u8; 512];
    while let Ok(n @ 1..) = conn.read(&mut buf).await {
        if conn.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = conn.flush().await;
}

#[unsafe(no_mangle)]
extern "C" fn _start() -> ! {
    embassy_futures::block_on(handler(Pipe));
    loop {}
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {}
}

/// A time driver that counts: enough for the code to link, never run.
struct Ticks;

static NOW: AtomicU32 = AtomicU32::new(0);

impl embassy_time_driver::Driver for Ticks {
    fn now(&self) -> u64 {
        let now = NOW.load(Ordering::Relaxed) + 1;
        NOW.store(now, Ordering::Relaxed);
        u64::from(now)
    }
    fn schedule_wake(&self, at: u64, waker: &core::task::Waker) {
        NOW.store(at as u32, Ordering::Relaxed);
        waker.wake_by_ref();
    }
}

embassy_time_driver::time_driver_impl!(static DRIVER: Ticks = Ticks);

/// One core, no interrupts that touch the time queue: a critical section is a no-op.
struct SingleCore;
critical_section::set_impl!(SingleCore);
// SAFETY: this binary runs no interrupt handlers and one thread.
unsafe impl critical_section::Impl for SingleCore {
    unsafe fn acquire() -> bool {
        false
    }
    unsafe fn release(_: bool) {}
}
