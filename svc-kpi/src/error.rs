//! svc-kpi's error type and its one mapping onto [`ApiError`] (and through it onto gRPC
//! statuses and the REST error body `{"error": {"code", "message"}}`).

use std::time::Duration;

use flk_proto::{ApiError, ErrorKind};

use crate::model::{DecodeError, Outcome, Verdict};

/// Why a KPI operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KpiError {
    /// The embedded store failed (I/O, lock, transaction).
    #[error("kpi store: {0}")]
    Store(String),
    /// A stored value does not decode.
    #[error("kpi store: {0}")]
    Corrupt(#[from] DecodeError),
    /// No decision with this key is known (never received, or past retention).
    #[error("no decision with pcs_id {pcs_id} for tenant {tenant:?}")]
    UnknownDecision { tenant: String, pcs_id: String },
    /// Feedback on a copy replicated from another region: its verdicts are counted where it
    /// was decided.
    #[error(
        "decision {pcs_id} was replicated from another region: send its feedback to the region that decided it"
    )]
    ReplicatedDecision { pcs_id: String },
    /// A verdict that is not one of the three.
    #[error("verdict must be one of hallucination, false_alarm, correct")]
    InvalidVerdict,
    /// A verdict that cannot be said of this outcome.
    #[error("verdict {} does not apply to a decision that was {}", verdict.as_str(), outcome.as_str())]
    VerdictNotApplicable { verdict: Verdict, outcome: Outcome },
    /// A window other than 1h, 24h, 7d.
    #[error("window must be one of 1h, 24h, 7d")]
    InvalidWindow,
    /// A malformed request (body, field).
    #[error("{0}")]
    InvalidRequest(String),
    /// The blocking task running a store operation died.
    #[error("kpi task failed: {0}")]
    Task(String),
}

impl From<KpiError> for ApiError {
    fn from(e: KpiError) -> ApiError {
        let message = e.to_string();
        match e {
            KpiError::Store(_) => {
                ApiError::new(ErrorKind::Unavailable, "kpi_store_unavailable", message)
                    .with_retry_after(Duration::from_secs(1))
            }
            KpiError::Corrupt(_) | KpiError::Task(_) => {
                ApiError::new(ErrorKind::Internal, "internal", message)
            }
            KpiError::UnknownDecision { .. } => {
                ApiError::new(ErrorKind::NotFound, "not_found", message)
            }
            KpiError::InvalidVerdict => {
                ApiError::new(ErrorKind::InvalidArgument, "invalid_verdict", message)
            }
            KpiError::VerdictNotApplicable { .. } => ApiError::new(
                ErrorKind::FailedPrecondition,
                "verdict_not_applicable",
                message,
            ),
            KpiError::ReplicatedDecision { .. } => ApiError::new(
                ErrorKind::FailedPrecondition,
                "replicated_decision",
                message,
            ),
            KpiError::InvalidWindow => {
                ApiError::new(ErrorKind::InvalidArgument, "invalid_window", message)
            }
            KpiError::InvalidRequest(_) => {
                ApiError::new(ErrorKind::InvalidArgument, "invalid_request", message)
            }
        }
    }
}

impl From<KpiError> for tonic::Status {
    fn from(e: KpiError) -> tonic::Status {
        tonic::Status::from(ApiError::from(e))
    }
}

pub use flk_runtime::http::{error_response, json_response};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_the_documented_codes() {
        let cases = [
            (KpiError::InvalidVerdict, 400, "invalid_verdict"),
            (KpiError::InvalidWindow, 400, "invalid_window"),
            (
                KpiError::UnknownDecision {
                    tenant: "t".into(),
                    pcs_id: "00".into(),
                },
                404,
                "not_found",
            ),
            (
                KpiError::VerdictNotApplicable {
                    verdict: Verdict::Hallucination,
                    outcome: Outcome::Rejected,
                },
                409,
                "verdict_not_applicable",
            ),
            (
                KpiError::ReplicatedDecision {
                    pcs_id: "00".into(),
                },
                409,
                "replicated_decision",
            ),
            (KpiError::Store("down".into()), 503, "kpi_store_unavailable"),
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
