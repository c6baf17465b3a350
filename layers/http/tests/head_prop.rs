//! The head scanner against a reference that sees the whole stream at once: random
//! bytes (rich in `\r` and `\n`), cut into random reads, with a random `max_head`.
use proptest::prelude::*;
use tcp_layers_http::head::{HeadScanner, Scan};

/// What the scanner must answer for each read: the stream's first `\r\n\r\n` ends the
/// head if it ends within `max_head` bytes; otherwise the read that brings the
/// `max_head`-th byte is `TooLarge`; every read before the answer is `Partial`.
fn reference(chunks: &[Vec<u8>], max_head: u16) -> Vec<Scan> {
    let stream: Vec<u8> = chunks.concat();
    let end = stream
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
        .filter(|&e| e <= usize::from(max_head));
    let mut answers = Vec::new();
    let mut start = 0;
    for chunk in chunks {
        let stop = start + chunk.len();
        let answer = match end {
            Some(e) if e <= stop && e > start => Scan::Complete { end: e - start },
            None if !chunk.is_empty() && stop >= usize::from(max_head) => Scan::TooLarge,
            _ => Scan::Partial,
        };
        answers.push(answer);
        if answer != Scan::Partial {
            break;
        }
        start = stop;
    }
    answers
}

fn scan(chunks: &[Vec<u8>], max_head: u16) -> Vec<Scan> {
    let mut scanner = HeadScanner::new();
    let mut answers = Vec::new();
    for chunk in chunks {
        let answer = scanner.feed(chunk, max_head);
        answers.push(answer);
        if answer != Scan::Partial {
            break;
        }
    }
    answers
}

/// Bytes where the terminator's characters are common, so heads end at random places.
fn head_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        3 => Just(b'\r'),
        3 => Just(b'\n'),
        1 => Just(b'a'),
        1 => any::<u8>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn scanner_matches_reference(
        chunks in prop::collection::vec(prop::collection::vec(head_byte(), 0..24), 0..24),
        max_head in prop_oneof![Just(4096u16), 0u16..300],
    ) {
        prop_assert_eq!(scan(&chunks, max_head), reference(&chunks, max_head));
    }

    #[test]
    fn a_real_head_is_found_whatever_the_cuts(
        cuts in prop::collection::vec(0usize..200, 0..8),
        pad in 0usize..100,
    ) {
        let mut head = b"GET /r/1 HTTP/1.1\r\nHost: 10.0.0.1\r\nX-Pad: ".to_vec();
        head.extend(std::iter::repeat_n(b'x', pad));
        head.extend_from_slice(b"\r\n\r\nBODY");
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % head.len()).collect();
        cuts.sort_unstable();
        let mut chunks = Vec::new();
        let mut start = 0;
        for cut in cuts.into_iter().chain([head.len()]) {
            chunks.push(head[start..cut].to_vec());
            start = cut;
        }
        let answers = scan(&chunks, 4096);
        let consumed: usize = chunks[..answers.len() - 1].iter().map(Vec::len).sum();
        match answers.last() {
            Some(Scan::Complete { end }) => prop_assert_eq!(consumed + end, head.len() - 4),
            other => prop_assert!(false, "no terminator found: {:?}", other),
        }
    }
}

#[test]
fn terminator_split_at_every_position_of_a_long_stream() {
    // Every cut of a stream with two heads and stray CR/LF: the first terminator wins.
    let stream = b"POST /x HTTP/1.1\r\nA: \r\r\n\rb\n\r\nC: d\r\n\r\nGET / HTTP/1.1\r\n\r\n";
    let want = reference(&[stream.to_vec()], 4096);
    let mut checked = 0;
    for cut in 0..=stream.len() {
        let chunks = [stream[..cut].to_vec(), stream[cut..].to_vec()];
        let got = scan(&chunks, 4096);
        let total = |answers: &[Scan], chunks: &[Vec<u8>]| match answers.last() {
            Some(Scan::Complete { end }) => Some(
                chunks[..answers.len() - 1]
                    .iter()
                    .map(Vec::len)
                    .sum::<usize>()
                    + end,
            ),
            _ => None,
        };
        assert_eq!(
            total(&got, &chunks),
            total(&want, &[stream.to_vec()]),
            "cut {cut}"
        );
        checked += 1;
    }
    println!(
        "{checked} cuts checked, head ends at byte {:?}",
        total_end(&want)
    );
}

fn total_end(answers: &[Scan]) -> Option<usize> {
    match answers.last() {
        Some(Scan::Complete { end }) => Some(*end),
        _ => None,
    }
}
