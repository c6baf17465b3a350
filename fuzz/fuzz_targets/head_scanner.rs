//! The HTTP head scanner on untrusted bytes, cut into reads of fuzzer-chosen sizes,
//! checked against a reference that sees the whole stream at once.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcp_layers_http::head::{HeadScanner, MAX_HEAD_LIMIT, Scan};

fuzz_target!(|input: (u16, Vec<u8>, &[u8])| {
    let (max_head, cuts, stream) = input;
    // The scanner counts to MAX_HEAD_LIMIT at most.
    let limit = max_head.min(MAX_HEAD_LIMIT);

    // The head ends after the first "\r\n\r\n" if that lies within max_head bytes.
    let head_end = stream
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
        .filter(|&end| end <= usize::from(limit));

    let mut scanner = HeadScanner::new();
    let mut start = 0;
    let mut cuts = cuts.iter().map(|&c| usize::from(c));
    loop {
        let len = cuts.next().unwrap_or(stream.len() - start).min(stream.len() - start);
        let chunk = &stream[start..start + len];
        let stop = start + len;
        let got = scanner.feed(chunk, max_head);
        assert!(scanner.len() <= limit, "scanner counted past max_head");
        let want = match head_end {
            Some(end) if end > start && end <= stop => Scan::Complete { end: end - start },
            None if len > 0 && stop >= usize::from(limit) => Scan::TooLarge,
            _ => Scan::Partial,
        };
        assert_eq!(got, want, "read {start}..{stop} of {} bytes, max_head {max_head}", stream.len());
        if got != Scan::Partial || stop == stream.len() {
            break;
        }
        start = stop;
    }
});
