//! `--unmask`: the throughput of WebSocket unmasking on this host, word-wise
//! (`tcp_layers_ws::mask::unmask`) against the byte loop every embedded Rust server
//! compared uses (`unmask_bytewise`), on 4 KiB payloads, in one run.
//!
//! A speed figure of the host CPU: it differs from machine to machine and run to run,
//! so it is printed apart from the table (whose deterministic rows `readme.sh --check`
//! compares) and only when asked for. Each loop unmasks the same 4 KiB buffer over and
//! over; `black_box` keeps the compiler from seeing that the buffer is unused, not from
//! optimizing the loop itself. The best of several rounds is kept (the least disturbed
//! by other work on the machine).
use std::hint::black_box;
use std::time::{Duration, Instant};

use tcp_layers_ws::mask::{unmask, unmask_bytewise};

/// The payload size measured: a 4 KiB message (a camera control frame, a chunk of a
/// file upload).
const PAYLOAD: usize = 4096;
/// Payloads per round (64 MiB of payload per round).
const PER_ROUND: usize = 16 * 1024;
/// Rounds per loop; the best is kept.
const ROUNDS: usize = 5;

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// picoserve 0.20.1's loop (`src/response/ws.rs`, `read_frame`), as it is there: the
/// key cycled byte by byte beside the payload.
fn unmask_zip_cycle(payload: &mut [u8], key: [u8; 4], phase: usize) -> usize {
    for (data, mask) in payload.iter_mut().zip(key.iter().cycle().skip(phase & 3)) {
        *data ^= mask;
    }
    (phase + payload.len()) & 3
}

/// MiB/s of the best round of `f` over a 4 KiB buffer.
fn throughput(f: fn(&mut [u8], [u8; 4], usize) -> usize) -> f64 {
    let mut buf = vec![0x5Au8; PAYLOAD];
    let mut best = Duration::MAX;
    for _ in 0..ROUNDS {
        let start = Instant::now();
        for i in 0..PER_ROUND {
            let phase = f(black_box(&mut buf[..]), black_box(KEY), i & 3);
            black_box(phase);
        }
        best = best.min(start.elapsed());
    }
    let mib = (PAYLOAD * PER_ROUND) as f64 / (1024.0 * 1024.0);
    mib / best.as_secs_f64()
}

/// One JSON line in the showcase's shape.
fn json(variant: &str, metric: &str, value: f64, unit: &str) -> String {
    format!(
        "{{\"scenario\":\"ws_unmask_4k\",\"variant\":\"{variant}\",\"metric\":\"{metric}\",\
         \"value\":{value:.1},\"unit\":\"{unit}\"}}"
    )
}

/// Measures both loops and prints the figures: JSON lines, or a short report.
pub fn run(json_lines: bool) {
    // Check the two agree before timing them.
    let mut a: Vec<u8> = (0..PAYLOAD).map(|i| i as u8).collect();
    let mut b = a.clone();
    unmask(&mut a, KEY, 1);
    unmask_bytewise(&mut b, KEY, 1);
    assert_eq!(a, b, "word-wise and byte-wise unmasking disagree");

    let mut c = b.clone();
    unmask_bytewise(&mut b, KEY, 1);
    unmask_zip_cycle(&mut c, KEY, 1);
    assert_eq!(b, c, "the two byte loops disagree");

    let byte_wise = throughput(unmask_bytewise);
    let zip_cycle = throughput(unmask_zip_cycle);
    let word_wise = throughput(unmask);
    let ratio = word_wise / byte_wise;
    let ratio_zip = word_wise / zip_cycle;
    if json_lines {
        println!(
            "{}",
            json("word_wise", "unmask_throughput", word_wise, "MiB/s")
        );
        println!(
            "{}",
            json("byte_wise", "unmask_throughput", byte_wise, "MiB/s")
        );
        println!(
            "{}",
            json(
                "byte_wise_zip_cycle",
                "unmask_throughput",
                zip_cycle,
                "MiB/s"
            )
        );
        println!(
            "{}",
            json("word_wise", "speedup_over_byte_wise", ratio, "ratio")
        );
        println!(
            "{}",
            json(
                "word_wise",
                "speedup_over_byte_wise_zip_cycle",
                ratio_zip,
                "ratio"
            )
        );
    } else {
        println!(
            "WebSocket unmasking, 4 KiB payloads, this host ({} release build, {}-bit words):",
            std::env::consts::ARCH,
            usize::BITS
        );
        println!("  word-wise (tcp-layers-ws mask::unmask)        {word_wise:>9.1} MiB/s");
        println!(
            "  byte-wise (mask::unmask_bytewise)             {byte_wise:>9.1} MiB/s   word-wise {ratio:.1}x (goal >= 4x)"
        );
        println!(
            "  byte-wise, picoserve 0.20's zip(cycle()) loop {zip_cycle:>9.1} MiB/s   word-wise {ratio_zip:.1}x"
        );
    }
}
