#![doc = include_str!("../README.md")]
#![no_std]
#![deny(missing_docs)]

use core::cell::{RefCell, UnsafeCell};
use core::fmt;
use core::future::poll_fn;
use core::ops::{Deref, DerefMut};
use core::task::Poll;

use critical_section::Mutex;
use embassy_sync::waitqueue::MultiWakerRegistration;

/// A pool for a small web UI: 10 buffers of 4 KiB.
///
/// 4 KiB is the default write chunk of the chunked layer and the tx buffer of a
/// typical ESP32 socket, so one buffer holds what one write hands to the stack; 10
/// covers the 8 sockets of the ESP32-S3 profile plus two for background work.
pub type DefaultPool = Pool<10, 4096>;

/// Waiters the pool remembers by waker before it wakes them all and starts over.
/// Overflow is correct (every waiter polls again), just less quiet; 8 covers the
/// largest chip profile's socket count.
const WAITER_SLOTS: usize = 8;

/// What a buffer holds when it is handed out again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Reuse {
    /// Whatever the previous holder left in it. Costs nothing; right when the holder
    /// overwrites what it reads (the usual case: fill, then send the filled part).
    AsIs,
    /// Zeroed before it is handed out: no holder can read an earlier holder's data
    /// (for buffers that hold secrets, or code that sends more than it filled).
    /// Costs one `memset` of `SIZE` bytes per take.
    Zeroed,
}

/// Bookkeeping shared by all holders; only touched inside a critical section.
struct State<const N: usize> {
    taken: [bool; N],
    in_use: usize,
    peak: usize,
    waited: u32,
    refused: u32,
    waiters: MultiWakerRegistration<WAITER_SLOTS>,
}

impl<const N: usize> State<N> {
    const fn new() -> Self {
        Self {
            taken: [false; N],
            in_use: 0,
            peak: 0,
            waited: 0,
            refused: 0,
            waiters: MultiWakerRegistration::new(),
        }
    }

    fn claim(&mut self) -> Option<usize> {
        let index = self.taken.iter().position(|taken| !taken)?;
        self.taken[index] = true;
        self.in_use += 1;
        self.peak = self.peak.max(self.in_use);
        Some(index)
    }
}

/// A fixed pool of `N` buffers of `SIZE` bytes. See the [crate docs](crate).
pub struct Pool<const N: usize, const SIZE: usize> {
    buffers: [UnsafeCell<[u8; SIZE]>; N],
    state: Mutex<RefCell<State<N>>>,
    reuse: Reuse,
}

// SAFETY: `state` is a critical-section mutex (Sync). A buffer's cell is only accessed
// through the one `Buf` that holds its index (see `Buf::bytes`), so two threads never
// touch the same cell at once; the critical sections that claim and release an index
// order the accesses of successive holders.
unsafe impl<const N: usize, const SIZE: usize> Sync for Pool<N, SIZE> {}

impl<const N: usize, const SIZE: usize> Pool<N, SIZE> {
    /// An empty pool whose buffers are handed out as the previous holder left them
    /// ([`Reuse::AsIs`]). `const`, for a `static`; the buffers live in `.bss`.
    pub const fn new() -> Self {
        Self::with_reuse(Reuse::AsIs)
    }

    /// An empty pool with the given [`Reuse`] policy.
    pub const fn with_reuse(reuse: Reuse) -> Self {
        assert!(N > 0, "a pool needs at least one buffer");
        Self {
            buffers: [const { UnsafeCell::new([0; SIZE]) }; N],
            state: Mutex::new(RefCell::new(State::new())),
            reuse,
        }
    }

