//! Follows a request line across reads and tells whether its path is one of a few
//! given paths, without a buffer: the state between reads is 6 bytes.
//!
//! ```
//! use tcp_layers_http::request_line::{PathMatch, RequestLine};
//! let paths = ["/events", "/ws/"];
//! let mut line = RequestLine::new();
//! assert_eq!(line.feed(&paths, b"GET /ev"), PathMatch::Undecided);
//! assert_eq!(line.feed(&paths, b"ents?since=3 HTTP/1.1\r\n"), PathMatch::Matched);
//! ```
//!
//! A path matches the request path exactly (the query and fragment are not part of
//! it); a path that ends in `/` matches every request path it is a prefix of. Empty
//! lines before the request line are skipped (RFC 9112, 2.2). A method longer than
//! [`METHOD_MAX`] bytes, or a target that is not a path (`http://host/a`, `*`), is no
//! match.

/// The longest request method looked at (`OPTIONS` is 7 bytes); a longer first word is
/// not HTTP, and the request matches no path.
pub const METHOD_MAX: u8 = 16;

/// What the request line read so far says about its path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum PathMatch {
    /// The path is not complete yet and could still match.
    Undecided,
    /// The path is one of the paths.
    Matched,
    /// The path is none of the paths (or the line is no request line).
    NotMatched,
}

/// Where a request line is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Position {
    /// In the method; `len` bytes of it so far.
    Method { len: u8 },
    /// In the path. Every byte so far equals the first `pos` bytes of
    /// `paths[candidate]`, the first path that agrees with all of them.
    Path { candidate: u16, pos: u16 },
    /// Decided: every later byte is ignored.
    Decided(PathMatch),
}

/// A request line followed across reads. See the [module docs](self).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestLine {
    position: Position,
}

impl Default for RequestLine {
    fn default() -> Self {
        Self::new()
    }
}

/// What one byte of the request path decides.
enum Step {
    /// Still undecided; the first path that agrees with every byte so far.
    Continue(u16),
    Matched,
    NotMatched,
}

/// True for a byte that ends the path part of a request target.
const fn ends_path(b: u8) -> bool {
    matches!(b, b' ' | b'?' | b'#' | b'\r' | b'\n')
}

/// The next step after the path bytes `paths[candidate][..pos]` were followed by `b`.
fn step(paths: &[&str], candidate: u16, pos: u16, b: u8) -> Step {
    let pos = usize::from(pos);
    let Some(seen) = paths
        .get(usize::from(candidate))
        .and_then(|path| path.as_bytes().get(..pos))
    else {
        return Step::NotMatched;
    };
    let mut next = None;
    for (i, path) in paths.iter().enumerate().skip(usize::from(candidate)) {
        let path = path.as_bytes();
        if path.get(..pos) != Some(seen) {
            continue;
        }
        match path.get(pos) {
            None if ends_path(b) || path.last() == Some(&b'/') => return Step::Matched,
            Some(&expected) if expected == b && next.is_none() => next = Some(i),
            _ => {}
        }
    }
    // Path lengths and counts beyond u16 match nothing: a request path that long does
    // not fit any server's request buffer.
    match next.and_then(|i| u16::try_from(i).ok()) {
        Some(i) if pos < usize::from(u16::MAX) => Step::Continue(i),
        _ => Step::NotMatched,
    }
}

impl RequestLine {
    /// A request line before its first byte.
    pub const fn new() -> Self {
        Self {
            position: Position::Method { len: 0 },
        }
    }

    /// What the bytes so far say; [`PathMatch::Undecided`] until the path is complete.
    pub const fn decision(&self) -> PathMatch {
        match self.position {
            Position::Decided(decided) => decided,
            _ => PathMatch::Undecided,
        }
    }

    /// Follows the line through the next bytes read; `paths` must be the same at every
    /// call. Once decided, later bytes change nothing.
    pub fn feed(&mut self, paths: &[&str], bytes: &[u8]) -> PathMatch {
        for &b in bytes {
            self.position = match self.position {
                Position::Decided(decided) => return decided,
                _ if paths.is_empty() => Position::Decided(PathMatch::NotMatched),
                Position::Method { len: 0 } if matches!(b, b'\r' | b'\n') => continue,
                Position::Method { .. } if b == b' ' => Position::Path {
                    candidate: 0,
                    pos: 0,
                },
                Position::Method { len } if len < METHOD_MAX => Position::Method { len: len + 1 },
                Position::Method { .. } => Position::Decided(PathMatch::NotMatched),
                Position::Path { candidate, pos } => match step(paths, candidate, pos, b) {
                    Step::Continue(candidate) => Position::Path {
                        candidate,
                        pos: pos + 1,
                    },
                    Step::NotMatched => Position::Decided(PathMatch::NotMatched),
                    Step::Matched => Position::Decided(PathMatch::Matched),
                },
            };
        }
        self.decision()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The decision for the request line `line` against `paths`, fed `split` bytes at a
    /// time as reads would return them.
    fn decide(paths: &[&str], line: &[u8]) -> PathMatch {
        let decisions = [1, 2, 5, line.len().max(1)].map(|split| {
            let mut request_line = RequestLine::new();
            for piece in line.chunks(split) {
                request_line.feed(paths, piece);
            }
            request_line.decision()
        });
        assert!(
            decisions.iter().all(|d| *d == decisions[0]),
            "the split changed the decision: {decisions:?}"
        );
        decisions[0]
    }

    use PathMatch::{Matched, NotMatched, Undecided};

    #[test]
    fn exact_paths_match_without_their_query() {
        let paths = ["/events", "/ev", "/sse"];
        assert_eq!(decide(&paths, b"GET /events HTTP/1.1\r\n"), Matched);
        assert_eq!(decide(&paths, b"GET /events?since=3 HTTP/1.1"), Matched);
        assert_eq!(decide(&paths, b"GET /ev HTTP/1.1"), Matched);
        assert_eq!(decide(&paths, b"GET /sse HTTP/1.1"), Matched);
        assert_eq!(decide(&paths, b"\r\nGET /sse HTTP/1.1"), Matched);
        assert_eq!(decide(&paths, b"GET /eventsx HTTP/1.1"), NotMatched);
        assert_eq!(decide(&paths, b"GET /events/1 HTTP/1.1"), NotMatched);
        assert_eq!(decide(&paths, b"GET /e HTTP/1.1"), NotMatched);
        assert_eq!(decide(&paths, b"GET / HTTP/1.1"), NotMatched);
        assert_eq!(decide(&paths, b"GET /eve"), Undecided);
    }

    #[test]
    fn a_path_ending_in_a_slash_matches_below_it() {
        let paths = ["/ws/cam", "/ws/"];
        assert_eq!(decide(&paths, b"GET /ws/ HTTP/1.1"), Matched);
        assert_eq!(decide(&paths, b"GET /ws/other HTTP/1.1"), Matched);
        assert_eq!(decide(&paths, b"GET /ws/cam HTTP/1.1"), Matched);
        assert_eq!(decide(&paths, b"GET /ws HTTP/1.1"), NotMatched);
    }

    #[test]
    fn no_paths_and_odd_lines_match_nothing() {
        assert_eq!(decide(&[], b"GET /events HTTP/1.1"), NotMatched);
        assert_eq!(
            decide(&["/a"], b"AVERYLONGMETHODNAME /a HTTP/1.1"),
            NotMatched
        );
        assert_eq!(decide(&["/a"], b"GET http://h/a HTTP/1.1"), NotMatched);
    }
}
