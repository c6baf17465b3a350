//! UTF-8 checked across the pieces of a text message: a character may be split between
//! two reads or two frames, so up to three bytes of an unfinished one are kept.

/// The validity of a text message fed piece by piece.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Utf8Check {
    /// The first bytes of a character the last piece ended inside.
    pending: [u8; 3],
    pending_len: u8,
}

/// A text message's bytes are not UTF-8.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct NotUtf8;

impl Utf8Check {
    /// Checks the next `piece`; `last` when it ends the message, which must then not
    /// end inside a character.
    pub(crate) fn feed(&mut self, mut piece: &[u8], last: bool) -> Result<(), NotUtf8> {
        if self.pending_len > 0 {
            let have = usize::from(self.pending_len);
            let width = char_width(self.pending[0]);
            let take = (width - have).min(piece.len());
            let mut char_bytes = [0u8; 4];
            char_bytes[..have].copy_from_slice(&self.pending[..have]);
            char_bytes[have..have + take].copy_from_slice(&piece[..take]);
            piece = &piece[take..];
            if have + take < width {
                // Still unfinished: its bytes so far must be a valid start.
                check_tail(&char_bytes[..have + take])?;
                self.pending[..have + take].copy_from_slice(&char_bytes[..have + take]);
                self.pending_len = (have + take) as u8;
                return if last { Err(NotUtf8) } else { Ok(()) };
            }
            core::str::from_utf8(&char_bytes[..width]).map_err(|_| NotUtf8)?;
            self.pending_len = 0;
        }
        if let Err(e) = core::str::from_utf8(piece) {
            if e.error_len().is_some() {
                return Err(NotUtf8);
            }
            // The piece ends inside a character (at most 3 bytes, a valid start).
            let tail = &piece[e.valid_up_to()..];
            self.pending[..tail.len()].copy_from_slice(tail);
            self.pending_len = tail.len() as u8;
        }
        if last && self.pending_len > 0 {
            return Err(NotUtf8);
        }
        Ok(())
    }
}

/// The length of the character a lead byte starts; 1 for a byte that starts none (the
/// check of the whole character then fails).
fn char_width(lead: u8) -> usize {
    match lead {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => 1,
    }
}

/// Fails unless `start` (shorter than its character) can begin a valid character.
fn check_tail(start: &[u8]) -> Result<(), NotUtf8> {
    match core::str::from_utf8(start) {
        Err(e) if e.error_len().is_none() && e.valid_up_to() == 0 => Ok(()),
        _ => Err(NotUtf8),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `text` cut at every pair of positions and compares with a whole check.
    fn agrees(text: &[u8]) {
        let whole = core::str::from_utf8(text).is_ok();
        for a in 0..=text.len() {
            for b in a..=text.len() {
                let mut check = Utf8Check::default();
                let pieces = [&text[..a], &text[a..b], &text[b..]];
                let fed = pieces
                    .iter()
                    .enumerate()
                    .try_for_each(|(i, p)| check.feed(p, i == 2));
                assert_eq!(fed.is_ok(), whole, "{text:x?} cut at {a}, {b}");
            }
        }
    }

    #[test]
    fn pieces_agree_with_the_whole_message() {
        for text in [
            "".as_bytes(),
            b"plain ascii",
            "é à ü".as_bytes(),
            "€ 漢字".as_bytes(),
            "🦀 crab 🦀".as_bytes(),
            b"\xC3",             // cut short
            b"ok\xE2\x82",       // cut short
            b"\xFF",             // never a byte of UTF-8
            b"\xC0\x80",         // overlong
            b"\xED\xA0\x80",     // a surrogate
            b"\xF4\x90\x80\x80", // above U+10FFFF
            b"a\xE2\x28\xA1b",   // a broken continuation
            b"\xF0\x9F\xA6",     // a crab without its last byte
        ] {
            agrees(text);
        }
    }
}
