//! One [`Connection`] shared by a read half and a write half that a server polls at the
//! same time (picoserve reads for a disconnect while it writes an event stream; edge-nal
//! asks for `split`).
//!
//! A layered connection is one value whose `read` and `write` both take `&mut self`, so
//! only one of them can run at a time. The halves take turns on a `RefCell`, and the
//! write half has priority: a read waiting for the peer would otherwise hold the
//! connection forever and no event would ever go out. When the writer needs the
//! connection while a read is pending, the read's inner future is dropped (reads of
//! embassy-net and of every layer of this project are cancel-safe: no byte is consumed
//! before the read returns it) and started again once the write is done.
//!
//! Everything here is single-threaded (`Cell`, `RefCell`): both halves live in the task
//! that serves the connection, as embassy-net sockets are `!Send` anyway.
use core::cell::{Cell, RefCell, RefMut};
use core::future::poll_fn;
use core::task::{Poll, Waker};

use embassy_futures::select::{Either, select};
use tcp_layers_core::{Connection, ErrorType, Read, Write};

use super::quiet_read;

/// A connection and the turn-taking state of its two halves.
pub struct Split<C> {
    conn: RefCell<C>,
    /// The write half is waiting for the connection: a pending read must let go.
    writer_waiting: Cell<bool>,
    reader_waker: Cell<Option<Waker>>,
    writer_waker: Cell<Option<Waker>>,
}

impl<C: Connection> Split<C> {
    /// `conn`, ready to be split into halves.
    pub fn new(conn: C) -> Self {
        Self {
            conn: RefCell::new(conn),
            writer_waiting: Cell::new(false),
            reader_waker: Cell::new(None),
            writer_waker: Cell::new(None),
        }
    }

    /// The connection, for the whole-socket operations (no half exists: `&mut self`).
    pub fn get_mut(&mut self) -> &mut C {
        self.conn.get_mut()
    }

    /// The connection.
    pub fn into_inner(self) -> C {
        self.conn.into_inner()
    }

    /// The read half and the write half, for as long as `self` is borrowed.
    pub fn halves(&mut self) -> (ReadHalf<'_, C>, WriteHalf<'_, C>) {
        let shared: &Self = self;
        (ReadHalf { shared }, WriteHalf { shared })
    }

    fn wake(slot: &Cell<Option<Waker>>) {
        if let Some(waker) = slot.take() {
            waker.wake();
        }
    }

    fn register(slot: &Cell<Option<Waker>>, waker: &Waker) {
        let old = slot.take();
        slot.set(Some(match old {
            Some(old) if old.will_wake(waker) => old,
            _ => waker.clone(),
        }));
    }

    /// Waits for the reader's turn: the connection is free and no writer is waiting.
    async fn reader_turn(&self) -> Turn<'_, C> {
        poll_fn(|cx| {
            if !self.writer_waiting.get()
                && let Ok(conn) = self.conn.try_borrow_mut()
            {
                return Poll::Ready(Turn { conn, shared: self });
            }
            Self::register(&self.reader_waker, cx.waker());
            Poll::Pending
        })
        .await
    }

    /// Resolves when a writer starts waiting: the reader must let go.
    async fn writer_arrives(&self) {
        poll_fn(|cx| {
            if self.writer_waiting.get() {
                Poll::Ready(())
            } else {
                Self::register(&self.reader_waker, cx.waker());
                Poll::Pending
            }
        })
        .await
    }

    /// Waits for the writer's turn, asking a pending read to let go.
    async fn writer_turn(&self) -> Turn<'_, C> {
        // Clears the request if this future is dropped before its turn comes, so the
        // reader is not kept waiting by a writer that gave up.
        struct Waiting<'s, C: Connection>(&'s Split<C>);
        impl<C: Connection> Drop for Waiting<'_, C> {
            fn drop(&mut self) {
                self.0.writer_waiting.set(false);
                Split::<C>::wake(&self.0.reader_waker);
            }
        }
        let waiting = Waiting(self);
        let turn = poll_fn(|cx| match self.conn.try_borrow_mut() {
            Ok(conn) => Poll::Ready(Turn { conn, shared: self }),
            Err(_) => {
                self.writer_waiting.set(true);
                Self::register(&self.writer_waker, cx.waker());
                Self::wake(&self.reader_waker);
                Poll::Pending
            }
        })
        .await;
        // The writer holds the connection now: `waiting` clears the flag. The reader it
        // wakes finds the connection borrowed and waits for `Turn::drop`.
        drop(waiting);
        turn
    }
}

/// The connection, held by one half; the other half is woken when it is given back,
/// also when the future holding it is dropped.
struct Turn<'s, C: Connection> {
    conn: RefMut<'s, C>,
    shared: &'s Split<C>,
}

impl<C: Connection> Drop for Turn<'_, C> {
    fn drop(&mut self) {
        Split::<C>::wake(&self.shared.writer_waker);
        Split::<C>::wake(&self.shared.reader_waker);
    }
}

/// The read half. A pending read gives way to the write half and resumes after it.
pub struct ReadHalf<'s, C> {
    shared: &'s Split<C>,
}

/// The write half. Writes and flushes run to completion once started.
pub struct WriteHalf<'s, C> {
    shared: &'s Split<C>,
}

impl<C: Connection> ErrorType for ReadHalf<'_, C> {
    type Error = C::Error;
}

impl<C: Connection> ErrorType for WriteHalf<'_, C> {
    type Error = C::Error;
}

impl<C: Connection> ReadHalf<'_, C> {
    /// Runs `op` with the connection, dropped and started again from scratch whenever
    /// the write half needs the connection: `op` must be cancel-safe (a read that
    /// consumes no byte before it returns, a flush).
    pub async fn run<R>(&mut self, mut op: impl AsyncFnMut(&mut C) -> R) -> R {
        loop {
            let mut turn = self.shared.reader_turn().await;
            match select(op(&mut turn.conn), self.shared.writer_arrives()).await {
                Either::First(result) => return result,
                // `op` is dropped here, before any byte was consumed.
                Either::Second(()) => continue,
            }
        }
    }
}

impl<C: Connection> Read for ReadHalf<'_, C> {
    /// Reads from the connection; the end of the stream once a layer ended it (see the
    /// [module docs](super)).
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, C::Error> {
        self.run(async |conn: &mut C| {
            let result = conn.read(buf).await;
            quiet_read(conn, result)
        })
        .await
    }
}

impl<C: Connection> Write for WriteHalf<'_, C> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, C::Error> {
        self.shared.writer_turn().await.conn.write(buf).await
    }

    async fn flush(&mut self) -> Result<(), C::Error> {
        self.shared.writer_turn().await.conn.flush().await
    }
}

impl<C: Connection> WriteHalf<'_, C> {
    /// Runs `f` with the connection for the duration of one write-like operation.
    pub async fn with_conn<R>(&mut self, f: impl AsyncFnOnce(&mut C) -> R) -> R {
        let mut turn = self.shared.writer_turn().await;
        f(&mut turn.conn).await
    }
}
