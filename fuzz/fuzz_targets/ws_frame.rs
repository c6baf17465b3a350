//! WebSocket frame headers and unmasking on untrusted bytes: the header parser on every
//! prefix of the input (what a reader sees as bytes trickle in), and the word-wise
//! unmasking at a fuzzer-chosen address offset, mask phase and cut into pieces, checked
//! against the byte loop.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcp_layers_ws::frame::{MAX_HEADER_LEN, Parse, parse_header};
use tcp_layers_ws::mask::{Unmasker, unmask, unmask_bytewise};

fuzz_target!(|input: (u8, u8, [u8; 4], Vec<u8>, &[u8])| {
    let (phase, offset, key, cuts, bytes) = input;

    // The header: the whole input, then every shorter prefix must agree with it.
    let whole = parse_header(bytes);
    if let Ok(Parse::Complete { len, .. }) = whole {
        assert!((2..=MAX_HEADER_LEN).contains(&len) && len <= bytes.len());
    }
    for k in 0..bytes.len().min(MAX_HEADER_LEN) {
        match parse_header(&bytes[..k]) {
            Ok(Parse::Incomplete { needed }) => {
                assert!(needed >= 1 && k + needed <= MAX_HEADER_LEN);
                // Reading exactly `needed` more bytes never reads past the header.
                if let Ok(Parse::Complete { len, .. }) = whole {
                    assert!(k + needed <= len);
                }
            }
            Ok(Parse::Complete { len, .. }) => {
                assert!(len <= k);
                assert_eq!(parse_header(bytes), parse_header(&bytes[..k]));
            }
            // An error is found as soon as the bytes that show it are there, and stays.
            Err(e) => assert_eq!(whole, Err(e)),
        }
    }

    // Unmasking: word-wise at `offset` from a word-aligned address, from `phase`.
    let offset = usize::from(offset % 8);
    let phase = usize::from(phase);
    let mut buf = vec![0u8; bytes.len() + 16];
    let at = buf.as_ptr().align_offset(8) + offset;
    let word = &mut buf[at..at + bytes.len()];
    word.copy_from_slice(bytes);
    let mut reference = bytes.to_vec();
    let next = unmask(word, key, phase);
    assert_eq!(next, unmask_bytewise(&mut reference, key, phase));
    assert_eq!(word, &reference[..]);

    // In pieces of the fuzzer's sizes (empty ones too), the rest in one: each piece
    // continues the key where the last one stopped.
    let mut pieces = bytes.to_vec();
    let mut unmasker = Unmasker::new(key);
    let mut start = 0;
    for cut in cuts {
        let n = usize::from(cut).min(pieces.len() - start);
        unmasker.apply(&mut pieces[start..start + n]);
        start += n;
    }
    unmasker.apply(&mut pieces[start..]);
    let mut whole_ref = bytes.to_vec();
    unmask_bytewise(&mut whole_ref, key, 0);
    assert_eq!(pieces, whole_ref);
    assert_eq!(unmasker.phase(), bytes.len() % 4);
});
