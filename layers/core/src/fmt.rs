//! Logging macros shared by the layers: one call reaches `defmt`, `log`, both or
//! neither, as this crate's features say. The `cfg` is decided here, where the macros
//! are defined, so a layer crate needs no logging features of its own.
//!
//! Format strings must suit both backends: `{}` and `{:?}` only, with arguments that
//! implement `Display`/`Debug` and `defmt::Format`.

#[doc(hidden)]
pub mod __private {
    #[cfg(feature = "defmt")]
    pub use defmt;
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
    ($lvl:ident, $($arg:tt)*) => { $crate::fmt::__private::defmt::$lvl!($($arg)*) };
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
