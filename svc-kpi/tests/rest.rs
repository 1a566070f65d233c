//! REST status and body shapes of `POST /v1/feedback` and `GET /v1/kpi/report`, through the
//! router the service serves (no network: `tower::ServiceExt::oneshot`).

mod common;

use std::sync::Arc;

use axum::body::Body;
use common::*;
use flk_proto::v1::OutcomeKind::{Accepted, Escalated, Rejected};
use http::Request;
use serde_json::{Value, json};
use svc_kpi::{ManualClock, Service};
use tower::ServiceExt as _;

async fn service(dir: &std::path::Path) -> (Service, axum::Router) {
    let clock = ManualClock::new(T0);
    let s = Service::open_with_clock(&config(dir, "http://127.0.0.1:1"), Arc::new(clock))
        .await
        .unwrap();
    s.kpi()
        .apply(&[
            decision(1, "default", 1, Accepted, T0 - MINUTE, 1000),
            decision(2, "default", 2, Escalated, T0 - MINUTE, 1000),
            decision(3, "default", 3, Rejected, T0 - MINUTE, 1000),
            decision(4, "acme", 4, Accepted, T0 - MINUTE, 1000),
        ])
        .unwrap();
    let router = svc_kpi::http::routes(s.kpi().clone());
    (s, router)
}

