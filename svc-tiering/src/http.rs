//! The HTTP side of the listener: the internal REST reads and `/health`, `/ready`,
//! `/metrics`.
//!
//! | route | answer |
//! |---|---|
//! | `GET /v1/tiering/{tenant_id}/{pcs_id}` | 200 `{"outcome": {...}, "tier", "decided_at_unix_ms", "size_bytes"}`, header `X-Flk-Tier`; 404 `not_found` |
//! | `GET /v1/tiering/{tenant_id}/{pcs_id}/body` | 200 the PCS bytes as submitted (`Content-Type` `application/json` or `application/x-protobuf`), header `X-Flk-Tier`; 404 |
//! | `GET /v1/tiering/stats` | 200 the live figures (JSON) |
//! | `GET /ready` | 200 when every store answers and the feed is subscribed; 503 naming what is down |
//!
//! Errors are the PROTOCOL.md error body `{"error": {"code", "message"}}`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use flk_proto::ApiError;
use flk_proto::v1;
use prometheus::{Encoder as _, Registry, TextEncoder};
use serde_json::{Value, json};

use crate::engine::Engine;
use crate::error::TieringError;
use crate::grpc::stats_msg;
use flk_runtime::http::{error_response, json_response};

/// The response header naming the tier that answered.
pub const TIER_HEADER: &str = "x-flk-tier";

#[derive(Clone)]
pub(crate) struct HttpState {
    pub engine: Arc<Engine>,
    pub registry: Registry,
    pub feed_connected: Arc<AtomicBool>,
}

pub(crate) fn routes(state: HttpState) -> axum::Router {
    axum::Router::new()
        .route("/health", get(|| async { "OK" }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics_text))
        .route("/v1/tiering/stats", get(stats))
        .route("/v1/tiering/{tenant_id}/{pcs_id}", get(record))
        .route("/v1/tiering/{tenant_id}/{pcs_id}/body", get(body))
        .with_state(state)
}

fn fail(e: TieringError) -> Response {
    error_response(&ApiError::from(e))
}

fn with_tier(mut resp: Response, tier: &'static str) -> Response {
    resp.headers_mut()
        .insert(TIER_HEADER, HeaderValue::from_static(tier));
    resp
}

/// The outcome as JSON (the `flk.v1.Outcome` fields, kind as a lowercase word).
pub fn outcome_json(o: &v1::Outcome) -> Value {
    let kind = match v1::OutcomeKind::try_from(o.outcome) {
        Ok(v1::OutcomeKind::Accepted) => "accepted",
        Ok(v1::OutcomeKind::Escalated) => "escalated",
        Ok(v1::OutcomeKind::Rejected) => "rejected",
        _ => "unspecified",
    };
    json!({
        "pcs_id": o.pcs_id,
        "tenant_id": o.tenant_id,
        "outcome": kind,
        "accepted": o.accepted,
        "escalated": o.escalated,
        "reason_code": o.reason_code,
        "reason": o.reason,
        "d_hat": o.d_hat,
        "recomputed_budget": o.recomputed_budget,
        "regime": o.regime,
        "policy_version": o.policy_version,
        "policy_hash": o.policy_hash,
        "duplicate": o.duplicate,
        "received_at": o.received_at,
        "seq": o.seq,
        "origin_region": o.origin_region,
        "replicated": o.replicated,
    })
}

async fn record(
    State(s): State<HttpState>,
    Path((tenant, pcs_id)): Path<(String, String)>,
) -> Response {
    let read = match s.engine.get(&tenant, &pcs_id).await {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let outcome = match read.record.outcome() {
        Ok(o) => o,
        Err(e) => {
            return fail(TieringError::Corrupt {
                key: format!("{tenant}/{pcs_id}"),
                tier: read.tier.as_str(),
                message: e.to_string(),
            });
        }
    };
    let body = json!({
        "outcome": outcome_json(&outcome),
        "tier": read.tier.as_str(),
        "decided_at_unix_ms": read.record.decided_at_unix_ms,
        "size_bytes": read.size,
    });
    with_tier(
        json_response(StatusCode::OK, body.to_string()),
        read.tier.as_str(),
    )
}

async fn body(
    State(s): State<HttpState>,
    Path((tenant, pcs_id)): Path<(String, String)>,
) -> Response {
    match s.engine.get(&tenant, &pcs_id).await {
        Ok(read) => {
            let ct = read.record.body_kind.content_type();
            with_tier(
                ([(header::CONTENT_TYPE, ct)], read.record.body).into_response(),
                read.tier.as_str(),
            )
        }
        Err(e) => fail(e),
    }
}

async fn stats(State(s): State<HttpState>) -> Response {
    let cursor = match s.engine.catalog().cursor() {
        Ok(c) => c,
        Err(e) => return fail(e.into()),
    };
    let st = stats_msg(&s.engine.stats(cursor));
    let p = st.policy.unwrap_or_default();
    let body = json!({
        "tiers": st.tiers.iter().map(|t| json!({"tier": t.tier, "records": t.records, "bytes": t.bytes})).collect::<Vec<_>>(),
        "moves": st.moves.iter().map(|m| json!({"from": m.from, "to": m.to, "moves": m.moves})).collect::<Vec<_>>(),
        "promotions": st.promotions,
        "demotions": st.demotions,
        "removals": st.removals,
        "move_cost_usd": st.move_cost_usd,
        "prewarm_precision": st.prewarm_precision,
        "prewarm_recall": st.prewarm_recall,
        "feed_cursor": st.feed_cursor,
        "policy": {
            "hot_ttl_ms": p.hot_ttl_ms,
            "warm_ttl_ms": p.warm_ttl_ms,
            "retention_ms": (p.retention_ms > 0).then_some(p.retention_ms),
            "hot_max_bytes": p.hot_max_bytes,
            "demote_interval_ms": p.demote_interval_ms,
        },
    });
    json_response(StatusCode::OK, body.to_string())
}

async fn metrics_text(State(s): State<HttpState>) -> Response {
    let mut buf = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&s.registry.gather(), &mut buf) {
        return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], buf).into_response()
}

/// 200 when every store answers and the feed is subscribed; else 503 naming what is down.
async fn ready(State(s): State<HttpState>) -> Response {
    let down = s.engine.stores_down().await;
    let feed = s.feed_connected.load(Ordering::Acquire);
    let mut deps = serde_json::Map::new();
    deps.insert(
        "outcome_feed".into(),
        Value::from(if feed { "ok" } else { "disconnected" }),
    );
    for e in &down {
        deps.insert(
            e.store.to_owned(),
            Value::from(format!("down: {}", e.message)),
        );
    }
    let ok = feed && down.is_empty();
    let body = json!({"ready": ok, "dependencies": deps});
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(status, body.to_string())
}
