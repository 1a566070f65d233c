//! Replication between regions on loopback, each a real svc-verify and svc-crr: placement by
//! policy, catch-up after an outage (RPO and RTO measured), a region restored from an older
//! copy repaired by replay-missing, a conflict waiting for approval, a forged record refused,
//! and a converged pair without divergence, also after retention.

mod common;

use std::time::{Duration, Instant};

use common::*;
use flk_proto::v1;
use serde_json::Value;
use svc_crr::config::ReconcileMode;

/// Three regions, eu, us and ap, every one a peer of the others.
async fn three(dir: &std::path::Path, mode: ReconcileMode) -> Vec<Region> {
    let names = ["eu", "us", "ap"];
    let listeners = [bind().await, bind().await, bind().await];
    let addrs: Vec<_> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
    let mut out = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let peers: Vec<(&str, std::net::SocketAddr)> = (0..3)
            .filter(|j| *j != i)
            .map(|j| (names[j], addrs[j]))
            .collect();
        let d = dir.join(names[i]);
        std::fs::create_dir_all(&d).unwrap();
        let cfg = crr_config(names[i], &d, addrs[i], &peers, &names, mode);
        out.push(Region::start(names[i], &d, listener, cfg).await);
    }
    out
}

/// Two regions, eu and us.
async fn two(dir: &std::path::Path, mode: ReconcileMode) -> (Region, Region) {
    two_with(dir, mode, |_| {}).await
}

