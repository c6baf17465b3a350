//! Composition of layers, top to bottom, like tower's `ServiceBuilder`.
use tcp_layers_core::{Identity, Layer, Stack};

/// Composes layers in the order they are written: the first `.layer()` is the
/// outermost (it sees every call first), the last is closest to the socket.
///
/// ```
/// use tcp_layers::{ConnectionBuilder, Identity, Layer};
///
/// // Any `Layer` composes; real stacks use the layer crates' config values.
/// let builder = ConnectionBuilder::new().layer(Identity).layer(Identity);
/// let wrapped: u32 = builder.wrap(7u32);
/// assert_eq!(wrapped, 7);
/// ```
///
/// A builder is itself a [`Layer`], so a finished stack can be handed to the `serve` helper or an adapter.
#[derive(Clone, Copy, Debug, Default)]
#[must_use = "a builder does nothing until `wrap` is called"]
pub struct ConnectionBuilder<L> {
    layer: L,
}

impl ConnectionBuilder<Identity> {
    /// An empty stack: `wrap` returns the connection unchanged.
    pub const fn new() -> Self {
        Self { layer: Identity }
    }
}

impl<L> ConnectionBuilder<L> {
    /// Adds `layer` below the ones already added (closer to the socket).
    pub fn layer<T>(self, layer: T) -> ConnectionBuilder<Stack<T, L>> {
        ConnectionBuilder {
            layer: Stack::new(layer, self.layer),
        }
    }

    /// Wraps `conn` in every layer of the stack.
    pub fn wrap<C>(&self, conn: C) -> L::Service
    where
        L: Layer<C>,
    {
        self.layer.layer(conn)
    }

    /// The composed layer.
    pub fn into_inner(self) -> L {
        self.layer
    }
}

impl<C, L: Layer<C>> Layer<C> for ConnectionBuilder<L> {
    type Service = L::Service;
    fn layer(&self, inner: C) -> Self::Service {
        self.layer.layer(inner)
    }
}
