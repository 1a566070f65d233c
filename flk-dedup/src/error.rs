//! [`DedupError`]: the closed set of failures every backend maps into.

/// Why a dedup operation failed.
///
/// The service maps [`DedupError::Unavailable`] (and, failing closed, [`DedupError::Backend`]
/// and [`DedupError::Corrupt`]) to HTTP 503 with `Retry-After` / gRPC `UNAVAILABLE`; the
/// `Invalid*` variants are caller bugs (the service validates keys before it gets here).
#[derive(Clone, Debug, thiserror::Error)]
pub enum DedupError {
    /// The store cannot be reached or did not answer in time (server down, connection refused
    /// or reset, timeout, pool exhausted, disk I/O failure). Transient: the same store object
    /// recovers by itself once the server is back.
    #[error("dedup store unavailable ({backend}): {message}")]
    Unavailable {
        /// `embedded`, `redis` or `postgres`.
        backend: &'static str,
        /// What failed, with the underlying error's text.
        message: String,
    },
    /// A stored entry (or the embedded database file) cannot be decoded.
    #[error("corrupt dedup entry ({backend}): {message}")]
    Corrupt {
        /// `embedded`, `redis` or `postgres`.
        backend: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// The key is not acceptable (see [`crate::DedupKey::validate`]).
    #[error("invalid dedup key: {reason}")]
    InvalidKey {
        /// Which rule it breaks.
        reason: String,
    },
    /// An argument other than the key is not acceptable (TTL, outcome size, sequence number).
    #[error("invalid dedup request: {reason}")]
    InvalidInput {
        /// Which rule it breaks.
        reason: String,
    },
    /// The store has lost entries it acknowledged (a Redis restart without persistence): a
    /// miss cannot be trusted until the owner has replayed its decisions and called
    /// [`crate::DedupStore::mark_complete`]. Answer 503 meanwhile.
    #[error("dedup store lost its entries ({backend}): {message}")]
    Lost {
        /// `redis`.
        backend: &'static str,
        /// What was seen.
        message: String,
    },
    /// The store answered with an error that is not an outage (schema mismatch, unexpected
    /// reply, a server newer than this binary understands).
    #[error("dedup store failed ({backend}): {message}")]
    Backend {
        /// `embedded`, `redis` or `postgres`.
        backend: &'static str,
        /// What failed, with the underlying error's text.
        message: String,
    },
}

impl DedupError {
    /// True for [`DedupError::Unavailable`]: retry later, answer 503 + `Retry-After` meanwhile.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }

    /// The backend that reported the error, if any.
    pub fn backend(&self) -> Option<&'static str> {
        match self {
            Self::Unavailable { backend, .. }
            | Self::Lost { backend, .. }
            | Self::Corrupt { backend, .. }
            | Self::Backend { backend, .. } => Some(backend),
            Self::InvalidKey { .. } | Self::InvalidInput { .. } => None,
        }
    }

    pub(crate) fn unavailable(backend: &'static str, message: impl Into<String>) -> Self {
        Self::Unavailable {
            backend,
            message: message.into(),
        }
    }

    pub(crate) fn corrupt(backend: &'static str, message: impl Into<String>) -> Self {
        Self::Corrupt {
            backend,
            message: message.into(),
        }
    }

    pub(crate) fn backend_failure(backend: &'static str, message: impl Into<String>) -> Self {
        Self::Backend {
            backend,
            message: message.into(),
        }
    }
}
