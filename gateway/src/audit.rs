//! `/v1/audit/*`: svc-audit's REST routes, answered by calling its `flk.v1.AuditService` over
//! gRPC ([`crate::GatewayConfig::audit_upstream`]) and rendering the answer with
//! `flk_proto::audit`, the same functions svc-audit renders its own routes with.
//!
//! | route | gRPC call |
//! |---|---|
//! | `GET /v1/audit/checkpoint` | `GetCheckpoint` |
//! | `GET /v1/audit/proof/{pcs_id}` | `GetInclusionProof` by `(tenant, pcs_id)` |
//!
//! Every route needs a tenant API token ([`crate::auth`]); a proof is looked up for the token's
//! tenant only, so another tenant's decision is 404 as an unknown one.
//! | `GET /v1/audit/consistency?from=m&to=n` | `GetConsistencyProof` |
//!
//! svc-audit's errors (400 `invalid_pcs_id` / `invalid_range`, 404 `not_found`, 503 ...) come
//! back through the status metadata and are answered as they were chosen; svc-audit not
//! answering at all is 503 `audit_unavailable`, and so is a gateway without an audit upstream.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use flk_proto::v1::{self, get_inclusion_proof_request};
use flk_proto::{ApiError, ErrorKind, audit};
use flk_runtime::client::AuditClient;

use crate::auth::Credentials;
use crate::{Gateway, error_response, is_transport_failure, json_response};

/// The answer when svc-audit cannot be asked: not configured, or not reachable.
fn unavailable(message: &str) -> ApiError {
    ApiError::new(ErrorKind::Unavailable, "audit_unavailable", message)
        .with_retry_after(Duration::from_secs(1))
}

/// Calls svc-audit with `f` and renders the answer with `render`; counts the response.
async fn call<T, Fut>(
    gw: &Gateway,
    route: &'static str,
    headers: &HeaderMap,
    f: impl FnOnce(AuditClient, String) -> Fut,
    render: impl FnOnce(&T) -> serde_json::Value,
) -> Response
where
    Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let tenant = gw.read_tenant(Credentials::of_headers(headers));
    let resp = match (&gw.audit, tenant) {
        (_, Err(e)) => error_response(&e),
        (None, Ok(_)) => error_response(&unavailable(
            "this gateway has no audit upstream (--audit-upstream)",
        )),
        (Some(client), Ok(tenant)) => match f(client.clone(), tenant).await {
            Ok(answer) => json_response(StatusCode::OK, render(answer.get_ref()).to_string()),
            Err(status) if is_transport_failure(&status) => {
                tracing::warn!(error = %status.message(), "svc-audit unreachable");
                error_response(&unavailable("svc-audit is not reachable"))
            }
            Err(status) => error_response(&ApiError::from_status(&status)),
        },
    };
    gw.responses
        .with_label_values(&[route, resp.status().as_str()])
        .inc();
    resp
}

/// `GET /v1/audit/checkpoint`.
pub(crate) async fn checkpoint(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    call(
        &gw,
        "audit_checkpoint",
        &headers,
        |mut c, _| async move { c.get_checkpoint(v1::GetCheckpointRequest {}).await },
        audit::checkpoint_json,
    )
    .await
}

/// `GET /v1/audit/proof/{pcs_id}`.
pub(crate) async fn proof(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    pcs_id: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Response {
    // A segment that does not decode is a malformed pcs_id, as svc-audit itself answers.
    let Ok(Path(pcs_id)) = pcs_id else {
        return error_response(&ApiError::new(
            ErrorKind::InvalidArgument,
            "invalid_pcs_id",
            "pcs_id must be 64 lowercase hex characters",
        ));
    };
    call(
        &gw,
        "audit_proof",
        &headers,
        |mut c, tenant_id| async move {
            let req = v1::GetInclusionProofRequest {
                target: Some(get_inclusion_proof_request::Target::Pcs(v1::PcsTarget {
                    tenant_id,
                    pcs_id,
                })),
            };
            c.get_inclusion_proof(req).await
        },
        audit::inclusion_json,
    )
    .await
}

/// `GET /v1/audit/consistency?from=m&to=n`.
pub(crate) async fn consistency(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    // Parsed inside the call, so that a gateway without svc-audit answers 503 whatever the query.
    let range = audit::parse_range(q.as_deref());
    call(
        &gw,
        "audit_consistency",
        &headers,
        |mut c, _| async move {
            let (from_size, to_size) = range.map_err(tonic::Status::from)?;
            c.get_consistency_proof(v1::GetConsistencyProofRequest { from_size, to_size })
                .await
        },
        audit::consistency_json,
    )
    .await
}
