//! Logging macros shared by the layers: one call reaches `defmt`, `log`, both or
//! neither, as this crate's features say. The `cfg` is decided here, where the macros
//! are defined, so a layer crate needs no logging features of its own.
//!
//! Format strings use `core::fmt` syntax, arguments implement `Display`/`Debug`.
//!
//! With `defmt`, the line is formatted into a 160-byte stack buffer (longer lines are
//! cut and end in `...`) and logged from this crate as one `{=str}`: the defmt macros
//! expand to paths of the `defmt` crate, so a layer calling them directly would need
//! its own `defmt` dependency and feature. Close lines are rare (one per connection),
//! so the formatting on the device costs little.

#[doc(hidden)]
pub mod __private {
    #[cfg(feature = "log")]
    pub use log;
}

#[cfg(feature = "log")]
#[doc(hidden)]
#[macro_export]
macro_rules! __log_backend {
    ($lvl:ident, $($arg:tt)*) => { $crate::fmt::__private::log::$lvl!($($arg)*) };
}
#[cfg(not(feature = "log"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __log_backend {
    ($lvl:ident, $($arg:tt)*) => {{}};
}

#[cfg(feature = "defmt")]
#[doc(hidden)]
#[macro_export]
macro_rules! __defmt_backend {
    ($lvl:ident, $($arg:tt)*) => {
        $crate::fmt::__defmt_log($crate::fmt::Level::$lvl, ::core::format_args!($($arg)*))
    };
}

/// The level of a line, named as the macros name it.
#[doc(hidden)]
#[allow(non_camel_case_types)]
#[derive(Clone, Copy)]
pub enum Level {
    trace,
    debug,
    info,
    warn,
    error,
}

/// A line buffer that keeps what fits and marks a cut with `...`.
#[cfg(feature = "defmt")]
struct LineBuf {
    bytes: [u8; 160],
    len: usize,
    cut: bool,
}

#[cfg(feature = "defmt")]
impl core::fmt::Write for LineBuf {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let room = self.bytes.len() - self.len;
        let mut take = s.len().min(room);
        while !s.is_char_boundary(take) {
            take -= 1;
        }
        self.bytes[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        if take < s.len() {
            self.cut = true;
        }
        Ok(())
    }
}

#[cfg(feature = "defmt")]
#[doc(hidden)]
pub fn __defmt_log(level: Level, args: core::fmt::Arguments<'_>) {
    let mut line = LineBuf {
        bytes: [0; 160],
        len: 0,
        cut: false,
    };
    let _ = core::fmt::write(&mut line, args);
    if line.cut {
        line.len = line.len.min(line.bytes.len() - 3);
        while core::str::from_utf8(&line.bytes[..line.len]).is_err() {
            line.len -= 1;
        }
        line.bytes[line.len..line.len + 3].copy_from_slice(b"...");
        line.len += 3;
    }
    let text = core::str::from_utf8(&line.bytes[..line.len]).unwrap_or("<log line not utf-8>");
    match level {
        Level::trace => defmt::trace!("{=str}", text),
        Level::debug => defmt::debug!("{=str}", text),
        Level::info => defmt::info!("{=str}", text),
        Level::warn => defmt::warn!("{=str}", text),
        Level::error => defmt::error!("{=str}", text),
    }
}
#[cfg(not(feature = "defmt"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __defmt_backend {
    ($lvl:ident, $($arg:tt)*) => {{}};
}

/// Logs through every enabled backend at the given level (`trace`, `debug`, `info`,
/// `warn`, `error`). With no backend the arguments are still type-checked, never
/// evaluated.
#[macro_export]
macro_rules! emit_log {
    ($lvl:ident, $($arg:tt)*) => {{
        $crate::__log_backend!($lvl, $($arg)*);
        $crate::__defmt_backend!($lvl, $($arg)*);
        if false {
            let _ = ::core::format_args!($($arg)*);
        }
    }};
}
