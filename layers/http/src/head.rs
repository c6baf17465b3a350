//! The streaming scanner that finds the end of a request head.
//!
//! An HTTP/1 request head ends with an empty line: the four bytes `\r\n\r\n`. The
//! server reads the head in pieces of any size, so the terminator can be split across
//! two (or, one byte per read, four) reads. [`HeadScanner`] keeps the part of the
//! terminator matched so far and the head's length between calls in 2 bytes, and never
//! looks at a byte twice. It is no HTTP parser: it only answers "is the head complete,
//! and did it stay within `max_head` bytes".

/// The largest `max_head` the scanner counts to: 16383 bytes (14 bits), four times
/// what a device accepts by default. A larger `max_head` is taken as this.
pub const MAX_HEAD_LIMIT: u16 = (1 << LEN_BITS) - 1;

/// Bits of the packed state that hold the head's length; the two above hold the match.
const LEN_BITS: u32 = 14;

/// The state between reads of one request head: bytes seen and how much of the
/// terminator the last bytes matched, packed in 2 bytes (the state of every connection
/// counts on a device).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeadScanner {
    /// Bits 0-13: head bytes fed so far (never more than the `max_head` of the calls).
    /// Bits 14-15: how many bytes of `\r\n\r\n` the bytes fed last end with (0 to 3).
    packed: u16,
}

/// What [`HeadScanner::feed`] found in the bytes it was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scan {
    /// No terminator yet, and the head is still within `max_head`.
    Partial,
    /// The terminator ends at this offset of the bytes just fed: `bytes[..end]` are the
    /// last bytes of the head, `bytes[end..]` belong to the body or the next request.
    /// The scanner is reset for the next head.
    Complete {
        /// One past the terminator's last byte, within the bytes just fed.
        end: usize,
    },
    /// `max_head` bytes arrived without a terminator: the head is longer than allowed.
    /// Feeding more bytes answers `TooLarge` again.
    TooLarge,
}

/// The terminator of a request head.
const TERMINATOR: &[u8; 4] = b"\r\n\r\n";

impl HeadScanner {
    /// A scanner at the start of a head.
    pub const fn new() -> Self {
        Self { packed: 0 }
    }

    /// Head bytes seen so far (0 after a complete head).
    pub const fn len(&self) -> u16 {
        self.packed & MAX_HEAD_LIMIT
    }

    /// True before the first byte of a head.
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many bytes of the terminator the bytes fed last end with.
    const fn matched(&self) -> u8 {
        (self.packed >> LEN_BITS) as u8
    }

    /// Scans the next bytes of the stream for the end of the head.
    ///
    /// A head may be at most `max_head` bytes (at most [`MAX_HEAD_LIMIT`]), terminator
    /// included: a head of exactly `max_head` bytes is `Complete`, and `TooLarge` is
    /// answered as soon as `max_head` bytes arrived without a terminator, without
    /// waiting for the byte that makes the head too long. Bytes past `max_head` are
    /// never looked at.
    pub fn feed(&mut self, bytes: &[u8], max_head: u16) -> Scan {
        if bytes.is_empty() {
            return Scan::Partial;
        }
        let max_head = max_head.min(MAX_HEAD_LIMIT);
        let room = usize::from(max_head.saturating_sub(self.len()));
        let window = &bytes[..bytes.len().min(room)];
        let mut matched = self.matched();
        for (i, &byte) in window.iter().enumerate() {
            matched = Self::step(matched, byte);
            if usize::from(matched) == TERMINATOR.len() {
                *self = Self::new();
                return Scan::Complete { end: i + 1 };
            }
        }
        // `window` is at most `room` long, so the length stays within `max_head`.
        let len = self.len() + window.len() as u16;
        self.packed = len | u16::from(matched) << LEN_BITS;
        if len >= max_head {
            Scan::TooLarge
        } else {
            Scan::Partial
        }
    }

