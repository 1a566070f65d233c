//! `POST /v1/feedback` and `GET /v1/kpi/report` on a gateway that cannot reach svc-kpi: 503
//! `kpi_unavailable` with `Retry-After`, and 413 for an oversized feedback body before anything
//! is forwarded. With a real svc-kpi behind it (`flk up`) the routes relay svc-kpi's answers
//! unchanged (flk/tests/kpi_up.rs).

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::Value;
use tokio::net::TcpListener;

async fn gateway(kpi_upstream: Option<String>) -> SocketAddr {
    let gw = gateway::Gateway::new(gateway::GatewayConfig {
        upstreams: vec!["http://127.0.0.1:9".into()],
        kpi_upstream,
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

async fn answer(resp: reqwest::Response) -> (u16, Option<String>, Value) {
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = resp.bytes().await.unwrap();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)));
    (status, retry, body)
}

async fn both_routes(addr: SocketAddr) -> Vec<(u16, Option<String>, Value)> {
    let client = reqwest::Client::new();
    let feedback = client
        .post(format!("http://{addr}/v1/feedback"))
        .header("authorization", common::bearer("acme"))
        .body(r#"{"pcs_id":"00","verdict":"correct"}"#)
        .send()
        .await
        .unwrap();
    let report = client
        .get(format!("http://{addr}/v1/kpi/report?window=1h"))
        .header("authorization", common::bearer("acme"))
        .send()
        .await
        .unwrap();
    vec![answer(feedback).await, answer(report).await]
}

#[tokio::test]
async fn kpi_routes_answer_503_without_a_kpi_upstream() {
    let addr = gateway(None).await;
    for (status, retry, body) in both_routes(addr).await {
        assert_eq!(status, 503, "{body}");
        assert_eq!(retry.as_deref(), Some("1"));
        assert_eq!(body["error"]["code"], "kpi_unavailable", "{body}");
    }
}

#[tokio::test]
async fn an_unreachable_kpi_upstream_is_503_and_big_bodies_are_413() {
    // A port nobody listens on: bind, note the port, close.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = gateway(Some(format!("http://127.0.0.1:{port}"))).await;
    for (status, _, body) in both_routes(addr).await {
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"]["code"], "kpi_unavailable", "{body}");
    }
    let big = reqwest::Client::new()
        .post(format!("http://{addr}/v1/feedback"))
        .body(vec![b' '; 70 * 1024])
        .send()
        .await
        .unwrap();
    let (status, _, body) = answer(big).await;
    assert_eq!(status, 413, "{body}");
}

// A runtime: `Gateway::new` creates its (lazy) upstream channels.
#[tokio::test]
async fn a_kpi_upstream_must_be_an_http_url() {
    for bad in ["ftp://x", "not a url"] {
        let Err(err) = gateway::Gateway::new(gateway::GatewayConfig {
            upstreams: vec!["http://127.0.0.1:9".into()],
            kpi_upstream: Some(bad.into()),
            ..Default::default()
        }) else {
            panic!("{bad} accepted as a kpi upstream");
        };
        assert!(err.to_string().contains("kpi upstream"), "{err}");
    }
}
