//! `Layer`, `Stack` and `Identity`: the shape of tower-layer's trait, kept `no_std`.
//!
//! tower-layer 0.3 (its latest release) imports `std::fmt` and does not build for
//! `riscv32imc-unknown-none-elf` or `thumbv7em-none-eabihf`, so this crate cannot depend
//! on it. These three items have the same names, the same signatures and the same
//! meaning, so code written against tower's `Layer` reads the same here.

/// Decorates a connection: takes the inner value and returns the wrapped one.
///
/// Every layer of this project is a small `Copy` config value implementing
/// `Layer<C>` for every `C: Connection`, and its `Service` is again a `Connection`.
pub trait Layer<S> {
    /// The wrapped value.
    type Service;

    /// Wraps `inner`.
    fn layer(&self, inner: S) -> Self::Service;
}

impl<L: Layer<S> + ?Sized, S> Layer<S> for &L {
    type Service = L::Service;
    fn layer(&self, inner: S) -> Self::Service {
        (**self).layer(inner)
    }
}

/// The layer that changes nothing: `Identity.layer(c)` is `c`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Identity;

impl Identity {
    /// The identity layer.
    pub const fn new() -> Self {
        Identity
    }
}

impl<S> Layer<S> for Identity {
    type Service = S;
    fn layer(&self, inner: S) -> S {
        inner
    }
}

/// Two layers applied one after the other: `inner` wraps first, `outer` wraps the result.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stack<Inner, Outer> {
    inner: Inner,
    outer: Outer,
}

impl<Inner, Outer> Stack<Inner, Outer> {
    /// `inner` is applied first (closest to the socket), `outer` last.
    pub const fn new(inner: Inner, outer: Outer) -> Self {
        Self { inner, outer }
    }
}

impl<S, Inner: Layer<S>, Outer: Layer<Inner::Service>> Layer<S> for Stack<Inner, Outer> {
    type Service = Outer::Service;
    fn layer(&self, service: S) -> Self::Service {
        self.outer.layer(self.inner.layer(service))
    }
}
