/// A small seeded generator (xorshift64) so randomised tests draw the same numbers on
/// every run.
///
/// ```
/// use tcp_layers_mock::Rng;
///
/// let (mut a, mut b) = (Rng::new(7), Rng::new(7));
/// assert_eq!(a.next_u64(), b.next_u64());
/// let r = a.range(10, 20);
/// assert!((10..20).contains(&r));
/// let mut child = a.fork();
/// assert_ne!(child.next_u64(), a.next_u64());
/// ```
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`. Any seed works, 0 included: it is mixed (splitmix64's
    /// finalizer) into the state, so neighbouring seeds give unrelated sequences.
    pub const fn new(seed: u64) -> Self {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        // xorshift never leaves 0.
        Self(if z == 0 { 0x9e37_79b9_7f4a_7c15 } else { z })
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform enough in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform enough in `lo..hi` (`lo` < `hi`).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo)
    }

    /// A generator of its own, seeded from this one: for a task that draws in an order
    /// this one does not control.
    pub fn fork(&mut self) -> Self {
        Self::new(self.next_u64())
    }
}
