//! The routes: the camera page, its frames, an event stream and the counters.
use embassy_time::Timer;
use picoserve::{
    Router,
    io::Write,
    response::{
        Content, Response,
        sse::{EventSource, EventStream, EventWriter},
    },
    routing::{PathRouter, get},
};

use crate::content::{EVENT_PERIOD, Frame, PAGE};
use crate::stats;

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

impl Content for Frame {
    fn content_type(&self) -> &'static str {
        "image/jpeg"
    }

    fn content_length(&self) -> usize {
        self.len()
    }

    async fn write_content<W: Write>(self, mut writer: W) -> Result<(), W::Error> {
        for piece in self.pieces() {
            writer.write_all(piece).await?;
        }
        Ok(())
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
