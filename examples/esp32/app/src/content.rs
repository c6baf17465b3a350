//! What the app serves, for every server that serves it: the page, the camera frames,
//! the counters as JSON and as Server-Sent Events.
//!
//! The picoserve routes ([`crate::routes`]) send these, and so do the hand-written and
//! the edge-http servers (feature `servers`), so all three answer with the same bytes
//! and count the same way: one `include_bytes!` of the frame, one JSON writer (the
//! `Display` of [`stats::Snapshot`]).
use embassy_time::Duration;

use crate::stats;

/// The page: shows frames as fast as the device sends them, the counters from the
/// event stream, and a spinner only while a frame is late.
pub(crate) const PAGE: &str = include_str!("page.html");

/// A 640x480 test card rendered by build.rs, 100-160 kB like a real camera frame.
static FRAME: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/frame.jpg"));

mod frame_layout {
    include!(concat!(env!("OUT_DIR"), "/frame.rs"));
}

/// How often `/events` sends the counters. Once a second is what a person reads.
pub(crate) const EVENT_PERIOD: Duration = Duration::from_secs(1);

/// One camera frame: the test card with its luminance DC quantiser changed per frame,
/// so consecutive frames differ visibly (contrast pulses) without re-encoding.
pub(crate) struct Frame {
    dc_quant: u8,
}

impl Frame {
    /// The next frame; counts it (and its bytes) as sent.
    pub(crate) fn next() -> Self {
        let number = stats::frame(FRAME.len());
        let base = FRAME[frame_layout::DC_QUANT_OFFSET];
        // A triangle wave over 16 frames: the quantiser goes from base to 2*base and
        // back. Any value from 1 to 255 is a valid table entry.
        let step = (number % 16) as u8;
        let wave = if step < 8 { step } else { 16 - step };
        let dc_quant = base.saturating_add(base.saturating_mul(wave) / 8).max(1);
        Self { dc_quant }
    }

    /// The length of every frame, bytes.
    pub(crate) fn len(&self) -> usize {
        FRAME.len()
    }

    /// The frame as three pieces to write in order: the bytes before the quantiser,
    /// the quantiser, the rest. The rest goes out in one call: the chunked layer
    /// decides how it is cut.
    pub(crate) fn pieces(&self) -> [&[u8]; 3] {
        let (head, tail) = FRAME.split_at(frame_layout::DC_QUANT_OFFSET);
        [head, core::slice::from_ref(&self.dc_quant), &tail[1..]]
    }
}

#[cfg(feature = "servers")]
pub(crate) use servers::*;

/// What the servers other than picoserve need beyond the bytes: the route table, the
/// response headers, and text formatted into a fixed buffer (no allocation).
#[cfg(feature = "servers")]
mod servers {
    use core::fmt;

    use crate::stats;