    /// A free buffer, or `None` at once when all `N` are held.
    pub fn try_take(&self) -> Option<Buf<'_, N, SIZE>> {
        let index = critical_section::with(|cs| {
            let mut state = self.state.borrow_ref_mut(cs);
            let index = state.claim();
            if index.is_none() {
                state.refused = state.refused.saturating_add(1);
            }
            index
        })?;
        Some(self.hand_out(index))
    }

    /// A free buffer, waiting until one is returned when all `N` are held.
    ///
    /// Cancel-safe: the future holds nothing but a registered waker until it returns,
    /// so dropping it leaks no buffer and loses no wake-up. Waiters are not served in
    /// arrival order: every return wakes every waiter and the first to run wins.
    pub async fn take(&self) -> Buf<'_, N, SIZE> {
        let mut counted = false;
        let index = poll_fn(|cx| {
            critical_section::with(|cs| {
                let mut state = self.state.borrow_ref_mut(cs);
                match state.claim() {
                    Some(index) => Poll::Ready(index),
                    None => {
                        if !counted {
                            counted = true;
                            state.waited = state.waited.saturating_add(1);
                        }
                        // Registered in the same critical section as the failed claim:
                        // a buffer returned after this point wakes us.
                        state.waiters.register(cx.waker());
                        Poll::Pending
                    }
                }
            })
        })
        .await;
        self.hand_out(index)
    }

    fn hand_out(&self, index: usize) -> Buf<'_, N, SIZE> {
        let mut buf = Buf { pool: self, index };
        if self.reuse == Reuse::Zeroed {
            buf.fill(0);
        }
        buf
    }

    fn give_back(&self, index: usize) {
        critical_section::with(|cs| {
            let mut state = self.state.borrow_ref_mut(cs);
            debug_assert!(state.taken[index], "buffer returned twice");
            state.taken[index] = false;
            state.in_use -= 1;
            state.waiters.wake();
        });
    }

    /// Buffers held right now. `0` after a run means every buffer came back.
    pub fn in_use(&self) -> usize {
        critical_section::with(|cs| self.state.borrow_ref(cs).in_use)
    }

    /// Buffers free right now.
    pub fn available(&self) -> usize {
        N - self.in_use()
    }

    /// The most buffers ever held at once: how large `N` needs to be.
    pub fn peak_in_use(&self) -> usize {
        critical_section::with(|cs| self.state.borrow_ref(cs).peak)
    }

    /// How many [`take`](Self::take) calls had to wait (each counted once).
    pub fn waited(&self) -> u32 {
        critical_section::with(|cs| self.state.borrow_ref(cs).waited)
    }

    /// How many [`try_take`](Self::try_take) calls found no free buffer.
    pub fn refused(&self) -> u32 {
        critical_section::with(|cs| self.state.borrow_ref(cs).refused)
    }

    /// `N`, the number of buffers.
    pub const fn capacity(&self) -> usize {
        N
    }

    /// `SIZE`, the length of each buffer in bytes.
    pub const fn buffer_size(&self) -> usize {
        SIZE
    }
}

impl<const N: usize, const SIZE: usize> Default for Pool<N, SIZE> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize, const SIZE: usize> fmt::Debug for Pool<N, SIZE> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("capacity", &N)
            .field("buffer_size", &SIZE)
            .field("in_use", &self.in_use())
            .field("reuse", &self.reuse)
            .finish()
    }
}

/// One buffer of a [`Pool`], held exclusively until dropped. Dereferences to
/// `[u8; SIZE]`.
pub struct Buf<'pool, const N: usize, const SIZE: usize> {
    pool: &'pool Pool<N, SIZE>,
    index: usize,
}

impl<const N: usize, const SIZE: usize> Buf<'_, N, SIZE> {
    /// Which of the pool's buffers this is (`0..N`): for tests and logs.
    pub fn index(&self) -> usize {
        self.index
    }

    fn bytes(&self) -> *mut [u8; SIZE] {
        self.pool.buffers[self.index].get()
    }
}

impl<const N: usize, const SIZE: usize> Deref for Buf<'_, N, SIZE> {
    type Target = [u8; SIZE];
    fn deref(&self) -> &[u8; SIZE] {
        // SAFETY: `index` was marked taken in a critical section when this `Buf` was
        // made and is only cleared by its `Drop`, so no other `Buf` exists for this
        // cell; the returned borrow is bound to `&self`, so it ends before that `Drop`
        // runs, and `&self` excludes a concurrent `&mut` from `deref_mut`.
        unsafe { &*self.bytes() }
    }
}

impl<const N: usize, const SIZE: usize> DerefMut for Buf<'_, N, SIZE> {
    fn deref_mut(&mut self) -> &mut [u8; SIZE] {
        // SAFETY: as in `deref`; `&mut self` makes this the only live borrow of the cell.
        unsafe { &mut *self.bytes() }
    }
}

impl<const N: usize, const SIZE: usize> AsRef<[u8]> for Buf<'_, N, SIZE> {
    fn as_ref(&self) -> &[u8] {
        &self[..]
    }
}

impl<const N: usize, const SIZE: usize> AsMut<[u8]> for Buf<'_, N, SIZE> {
    fn as_mut(&mut self) -> &mut [u8] {
        &mut self[..]
    }
}

impl<const N: usize, const SIZE: usize> Drop for Buf<'_, N, SIZE> {
    fn drop(&mut self) {
        self.pool.give_back(self.index);
    }
}

impl<const N: usize, const SIZE: usize> fmt::Debug for Buf<'_, N, SIZE> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Buf")
            .field("index", &self.index)
            .field("size", &SIZE)
            .finish()
    }
}
