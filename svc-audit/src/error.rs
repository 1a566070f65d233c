//! svc-audit's error type and its one mapping onto [`ApiError`] (and through it onto gRPC
//! statuses and the REST error body of PROTOCOL.md section 5).

use std::time::Duration;

use flk_proto::{ApiError, ErrorKind};

/// Why an audit operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The Merkle log failed (storage, recovery, or an out-of-range request).
    #[error("audit log: {0}")]
    Log(#[from] flk_tlog::Error),
    /// The `(tenant_id, pcs_id)` index failed.
    #[error("audit index: {0}")]
    Index(String),
    /// The index and the log disagree in a way recovery cannot repair.
    #[error("audit index is inconsistent with the log: {0}")]
    Inconsistent(String),
    /// The feed cursor file could not be read or written.
    #[error("feed cursor {path}: {message}")]
    Cursor { path: String, message: String },
    /// The log's signer key could not be loaded or created.
    #[error("log key: {0}")]
    Key(String),
    /// A `pcs_id` that is not 64 lowercase hex characters.
    #[error("pcs_id must be 64 lowercase hex characters")]
    InvalidPcsId,
    /// A request naming sizes or indices the log cannot answer for.
    #[error("{0}")]
    InvalidRange(String),
    /// No decision with this key is in the log.
    #[error("no audit entry for pcs_id {pcs_id} of tenant {tenant:?}")]
    UnknownPcs { tenant: String, pcs_id: String },
    /// The integration path did not answer in time (e.g. it is retrying a failing store).
    #[error("the audit log did not integrate within {0:?}")]
    Busy(Duration),
    /// A test-only crash point fired (feature `fault-injection`).
    #[error("injected fault: {0}")]
    Injected(&'static str),
    /// The anchor journal could not be read or written.
    #[error("anchor journal: {0}")]
    Anchors(String),
    /// No anchor has this id.
    #[error("no anchor with id {0}")]
    UnknownAnchor(u64),
    /// Anchoring is not configured (`anchor.strategy = "none"`).
    #[error("anchoring is not configured")]
    AnchoringDisabled,
}

impl AuditError {
    pub(crate) fn index(e: impl std::fmt::Display) -> AuditError {
        AuditError::Index(e.to_string())
    }
}

impl From<AuditError> for ApiError {
    fn from(e: AuditError) -> ApiError {
        use flk_tlog::Error as T;
        let retry = Duration::from_secs(1);
        match e {
            AuditError::InvalidPcsId => {
                ApiError::new(ErrorKind::InvalidArgument, "invalid_pcs_id", e.to_string())
            }
            AuditError::InvalidRange(_)
            | AuditError::Log(
                T::IndexOutOfRange { .. } | T::InvalidRange { .. } | T::BeyondSize { .. },
            ) => ApiError::new(ErrorKind::InvalidArgument, "invalid_range", e.to_string()),
            AuditError::UnknownPcs { .. } => {
                ApiError::new(ErrorKind::NotFound, "not_found", e.to_string())
            }
            AuditError::Busy(_) => {
                ApiError::new(ErrorKind::Unavailable, "audit_log_busy", e.to_string())
                    .with_retry_after(retry)
            }
            AuditError::Log(T::Store(_)) | AuditError::Index(_) | AuditError::Injected(_) => {
                ApiError::new(
                    ErrorKind::Unavailable,
                    "audit_log_unavailable",
                    e.to_string(),
                )
                .with_retry_after(retry)
            }
            AuditError::UnknownAnchor(_) => {
                ApiError::new(ErrorKind::NotFound, "not_found", e.to_string())
            }
            AuditError::AnchoringDisabled => ApiError::new(
                ErrorKind::FailedPrecondition,
                "anchoring_disabled",
                e.to_string(),
            ),
            AuditError::Anchors(_) => {
                ApiError::new(ErrorKind::Unavailable, "anchors_unavailable", e.to_string())
                    .with_retry_after(retry)
            }
            AuditError::Log(_)
            | AuditError::Inconsistent(_)
            | AuditError::Cursor { .. }
            | AuditError::Key(_) => {
                ApiError::new(ErrorKind::Internal, "audit_log_corrupt", e.to_string())
            }
        }
    }
}

impl From<AuditError> for tonic::Status {
    fn from(e: AuditError) -> tonic::Status {
        tonic::Status::from(ApiError::from(e))
    }
}

pub use flk_runtime::http::{error_response, json_response};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_the_protocol_codes() {
        let cases = [
            (AuditError::InvalidPcsId, 400, "invalid_pcs_id"),
            (AuditError::InvalidRange("x".into()), 400, "invalid_range"),
            (
                AuditError::Log(flk_tlog::Error::BeyondSize {
                    requested: 9,
                    size: 3,
                }),
                400,
                "invalid_range",
            ),
            (
                AuditError::UnknownPcs {
                    tenant: "t".into(),
                    pcs_id: "00".into(),
                },
                404,
                "not_found",
            ),
            (
                AuditError::Index("down".into()),
                503,
                "audit_log_unavailable",
            ),
            (
                AuditError::Inconsistent("x".into()),
                500,
                "audit_log_corrupt",
            ),
        ];
        for (e, status, code) in cases {
            let api = ApiError::from(e);
            assert_eq!(api.kind.http_status(), status, "{api:?}");
            assert_eq!(api.code, code);
            assert!(
                api.message.starts_with(|c: char| !c.is_uppercase()),
                "{api:?}"
            );
        }
    }
}
