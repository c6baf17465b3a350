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
pub(crate) struct Shared<C> {
    conn: RefCell<C>,
    /// The write half is waiting for the connection: a pending read must let go.
    writer_waiting: Cell<bool>,
    reader_waker: Cell<Option<Waker>>,
    writer_waker: Cell<Option<Waker>>,
}

impl<C: Connection> Shared<C> {
    pub(crate) fn new(conn: C) -> Self {
        Self {
            conn: RefCell::new(conn),
            writer_waiting: Cell::new(false),
            reader_waker: Cell::new(None),
            writer_waker: Cell::new(None),
        }
    }

    /// The connection, for the whole-socket operations (no half exists: `&mut self`).
    pub(crate) fn get_mut(&mut self) -> &mut C {
        self.conn.get_mut()
    }

    pub(crate) fn into_inner(self) -> C {
        self.conn.into_inner()
    }

    pub(crate) fn halves(&mut self) -> (ReadHalf<'_, C>, WriteHalf<'_, C>) {
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

    /// The writer's turn at once, when the connection is free (no read holds it): the
    /// common case, with no future and no flag to set and clear.
    fn writer_turn_now(&self) -> Option<Turn<'_, C>> {
        let conn = self.conn.try_borrow_mut().ok()?;
        Some(Turn { conn, shared: self })
    }

    /// Waits for the writer's turn, asking a pending read to let go.
    async fn writer_turn(&self) -> Turn<'_, C> {
        // Clears the request if this future is dropped before its turn comes, so the
        // reader is not kept waiting by a writer that gave up.
        struct Waiting<'s, C: Connection>(&'s Shared<C>);
        impl<C: Connection> Drop for Waiting<'_, C> {
            fn drop(&mut self) {
                self.0.writer_waiting.set(false);
                Shared::<C>::wake(&self.0.reader_waker);
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
pub(crate) struct Turn<'s, C: Connection> {
    conn: RefMut<'s, C>,
    shared: &'s Shared<C>,
}

impl<C: Connection> Turn<'_, C> {
    /// The connection, for the duration of the turn.
    pub(crate) fn conn(&mut self) -> &mut C {
        &mut self.conn
    }
}

impl<C: Connection> Drop for Turn<'_, C> {
    fn drop(&mut self) {
        Shared::<C>::wake(&self.shared.writer_waker);
        Shared::<C>::wake(&self.shared.reader_waker);
    }
}

/// The read half. A pending read gives way to the write half and resumes after it.
pub(crate) struct ReadHalf<'s, C> {
    shared: &'s Shared<C>,
}

/// The write half. Writes and flushes run to completion once started.
pub(crate) struct WriteHalf<'s, C> {
    shared: &'s Shared<C>,
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
    pub(crate) async fn run<R>(&mut self, mut op: impl AsyncFnMut(&mut C) -> R) -> R {
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
    /// [adapters](super)).
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
        let mut turn = match self.turn_now() {
            Some(turn) => turn,
            None => self.turn().await,
        };
        turn.conn.write(buf).await
    }

    async fn flush(&mut self) -> Result<(), C::Error> {
        let mut turn = match self.turn_now() {
            Some(turn) => turn,
            None => self.turn().await,
        };
        turn.conn.flush().await
    }
}

impl<'s, C: Connection> WriteHalf<'s, C> {
    /// The connection for one write-like operation: at once when it is free, else once
    /// a pending read let go of it.
    pub(crate) async fn turn(&mut self) -> Turn<'s, C> {
        let shared = self.shared;
        match shared.writer_turn_now() {
            Some(turn) => turn,
            None => shared.writer_turn().await,
        }
    }

    /// The connection at once, when no read holds it; else `None`, and [`Self::turn`]
    /// waits for it. Apart, so that the common case polls no future.
    pub(crate) fn turn_now(&self) -> Option<Turn<'s, C>> {
        self.shared.writer_turn_now()
    }
}
