//! Word-wise unmasking against the byte loop: every payload length 0..=4096 at every
//! offset 0..8 from a word-aligned address and every mask phase, and payloads cut into
//! random pieces that continue the key where the last piece stopped.
use proptest::prelude::*;
use tcp_layers_ws::mask::{Unmasker, unmask, unmask_bytewise};

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
const MAX_LEN: usize = 4096;
/// A guard byte on each side of the payload shows a write out of bounds.
const GUARD: u8 = 0xA5;

/// Bytes that differ from position to position, so a word out of place shows.
fn payload_byte(i: usize) -> u8 {
    (i.wrapping_mul(131) ^ (i >> 3)) as u8
}

#[test]
fn unmask_matches_the_byte_loop_for_every_length_offset_and_phase() {
    // Room for the longest payload at the largest offset, a guard byte on each side,
    // and the slack to find an address aligned for a u64 (the widest usize).
    let mut word = vec![0u8; MAX_LEN + 8 + 2 + 8];
    let mut byte = word.clone();
    let base = word.as_ptr().align_offset(8);
    let byte_base = byte.as_ptr().align_offset(8);
    let mut runs = 0u32;
    for offset in 0..8 {
        for phase in 0..4 {
            for len in 0..=MAX_LEN {
                let start = base + 8 + offset;
                let byte_start = byte_base + 8 + offset;
                word[start - 1] = GUARD;
                word[start + len] = GUARD;
                for i in 0..len {
                    word[start + i] = payload_byte(i);
                    byte[byte_start + i] = payload_byte(i);
                }
                let next = unmask(&mut word[start..start + len], KEY, phase);
                let next_ref = unmask_bytewise(&mut byte[byte_start..byte_start + len], KEY, phase);
                assert_eq!(next, next_ref, "len {len} offset {offset} phase {phase}");
                assert!(
                    word[start..start + len] == byte[byte_start..byte_start + len],
                    "len {len} offset {offset} phase {phase}"
                );
                assert_eq!((word[start - 1], word[start + len]), (GUARD, GUARD));
                runs += 1;
            }
        }
    }
    assert_eq!(runs, 8 * 4 * 4097);
}

#[test]
fn unmasking_twice_gives_the_payload_back() {
    let original: Vec<u8> = (0..1000).map(payload_byte).collect();
    let mut payload = original.clone();
    unmask(&mut payload, KEY, 3);
    assert_ne!(payload, original);
    unmask(&mut payload, KEY, 3);
    assert_eq!(payload, original);
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// A payload read in pieces of any sizes, each unmasked where it lies in the
    /// caller's buffer, equals the byte loop over the whole payload.
    #[test]
    fn pieces_continue_the_key(
        payload in proptest::collection::vec(any::<u8>(), 0..3000),
        key in any::<[u8; 4]>(),
        cuts in proptest::collection::vec(1usize..600, 0..12),
        offset in 0usize..8,
    ) {
        let mut expected = payload.clone();
        unmask_bytewise(&mut expected, key, 0);

        let mut unmasker = Unmasker::new(key);
        let mut got = Vec::new();
        let mut buf = vec![0u8; 4096];
        let mut rest = &payload[..];
        let mut cuts = cuts.into_iter();
        while !rest.is_empty() {
            let n = cuts.next().unwrap_or(rest.len()).min(rest.len());
            let piece = &mut buf[offset..offset + n];
            piece.copy_from_slice(&rest[..n]);
            unmasker.apply(piece);
            got.extend_from_slice(piece);
            rest = &rest[n..];
        }
        prop_assert_eq!(got, expected);
        prop_assert_eq!(unmasker.phase(), payload.len() % 4);
    }
}