    /// The next match length after `byte`. On a mismatch the match falls back to the
    /// longest suffix that is still a prefix of the terminator: only `\r` can be one.
    const fn step(matched: u8, byte: u8) -> u8 {
        if byte == TERMINATOR[matched as usize] {
            matched + 1
        } else if byte == b'\r' {
            1
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::println;

    #[test]
    fn terminator_split_at_every_position_across_two_reads() {
        let head = b"GET /index.html HTTP/1.1\r\nHost: device\r\n\r\n";
        for cut in 0..=head.len() {
            let mut scanner = HeadScanner::new();
            let (first, second) = head.split_at(cut);
            let found = match scanner.feed(first, 4096) {
                Scan::Complete { end } => Some(end),
                Scan::Partial => match scanner.feed(second, 4096) {
                    Scan::Complete { end } => Some(cut + end),
                    other => panic!("cut {cut}: second read gave {other:?}"),
                },
                Scan::TooLarge => panic!("cut {cut}: too large"),
            };
            assert_eq!(found, Some(head.len()), "cut at {cut}");
        }
        println!("terminator found at every one of {} cuts", head.len() + 1);
    }

    #[test]
    fn partial_matches_fall_back_correctly() {
        // "\r\r\n\r\n": the second \r restarts the match; "\r\n\r\r\n\r\n" likewise.
        for stream in [&b"a\r\r\n\r\nb"[..], b"a\r\n\r\r\n\r\nb", b"\r\n\r\n"] {
            let want = stream.windows(4).position(|w| w == TERMINATOR).unwrap() + 4;
            let mut scanner = HeadScanner::new();
            let mut got = None;
            for (i, byte) in stream.iter().enumerate() {
                if let Scan::Complete { end } = scanner.feed(core::slice::from_ref(byte), 100) {
                    got = Some(i + end);
                    break;
                }
            }
            assert_eq!(got, Some(want), "{stream:?}");
        }
    }

    #[test]
    fn head_of_exactly_max_is_complete_one_more_is_too_large() {
        let max = 64u16;
        let mut exact = [b'a'; 64];
        exact[60..].copy_from_slice(TERMINATOR);
        assert_eq!(
            HeadScanner::new().feed(&exact, max),
            Scan::Complete { end: 64 }
        );

        let mut over = [b'a'; 65];
        over[61..].copy_from_slice(TERMINATOR);
        let mut scanner = HeadScanner::new();
        assert_eq!(scanner.feed(&over, max), Scan::TooLarge);
        assert_eq!(scanner.len(), max);
        assert_eq!(scanner.feed(b"x", max), Scan::TooLarge);
    }

    #[test]
    fn max_head_is_capped_at_the_limit() {
        let mut scanner = HeadScanner::new();
        let chunk = [b'a'; 1000];
        let mut fed = 0;
        while scanner.feed(&chunk, u16::MAX) == Scan::Partial {
            fed += chunk.len();
        }
        assert_eq!(scanner.len(), MAX_HEAD_LIMIT);
        assert!(fed < usize::from(MAX_HEAD_LIMIT));
        // The match survives next to a full-size length.
        let mut scanner = HeadScanner::new();
        assert_eq!(scanner.feed(&[b'a'; 16379], u16::MAX), Scan::Partial);
        assert_eq!(scanner.feed(b"\r\n\r", u16::MAX), Scan::Partial);
        assert_eq!(scanner.len(), 16382);
        assert_eq!(scanner.feed(b"\n", u16::MAX), Scan::Complete { end: 1 });
    }

    #[test]
    fn scanner_resets_after_a_complete_head() {
        let mut scanner = HeadScanner::new();
        assert_eq!(scanner.feed(b"GET / HTTP/1.1\r\n\r", 100), Scan::Partial);
        assert_eq!(scanner.len(), 17);
        assert_eq!(scanner.feed(b"\nBODY", 100), Scan::Complete { end: 1 });
        assert!(scanner.is_empty());
        assert_eq!(scanner, HeadScanner::new());
    }
}
