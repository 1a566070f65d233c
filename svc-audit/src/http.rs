//! The HTTP side of the listener: the audit REST routes and `/health`, `/ready`, `/metrics`.
//!
//! | route | answer |
//! |---|---|
//! | `GET /v1/audit/checkpoint` | `{"note", "size", "root_hash", "verifier_key"}` |
//! | `GET /v1/audit/proof/{pcs_id}` | `{"leaf_index", "tree_size", "entry", "proof", "checkpoint"}`; 400 malformed `pcs_id`, 404 unknown |
//! | `GET /v1/audit/consistency?from=m&to=n` | `{"from", "to", "proof"}`; 400 unless `0 < m <= n <= size` |
//!
//! Hashes and the entry are standard padded base64; `checkpoint` is the checkpoint object at
//! `tree_size`; the tenant of a proof is the `X-Tenant-Id` header (default `default`). Errors
//! are the PROTOCOL.md error body `{"error": {"code", "message"}}` from [`ApiError`].

use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use flk_proto::{ApiError, DEFAULT_TENANT, ErrorKind};
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
        .with_state(shared)
}

/// The checkpoint object of the REST answers.
pub fn checkpoint_json(c: &CheckpointView) -> Value {
    json!({
        "note": c.note,
        "size": c.size,
        "root_hash": B64.encode(c.root_hash),
        "verifier_key": c.verifier_key,
    })
}

/// The proof object of `GET /v1/audit/proof/{pcs_id}`.
pub fn proof_json(p: &InclusionView) -> Value {
    json!({
        "leaf_index": p.leaf_index,
        "tree_size": p.tree_size,
        "entry": B64.encode(&p.entry),
        "proof": p.proof.iter().map(|h| B64.encode(h)).collect::<Vec<_>>(),
        "checkpoint": checkpoint_json(&p.checkpoint),
    })
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
        Ok(p) => ok_json(&proof_json(&p)),
        Err(e) => error_response(&e),
    }
}

/// `from` and `to` from the query string: both present, once, canonical decimal.
fn range(query: Option<&str>) -> Result<(u64, u64), ApiError> {
    let bad = |m: &str| ApiError::new(ErrorKind::InvalidArgument, "invalid_range", m);
    let (mut from, mut to) = (None, None);
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match k {
            "from" => &mut from,
            "to" => &mut to,
            _ => continue,
        };
        let canonical = !v.is_empty()
            && v.bytes().all(|b| b.is_ascii_digit())
            && (v == "0" || !v.starts_with('0'));
        let n = v
            .parse::<u64>()
            .ok()
            .filter(|_| canonical)
            .ok_or_else(|| bad(&format!("`{k}` must be a decimal tree size")))?;
        if slot.replace(n).is_some() {
            return Err(bad(&format!("`{k}` is given twice")));
        }
    }
    match (from, to) {
        (Some(f), Some(t)) => Ok((f, t)),
        _ => Err(bad("query needs `from` and `to`")),
    }
}

async fn consistency(State(shared): State<Arc<Shared>>, RawQuery(q): RawQuery) -> Response {
    let (from, to) = match range(q.as_deref()) {
        Ok(r) => r,
        Err(e) => return error_response(&e),
    };
    match query(&shared.ledger, move |l| l.consistency(from, to)).await {
        Ok(proof) => ok_json(&json!({
            "from": from,
            "to": to,
            "proof": proof.iter().map(|h| B64.encode(h)).collect::<Vec<_>>(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_strictly() {
        assert_eq!(range(Some("from=1&to=5")).unwrap(), (1, 5));
        assert_eq!(range(Some("to=5&x=y&from=2")).unwrap(), (2, 5));
        for bad in [
            None,
            Some(""),
            Some("from=1"),
            Some("from=1&to="),
            Some("from=01&to=2"),
            Some("from=-1&to=2"),
            Some("from=1&to=2&to=3"),
            Some("from=1&to=99999999999999999999"),
            Some("from=a&to=2"),
        ] {
            let e = range(bad).unwrap_err();
            assert_eq!(e.kind.http_status(), 400, "{bad:?}");
            assert_eq!(e.code, "invalid_range");
        }
    }
}
