//! svc-verify's port answers nobody without credentials: with no mTLS and no configured token
//! it generates one (`<data_dir>/admin.token`) and every RPC and route but the probes needs it,
//! reads and the outcome feed included.

mod common;

use common::*;
use flk_proto::v1;
use flk_runtime::client::{EndpointOptions, Peer};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_and_route_but_the_probes_needs_the_token() {
    let h = Harness::start(Backend::Embedded).await;
    let token = token_of(h.data_dir());
    assert!(token.starts_with("flk_"), "a generated token: {token}");
    let pcs = fresh_accepted("auth");
    let mut admin = h.client().await;
    submit_ok(&mut admin, json_request(TENANT, &pcs)).await;

    let url = format!("http://{}", h.addr());
    for peer in [
        Peer::plain(),
        Peer::with_token("flk_not-the-token").unwrap(),
    ] {
        let channel = peer
            .connect(&url, EndpointOptions::default())
            .await
            .unwrap();
        let mut c = VerifyClient::new(channel);
        let err = c.submit(json_request(TENANT, &pcs)).await.unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "Submit: {err:?}");
        let err = c
            .get_outcome(get_request(TENANT, &pcs_id_of(&pcs)))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "GetOutcome: {err:?}");
        let err = c
            .subscribe(v1::SubscribeRequest { from_seq: 1 })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "Subscribe: {err:?}");
        let bad = peer.token();
        let (status, body) = http_get(h.addr(), "/metrics", bad).await;
        assert_eq!(status, 401, "{body}");
        assert!(body.contains("\"unauthenticated\""), "{body}");
    }
    // The probes stay open; the token opens the rest.
    assert_eq!(http_get(h.addr(), "/health", None).await.0, 200);
    assert_eq!(http_get(h.addr(), "/ready", None).await.0, 200);
    assert_eq!(http_get(h.addr(), "/metrics", Some(&token)).await.0, 200);
    let got = admin
        .get_outcome(get_request(TENANT, &pcs_id_of(&pcs)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.pcs_id, pcs_id_of(&pcs));
}
