//! Logging macros: a line goes to `defmt` (feature `defmt`), to `log` (feature
//! `log`), to both or to neither.
//!
//! The macros expand in this crate, where `defmt` is a dependency of its own: with
//! `defmt`, the format string is interned at build time and the arguments are sent as
//! they are (deferred formatting); nothing is formatted on the device. Format strings
//! use `{}` only, which both crates read, and every argument implements `Display` (for
//! `log`) and `defmt::Format` (for `defmt`): integers, `&str`, `bool`. With neither
//! feature the arguments are type-checked and never evaluated.
#![macro_use]
#![allow(unused_macros)]

macro_rules! __log_line {
    ($level:ident, $s:literal $(, $x:expr)* $(,)?) => {{
        #[cfg(feature = "log")]
        ::log::$level!($s $(, $x)*);
        #[cfg(feature = "defmt")]
        ::defmt::$level!($s $(, $x)*);
        #[cfg(not(any(feature = "log", feature = "defmt")))]
        if false {
            let _ = ($(&$x),*);
        }
    }};
}

macro_rules! trace {
    ($($t:tt)*) => { __log_line!(trace, $($t)*) };
}

macro_rules! debug {
    ($($t:tt)*) => { __log_line!(debug, $($t)*) };
}

macro_rules! info {
    ($($t:tt)*) => { __log_line!(info, $($t)*) };
}

macro_rules! warn {
    ($($t:tt)*) => { __log_line!(warn, $($t)*) };
}

macro_rules! error {
    ($($t:tt)*) => { __log_line!(error, $($t)*) };
}
