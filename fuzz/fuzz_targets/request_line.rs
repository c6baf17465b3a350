//! The request-line path matcher on untrusted bytes and paths, cut into reads of
//! fuzzer-chosen sizes: it must never panic, and the cuts must not change its decision
//! (the bytes fed at once decide the same). The decision itself is checked against a
//! reference by the property test beside the crate (`layers/http/tests/request_line_prop.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcp_layers_http::request_line::{PathMatch, RequestLine};

fuzz_target!(|input: (Vec<String>, Vec<u8>, &[u8])| {
    let (paths, cuts, stream) = input;
    let paths: Vec<&str> = paths.iter().map(String::as_str).take(8).collect();

    let mut whole = RequestLine::new();
    let at_once = whole.feed(&paths, stream);

    let mut line = RequestLine::new();
    let mut start = 0;
    let mut cuts = cuts.iter().map(|&c| usize::from(c));
    let mut decided = PathMatch::Undecided;
    while start < stream.len() {
        let len = cuts.next().unwrap_or(stream.len()).clamp(1, stream.len() - start);
        let got = line.feed(&paths, &stream[start..start + len]);
        if decided != PathMatch::Undecided {
            assert_eq!(got, decided, "a decision changed");
        }
        decided = got;
        start += len;
    }
    assert_eq!(line.decision(), at_once, "the cuts changed the decision");
});