async fn call(
    router: &axum::Router,
    method: &str,
    uri: &str,
    tenant: Option<&str>,
    body: &str,
) -> (u16, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = tenant {
        req = req.header("x-tenant-id", t);
    }
    if !body.is_empty() {
        req = req.header("content-type", "application/json");
    }
    let resp = router
        .clone()
        .oneshot(req.body(Body::from(body.to_owned())).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    if bytes.is_empty() {
        return (status, Value::Null);
    }
    assert_eq!(ct.as_deref(), Some("application/json"), "{uri}");
    (status, serde_json::from_slice(&bytes).unwrap())
}

fn feedback(pcs: u64, verdict: &str) -> String {
    json!({"pcs_id": pcs_id(pcs), "verdict": verdict}).to_string()
}

#[track_caller]
fn assert_error(got: (u16, Value), status: u16, code: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    assert_eq!(got.1["error"]["code"], code, "{}", got.1);
    let message = got.1["error"]["message"].as_str().unwrap();
    assert!(!message.is_empty() && !message.starts_with(char::is_uppercase));
    assert_eq!(got.1.as_object().unwrap().len(), 1);
}

#[tokio::test]
async fn feedback_answers_200_404_400_and_409() {
    let dir = tempfile::tempdir().unwrap();
    let (_s, r) = service(dir.path()).await;

    let (status, body) = call(
        &r,
        "POST",
        "/v1/feedback",
        None,
        &feedback(1, "hallucination"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({
            "tenant_id": "default",
            "pcs_id": pcs_id(1),
            "outcome": "accepted",
            "verdict": "hallucination",
            "previous_verdict": null,
            "decided_at_unix_ms": T0 - MINUTE,
        })
    );
    // A later verdict replaces it.
    let (status, body) = call(&r, "POST", "/v1/feedback", None, &feedback(1, "correct")).await;
    assert_eq!(status, 200);
    assert_eq!(body["previous_verdict"], "hallucination");
    let (status, body) = call(
        &r,
        "POST",
        "/v1/feedback",
        Some("default"),
        &feedback(3, "false_alarm"),
    )
    .await;
    assert_eq!((status, body["outcome"].as_str()), (200, Some("rejected")));

    // Unknown pcs_id for that tenant (it exists for acme only).
    assert_error(
        call(&r, "POST", "/v1/feedback", None, &feedback(4, "correct")).await,
        404,
        "not_found",
    );
    assert_error(
        call(&r, "POST", "/v1/feedback", None, &feedback(99, "correct")).await,
        404,
        "not_found",
    );
    let (status, _) = call(
        &r,
        "POST",
        "/v1/feedback",
        Some("acme"),
        &feedback(4, "correct"),
    )
    .await;
    assert_eq!(status, 200);
    // Bad verdicts and bodies.
    assert_error(
        call(&r, "POST", "/v1/feedback", None, &feedback(1, "maybe")).await,
        400,
        "invalid_verdict",
    );
    assert_error(
        call(
            &r,
            "POST",
            "/v1/feedback",
            None,
            &json!({"pcs_id": pcs_id(1)}).to_string(),
        )
        .await,
        400,
        "invalid_verdict",
    );
    assert_error(
        call(&r, "POST", "/v1/feedback", None, "{not json").await,
        400,
        "invalid_request",
    );
    assert_error(
        call(
            &r,
            "POST",
            "/v1/feedback",
            None,
            &json!({"verdict": "correct"}).to_string(),
        )
        .await,
        400,
        "invalid_request",
    );
    // Verdicts that do not apply to the outcome.
    assert_error(
        call(
            &r,
            "POST",
            "/v1/feedback",
            None,
            &feedback(2, "hallucination"),
        )
        .await,
        409,
        "verdict_not_applicable",
    );
    assert_error(
        call(
            &r,
            "POST",
            "/v1/feedback",
            None,
            &feedback(1, "false_alarm"),
        )
        .await,
        409,
        "verdict_not_applicable",
    );
}

#[tokio::test]
async fn report_answers_the_documented_shape_and_refuses_bad_windows() {
    let dir = tempfile::tempdir().unwrap();
    let (_s, r) = service(dir.path()).await;
    call(
        &r,
        "POST",
        "/v1/feedback",
        None,
        &feedback(2, "false_alarm"),
    )
    .await;

    for w in ["1h", "24h", "7d"] {
        let (status, body) = call(&r, "GET", &format!("/v1/kpi/report?window={w}"), None, "").await;
        assert_eq!(status, 200, "{body}");
        for key in [
            "tenant_id",
            "window",
            "decisions",
            "accepted",
            "escalated",
            "rejected",
            "hallucinations_reported",
            "false_alarms",
            "containment_rate",
            "escalation_rate",
            "false_alarm_rate",
            "cost_per_trusted_task_usd",
            "cost_breakdown_usd",
            "audit_coverage",
            "verify_latency_p95_ms",
            "slo",
            "regimes",
            "signals",
        ] {
            assert!(body.get(key).is_some(), "{key} missing in {body}");
        }
        for c in ["compute", "storage", "network", "anchoring"] {
            assert!(body["cost_breakdown_usd"][c].is_number(), "{c}");
        }
        assert_eq!(body["window"], w);
        assert_eq!(body["tenant_id"], "default");
        assert_eq!(body["decisions"], 3);
        assert_eq!(body["false_alarms"], 1);
        // caught = 2 - 1 = 1, no hallucinations: 1/1.
        assert_eq!(body["containment_rate"], 1.0);
        assert_eq!(body["escalation_rate"], 2.0 / 3.0);
        assert_eq!(body["false_alarm_rate"], 0.5);
        assert!(body["audit_coverage"].is_null());
        assert_eq!(body["slo"]["containment"]["ok"], true);
        assert_eq!(body["slo"]["escalation"]["ok"], false);
    }
    let (status, body) = call(&r, "GET", "/v1/kpi/report", Some("acme"), "").await;
    assert_eq!((status, body["window"].as_str()), (200, Some("24h")));
    assert_eq!(body["decisions"], 1);
    assert!(body["containment_rate"].is_null(), "0/0 is null");
    assert!(body["false_alarm_rate"].is_null());
    let (_, body) = call(&r, "GET", "/v1/kpi/report?window=1h", Some("nobody"), "").await;
    assert_eq!(body["decisions"], 0);
    assert!(body["escalation_rate"].is_null());
    assert!(body["cost_per_trusted_task_usd"].is_null());
    assert_error(
        call(&r, "GET", "/v1/kpi/report?window=2h", None, "").await,
        400,
        "invalid_window",
    );
    assert_error(
        call(&r, "GET", "/v1/kpi/report?window=", None, "").await,
        400,
        "invalid_window",
    );
}

#[tokio::test]
async fn anchor_batches_are_an_input_of_the_anchoring_cost() {
    let dir = tempfile::tempdir().unwrap();
    let (_s, r) = service(dir.path()).await;
    let (status, _) = call(
        &r,
        "POST",
        "/v1/kpi/anchors",
        None,
        &json!({"strategy": "rfc3161", "batches": 2, "at_unix_ms": T0}).to_string(),
    )
    .await;
    assert_eq!(status, 204);
    let (_, body) = call(&r, "GET", "/v1/kpi/report?window=1h", None, "").await;
    // 2 batches x 0.5 USD, default's share 3 of 4 decisions.
    assert_eq!(body["cost_breakdown_usd"]["anchoring"], 0.75);
    assert_error(
        call(
            &r,
            "POST",
            "/v1/kpi/anchors",
            None,
            &json!({"strategy": "chain", "batches": 1}).to_string(),
        )
        .await,
        400,
        "invalid_request",
    );
    assert_error(
        call(&r, "POST", "/v1/kpi/anchors", None, "[]").await,
        400,
        "invalid_request",
    );
}
