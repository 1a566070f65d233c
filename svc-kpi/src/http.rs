//! The HTTP side of the listener: the KPI REST routes ([`api_routes`], which a front such as
//! the gateway can mount as they are) and `/health`, `/ready`, `/metrics`.
//!
//! | route | answer |
//! |---|---|
//! | `POST /v1/feedback` `{"pcs_id", "verdict"}` | 200 `{"tenant_id", "pcs_id", "outcome", "verdict", "previous_verdict", "decided_at_unix_ms"}`; 400 `invalid_request` (body), 400 `invalid_verdict`, 404 `not_found`, 409 `verdict_not_applicable` |
//! | `GET /v1/kpi/report?window=1h\|24h\|7d` | 200 the [`KpiReport`] (default window 24h); 400 `invalid_window` |
//! | `POST /v1/kpi/anchors` `{"strategy", "batches", "at_unix_ms"?}` | 204; 400 `invalid_request` (unknown strategy) |
//!
//! The tenant is the `X-Tenant-Id` header (default `default`). Errors are the PROTOCOL.md
//! error body `{"error": {"code", "message"}}` from [`ApiError`].

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use flk_proto::{ApiError, DEFAULT_TENANT};
use serde_json::{Value, json};

use crate::error::{KpiError, error_response, json_response};
use crate::model::Window;
use crate::report::KpiReport;
use crate::{Kpi, blocking, metrics};

/// The KPI API routes, with their state: mountable by any axum front.
pub fn api_routes(kpi: Arc<Kpi>) -> axum::Router {
    axum::Router::new()
        .route("/v1/feedback", post(feedback))
        .route("/v1/kpi/report", get(report))
        .route("/v1/kpi/anchors", post(anchors))
        .with_state(kpi)
}

/// Every HTTP route of the service (merged with the gRPC routes by [`crate::Service::serve`]).
pub fn routes(kpi: Arc<Kpi>) -> axum::Router {
    axum::Router::new()
        .route("/health", get(|| async { "OK" }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics_text))
        .with_state(kpi.clone())
        .merge(api_routes(kpi))
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

fn fail(e: KpiError) -> Response {
    error_response(&ApiError::from(e))
}

fn bad_body(m: &str) -> Response {
    fail(KpiError::InvalidRequest(m.to_owned()))
}

async fn feedback(State(kpi): State<Arc<Kpi>>, headers: HeaderMap, body: Bytes) -> Response {
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return bad_body("body must be a JSON object {\"pcs_id\", \"verdict\"}");
    };
    let Some(pcs_id) = v.get("pcs_id").and_then(Value::as_str).map(str::to_owned) else {
        return bad_body("`pcs_id` must be a string");
    };
    let Some(verdict) = v.get("verdict").and_then(Value::as_str).map(str::to_owned) else {
        return fail(KpiError::InvalidVerdict);
    };
    let tenant = tenant(&headers);
    let (t, p) = (tenant.clone(), pcs_id.clone());
    match blocking(&kpi, move |k| k.feedback(&t, &p, &verdict)).await {
        Ok(r) => json_response(
            StatusCode::OK,
            json!({
                "tenant_id": tenant,
                "pcs_id": pcs_id,
                "outcome": r.outcome.as_str(),
                "verdict": r.verdict.as_str(),
                "previous_verdict": r.previous.map(|v| v.as_str()),
                "decided_at_unix_ms": r.decided_at_unix_ms,
            })
            .to_string(),
        ),
        Err(e) => fail(e),
    }
}

/// `window` from the query string (default 24h).
fn window_of(query: Option<&str>) -> Result<Window, KpiError> {
    let mut window = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == "window" {
            if window.is_some() {
                return Err(KpiError::InvalidWindow);
            }
            window = Some(Window::parse(v).ok_or(KpiError::InvalidWindow)?);
        }
    }
    Ok(window.unwrap_or(Window::Day))
}

/// The REST body of a report.
pub fn report_json(r: &KpiReport) -> String {
    serde_json::to_string(r).unwrap_or_default()
}

async fn report(
    State(kpi): State<Arc<Kpi>>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let window = match window_of(q.as_deref()) {
        Ok(w) => w,
        Err(e) => return fail(e),
    };
    let tenant = tenant(&headers);
    match blocking(&kpi, move |k| k.report(&tenant, window)).await {
        Ok(r) => json_response(StatusCode::OK, report_json(&r)),
        Err(e) => fail(e),
    }
}

async fn anchors(State(kpi): State<Arc<Kpi>>, body: Bytes) -> Response {
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return bad_body("body must be a JSON object {\"strategy\", \"batches\"}");
    };
    let (Some(strategy), Some(batches)) = (
        v.get("strategy").and_then(Value::as_str).map(str::to_owned),
        v.get("batches").and_then(Value::as_u64),
    ) else {
        return bad_body("`strategy` must be a string and `batches` a non-negative integer");
    };
    let at = match v.get("at_unix_ms") {
        None | Some(Value::Null) => None,
        Some(x) => match x.as_i64() {
            Some(ms) => Some(ms),
            None => return bad_body("`at_unix_ms` must be an integer"),
        },
    };
    match blocking(&kpi, move |k| {
        k.record_anchor_batches(&strategy, batches, at)
    })
    .await
    {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => fail(e),
    }
}

async fn metrics_text(State(kpi): State<Arc<Kpi>>) -> Response {
    (
        [("content-type", "text/plain; version=0.0.4")],
        metrics::render(kpi.registry()),
    )
        .into_response()
}

/// 200 when subscribed to the feed and the store answers, else 503.
async fn ready(State(kpi): State<Arc<Kpi>>) -> Response {
    let feed = kpi.feed_connected();
    let store = blocking(&kpi, |k| k.store().cursor()).await.is_ok();
    let body = json!({
        "ready": feed && store,
        "dependencies": {
            "outcome_feed": if feed { "ok" } else { "disconnected" },
            "kpi_store": if store { "ok" } else { "failing" },
        }
    });
    let status = if feed && store {
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
    fn windows_parse_strictly() {
        assert_eq!(window_of(None).unwrap(), Window::Day);
        assert_eq!(window_of(Some("window=1h")).unwrap(), Window::Hour);
        assert_eq!(window_of(Some("x=1&window=7d")).unwrap(), Window::Week);
        for bad in ["window=2h", "window=", "window=1h&window=7d", "window=1H"] {
            assert!(window_of(Some(bad)).is_err(), "{bad}");
        }
    }
}
