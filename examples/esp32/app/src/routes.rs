//! The routes: the camera page, its frames, an event stream and the counters.
use embassy_time::{Duration, Timer};
use picoserve::{
    Router,
    io::Write,
    response::{
        Content, Response,
        sse::{EventSource, EventStream, EventWriter},
    },
    routing::{PathRouter, get},
};

use crate::stats;

/// The page: shows frames as fast as the device sends them, the counters from the
/// event stream, and a spinner only while a frame is late.
const PAGE: &str = include_str!("page.html");

/// A 640x480 test card rendered by build.rs, 100-160 kB like a real camera frame.
static FRAME: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/frame.jpg"));

mod frame_layout {
    include!(concat!(env!("OUT_DIR"), "/frame.rs"));
}

/// How often `/events` sends the counters. Once a second is what a person reads.
const EVENT_PERIOD: Duration = Duration::from_secs(1);

/// The router every HTTP task serves. Built per task: it holds only zero-sized
/// handlers, so a copy costs nothing and no `static` of an unnameable type is needed.
pub fn router() -> Router<impl PathRouter> {
    Router::new()
        .route(
            "/",
            get(|| async {
                stats::page();
                Response::ok(PAGE).with_content_type("text/html; charset=utf-8")
            }),
        )
        .route(
            "/frame.jpg",
            get(|| async {
                let frame = Frame::next();
                Response::ok(frame).with_header("Cache-Control", "no-store")
            }),
        )
        .route(
            "/events",
            get(|| async {
                stats::stream();
                EventStream(Counters)
            }),
        )
        .route(
            "/stats",
            get(|| async {
                Response::ok(StatsJson(stats::snapshot())).with_header("Cache-Control", "no-store")
            }),
        )
}

/// One camera frame: the test card with its luminance DC quantiser changed per frame,
/// so consecutive frames differ visibly (contrast pulses) without re-encoding.
struct Frame {
    dc_quant: u8,
}

impl Frame {
    fn next() -> Self {
        let number = stats::frame(FRAME.len());
        let base = FRAME[frame_layout::DC_QUANT_OFFSET];
        // A triangle wave over 16 frames: the quantiser goes from base to 2*base and
        // back. Any value from 1 to 255 is a valid table entry.
        let step = (number % 16) as u8;
        let wave = if step < 8 { step } else { 16 - step };
        let dc_quant = base.saturating_add(base.saturating_mul(wave) / 8).max(1);
        Self { dc_quant }
    }
}

impl Content for Frame {
    fn content_type(&self) -> &'static str {
        "image/jpeg"
    }

    fn content_length(&self) -> usize {
        FRAME.len()
    }

    async fn write_content<W: Write>(self, mut writer: W) -> Result<(), W::Error> {
        let (head, tail) = FRAME.split_at(frame_layout::DC_QUANT_OFFSET);
        writer.write_all(head).await?;
        writer.write_all(&[self.dc_quant]).await?;
        // One call for the rest of the frame: the chunked layer decides how it is cut.
        writer.write_all(&tail[1..]).await
    }
}

/// `/stats`: the counters as JSON, read once so the length and the body agree.
struct StatsJson(stats::Snapshot);

impl Content for StatsJson {
    fn content_type(&self) -> &'static str {
        "application/json"
    }

    fn content_length(&self) -> usize {
        let mut counter = LengthCounter(0);
        let _ = core::fmt::write(&mut counter, format_args!("{}", self.0));
        counter.0
    }

    async fn write_content<W: Write>(self, mut writer: W) -> Result<(), W::Error> {
        writer.write_fmt(format_args!("{}", self.0)).await
    }
}

struct LengthCounter(usize);

impl core::fmt::Write for LengthCounter {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.0 += s.len();
        Ok(())
    }
}

/// `/events`: the counters once a second until the browser goes away.
struct Counters;

impl EventSource for Counters {
    async fn write_events<W: Write>(self, mut writer: EventWriter<'_, W>) -> Result<(), W::Error> {
        loop {
            let snapshot = stats::snapshot();
            writer
                .write_event("stats", format_args!("{snapshot}"))
                .await?;
            writer.flush().await?;
            Timer::after(EVENT_PERIOD).await;
        }
    }
}
