//! svc-tiering inside `flk up`, through the gateway: a decided PCS is read back from the tier
//! that holds it (`X-Flk-Tier`), its body byte for byte as submitted, over REST and the
//! gateway's gRPC `TieringService`; another tenant's token finds nothing (404, NOT_FOUND), and
//! the admin RPCs need the admin token.

mod common;

use std::time::{Duration, Instant};

use flk_proto::v1;
use flk_runtime::client::{EndpointOptions, Peer, TieringClient};
use serde_json::Value;

const ACME: &str = common::ACME_TOKEN;
const OTHER: &str = common::OTHER_TOKEN;

/// An accepted golden vector as `(pcs_id, body)`, the body pretty-printed so that a server
/// that re-serialised it could not return the same bytes.
fn accepted() -> (String, String) {
    let pcs = common::accepted_pcs();
    (
        pcs["pcs_id"].as_str().unwrap().to_owned(),
        serde_json::to_string_pretty(&pcs).unwrap() + "\n",
    )
}

fn bearer(token: &str) -> reqwest::Client {
    common::token_client(token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_are_read_back_from_their_tier_byte_for_byte_and_only_by_their_tenant() {
    let tmp = tempfile::tempdir().unwrap();
    let tenants = common::two_tenants(tmp.path());
    let up = common::up_with(&["--tenants", tenants.to_str().unwrap()]);
    let (pcs_id, body) = accepted();
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/pcs/submit", up.url))
        .header("x-tenant-id", "acme")
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);

    // svc-tiering consumes the feed: the body is served once the record has arrived.
    let acme = bearer(ACME);
    let body_url = format!("{}/v1/pcs/{pcs_id}/body", up.url);
    let deadline = Instant::now() + Duration::from_secs(30);
    let got = loop {
        let r = acme.get(&body_url).send().await.unwrap();
        if r.status().as_u16() == 200 {
            break r;
        }
        assert_eq!(r.status().as_u16(), 404, "before the record arrives");
        assert!(
            Instant::now() < deadline,
            "the body never reached svc-tiering"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(got.headers()["x-flk-tier"], "hot");
    assert_eq!(got.headers()["content-type"], "application/json");
    assert_eq!(
        got.bytes().await.unwrap(),
        body.as_bytes(),
        "body not byte-identical"
    );

    let r = acme
        .get(format!("{}/v1/pcs/{pcs_id}", up.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["x-flk-tier"], "hot");
    let outcome: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(outcome["pcs_id"], pcs_id.as_str());
    assert_eq!(outcome["outcome"], "accepted");
    assert_eq!(
        outcome["duplicate"], true,
        "a stored outcome is a duplicate answer"
    );

    // Another tenant: not found, as an unknown id (existence is not revealed).
    let other = bearer(OTHER);
    for url in [body_url.clone(), format!("{}/v1/pcs/{pcs_id}", up.url)] {
        let r = other.get(&url).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 404, "{url}");
        assert!(r.headers().get("x-flk-tier").is_none());
    }

    // The same over the gateway's gRPC port.
    let grpc = |token: &str| {
        let peer = Peer::with_token(token).unwrap();
        let url = up.url.clone();
        async move {
            TieringClient::new(
                peer.connect(&url, EndpointOptions::default())
                    .await
                    .unwrap(),
            )
        }
    };
    let req = || v1::GetRecordRequest {
        tenant_id: String::new(),
        pcs_id: pcs_id.clone(),
    };
    let mut acme_grpc = grpc(ACME).await;
    let rec = acme_grpc.get(req()).await.unwrap().into_inner();
    assert_eq!(rec.tier, "hot");
    assert_eq!(rec.outcome.unwrap().pcs_id, pcs_id);
    let b = acme_grpc.get_body(req()).await.unwrap().into_inner();
    assert_eq!(b.body, body.as_bytes());
    let mut other_grpc = grpc(OTHER).await;
    let err = other_grpc.get(req()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    // Live figures are the operator's: a tenant token is refused, the admin token answered.
    let err = acme_grpc
        .stats(v1::TieringStatsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    let mut admin = grpc(&up.token("admin.token")).await;
    let stats = admin
        .stats(v1::TieringStatsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let hot = stats.tiers.iter().find(|t| t.tier == "hot").unwrap();
    assert_eq!(hot.records, 1);
}
