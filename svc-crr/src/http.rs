//! svc-crr's REST routes and the JSON documents its admin gRPC calls answer too:
//!
//! | route | answer |
//! |---|---|
//! | `GET /v1/crr/status` | `{"region", "reconcile_mode", "peers": [{"region", "url", "connected", "acked_watermark", "received_watermark", "backlog", "lag_seconds", "last_error", "divergence"}], "alerts": [{"gate", "target", "value", "limit"}]}` |
//! | `GET /v1/crr/divergence?peer=R` | `{"peer", "missing_here": [{"tenant_id", "pcs_id"}], "missing_there": [...], "conflicting": [...]}` |
//! | `GET /v1/crr/proposals?state=pending` | `{"proposals": [...]}` (`state`: pending, approved, rejected, applied, failed, all) |
//! | `POST /v1/crr/proposals/{id}/approve`, `/reject` | the proposal after the decision (body `{"actor": "..."}` optional) |
//! | `GET /v1/crr/policies`, `PUT /v1/crr/policies` | the run-time policies (`[[crr.policies]]` entries as a JSON array) |
//!
//! plus `/health`, `/ready` (503 while no peer link is up when peers are configured, naming
//! each peer's error) and `/metrics`. Every route but the probes needs the port's credential.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use flk_proto::{ApiError, ErrorKind};
use flk_runtime::http::{error_response, json_response};
use prometheus::Registry;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::policy::PolicySpec;
use crate::{Core, now_ms, reconcile};

/// The status document.
pub fn status_doc(core: &Core) -> Value {
    let head = core.head.load(std::sync::atomic::Ordering::Relaxed);
    let now = now_ms();
    let divergence = core
        .last_divergence
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let gates = &core.cfg.health;
    let mut peers = Vec::new();
    let mut alerts = Vec::new();
    for link in &core.links {
        let st = link.state.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let backlog = head.saturating_sub(st.acked);
        // The oldest record in flight; with a backlog and nothing in flight (the link is
        // down), at least the time since the peer last acknowledged.
        let lag_ms = match st.oldest_unacked_ms() {
            Some(t) => now - t,
            None if backlog > 0 => now - st.progress_ms,
            None => 0,
        };
        let lag = lag_ms.max(0) as f64 / 1000.0;
        core.metrics
            .lag_seconds
            .with_label_values(&[&link.region])
            .set(lag);
        core.metrics
            .backlog
            .with_label_values(&[&link.region])
            .set(backlog as i64);
        let received = core.store.recv_acked(&link.region).unwrap_or(0);
        let errors_hour = st.errors.iter().filter(|t| **t >= now - 3_600_000).count() as u64;
        let diverged = divergence.get(&link.region).copied();
        let mut gate = |name: &str, breached: bool, value: Value, limit: Value| {
            core.metrics
                .alert
                .with_label_values(&[name, &link.region])
                .set(i64::from(breached));
            if breached {
                alerts.push(
                    json!({"gate": name, "target": link.region, "value": value, "limit": limit}),
                );
            }
        };
        gate(
            "max_lag",
            lag > gates.max_lag_seconds,
            json!(lag),
            json!(gates.max_lag_seconds),
        );
        gate(
            "max_ship_errors_per_hour",
            errors_hour > gates.max_ship_errors_per_hour,
            json!(errors_hour),
            json!(gates.max_ship_errors_per_hour),
        );
        gate(
            "max_divergence",
            diverged.unwrap_or(0) as u64 > gates.max_divergence,
            json!(diverged),
            json!(gates.max_divergence),
        );
        peers.push(json!({
            "region": link.region,
            "url": link.url,
            "connected": st.connected,
            "acked_watermark": st.acked,
            "received_watermark": received,
            "backlog": backlog,
            "lag_seconds": lag,
            "last_error": st.last_error,
            "divergence": diverged,
        }));
    }
    json!({
        "region": core.cfg.region,
        "reconcile_mode": core.cfg.reconcile_mode,
        "feed_head": head,
        "peers": peers,
        "alerts": alerts,
    })
}

/// A fresh comparison with `peer` (nothing is repaired by asking).
pub async fn divergence_doc(core: &Core, peer: &str) -> Result<Value, ApiError> {
    if peer.is_empty() {
        return Err(ApiError::new(
            ErrorKind::InvalidArgument,
            "missing_peer",
            "name the peer region: ?peer=REGION",
        ));
    }
    let d = reconcile::divergence(core, peer).await?;
    let mut doc = serde_json::to_value(&d).unwrap_or_default();
    if let Some(m) = doc.as_object_mut() {
        m.insert("peer".into(), json!(peer));
    }
    Ok(doc)
}

pub fn proposals_doc(core: &Core, state: &str) -> Result<Value, ApiError> {
    let state = if state.is_empty() { "pending" } else { state };
    if ![
        "pending", "approved", "rejected", "applied", "failed", "all",
    ]
    .contains(&state)
    {
        return Err(ApiError::new(
            ErrorKind::InvalidArgument,
            "invalid_state",
            format!(
                "`state` must be pending, approved, rejected, applied, failed or all, got {state:?}"
            ),
        ));
    }
    let all = core
        .store
        .proposals()
        .map_err(|e| ApiError::new(ErrorKind::Unavailable, "store_unavailable", e.to_string()))?;
    let list: Vec<_> = all
        .into_iter()
        .filter(|p| state == "all" || p.state == state)
        .collect();
    Ok(json!({ "proposals": list }))
}