    /// What a request is for: the table of the picoserve router, for the servers that
    /// route by hand.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(crate) enum Route {
        /// `GET /`: [`super::PAGE`].
        Page,
        /// `GET /frame.jpg`: the next [`super::Frame`].
        Frame,
        /// `GET /events`: the counters once a second as Server-Sent Events.
        Events,
        /// `GET /stats`: the counters as JSON.
        Stats,
    }

    impl Route {
        /// The route of a request target (`/path?query`), matched as picoserve matches
        /// it: the path exactly, the query ignored. `None` is a 404.
        pub(crate) fn find(target: &str) -> Option<Self> {
            match target.split(['?', '#']).next() {
                Some("/") => Some(Self::Page),
                Some("/frame.jpg") => Some(Self::Frame),
                Some("/events") => Some(Self::Events),
                Some("/stats") => Some(Self::Stats),
                _ => None,
            }
        }
    }

    /// A response header: name and value.
    pub(crate) type Header = (&'static str, &'static str);

    /// The headers of `GET /` (besides the length).
    pub(crate) const PAGE_HEADERS: [Header; 1] = [("Content-Type", "text/html; charset=utf-8")];
    /// The headers of `GET /frame.jpg` (besides the length).
    pub(crate) const FRAME_HEADERS: [Header; 2] = [
        ("Content-Type", "image/jpeg"),
        ("Cache-Control", "no-store"),
    ];
    /// The headers of `GET /stats` (besides the length).
    pub(crate) const STATS_HEADERS: [Header; 2] = [
        ("Content-Type", "application/json"),
        ("Cache-Control", "no-store"),
    ];
    /// The headers of an event stream, as picoserve's `EventStream` sends them. The body
    /// has no length: it ends when the connection does.
    pub(crate) const EVENTS_HEADERS: [Header; 2] = [
        ("Cache-Control", "no-cache"),
        ("Content-Type", "text/event-stream"),
    ];
    /// The headers of the answer to a stream request the stream budget refuses, then
    /// `Connection: close` (each server adds it in its own way) and no length: the
    /// answer tcp-layers' picoserve adapter gives, byte for byte.
    pub(crate) const EVENTS_REFUSED_HEADERS: [Header; 2] = [
        ("Content-Type", "text/event-stream"),
        ("Cache-Control", "no-store"),
    ];
    /// The body of that answer: a `200` event stream that only says when to come back,
    /// then closes. A browser's `EventSource` reconnects after it (5 s later), while
    /// after a `503` it gives up for good.
    pub(crate) const EVENTS_REFUSED_BODY: &str = "retry: 5000\n\n";
    /// The headers of a `404` or `405` (besides the length).
    pub(crate) const TEXT_HEADERS: [Header; 1] = [("Content-Type", "text/plain; charset=utf-8")];

    /// Bytes of a counter snapshot as JSON or as one event. The JSON is 388 bytes with
    /// every counter at 0 and grows by at most 9 digits for each of its 22 `u32`
    /// counters and 19 for each of its 2 `u64`s: at most 624 bytes, 643 as an event.
    pub(crate) const SNAPSHOT_BYTES: usize = 1024;

    /// Text formatted into `N` bytes on the stack: a response head, a snapshot.
    pub(crate) struct Text<const N: usize> {
        bytes: [u8; N],
        len: usize,
    }

    impl<const N: usize> Text<N> {
        /// `args` formatted; `Err` if it does not fit in `N` bytes.
        pub(crate) fn format(args: fmt::Arguments<'_>) -> Result<Self, fmt::Error> {
            let mut text = Self {
                bytes: [0; N],
                len: 0,
            };
            fmt::Write::write_fmt(&mut text, args)?;
            Ok(text)
        }

        pub(crate) fn as_bytes(&self) -> &[u8] {
            &self.bytes[..self.len]
        }

        pub(crate) fn as_str(&self) -> &str {
            // Only `write_str` fills the buffer, with whole `&str`s.
            core::str::from_utf8(self.as_bytes()).unwrap_or_default()
        }
    }

    impl<const N: usize> fmt::Write for Text<N> {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            let end = self.len + s.len();
            self.bytes
                .get_mut(self.len..end)
                .ok_or(fmt::Error)?
                .copy_from_slice(s.as_bytes());
            self.len = end;
            Ok(())
        }
    }

    /// The counters now, as the JSON of `/stats`.
    pub(crate) fn stats_json() -> Result<Text<SNAPSHOT_BYTES>, fmt::Error> {
        Text::format(format_args!("{}", stats::snapshot()))
    }

    /// The counters now, as one event of `/events`, byte for byte as picoserve's
    /// `EventWriter::write_event("stats", ..)` writes it (no space after the colons; the
    /// JSON has no line break, so it is one `data:` line).
    pub(crate) fn stats_event() -> Result<Text<SNAPSHOT_BYTES>, fmt::Error> {
        Text::format(format_args!("event:stats\ndata:{}\n\n", stats::snapshot()))
    }
}