/// Replaces `r`'s run-time policies (`PUT /v1/crr/policies`).
async fn put_policies(r: &Region, policies: &Value) {
    let (c, base) = r.rest();
    let resp = c
        .put(format!("{base}/v1/crr/policies"))
        .body(policies.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

async fn divergence(r: &Region, peer: &str) -> Value {
    let (status, body) = r.get_json(&format!("/v1/crr/divergence?peer={peer}")).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Submits `records` to `from` and waits until `to` holds every one.
async fn replicate(from: &Region, to: &Region, tenant: &str, records: &[Value], what: &str) {
    for p in records {
        from.submit(tenant, p).await;
    }
    for p in records {
        eventually(30, what, || async {
            to.outcome(tenant, &id(p)).await.is_some()
        })
        .await;
    }
}

/// Waits until `from`'s first peer has acknowledged everything `from` has decided.
async fn drained(from: &Region, secs: u64) {
    let head = from.engine().log().last_seq();
    eventually(secs, "the backlog drained", || async {
        let (_, s) = from.get_json("/v1/crr/status").await;
        s["peers"][0]["acked_watermark"].as_u64() >= Some(head)
    })
    .await;
}

fn empty(d: &Value) -> bool {
    ["missing_here", "missing_there", "conflicting"]
        .iter()
        .all(|k| d[k].as_array().is_some_and(Vec::is_empty))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tenants_land_exactly_where_their_policies_say() {
    let dir = tempfile::tempdir().unwrap();
    let regions = three(dir.path(), ReconcileMode::AutoSafe).await;
    let (eu, us, ap) = (&regions[0], &regions[1], &regions[2]);

    let sel = pcs("sel-1", None);
    let mw_eu = pcs("mw-eu", None);
    let mw_us = pcs("mw-us", None);
    let full = pcs("full-1", None);
    let solo = pcs("solo-1", None);
    assert_eq!(eu.submit("sel", &sel).await, "accepted");
    assert_eq!(eu.submit("mw", &mw_eu).await, "accepted");
    assert_eq!(us.submit("mw", &mw_us).await, "accepted");
    assert_eq!(eu.submit("full", &full).await, "accepted");
    assert_eq!(eu.submit("solo", &solo).await, "accepted");

    // Expected placements; wait until every expected copy is there.
    let want: Vec<(&str, &Value, [bool; 3])> = vec![
        ("sel", &sel, [true, true, false]),
        ("mw", &mw_eu, [true, true, false]),
        ("mw", &mw_us, [true, true, false]),
        ("full", &full, [true, true, true]),
        ("solo", &solo, [true, false, false]),
    ];
    for (tenant, p, at) in &want {
        for (i, r) in regions.iter().enumerate() {
            if at[i] {
                eventually(30, &format!("{tenant} in {}", r.name), || async {
                    r.outcome(tenant, &id(p)).await.is_some()
                })
                .await;
            }
        }
    }
    // Every shipper has passed the last record: nothing more will arrive.
    for r in &regions {
        let head = r.engine().log().last_seq();
        eventually(30, "shippers caught up", || async {
            let (_, s) = r.get_json("/v1/crr/status").await;
            s["peers"].as_array().is_some_and(|ps| {
                ps.iter()
                    .all(|p| p["acked_watermark"].as_u64() >= Some(head))
            })
        })
        .await;
    }
    for (tenant, p, at) in &want {
        for (i, r) in regions.iter().enumerate() {
            let got = r.outcome(tenant, &id(p)).await;
            assert_eq!(got.is_some(), at[i], "{tenant} {} in {}", id(p), r.name);
            if let Some(body) = got {
                // Exactly once, with the origin's region and decision time.
                assert_eq!(r.decisions_of(tenant, &id(p)), 1, "{tenant} in {}", r.name);
                let origin = if std::ptr::eq(*p, &mw_us) { "us" } else { "eu" };
                assert_eq!(body["origin_region"], origin, "{body}");
                assert_eq!(body["replicated"], r.name != origin, "{body}");
            }
        }
    }
    // The origin's decision time everywhere.
    let at_eu = eu.outcome("full", &id(&full)).await.unwrap()["received_at"].clone();
    assert_eq!(
        ap.outcome("full", &id(&full)).await.unwrap()["received_at"],
        at_eu
    );
    assert_eq!(
        us.outcome("full", &id(&full)).await.unwrap()["received_at"],
        at_eu
    );

    // Converged: no divergence between any pair (keys the policies keep apart are not).
    for (a, b) in [(eu, "us"), (eu, "ap"), (us, "ap")] {
        let d = divergence(a, b).await;
        assert!(empty(&d), "{} vs {b}: {d}", a.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_region_catches_up_with_nothing_lost_or_duplicated() {
    let outage = Duration::from_secs(
        std::env::var("FLK_CRR_OUTAGE_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(60),
    );
    let dir = tempfile::tempdir().unwrap();
    let (eu, mut us) = two(dir.path(), ReconcileMode::AutoSafe).await;
    let before: Vec<Value> = (0..20).map(|i| pcs(&format!("pre-{i}"), None)).collect();
    replicate(&eu, &us, "full", &before, "replicated before the outage").await;

    us.stop().await;
    // eu keeps deciding while us is down: ~20 a second for the whole outage.
    let started = Instant::now();
    let mut during = Vec::new();
    let mut n = 0;
    while started.elapsed() < outage {
        let p = pcs(&format!("down-{n}"), None);
        eu.submit("full", &p).await;
        during.push(p);
        n += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, st) = eu.get_json("/v1/crr/status").await;
    let peer = &st["peers"][0];
    assert_eq!(peer["connected"], false, "{st}");
    assert!(peer["backlog"].as_u64().unwrap() > 0, "{st}");
    assert!(peer["last_error"].is_string(), "{st}");

    let restarted = Instant::now();
    us.restart().await;
    drained(&eu, 60).await;
    let rto = restarted.elapsed();
    for p in before.iter().chain(&during) {
        assert!(us.outcome("full", &id(p)).await.is_some(), "lost {}", id(p));
        assert_eq!(us.decisions_of("full", &id(p)), 1, "duplicated {}", id(p));
    }
    eprintln!(
        "outage {:?}: {} decisions made meanwhile, all replicated (RPO: 0 records lost), RTO {:?} from restart to an empty backlog",
        outage,
        during.len(),
        rto
    );
    eventually(30, "no divergence", || async {
        empty(&divergence(&eu, "us").await)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_region_restored_from_an_older_copy_is_repaired_by_replay_missing() {
    let dir = tempfile::tempdir().unwrap();
    let (eu, mut us) = two(dir.path(), ReconcileMode::AutoSafe).await;
    let first: Vec<Value> = (0..10).map(|i| pcs(&format!("old-{i}"), None)).collect();
    replicate(&eu, &us, "full", &first, "first records replicated").await;
    // A backup of us, taken while it is stopped.
    us.stop().await;
    let backup = dir.path().join("us-backup");
    copy_dir(&us.dir, &backup);
    us.restart().await;
    let later: Vec<Value> = (0..10).map(|i| pcs(&format!("new-{i}"), None)).collect();
    replicate(&eu, &us, "full", &later, "later records replicated").await;
    drained(&eu, 30).await;

    // us is restored from the backup: the later records are gone there, and eu will not
    // ship them again (us acknowledged them).
    us.stop().await;
    std::fs::remove_dir_all(&us.dir).unwrap();
    copy_dir(&backup, &us.dir);
    us.restart().await;
    for p in &later {
        assert!(us.outcome("full", &id(p)).await.is_none());
    }
    // Its tree holds what its log holds again.
    let head = us.engine().log().last_seq();
    eventually(30, "us's tree caught up with its log", || async {
        us.core().store.tree_cursor().unwrap() >= head
    })
    .await;
    // Anti-entropy finds exactly them, and auto_safe replays them (safety 0.9 >= 0.8).
    let d = divergence(&us, "eu").await;
    let missing: Vec<&str> = d["missing_here"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["pcs_id"].as_str().unwrap())
        .collect();
    let mut want: Vec<String> = later.iter().map(id).collect();
    want.sort();
    // The round may already have repaired some: what is listed is a subset of the lost ones.
    assert!(missing.iter().all(|m| want.iter().any(|w| w == m)), "{d}");
    for p in &later {
        eventually(30, "replayed", || async {
            us.outcome("full", &id(p)).await.is_some()
        })
        .await;
        assert_eq!(us.decisions_of("full", &id(p)), 1);
    }
    let (_, props) = us.get_json("/v1/crr/proposals?state=applied").await;
    let applied = props["proposals"].as_array().unwrap();
    assert!(
        applied
            .iter()
            .any(|p| p["action"] == "replay_missing" && p["decided_by"] == "auto"),
        "{props}"
    );
    eventually(30, "no divergence left", || async {
        empty(&divergence(&us, "eu").await)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_conflict_waits_for_approval_in_manual_mode() {
    let dir = tempfile::tempdir().unwrap();
    let (eu, us) = two(dir.path(), ReconcileMode::Manual).await;
    // The tenant does not replicate yet: each region decides its own version of one pcs_id.
    let a = pcs("conflict", Some(100.0));
    let b = pcs("conflict", Some(101.0));
    assert_eq!(id(&a), id(&b));
    eu.submit("solo", &a).await;
    // Decision times are compared to the millisecond: us decides in a later one.
    let decided = svc_crr::now_ms();
    while svc_crr::now_ms() <= decided + 1 {
        tokio::task::yield_now().await;
    }
    us.submit("solo", &b).await;
    // Now both regions replicate it both ways (run time, no restart).
    let policies = serde_json::json!([
        {"tenant": "solo", "mode": "multi_way", "targets": ["eu", "us"], "priority": 9}
    ]);
    for r in [&eu, &us] {
        put_policies(r, &policies).await;
    }
    eventually(30, "the conflict found", || async {
        divergence(&eu, "us").await["conflicting"]
            .as_array()
            .is_some_and(|c| c.len() == 1)
    })
    .await;
    let d = divergence(&eu, "us").await;
    assert_eq!(d["conflicting"][0]["pcs_id"], id(&a));

    // A proposal waits in each region; nothing changes meanwhile.
    eventually(30, "a pending proposal at us", || async {
        let (_, p) = us.get_json("/v1/crr/proposals?state=pending").await;
        p["proposals"].as_array().is_some_and(|l| !l.is_empty())
    })
    .await;
    let pending = us.get_json("/v1/crr/proposals?state=pending").await.1["proposals"][0].clone();
    assert_eq!(pending["action"], "choose_first", "{pending}");
    assert_eq!(pending["keys"][0]["pcs_id"], id(&a));
    let before = us.outcome("solo", &id(&a)).await.unwrap();

    // Approved: the earlier decision (eu's, submitted first) replaces us's.
    let pid = pending["id"].as_str().unwrap();
    let (status, decided) = us
        .post_json(
            &format!("/v1/crr/proposals/{pid}/approve"),
            serde_json::json!({"actor": "alice"}),
        )
        .await;
    assert_eq!(status, 200, "{decided}");
    assert_eq!(decided["state"], "applied", "{decided}");
    assert_eq!(decided["decided_by"], "alice");
    let after = us.outcome("solo", &id(&a)).await.unwrap();
    let at_eu = eu.outcome("solo", &id(&a)).await.unwrap();
    assert_eq!(after["received_at"], at_eu["received_at"]);
    assert_ne!(after["received_at"], before["received_at"]);
    assert_eq!(after["origin_region"], "eu");
    // Deciding again is refused; an unknown id is 404.
    let (status, _) = us
        .post_json(&format!("/v1/crr/proposals/{pid}/reject"), Value::Null)
        .await;
    assert_eq!(status, 409);
    let (status, body) = us
        .post_json("/v1/crr/proposals/nope/approve", Value::Null)
        .await;
    assert_eq!(status, 404, "{body}");

    // eu's own proposal (it holds the earlier decision) changes nothing there when rejected.
    eventually(30, "a pending proposal at eu", || async {
        let (_, p) = eu.get_json("/v1/crr/proposals?state=pending").await;
        p["proposals"].as_array().is_some_and(|l| !l.is_empty())
    })
    .await;
    // The proposals and the decision are in us's outcome log, for audit and the SIEM.
    let events: Vec<Value> = {
        use prost::Message as _;
        us.engine()
            .log()
            .read_from(1)
            .filter_map(Result::ok)
            .filter_map(|(_, b)| v1::FeedRecord::decode(b.as_ref()).ok())
            .filter(|r| r.kind == v1::RecordKind::CrrEvent as i32)
            .map(|r| serde_json::from_str(&r.event_json).unwrap())
            .collect()
    };
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"proposed"), "{events:?}");
    assert!(kinds.contains(&"approved"), "{events:?}");
    assert!(kinds.contains(&"applied"), "{events:?}");
    assert!(events.iter().any(|e| e["actor"] == "alice"));
    // And the pair agrees now on that key.
    eventually(30, "no conflict left", || async {
        divergence(&us, "eu").await["conflicting"]
            .as_array()
            .is_some_and(Vec::is_empty)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_forged_record_from_a_peer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (eu, us) = two(dir.path(), ReconcileMode::AutoSafe).await;
    // A peer holding the token ships a record the tenant never signed: valid structure, its
    // digest consistent, the signature of other content.
    let genuine = pcs("forged", None);
    let mut forged = genuine.clone();
    forged["budget"] = serde_json::json!(12345.0);
    let parsed = flk_core::parse_pcs(&serde_json::to_vec(&forged).unwrap()).unwrap();
    let canon = flk_core::canonicalize(&parsed);
    let now_ms = svc_crr::now_ms();
    let record = v1::FeedRecord {
        tenant_id: "full".into(),
        pcs_id: id(&forged),
        outcome: Some(v1::Outcome {
            pcs_id: id(&forged),
            tenant_id: "full".into(),
            outcome: v1::OutcomeKind::Accepted as i32,
            accepted: true,
            reason_code: "ok".into(),
            regime: "mixed".into(),
            policy_version: "v1".into(),
            policy_hash: "0".repeat(64),
            received_at: time::OffsetDateTime::from_unix_timestamp_nanos(
                i128::from(now_ms) * 1_000_000,
            )
            .unwrap()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap(),
            ..Default::default()
        }),
        canonical_digest: canon.digest.to_vec(),
        request_json: serde_json::to_vec(&forged).unwrap(),
        decided_at_unix_ms: now_ms,
        region: "eu".into(),
        kind: v1::RecordKind::Decision as i32,
        ..Default::default()
    };
    let channel = flk_runtime::client::Peer::with_token(PEER_TOKEN)
        .unwrap()
        .connect(
            &format!("http://{}", us.crr_addr),
            flk_runtime::client::EndpointOptions::default(),
        )
        .await
        .unwrap();
    let mut client = v1::replication_service_client::ReplicationServiceClient::new(channel);
    let batch = v1::ShipBatch {
        source: "eu".into(),
        target: "us".into(),
        records: vec![record.clone()],
        last_seq: 0,
    };
    let mut acks = client
        .ship(futures::stream::iter(vec![batch]))
        .await
        .unwrap()
        .into_inner();
    let ack = acks.message().await.unwrap().unwrap();
    assert_eq!((ack.applied, ack.rejected), (0, 1), "{ack:?}");
    assert!(us.outcome("full", &id(&forged)).await.is_none());
    // A record claiming another origin than the shipping peer is refused too.
    let mut other = record;
    other.region = "ap".into();
    let batch = v1::ShipBatch {
        source: "eu".into(),
        target: "us".into(),
        records: vec![other],
        last_seq: 0,
    };
    let mut acks = client
        .ship(futures::stream::iter(vec![batch]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(acks.message().await.unwrap().unwrap().rejected, 1);
    // An unknown region, and a caller without the token, are refused outright.
    let err = client
        .hello(v1::HelloRequest {
            source: "mars".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    let (status, _) = {
        let r = reqwest::Client::new()
            .get(format!("http://{}/v1/crr/status", us.crr_addr))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), ())
    };
    assert_eq!(status, 401);
    // The genuine record still replicates.
    eu.submit("full", &genuine).await;
    eventually(30, "the genuine record", || async {
        us.outcome("full", &id(&genuine)).await.is_some()
    })
    .await;
    let (_, metrics) = {
        let (c, base) = us.rest();
        let r = c.get(format!("{base}/metrics")).send().await.unwrap();
        ((), r.text().await.unwrap())
    };
    assert!(
        metrics.contains("flk_crr_rejected_total{reason=\"signature_invalid\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_converged_pair_has_no_divergence_also_after_retention() {
    let dir = tempfile::tempdir().unwrap();
    let (eu, us) = two(dir.path(), ReconcileMode::Manual).await;
    let records: Vec<Value> = (0..30).map(|i| pcs(&format!("ret-{i}"), None)).collect();
    replicate(&eu, &us, "full", &records, "replicated").await;
    eventually(30, "converged trees", || async {
        empty(&divergence(&eu, "us").await) && empty(&divergence(&us, "eu").await)
    })
    .await;
    // Retention removes them from one side only (the other has not run its pass yet): still
    // no divergence, since both compare from the same horizon.
    let cutoff = svc_crr::now_ms() + 1;
    let removed = eu.core().store.prune(cutoff).unwrap();
    assert_eq!(removed, 30);
    // With the horizon past the records, the one-sided removal is not divergence.
    let tree_here = svc_crr::merkle::LocalTree::new(eu.core().store.merkle.clone());
    let tree_there = svc_crr::merkle::LocalTree::new(us.core().store.merkle.clone());
    let d = svc_crr::merkle::diff(&tree_here, &tree_there, cutoff)
        .await
        .unwrap();
    assert!(d.is_empty(), "{d:?}");
    // Without the horizon the removed keys would show: the comparison does see them.
    let d = svc_crr::merkle::diff(&tree_here, &tree_there, i64::MIN)
        .await
        .unwrap();
    assert_eq!(d.missing_here.len(), 30);
}

/// The tree follows the log through the feed, so under load it lags it: keys this region's
/// svc-verify already holds are not missing here, and no replay is proposed for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_the_log_holds_before_the_tree_are_not_missing_here() {
    let dir = tempfile::tempdir().unwrap();
    let (eu, us) = two(dir.path(), ReconcileMode::AutoSafe).await;
    let records: Vec<Value> = (0..12).map(|i| pcs(&format!("lag-{i}"), None)).collect();
    replicate(&eu, &us, "full", &records, "replicated").await;
    eventually(30, "converged trees", || async {
        empty(&divergence(&eu, "us").await) && empty(&divergence(&us, "eu").await)
    })
    .await;
    // us's tree loses its leaves while its log keeps the records: the state of a tree that
    // has not yet applied what the log holds.
    let removed = us.core().store.prune(svc_crr::now_ms() + 1).unwrap();
    assert_eq!(removed, 12);
    let tree_here = svc_crr::merkle::LocalTree::new(us.core().store.merkle.clone());
    let tree_there = svc_crr::merkle::LocalTree::new(eu.core().store.merkle.clone());
    let raw = svc_crr::merkle::diff(&tree_here, &tree_there, i64::MIN)
        .await
        .unwrap();
    assert_eq!(raw.missing_here.len(), 12, "the trees differ: {raw:?}");
    let d = divergence(&us, "eu").await;
    assert_eq!(d["missing_here"].as_array().map(Vec::len), Some(0), "{d}");
    svc_crr::reconcile::round(us.core(), "eu").await.unwrap();
    let (_, p) = us.get_json("/v1/crr/proposals?state=all").await;
    assert_eq!(p["proposals"].as_array().map(Vec::len), Some(0), "{p}");
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_too_large_for_the_log_is_refused_not_failed() {
    use prost::Message as _;
    let dir = tempfile::tempdir().unwrap();
    let (eu, us) = two(dir.path(), ReconcileMode::AutoSafe).await;
    // A genuine decision of a tenant that does not replicate, so `us` does not hold it yet,
    // carrying 17 MiB in a field the checks do not read: more than one log record may hold.
    let doc = pcs("huge", None);
    eu.submit("solo", &doc).await;
    let mut record = eu
        .engine()
        .log()
        .read_from(1)
        .filter_map(Result::ok)
        .filter_map(|(_, b)| v1::FeedRecord::decode(b.as_ref()).ok())
        .find(|r| r.pcs_id == id(&doc))
        .expect("the decision is in eu's log");
    record.event_json = "x".repeat(17 * 1024 * 1024);
    let head = us.engine().log().last_seq();
    let results = us
        .engine()
        .apply_replicated(vec![record], false)
        .await
        .expect("a refusal, not a failed call");
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].status, v1::ApplyStatus::Rejected as i32);
    assert_eq!(results[0].reason, "too_large");
    assert_eq!(us.engine().log().last_seq(), head, "nothing appended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_peer_raises_the_lag_and_ship_error_alerts() {
    let dir = tempfile::tempdir().unwrap();
    // A peer address nothing listens on.
    let dead = bind().await.local_addr().unwrap();
    let listener = bind().await;
    let addr = listener.local_addr().unwrap();
    let mut cfg = crr_config(
        "eu",
        dir.path(),
        addr,
        &[("us", dead)],
        &["eu", "us"],
        ReconcileMode::Manual,
    );
    cfg.health.max_lag_seconds = 0.5;
    cfg.health.max_ship_errors_per_hour = 2;
    let eu = Region::start("eu", dir.path(), listener, cfg).await;
    eu.submit("full", &pcs("stuck", None)).await;

    // The gauges are refreshed in the background: nobody asks for the status first.
    let alert = |gate: &str| {
        eu.core()
            .metrics
            .alert
            .with_label_values(&[gate, "us"])
            .get()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while alert("max_lag") == 0 || alert("max_ship_errors_per_hour") == 0 {
        assert!(Instant::now() < deadline, "the alerts were never raised");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(eu.core().metrics.backlog.with_label_values(&["us"]).get() >= 1);
    let (status, doc) = eu.get_json("/v1/crr/status").await;
    assert_eq!(status, 200);
    let gates: Vec<&str> = doc["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["target"] == "us")
        .map(|a| a["gate"].as_str().unwrap())
        .collect();
    assert!(gates.contains(&"max_lag"), "{doc}");
    assert!(gates.contains(&"max_ship_errors_per_hour"), "{doc}");
    assert_eq!(alert("max_divergence"), 0);
    let peer = &doc["peers"][0];
    assert_eq!(peer["connected"], false);
    assert!(peer["last_error"].as_str().is_some_and(|e| !e.is_empty()));
    assert!(peer["lag_seconds"].as_f64().unwrap() > 0.5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_among_three_regions_is_settled_by_the_majority_once_approved() {
    use prost::Message as _;
    let dir = tempfile::tempdir().unwrap();
    let regions = three(dir.path(), ReconcileMode::Manual).await;
    let (eu, us, ap) = (&regions[0], &regions[1], &regions[2]);
    // eu decides one version; us holds eu's decision (as replication would have left it); ap,
    // cut off meanwhile, decided another version of the same pcs_id.
    let a = pcs("majority", Some(100.0));
    let b = pcs("majority", Some(101.0));
    assert_eq!(id(&a), id(&b));
    eu.submit("solo", &a).await;
    let record = eu
        .engine()
        .log()
        .read_from(1)
        .filter_map(Result::ok)
        .filter_map(|(_, b)| v1::FeedRecord::decode(b.as_ref()).ok())
        .find(|r| r.pcs_id == id(&a))
        .unwrap();
    let applied = us
        .engine()
        .apply_replicated(vec![record], false)
        .await
        .unwrap();
    assert_eq!(applied[0].status, v1::ApplyStatus::Applied as i32);
    ap.submit("solo", &b).await;
    let policies = serde_json::json!([
        {"tenant": "solo", "mode": "multi_way", "targets": ["eu", "us", "ap"], "priority": 5}
    ]);
    for r in &regions {
        put_policies(r, &policies).await;
    }

    // ap is the minority: its proposal is a quorum, waiting (manual mode); nothing changes.
    eventually(30, "a pending quorum proposal at ap", || async {
        let (_, p) = ap.get_json("/v1/crr/proposals?state=pending").await;
        p["proposals"]
            .as_array()
            .is_some_and(|l| l.iter().any(|p| p["action"] == "quorum"))
    })
    .await;
    let (_, p) = ap.get_json("/v1/crr/proposals?state=pending").await;
    let proposal = p["proposals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["action"] == "quorum")
        .unwrap()
        .clone();
    assert_eq!(proposal["keys"][0]["pcs_id"], id(&a), "{proposal}");
    assert_eq!(proposal["safety"], 0.5, "{proposal}");
    let before = ap.outcome("solo", &id(&a)).await.unwrap();
    let at_eu = eu.outcome("solo", &id(&a)).await.unwrap();
    assert_ne!(before["received_at"], at_eu["received_at"]);

    // Approved: the majority's decision (eu's, held by eu and us) replaces ap's.
    let pid = proposal["id"].as_str().unwrap();
    let (status, decided) = ap
        .post_json(
            &format!("/v1/crr/proposals/{pid}/approve"),
            serde_json::json!({"actor": "bob"}),
        )
        .await;
    assert_eq!(status, 200, "{decided}");
    assert_eq!(decided["state"], "applied", "{decided}");
    let after = ap.outcome("solo", &id(&a)).await.unwrap();
    assert_eq!(after["received_at"], at_eu["received_at"]);
    assert_eq!(after["origin_region"], "eu");
    // The majority keeps its decision.
    assert_eq!(
        us.outcome("solo", &id(&a)).await.unwrap()["received_at"],
        at_eu["received_at"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retention_pass_removes_old_leaves_on_both_sides_without_divergence() {
    let dir = tempfile::tempdir().unwrap();
    let (eu, us) = two_with(dir.path(), ReconcileMode::AutoSafe, |c| {
        c.retention = "3s".into()
    })
    .await;
    let records: Vec<Value> = (0..20).map(|i| pcs(&format!("old-{i}"), None)).collect();
    replicate(&eu, &us, "full", &records, "replicated").await;
    // Each region's own pass (run with its anti-entropy rounds) removes the leaves once they
    // are older than the retention; the rounds in between find nothing to repair.
    eventually(30, "both trees emptied by retention", || async {
        eu.core().store.merkle.roots().is_empty() && us.core().store.merkle.roots().is_empty()
    })
    .await;
    assert!(empty(&divergence(&eu, "us").await));
    assert!(empty(&divergence(&us, "eu").await));
    let (_, p) = eu.get_json("/v1/crr/proposals?state=all").await;
    assert_eq!(p["proposals"].as_array().map(Vec::len), Some(0), "{p}");
    let (_, p) = us.get_json("/v1/crr/proposals?state=all").await;
    assert_eq!(p["proposals"].as_array().map(Vec::len), Some(0), "{p}");
}
