#![doc = include_str!("../README.md")]
#![no_std]
#![deny(missing_docs)]
#![deny(unsafe_code)]

use core::cell::Cell;

use critical_section::Mutex;
use tcp_layers_core::event::{self, Event};
use tcp_layers_core::{Connection, Layer, delegate_connection, delegate_io};

// The logging macros, `defmt` or `log` as the features say.
mod fmt;

/// Whether Nagle's algorithm runs on the wrapped connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Nagle {
    /// Nagle off (TCP_NODELAY): every write leaves as soon as the window allows. The
    /// default, since request/response traffic gains nothing from Nagle and loses a
    /// delayed ACK on every response.
    #[default]
    Off,
    /// Nagle on: small segments wait while data is unacknowledged. For a server that
    /// streams many tiny writes and prefers fewer packets over latency.
    On,
}

/// The layer: sets the connection's Nagle mode when it wraps it.
///
/// A small `Copy` value; keep one in a `const` or `static` and wrap every accepted
/// connection with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[must_use = "a layer does nothing until it wraps a connection"]
pub struct NoDelayLayer {
    nagle: Nagle,
}

impl NoDelayLayer {
    /// Nagle off (TCP_NODELAY on): the default.
    pub const fn new() -> Self {
        Self { nagle: Nagle::Off }
    }

    /// Nagle on: the opt-out. The layer still sets the mode explicitly, because a
    /// reused embassy-net socket keeps whatever mode its previous connection had.
    pub const fn keep_nagle() -> Self {
        Self { nagle: Nagle::On }
    }

    /// The given mode.
    pub const fn with_nagle(nagle: Nagle) -> Self {
        Self { nagle }
    }

    /// The mode this layer sets.
    pub const fn nagle(&self) -> Nagle {
        self.nagle
    }
}

impl<C: Connection> Layer<C> for NoDelayLayer {
    type Service = NoDelay<C>;

    fn layer(&self, mut inner: C) -> Self::Service {
        match self.nagle {
            Nagle::Off => {
                if inner.set_nodelay(true).is_err() {
                    report_unsupported();
                }
            }
            // Every stack starts with Nagle on, so a stack that cannot set it is
            // already where this mode wants it: nothing to report.
            Nagle::On => {
                let _ = inner.set_nodelay(false);
            }
        }
        NoDelay { inner }
    }
}

/// A connection whose Nagle mode was set by [`NoDelayLayer`]. Everything else passes
/// through unchanged; it is exactly as large as the connection it wraps.
#[derive(Debug)]
pub struct NoDelay<C> {
    inner: C,
}

impl<C> NoDelay<C> {
    /// The wrapped connection.
    pub fn get_ref(&self) -> &C {
        &self.inner
    }

    /// The wrapped connection, mutably.
    pub fn get_mut(&mut self) -> &mut C {
        &mut self.inner
    }

    /// Unwraps the connection. Its Nagle mode stays as the layer set it.
    pub fn into_inner(self) -> C {
        self.inner
    }
}

delegate_io!(NoDelay, inner);

impl<C: Connection> Connection for NoDelay<C> {
    delegate_connection!(inner;
        state, set_nodelay, close_write, abort, remote, local, send_queue, recv_queue,
        ended_error, close_reason, set_class, end);
}

/// Set once the first stack without a Nagle option was met; shared by every
/// connection of the process so the report is made once, not once per connection.
static UNSUPPORTED_REPORTED: Mutex<Cell<bool>> = Mutex::new(Cell::new(false));

fn report_unsupported() {
    let already = critical_section::with(|cs| UNSUPPORTED_REPORTED.borrow(cs).replace(true));
    if !already {
        debug!("nodelay: the TCP stack cannot turn Nagle off; responses may wait for delayed ACKs");
        event::emit(Event::NodelayUnsupported);
    }
}

/// True once a wrapped connection answered that it cannot turn Nagle off (and the
/// [`Event::NodelayUnsupported`] report was made).
pub fn unsupported_reported() -> bool {
    critical_section::with(|cs| UNSUPPORTED_REPORTED.borrow(cs).get())
}

/// Forgets that the report was made, so the next unsupported connection reports again.
/// For tests, and for an application that swaps its network stack at run time.
pub fn reset_unsupported_report() {
    critical_section::with(|cs| UNSUPPORTED_REPORTED.borrow(cs).set(false));
}
