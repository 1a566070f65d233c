//! svc-tiering's error type and its one mapping onto [`ApiError`] (gRPC statuses and the REST
//! error body `{"error": {"code", "message"}}`).

use std::time::Duration;

use flk_proto::{ApiError, ErrorKind};

use crate::catalog::CatalogError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum TieringError {
    /// No record with this key (never received, another tenant's, or past retention).
    #[error("no record with pcs_id {pcs_id} for tenant {tenant:?}")]
    NotFound { tenant: String, pcs_id: String },
    #[error("{0}")]
    Catalog(#[from] CatalogError),
    /// A tier's store failed.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// A stored copy that does not decode or check.
    #[error("record {key} in {tier}: {message}")]
    Corrupt {
        key: String,
        tier: &'static str,
        message: String,
    },
    #[error("{0}")]
    InvalidArgument(String),
    #[error("tiering task failed: {0}")]
    Task(String),
}

impl From<TieringError> for ApiError {
    fn from(e: TieringError) -> ApiError {
        let message = e.to_string();
        match e {
            TieringError::NotFound { .. } => {
                ApiError::new(ErrorKind::NotFound, "not_found", message)
            }
            TieringError::Catalog(_) | TieringError::Store(_) => {
                ApiError::new(ErrorKind::Unavailable, "tiering_store_unavailable", message)
                    .with_retry_after(Duration::from_secs(1))
            }
            TieringError::Corrupt { .. } | TieringError::Task(_) => {
                ApiError::new(ErrorKind::Internal, "internal", message)
            }
            TieringError::InvalidArgument(_) => {
                ApiError::new(ErrorKind::InvalidArgument, "invalid_request", message)
            }
        }
    }
}

impl From<TieringError> for tonic::Status {
    fn from(e: TieringError) -> tonic::Status {
        tonic::Status::from(ApiError::from(e))
    }
}
