//! The `TieringService` as the gateway calls it in process (Get, GetBody, Stats, SetPolicy,
//! NOT_FOUND and tenant isolation, validation), and the served port's `/ready` naming a
//! store that is down.

mod common;

use std::sync::Arc;

use common::*;
use flk_proto::v1;
use flk_proto::v1::tiering_service_server::TieringService as _;
use flk_runtime::security::ServerSecurity;
use svc_tiering::{ManualClock, Service, TieringConfig};
use tonic::{Code, Request};

fn get_req(tenant: &str, n: u64) -> Request<v1::GetRecordRequest> {
    Request::new(v1::GetRecordRequest {
        tenant_id: tenant.to_owned(),
        pcs_id: pcs_id(n),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_body_stats_and_policy_in_process() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let svc = open(&config(dir.path()), &clock).await;
    let g = svc.grpc();
    svc.engine()
        .ingest(&[decision(1, "acme", 1, T0), decision(2, "acme", 2, T0)])
        .await
        .unwrap();
    let r = g.get(get_req("acme", 1)).await.unwrap().into_inner();
    assert_eq!(r.tier, "hot");
    assert_eq!(r.decided_at_unix_ms, T0);
    let o = r.outcome.unwrap();
    assert_eq!((o.pcs_id.as_str(), o.seq), (pcs_id(1).as_str(), 1));
    assert!(
        o.duplicate,
        "a stored outcome is answered as one (PROTOCOL.md section 5)"
    );
    // Tenant from metadata when the field is empty.
    let mut req = get_req("", 2);
    req.metadata_mut()
        .insert("x-tenant-id", "acme".parse().unwrap());
    let b = g.get_body(req).await.unwrap().into_inner();
    assert_eq!(
        (b.body, b.content_type.as_str()),
        (body(2), "application/json")
    );
    for (tenant, n) in [("other", 1), ("acme", 3)] {
        let e = g.get(get_req(tenant, n)).await.unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{e:?}");
    }
    // SetPolicy applies without a restart: a shorter hot_ttl demotes on the next cycle.
    let p = g
        .set_policy(Request::new(v1::SetPolicyRequest {
            hot_ttl_ms: Some(1_000),
            retention_ms: Some(0),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (p.hot_ttl_ms, p.retention_ms, p.warm_ttl_ms),
        (1_000, 0, 7 * DAY as u64)
    );
    clock.advance(1_000);
    assert_eq!(svc.engine().cycle().await.unwrap().hot_to_warm, 2);
    let e = g
        .set_policy(Request::new(v1::SetPolicyRequest {
            demote_interval_ms: Some(1),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("demote_interval"), "{}", e.message());
    let b = g.get_body(get_req("acme", 2)).await.unwrap().into_inner();
    assert_eq!((b.tier.as_str(), b.body), ("warm", body(2)));
    let s = g
        .stats(Request::new(v1::TieringStatsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let rec = |t: &str| s.tiers.iter().find(|x| x.tier == t).unwrap().records;
    assert_eq!((rec("hot"), rec("warm"), rec("cold")), (1, 1, 0));
    let mv = |f: &str, t: &str| {
        s.moves
            .iter()
            .find(|m| m.from == f && m.to == t)
            .unwrap()
            .moves
    };
    assert_eq!((mv("hot", "warm"), mv("warm", "hot")), (2, 1));
    assert_eq!((s.demotions, s.promotions), (2, 1));
    assert_eq!(s.feed_cursor, 2);
    assert_eq!(s.policy.unwrap().hot_ttl_ms, 1_000);
    assert!(s.prewarm_precision.is_none());
    assert!(s.catalog.is_none(), "the catalog is walked only when asked");
    // An audit's walk of the catalog: the same records, with decision times and the records
    // decided more than the given span before the newest.
    svc.engine()
        .ingest(&[decision(3, "acme", 3, T0 + 5_000)])
        .await
        .unwrap();
    let c = g
        .stats(Request::new(v1::TieringStatsRequest {
            catalog: true,
            past_retention_after_ms: Some(4_000),
        }))
        .await
        .unwrap()
        .into_inner()
        .catalog
        .expect("catalog figures");
    let rec = |t: &str| c.tiers.iter().find(|x| x.tier == t).unwrap().records;
    assert_eq!((rec("hot"), rec("warm"), rec("cold")), (2, 1, 0));
    assert_eq!(c.pending_moves, 0);
    assert_eq!(
        (c.oldest_decided_unix_ms, c.newest_decided_unix_ms),
        (T0, T0 + 5_000)
    );
    assert_eq!(c.past_retention, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_names_the_store_that_is_down() {
    let mut redis = flk_testkit::RedisServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = TieringConfig {
        hot: redis.url(),
        ..config(dir.path())
    };
    let mut svc = Service::open_with_clock(&cfg, |_| None, Arc::new(ManualClock::new(T0)))
        .await
        .unwrap();
    svc.set_security(ServerSecurity::token("t0k"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(svc.serve(listener, async {
        let _ = rx.await;
    }));
    redis.kill().unwrap();
    let (status, _, body) = http_get(addr, "/ready", "t0k").await;
    let text = String::from_utf8(body).unwrap();
    assert_eq!(status, 503, "{text}");
    // Serving, it names its port in the data directory, and holds the catalog.
    assert_eq!(svc_tiering::read_addr_file(dir.path()).unwrap(), Some(addr));
    assert!(
        svc_tiering::catalog::Catalog::open_if_free(dir.path())
            .unwrap()
            .is_none()
    );
    assert!(text.contains("hot (redis)"), "{text}");
    let (status, _, _) = http_get(addr, "/v1/tiering/stats", "wrong").await;
    assert_eq!(status, 401);
    let (status, _, body) = http_get(addr, "/metrics", "t0k").await;
    assert_eq!(status, 200);
    let text = String::from_utf8(body).unwrap();
    assert_eq!(
        metric(&text, r#"flk_tiering_store_up{store="hot (redis)"}"#),
        Some(0.0)
    );
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}
