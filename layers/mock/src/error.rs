use tcp_layers_core::{CloseReason, ErrorKind};

/// The mock's error: an [`ErrorKind`] and, for the error a layer returns after it
/// ended the connection ([`Connection::ended_error`](tcp_layers_core::Connection::ended_error)),
/// the reason it gave.
///
/// ```
/// use tcp_layers_core::{CloseReason, ErrorKind};
/// use tcp_layers_mock::MockError;
///
/// assert_eq!(MockError::RESET.kind(), ErrorKind::ConnectionReset);
/// let ended = MockError::ended(CloseReason::Evicted);
/// assert_eq!((ended.kind(), ended.reason()), (ErrorKind::ConnectionReset, Some(CloseReason::Evicted)));
/// assert_ne!(ended, MockError::RESET);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MockError {
    kind: ErrorKind,
    reason: Option<CloseReason>,
}

impl MockError {
    /// The peer reset the connection, or it is gone: what reads and writes on a
    /// `Closed` mock return.
    pub const RESET: Self = Self::new(ErrorKind::ConnectionReset);

    /// An error of `kind`, with no reason.
    pub const fn new(kind: ErrorKind) -> Self {
        Self { kind, reason: None }
    }

    /// The error for a connection a layer ended for `reason` (kind `ConnectionReset`,
    /// as embassy-net reports every end).
    pub const fn ended(reason: CloseReason) -> Self {
        Self {
            kind: ErrorKind::ConnectionReset,
            reason: Some(reason),
        }
    }

    /// Its kind (also [`embedded_io_async::Error::kind`]).
    pub const fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The reason it was made with by [`MockError::ended`].
    pub const fn reason(&self) -> Option<CloseReason> {
        self.reason
    }
}

impl core::fmt::Display for MockError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.reason {
            Some(reason) => write!(f, "ended: {reason}"),
            None => write!(f, "mock error: {:?}", self.kind),
        }
    }
}

impl core::error::Error for MockError {}

impl embedded_io_async::Error for MockError {
    fn kind(&self) -> ErrorKind {
        self.kind
    }
}
