//! The request-line matcher against a reference that sees the whole line at once:
//! random request lines built from the paths (and near misses), fed in random cuts.
use proptest::prelude::*;
use tcp_layers_http::request_line::{METHOD_MAX, PathMatch, RequestLine};

/// Bytes that end the path of a request target.
fn ends_path(b: u8) -> bool {
    matches!(b, b' ' | b'?' | b'#' | b'\r' | b'\n')
}

/// The decision for `stream` as a whole: what the matcher must answer after the last
/// byte, whatever the cuts.
fn reference(paths: &[&str], stream: &[u8]) -> PathMatch {
    if paths.is_empty() {
        return if stream.is_empty() {
            PathMatch::Undecided
        } else {
            PathMatch::NotMatched
        };
    }
    let line = &stream[stream
        .iter()
        .take_while(|b| matches!(b, b'\r' | b'\n'))
        .count()..];
    let Some(space) = line.iter().position(|&b| b == b' ') else {
        return if line.len() > usize::from(METHOD_MAX) {
            PathMatch::NotMatched
        } else {
            PathMatch::Undecided
        };
    };
    if space > usize::from(METHOD_MAX) {
        return PathMatch::NotMatched;
    }
    let target = &line[space + 1..];
    let end = target.iter().position(|&b| ends_path(b));
    let path = &target[..end.unwrap_or(target.len())];
    let below = |p: &[u8]| p.last() == Some(&b'/') && path.len() > p.len() && path.starts_with(p);
    if paths.iter().any(|p| below(p.as_bytes())) {
        return PathMatch::Matched;
    }
    match end {
        Some(_) if paths.iter().any(|p| p.as_bytes() == path) => PathMatch::Matched,
        Some(_) => PathMatch::NotMatched,
        None if paths.iter().any(|p| p.as_bytes().starts_with(path)) => PathMatch::Undecided,
        None => PathMatch::NotMatched,
    }
}

fn decide(paths: &[&str], stream: &[u8], cuts: &[usize]) -> PathMatch {
    let mut line = RequestLine::new();
    let mut start = 0;
    for &cut in cuts.iter().chain(core::iter::repeat(&usize::MAX)) {
        if start >= stream.len() {
            break;
        }
        let len = cut.clamp(1, stream.len() - start);
        line.feed(paths, &stream[start..start + len]);
        start += len;
    }
    line.decision()
}

const PATHS: [&str; 4] = ["/events", "/ev", "/ws/", "/ws/cam"];

fn request_line() -> impl Strategy<Value = Vec<u8>> {
    let method = prop::sample::select(vec!["GET", "POST", "", "OPTIONS", "AVERYLONGMETHODNAME"]);
    let path = prop::sample::select(vec![
        "/events",
        "/ev",
        "/eve",
        "/eventsx",
        "/ws/",
        "/ws",
        "/ws/cam",
        "/ws/x/y",
        "/",
        "*",
        "http://h/events",
    ]);
    let tail = prop::sample::select(vec![" HTTP/1.1\r\n", "?q=1 HTTP/1.1", "#f", "", "\r\n"]);
    let lead = prop::sample::select(vec!["", "\r\n", "\n\n"]);
    (lead, method, path, tail)
        .prop_map(|(lead, method, path, tail)| format!("{lead}{method} {path}{tail}").into_bytes())
}

proptest! {
    #[test]
    fn matches_the_reference(
        stream in request_line(),
        cut_len in 0usize..40,
        cuts in prop::collection::vec(1usize..6, 0..40),
        paths_used in 0usize..=4,
    ) {
        let stream = &stream[..cut_len.min(stream.len())];
        let paths = &PATHS[..paths_used];
        prop_assert_eq!(decide(paths, stream, &cuts), reference(paths, stream), "{:?}", String::from_utf8_lossy(stream));
    }

    #[test]
    fn any_bytes_decide_as_the_reference(
        stream in prop::collection::vec(prop::sample::select(b" /evntsw?\r\nGETx".to_vec()), 0..40),
        cuts in prop::collection::vec(1usize..6, 0..40),
    ) {
        prop_assert_eq!(decide(&PATHS, &stream, &cuts), reference(&PATHS, &stream), "{:?}", String::from_utf8_lossy(&stream));
    }
}
