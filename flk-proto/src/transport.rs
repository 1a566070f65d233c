//! What a client over a boxed transport (a tonic channel, hyper's own connection, or a service
//! in the same process) reports when the transport itself fails.

/// A transport's failure, shown and chained as it is: tonic looks through the chain to tell an
/// unreachable server (`UNAVAILABLE`) from other failures. A named type, because with a boxed
/// error as the service's error type the generated clients' futures cannot be proven `Send`.
#[derive(Debug)]
pub struct TransportError(pub Box<dyn std::error::Error + Send + Sync>);

impl TransportError {
    /// Wraps any error (for `map_err`).
    pub fn new(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> TransportError {
        TransportError(error.into())
    }
}

impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for TransportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.0.as_ref())
    }
}
