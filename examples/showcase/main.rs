//! The showcase: what the layers change for an embassy-net web server, side by side
//! with the same server without them and with picoserve, in one table.
//!
//! Every scenario runs on real embassy-net stacks joined by the simulated Wi-Fi link of
//! `tcp-layers-sim` (20 ms round trip, 10 Mbit/s, virtual time), against a device with
//! 8 sockets (the ESP32-S3 budget), with four servers:
//!
//! - `raw`: the hand-written accept loop (one socket per slot) and raw HTTP responder;
//! - `layered`: the same, every connection wrapped in the default layer stack;
//! - `picoserve`: picoserve 0.20, default `Config` with keep-alive, on plain sockets;
//! - `picoserve_layered`: the same picoserve on layered sockets (the picoserve adapter).
//!
//! ```text
//! cargo run --release --example showcase                       # the table
//! cargo run --release --example showcase -- --json             # JSON lines
//! cargo run --release --example showcase -- --scenario slowloris
//! cargo run --release --example showcase -- --list             # scenario ids
//! cargo run --release --example showcase -- --serve-frames raw  # for callgrind.sh
//! cargo run --release --example showcase -- --unmask           # WebSocket unmask MiB/s
//! ```
//!
//! `--unmask` prints the WebSocket unmask throughput of the word-wise and the byte-wise
//! loop on 4 KiB payloads and their ratio: host CPU speed, so not in the table.
//!
//! A JSON line is `{"scenario":"<id>","variant":"<id>","metric":"<id>","value":<number
//! or null>,"unit":"<unit>"}`; `null` is a measurement that found nothing (a failed
//! page load, a slot still held after 120 s). A figure that does not apply to a server
//! (`n/a` in the table) has no line.
#![recursion_limit = "256"]

mod probes;
mod report;
mod scenarios;
#[cfg(test)]
mod smoke;
mod unmask;
mod variants;

use std::process::ExitCode;
use std::time::Instant;

use report::Figure;
use variants::Variant;

/// How the figures are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Output {
    /// One table for a person.
    Table,
    /// One JSON object per figure and line, for a program.
    JsonLines,
}

struct Args {
    output: Output,
    only: Option<&'static scenarios::Scenario>,
    list: bool,
    /// `--serve-frames <variant>`: one metered run of `jpeg_frames` with that server
    /// alone (what `callgrind.sh` counts the instructions of).
    serve_frames: Option<Variant>,
    /// `--unmask`: the WebSocket unmask throughput, word-wise against byte-wise.
    unmask: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        output: Output::Table,
        only: None,
        list: false,
        serve_frames: None,
        unmask: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--json" => args.output = Output::JsonLines,
            "--list" => args.list = true,
            "--unmask" => args.unmask = true,
            "--scenario" => {
                let id = it.next().ok_or("--scenario needs an id (see --list)")?;
                args.only = Some(
                    scenarios::find(&id)
                        .ok_or_else(|| format!("no scenario {id:?} (see --list)"))?,
                );
            }
            "--serve-frames" => {
                let id = it.next().ok_or("--serve-frames needs a variant")?;
                args.serve_frames = Some(
                    Variant::ALL
                        .into_iter()
                        .find(|v| v.id() == id)
                        .ok_or_else(|| format!("no variant {id:?}"))?,
                );
            }
            "-h" | "--help" => {
                return Err(
                    "usage: showcase [--json] [--scenario <id>] [--list] [--serve-frames <variant>] \
                     [--unmask]"
                        .to_string(),
                );
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if args.list {
        for s in &scenarios::SCENARIOS {
            println!("{:<22} {}", s.id, s.summary);
        }
        return ExitCode::SUCCESS;
    }
    if args.unmask {
        unmask::run(args.output == Output::JsonLines);
        return ExitCode::SUCCESS;
    }
    probes::install_logger();
    if let Some(variant) = args.serve_frames {
        // One run, the server's polls metered: its figure, or a failure if a frame was
        // missing (the instruction count of such a run means nothing).
        let figure = scenarios::serve_frames(variant);
        println!("{}", figure.json());
        return match figure.value {
            Some(_) => ExitCode::SUCCESS,
            None => ExitCode::FAILURE,
        };
    }
    report::set_progress(true);

    let started = Instant::now();
    let chosen: Vec<&scenarios::Scenario> = match args.only {
        Some(s) => vec![s],
        None => scenarios::SCENARIOS.iter().collect(),
    };
    let mut figures: Vec<Figure> = Vec::new();
    for (i, scenario) in chosen.iter().enumerate() {
        report::progress(&format!("[{}/{}] {}", i + 1, chosen.len(), scenario.id));
        let new = scenario.run(&Variant::ALL);
        if args.output == Output::JsonLines {
            for f in &new {
                println!("{}", f.json());
            }
        }
        figures.extend(new);
    }
    report::progress_done();

    if args.output == Output::Table {
        println!(
            "tcp-layers showcase: simulated Wi-Fi link (20 ms RTT, 10 Mbit/s), {} server \
             sockets (ESP32-S3 budget), virtual time",
            variants::SOCKETS
        );
        println!();
        print!("{}", report::table(&figures, &Variant::ALL));
        println!();
        println!(
            "n/a: the figure does not apply to that server. Flash cost of the layers \
             (text_bytes_layers): see the firmware CI step, examples/esp32/ci.sh."
        );
        println!(
            "ram_bytes_per_conn is measured on this host (64-bit pointers); on a 32-bit \
             ESP32 each pointer is 4 bytes smaller."
        );
        println!(
            "whole run: {:.1} s wall time",
            started.elapsed().as_secs_f64()
        );
    }
    ExitCode::SUCCESS
}
