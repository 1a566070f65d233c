//! `/v1/audit/*` on a gateway that cannot ask svc-audit: without an audit upstream every route
//! answers 503 `audit_unavailable` with the contract's error body (whatever the query), and so
//! does a configured upstream nobody listens on. The routes with a real svc-audit behind them
//! are tested end to end through `flk up` (flk/tests/audit_up.rs).

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::Value;
use tokio::net::TcpListener;

async fn gateway(audit_upstream: Option<String>) -> SocketAddr {
    let gw = gateway::Gateway::new(gateway::GatewayConfig {
        // Never dialled by these routes (channels are lazy).
        upstreams: vec!["http://127.0.0.1:9".into()],
        audit_upstream,
        api_tokens: common::api_tokens(&["acme"]),
        ..Default::default()
    })
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(gateway::serve(
        listener,
        Arc::clone(&gw),
        std::future::pending(),
    ));
    addr
}

/// GETs `path` and returns the status, the `Retry-After` header and the JSON body.
async fn get(addr: SocketAddr, path: &str) -> (u16, Option<String>, Value) {
    let resp = reqwest::Client::new()
        .get(format!("http://{addr}{path}"))
        .header("authorization", common::bearer("acme"))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = resp.bytes().await.unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "{path}: not JSON ({e}): {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    (status, retry, body)
}

const PATHS: [&str; 5] = [
    "/v1/audit/checkpoint",
    "/v1/audit/proof/0000000000000000000000000000000000000000000000000000000000000000",
    "/v1/audit/consistency?from=1&to=2",
    // Not even the query is looked at without svc-audit.
    "/v1/audit/consistency?from=x",
    "/v1/audit/consistency",
];

#[tokio::test]
async fn audit_routes_answer_503_without_an_audit_upstream() {
    let addr = gateway(None).await;
    for path in PATHS {
        let (status, retry, body) = get(addr, path).await;
        assert_eq!(status, 503, "{path}: {body}");
        assert_eq!(retry.as_deref(), Some("1"), "{path}");
        assert_eq!(body["error"]["code"], "audit_unavailable", "{path}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("--audit-upstream"), "{path}: {message}");
        assert_eq!(body.as_object().unwrap().len(), 1, "{path}: {body}");
    }
}

#[tokio::test]
async fn an_unreachable_audit_upstream_is_503_too() {
    // A port that was just free: nothing listens on it.
    let free = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = free.local_addr().unwrap();
    drop(free);
    let addr = gateway(Some(format!("http://{dead}"))).await;
    for path in &PATHS[..3] {
        let (status, _, body) = get(addr, path).await;
        assert_eq!(status, 503, "{path}: {body}");
        assert_eq!(body["error"]["code"], "audit_unavailable", "{path}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("not reachable"),
            "{path}: {body}"
        );
    }
    // A malformed range is the caller's error once svc-audit is configured.
    let (status, _, body) = get(addr, "/v1/audit/consistency?from=x&to=1").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_range");
}
