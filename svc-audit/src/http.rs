//! The HTTP side of the listener: the audit REST routes and `/health`, `/ready`, `/metrics`.
//!
//! | route | answer |
//! |---|---|
//! | `GET /v1/audit/checkpoint` | `{"note", "size", "root_hash", "verifier_key"}` |
//! | `GET /v1/audit/proof/{pcs_id}` | `{"leaf_index", "tree_size", "entry", "proof", "checkpoint"}`; 400 malformed `pcs_id`, 404 unknown |
//! | `GET /v1/audit/consistency?from=m&to=n` | `{"from", "to", "proof"}`; 400 unless `0 < m <= n <= size` |
//! | `GET /v1/audit/anchors` | `{"anchors": [{"id", "checkpoint_size", "root_hash", "strategy", "kind", "created_at", "created_at_unix", "proof", "checkpoint_note", "complete"}]}`, oldest first ([`anchor_json`]) |
//!
//! The shapes are rendered by `flk_proto::audit` (the gateway serves the same ones); hashes
//! and the entry are standard padded base64; `checkpoint` is the checkpoint object at
//! `tree_size`; the tenant of a proof is the `X-Tenant-Id` header (default `default`). Errors
//! are the PROTOCOL.md error body `{"error": {"code", "message"}}` from [`ApiError`].

use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use flk_proto::{ApiError, DEFAULT_TENANT, audit, v1};
use serde_json::{Value, json};

use crate::Shared;
use crate::error::{AuditError, error_response, json_response};
use crate::grpc::query;
use crate::ledger::{CheckpointView, InclusionView};
use crate::metrics;

/// The HTTP routes (merged with the gRPC routes by [`crate::Service::serve`]).
pub(crate) fn routes(shared: Arc<Shared>) -> axum::Router {
    axum::Router::new()
        .route("/health", get(|| async { "OK" }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics_text))
        .route("/v1/audit/checkpoint", get(checkpoint))
        .route("/v1/audit/proof/{pcs_id}", get(proof))
        .route("/v1/audit/consistency", get(consistency))
        .route("/v1/audit/anchors", get(anchors))
        .with_state(shared)
}

/// The checkpoint object of the REST answers (rendered by [`flk_proto::audit`], shared with
/// the gateway).
pub fn checkpoint_json(c: &CheckpointView) -> Value {
    audit::checkpoint_json(&v1::AuditCheckpoint::from(c))
}

/// The proof object of `GET /v1/audit/proof/{pcs_id}`.
pub fn proof_json(p: InclusionView) -> Value {
    audit::inclusion_json(&v1::InclusionProof::from(p))
}

fn ok_json(v: &Value) -> Response {
    json_response(StatusCode::OK, v.to_string())
}

async fn checkpoint(State(shared): State<Arc<Shared>>) -> Response {
    match query(&shared.ledger, |l| Ok(l.checkpoint())).await {
        Ok(c) => ok_json(&checkpoint_json(&c)),
        Err(e) => error_response(&e),
    }
}

fn tenant(headers: &HeaderMap) -> String {
    headers
        .get("x-tenant-id")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .unwrap_or(DEFAULT_TENANT)
        .to_owned()
}

async fn proof(
    State(shared): State<Arc<Shared>>,
    pcs_id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    // A path segment that does not decode (bad percent-encoding) is a malformed pcs_id too.
    let Ok(Path(pcs_id)) = pcs_id else {
        return error_response(&ApiError::from(AuditError::InvalidPcsId));
    };
    let tenant = tenant(&headers);
    match query(&shared.ledger, move |l| {
        l.inclusion_by_pcs(&tenant, &pcs_id)
    })
    .await
    {
        Ok(p) => ok_json(&proof_json(p)),
        Err(e) => error_response(&e),
    }
}

async fn consistency(State(shared): State<Arc<Shared>>, RawQuery(q): RawQuery) -> Response {
    let (from, to) = match audit::parse_range(q.as_deref()) {
        Ok(r) => r,
        Err(e) => return error_response(&e),
    };
    match query(&shared.ledger, move |l| l.consistency(from, to)).await {
        Ok(proof) => ok_json(&audit::consistency_json(&v1::ConsistencyProof {
            from_size: from,
            to_size: to,
            proof: proof.iter().map(|h| h.to_vec()).collect(),
        })),
        Err(e) => error_response(&e),
    }
}

async fn metrics_text(State(shared): State<Arc<Shared>>) -> Response {
    (
        [("content-type", "text/plain; version=0.0.4")],
        metrics::render(&shared.registry),
    )
        .into_response()
}

/// 200 when subscribed to the feed and the last integration succeeded, else 503.
async fn ready(State(shared): State<Arc<Shared>>) -> Response {
    let feed = shared.feed_connected();
    let log = shared.ledger.writable();
    let body = json!({
        "ready": feed && log,
        "dependencies": {
            "outcome_feed": if feed { "ok" } else { "disconnected" },
            "audit_log": if log { "ok" } else { "failing: retrying the last batch" },
        }
    });
    let status = if feed && log {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(status, body.to_string())
}

/// One anchor of `GET /v1/audit/anchors`: root hash and proof standard padded base64,
/// `created_at` RFC 3339 (UTC), `kind` one of `rfc3161`, `opentimestamps`, `evm`.
pub fn anchor_json(a: &crate::anchoring::StoredAnchor) -> Value {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as B64;
    let created_at = time::OffsetDateTime::from_unix_timestamp(a.record.created_at_unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        });
    json!({
        "id": a.id,
        "checkpoint_size": a.record.checkpoint_size,
        "root_hash": B64.encode(hex::decode(&a.record.root_hash).unwrap_or_default()),
        "strategy": a.record.strategy,
        "kind": crate::anchoring::kind_label(a.record.kind),
        "created_at": created_at,
        "created_at_unix": a.record.created_at_unix,
        "proof": B64.encode(&a.record.proof),
        "checkpoint_note": a.note,
        "complete": a.complete,
    })
}

async fn anchors(State(shared): State<Arc<Shared>>) -> Response {
    let list: Vec<Value> = shared.anchors.list().iter().map(anchor_json).collect();
    ok_json(&json!({ "anchors": list }))
}
