//! svc-kpi inside `flk up`, through the gateway: decisions submitted to the gateway reach the
//! KPI report through svc-verify's feed; reviewer feedback is accepted, refused with the
//! contract's statuses (404 unknown pcs_id, 400 bad verdict, 409 verdict not applicable), and
//! changes the report.

mod common;

use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The golden verification vectors are signed with this key (HMAC digest mode).
const VECTOR_SECRET: &str = "testsecret";

/// `(pcs_id, outcome, PCS JSON)` of golden vectors the default policy accepts or escalates.
fn vectors() -> Vec<(String, String, String)> {
    let text = include_str!("../../flk-core/tests/data/verify_vectors.json");
    let doc: Value = serde_json::from_str(text).unwrap();
    doc["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| matches!(v["expect"]["http_status"].as_u64(), Some(200 | 202)))
        .map(|v| {
            (
                v["pcs"]["pcs_id"].as_str().unwrap().to_owned(),
                v["expect"]["outcome"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                serde_json::to_string(&v["pcs"]).unwrap(),
            )
        })
        .collect()
}

async fn report(client: &reqwest::Client, url: &str) -> Value {
    let resp = client
        .get(format!("{url}/v1/kpi/report?window=1h"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap()
}

async fn feedback(
    client: &reqwest::Client,
    url: &str,
    pcs_id: &str,
    verdict: &str,
) -> (u16, Value) {
    let resp = client
        .post(format!("{url}/v1/feedback"))
        .header("content-type", "application/json")
        .body(json!({"pcs_id": pcs_id, "verdict": verdict}).to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn feedback_and_reports_go_through_the_gateway_to_svc_kpi() {
    let up = common::up_with(&["--hmac-key", VECTOR_SECRET]);
    let client = common::token_client(&up.token("default.token"));
    let all = vectors();
    let accepted = all
        .iter()
        .find(|v| v.1 == "accepted")
        .expect("an accepted vector");
    let escalated = all
        .iter()
        .find(|v| v.1 == "escalated")
        .expect("an escalated vector");
    for (_, _, body) in [accepted, escalated] {
        let resp = client
            .post(format!("{}/v1/pcs/submit", up.url))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{}", resp.status());
    }

    // svc-kpi consumes the feed asynchronously: poll until both decisions are counted.
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = loop {
        let r = report(&client, &up.url).await;
        if r["decisions"] == 2 {
            break r;
        }
        assert!(Instant::now() < deadline, "decisions not counted: {r}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(first["tenant_id"], "default");
    assert_eq!(
        (first["accepted"].as_u64(), first["escalated"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(first["hallucinations_reported"], 0);

    assert_eq!(
        feedback(&client, &up.url, &accepted.0, "hallucination")
            .await
            .0,
        200
    );
    let unknown = "0".repeat(64);
    let (status, body) = feedback(&client, &up.url, &unknown, "correct").await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = feedback(&client, &up.url, &accepted.0, "maybe").await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = feedback(&client, &up.url, &accepted.0, "false_alarm").await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "verdict_not_applicable", "{body}");

    let after = report(&client, &up.url).await;
    assert_eq!(after["hallucinations_reported"], 1, "{after}");
    // 1 escalated caught, 1 accepted hallucination missed.
    assert_eq!(after["containment_rate"], 0.5, "{after}");
}