pub async fn decide_doc(
    core: &Core,
    id: &str,
    decision: &str,
    actor: &str,
) -> Result<Value, ApiError> {
    let approve = match decision {
        "approve" => true,
        "reject" => false,
        other => {
            return Err(ApiError::new(
                ErrorKind::InvalidArgument,
                "invalid_decision",
                format!("`decision` must be approve or reject, got {other:?}"),
            ));
        }
    };
    let p = reconcile::decide(core, id, approve, actor).await?;
    Ok(serde_json::to_value(p).unwrap_or_default())
}

pub fn set_policies_doc(core: &Core, text: &str) -> Result<Value, ApiError> {
    let specs: Vec<PolicySpec> = serde_json::from_str(text).map_err(|e| {
        ApiError::new(
            ErrorKind::InvalidArgument,
            "invalid_policies",
            format!("policies must be a JSON array of policy entries: {e}"),
        )
    })?;
    core.set_policies(specs)
        .map_err(|m| ApiError::new(ErrorKind::InvalidArgument, "invalid_policies", m))?;
    Ok(policies_doc(core))
}

fn policies_doc(core: &Core) -> Value {
    json!({ "policies": core.policy_set().specs })
}

fn answer(r: Result<Value, ApiError>) -> Response {
    match r {
        Ok(v) => json_response(StatusCode::OK, v.to_string()),
        Err(e) => error_response(&e),
    }
}

/// Query parameters (any string parses, so a bad one is answered by the route's own JSON
/// error rather than the extractor's plain-text rejection).
type Params = std::collections::HashMap<String, String>;

#[derive(Deserialize, Default)]
struct DecideBody {
    #[serde(default)]
    actor: Option<String>,
}

async fn ready(core: &Core) -> Response {
    let mut deps = serde_json::Map::new();
    let mut ok = true;
    for link in &core.links {
        let st = link.state.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let text = if st.connected {
            "ok".to_owned()
        } else {
            ok = false;
            st.last_error.unwrap_or_else(|| "connecting".to_owned())
        };
        deps.insert(format!("peer_{}", link.region), json!(text));
    }
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(
        status,
        json!({"ready": ok, "dependencies": deps}).to_string(),
    )
}

/// The REST routes on `core`.
pub fn router(core: Arc<Core>, registry: Registry) -> axum::Router {
    axum::Router::new()
        .route("/health", get(|| async { "OK" }))
        .route(
            "/ready",
            get(|State(core): State<Arc<Core>>| async move { ready(&core).await }),
        )
        .route(
            "/metrics",
            get(move || {
                let registry = registry.clone();
                async move {
                    let mut buf = String::new();
                    let encoder = prometheus::TextEncoder::new();
                    let _ = encoder.encode_utf8(&registry.gather(), &mut buf);
                    ([("content-type", "text/plain; version=0.0.4")], buf).into_response()
                }
            }),
        )
        .route(
            "/v1/crr/status",
            get(|State(core): State<Arc<Core>>| async move { answer(Ok(status_doc(&core))) }),
        )
        .route(
            "/v1/crr/divergence",
            get(
                |State(core): State<Arc<Core>>, Query(q): Query<Params>| async move {
                    let peer = q.get("peer").cloned().unwrap_or_default();
                    answer(divergence_doc(&core, &peer).await)
                },
            ),
        )
        .route(
            "/v1/crr/proposals",
            get(
                |State(core): State<Arc<Core>>, Query(q): Query<Params>| async move {
                    let state = q.get("state").cloned().unwrap_or_default();
                    answer(proposals_doc(&core, &state))
                },
            ),
        )
        .route(
            "/v1/crr/proposals/{id}/{decision}",
            post(
                |State(core): State<Arc<Core>>,
                 Path((id, decision)): Path<(String, String)>,
                 body: axum::body::Bytes| async move {
                    // No body (or `null`) is allowed; anything else must be `{"actor": ...}`.
                    let parsed: Result<Option<DecideBody>, _> = if body.is_empty() {
                        Ok(None)
                    } else {
                        serde_json::from_slice(&body)
                    };
                    let actor = match parsed {
                        Ok(b) => b.and_then(|b| b.actor).unwrap_or_else(|| "rest".to_owned()),
                        Err(e) => {
                            return error_response(&ApiError::new(
                                ErrorKind::InvalidArgument,
                                "malformed_body",
                                format!("the body must be {{\"actor\": \"...\"}}: {e}"),
                            ));
                        }
                    };
                    answer(decide_doc(&core, &id, &decision, &actor).await)
                },
            ),
        )
        .route(
            "/v1/crr/policies",
            get(|State(core): State<Arc<Core>>| async move { answer(Ok(policies_doc(&core))) })
                .put(|State(core): State<Arc<Core>>, body: String| async move {
                    answer(set_policies_doc(&core, &body))
                }),
        )
        .with_state(core)
}
