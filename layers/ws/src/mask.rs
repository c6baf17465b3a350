//! Unmasking in place (RFC 6455 section 5.3): every payload byte a client sends is
//! XORed with one byte of a 4-byte key, the key's byte `i % 4` for payload byte `i`.
//!
//! [`unmask`] works a machine word (`usize`: 4 bytes on an ESP32, 8 on a desktop) at a
//! time over the word-aligned middle of the slice and byte by byte over its unaligned
//! head and tail, for any length, any address and any mask phase. The phase is where
//! in the key the slice starts: a frame's payload read in several pieces continues the
//! key where the previous piece stopped, so each call takes the phase and returns the
//! next one. [`unmask_bytewise`] is the loop every embedded Rust server compared uses:
//! the reference the property tests and the fuzz target check [`unmask`] against.
//! Neither panics on any input.

/// Bytes in the key.
pub const KEY_LEN: usize = 4;

/// Bytes in a machine word.
const WORD: usize = core::mem::size_of::<usize>();

/// XORs `payload` with `key` in place, starting at byte `phase % 4` of the key, a word
/// at a time over the aligned middle; returns the phase of the byte after the slice
/// (`(phase + payload.len()) % 4`), the `phase` of the next piece of the same payload.
pub fn unmask(payload: &mut [u8], key: [u8; KEY_LEN], phase: usize) -> usize {
    let phase = phase % KEY_LEN;
    let next = (phase + payload.len() % KEY_LEN) % KEY_LEN;
    // SAFETY: every bit pattern is a valid `usize` and a valid `u8`, and `align_to_mut`
    // hands out three disjoint slices that together cover `payload` exactly once, the
    // middle one aligned for `usize`; nothing else borrows `payload` meanwhile.
    #[allow(unsafe_code)]
    let (head, middle, tail) = unsafe { payload.align_to_mut::<usize>() };
    let phase = unmask_bytewise(head, key, phase);
    if !middle.is_empty() {
        // The key as a word, rotated to the phase where the middle starts. A word holds
        // a whole number of keys (4 or 8 bytes), so the tail starts at the same phase.
        let mut bytes = [0u8; WORD];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = key[(phase + i) % KEY_LEN];
        }
        let word_key = usize::from_ne_bytes(bytes);
        for word in middle.iter_mut() {
            *word ^= word_key;
        }
    }
    unmask_bytewise(tail, key, phase);
    next
}

/// The byte-by-byte loop: XORs `payload` with `key` in place starting at byte
/// `phase % 4` of the key; returns the phase of the byte after the slice. The reference
/// [`unmask`] is checked against, and the loop the servers compared use.
pub fn unmask_bytewise(payload: &mut [u8], key: [u8; KEY_LEN], phase: usize) -> usize {
    let mut phase = phase % KEY_LEN;
    for b in payload.iter_mut() {
        *b ^= key[phase];
        phase = (phase + 1) % KEY_LEN;
    }
    phase
}

/// The key and phase of one payload being unmasked piece by piece.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Unmasker {
    key: [u8; KEY_LEN],
    phase: u8,
}

impl Unmasker {
    /// The start of a payload masked with `key`.
    pub const fn new(key: [u8; KEY_LEN]) -> Self {
        Self { key, phase: 0 }
    }

    /// Unmasks the next piece of the payload in place (word-wise, [`unmask`]).
    pub fn apply(&mut self, piece: &mut [u8]) {
        self.phase = unmask(piece, self.key, usize::from(self.phase)) as u8;
    }

    /// Where in the key the next piece starts (0..4).
    pub const fn phase(&self) -> usize {
        self.phase as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_known_frame_unmasks() {
        // RFC 6455 section 5.7: a masked "Hello".
        let key = [0x37, 0xfa, 0x21, 0x3d];
        let mut payload = [0x7f, 0x9f, 0x4d, 0x51, 0x58];
        assert_eq!(unmask(&mut payload, key, 0), 1);
        assert_eq!(&payload, b"Hello");
    }

    /// Small enough for Miri, which checks the `align_to_mut` split: every length up to
    /// a few words, at every offset from a word boundary, from every phase.
    #[test]
    fn short_payloads_at_every_offset_and_phase() {
        let key = [0xA1, 0xB2, 0xC3, 0xD4];
        for offset in 0..8 {
            for phase in 0..4 {
                for len in 0..=64 {
                    let mut expected = [0u8; 64];
                    for (i, b) in expected[..len].iter_mut().enumerate() {
                        *b = (i * 7) as u8;
                    }
                    let mut reference = expected;
                    let next = unmask_bytewise(&mut reference[..len], key, phase);
                    // `offset` bytes after an 8-byte boundary.
                    let mut buf = [0u8; 80];
                    let start = buf.as_ptr().align_offset(8) + offset;
                    let payload = &mut buf[start..start + len];
                    payload.copy_from_slice(&expected[..len]);
                    assert_eq!(unmask(payload, key, phase), next);
                    assert_eq!(payload, &reference[..len]);
                }
            }
        }
    }

    #[test]
    fn pieces_continue_the_key() {
        let key = [1, 2, 3, 4];
        let mut whole = [0u8; 37];
        unmask(&mut whole, key, 0);
        let mut pieces = [0u8; 37];
        let mut unmasker = Unmasker::new(key);
        let (a, rest) = pieces.split_at_mut(3);
        let (b, c) = rest.split_at_mut(21);
        unmasker.apply(a);
        unmasker.apply(b);
        unmasker.apply(c);
        assert_eq!(whole, pieces);
        assert_eq!(unmasker.phase(), 37 % 4);
    }
}
