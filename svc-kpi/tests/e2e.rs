//! End to end: a real svc-verify (library, embedded stores, port 0) decides signed PCS; a real
//! svc-kpi (port 0) consumes its outcome feed, takes feedback over gRPC and REST, serves the
//! reports and the metrics, and after a restart on the same data directory resumes without
//! counting anything twice.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use common::*;
use flk_core::{HmacMode, SigningMaterial, canonicalize, compute_pcs_id, parse_pcs};
use flk_proto::v1::{self, submit_request};
use flk_runtime::client::{AuditClient, KpiClient, Peer, VerifyClient, with_token};
use flk_runtime::security::ServerSecurity;
use serde_json::Value;
use svc_verify::config::{DedupConfig, LogSettings};
use svc_verify::{DedupBackend, VerifyConfig};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

const SECRET: &str = "testsecret";

struct Running {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(DEADLINE, self.task)
            .await
            .expect("stops in time")
            .expect("serve task")
            .expect("serve ends cleanly");
    }
}

async fn start_verify(dir: &std::path::Path) -> (Running, Arc<svc_verify::Engine>) {
    let tenants = dir.join("tenants.toml");
    std::fs::write(
        &tenants,
        "[[tenant]]\nid = \"default\"\n[[tenant.keys]]\nid = \"k1\"\nalgorithm = \"hmac\"\nsecret = \"testsecret\"\n",
    )
    .unwrap();
    let cfg = VerifyConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: dir.join("verify"),
        region: "test".to_owned(),
        tenants_file: Some(tenants),
        dedup: DedupConfig {
            backend: DedupBackend::Embedded,
            url: None,
        },
        log: LogSettings {
            fsync: false,
            ..LogSettings::default()
        },
        ..VerifyConfig::default()
    };
    let mut service = svc_verify::Service::open(&cfg)
        .await
        .expect("open svc-verify");
    service.set_security(ServerSecurity::token(TOKEN));
    let engine = service.engine.clone();
    let listener = TcpListener::bind(cfg.listen).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(service.serve(listener, async {
        let _ = rx.await;
    }));
    (Running { addr, stop, task }, engine)
}

async fn start_kpi(cfg: &svc_kpi::KpiConfig) -> (Running, Arc<svc_kpi::Kpi>) {
    let mut service = svc_kpi::Service::open(cfg).await.expect("open svc-kpi");
    service.set_security(ServerSecurity::token(TOKEN));
    service.set_peer(Peer::with_token(TOKEN).unwrap());
    let kpi = service.kpi().clone();
    let listener = TcpListener::bind(cfg.listen).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(service.serve(listener, async {
        let _ = rx.await;
    }));
    (Running { addr, stop, task }, kpi)
}

fn vector(reason: &str) -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../flk-core/tests/data/verify_vectors.json"
    );
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    doc["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["expect"]["reason_code"] == reason)
        .unwrap_or_else(|| panic!("no vector {reason}"))["pcs"]
        .clone()
}

/// A copy of `pcs` with another shard (so a new, matching pcs_id), signed.
fn with_shard(pcs: &Value, shard: &str) -> Value {
    let mut p = pcs.clone();
    p["shard_id"] = Value::String(shard.to_owned());
    let root = p["merkle_root"].as_str().unwrap();
    let epoch = p["epoch"].as_u64().unwrap();
    p["pcs_id"] = Value::String(compute_pcs_id(root, epoch, shard));
    let parsed = parse_pcs(&serde_json::to_vec(&p).unwrap()).unwrap();
    let signer = SigningMaterial::hmac(SECRET.as_bytes(), HmacMode::Digest).unwrap();
    p["sig"] = Value::String(signer.sign_b64(&canonicalize(&parsed)));
    p
}

async fn submit(client: &mut VerifyClient, pcs: &Value) -> v1::Outcome {
    client
        .submit(v1::SubmitRequest {
            tenant_id: "default".to_owned(),
            body: Some(submit_request::Body::PcsJson(
                serde_json::to_vec(pcs).unwrap().into(),
            )),
        })
        .await
        .expect("submit")
        .into_inner()
        .outcome
        .expect("outcome")
}

async fn report(client: &mut KpiClient, window: &str) -> v1::KpiReport {
    client
        .report(v1::KpiReportRequest {
            tenant_id: String::new(),
            window: window.to_owned(),
        })
        .await
        .expect("report")
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn svc_kpi_counts_what_svc_verify_decides() {
    let dir = tempfile::tempdir().unwrap();
    let (verify, engine) = start_verify(dir.path()).await;
    let verify_url = format!("http://{}", verify.addr);
    let cfg = config(&dir.path().join("kpi"), &verify_url);
    let (kpi_srv, kpi) = start_kpi(&cfg).await;

    let bases = [
        vector("ok"),
        vector("budget_deviation"),
        vector("r_out_of_bounds"),
    ];
    let pcs: Vec<Value> = (0..12)
        .map(|i| with_shard(&bases[i % 3], &format!("e2e-{i}")))
        .collect();
    let mut vc = VerifyClient::new(with_token(&verify_url.clone(), TOKEN).await.unwrap());
    let mut outcomes = Vec::new();
    for p in &pcs {
        outcomes.push(submit(&mut vc, p).await);
    }
    // Duplicates: answered from the store, no new decision in the feed.
    for p in &pcs[..3] {
        assert!(submit(&mut vc, p).await.duplicate);
    }
    let count =
        |k: v1::OutcomeKind| outcomes.iter().filter(|o| o.outcome == k as i32).count() as u64;
    let (acc, esc, rej) = (
        count(v1::OutcomeKind::Accepted),
        count(v1::OutcomeKind::Escalated),
        count(v1::OutcomeKind::Rejected),
    );
    assert_eq!((acc, esc, rej), (4, 4, 4));
    let last_seq = engine.log().last_seq();

    let kpi_url = format!("http://{}", kpi_srv.addr);
    let mut kc = KpiClient::new(with_token(&kpi_url.clone(), TOKEN).await.unwrap());
    let k = kpi.clone();
    poll_until("svc-kpi applies the feed", || {
        let k = k.clone();
        async move { (k.store().cursor().ok()? >= last_seq).then_some(()) }
    })
    .await;
    drop(k);
    let r = report(&mut kc, "1h").await;
    assert_eq!(
        (r.decisions, r.accepted, r.escalated, r.rejected),
        (12, 4, 4, 4)
    );
    assert_eq!(r.escalation_rate, Some(8.0 / 12.0));
    assert_eq!(r.containment_rate, Some(1.0), "nothing reported missed yet");
    // Costs come from the measured verification time.
    assert!(r.verify_cpu_ns_total > 0);
    let cost = r.cost_breakdown_usd.unwrap();
    assert!(cost.compute > 0.0 && cost.storage > 0.0);
    assert_eq!((cost.network, cost.anchoring), (0.0, 0.0));
    assert!(r.verify_latency_p95_ms.unwrap() > 0.0);
    let regimes: u64 = r.regimes.iter().map(|g| g.decisions).sum();
    assert_eq!(regimes, 12);

    // Feedback over gRPC: an accepted decision was a hallucination.
    let accepted_id = outcomes
        .iter()
        .find(|o| o.outcome == v1::OutcomeKind::Accepted as i32)
        .unwrap()
        .pcs_id
        .clone();
    let escalated_id = outcomes
        .iter()
        .find(|o| o.outcome == v1::OutcomeKind::Escalated as i32)
        .unwrap()
        .pcs_id
        .clone();
    let f = kc
        .feedback(v1::FeedbackRequest {
            tenant_id: String::new(),
            pcs_id: accepted_id.clone(),
            verdict: "hallucination".to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((f.outcome.as_str(), f.previous_verdict), ("accepted", None));
    let err = kc
        .feedback(v1::FeedbackRequest {
            tenant_id: String::new(),
            pcs_id: accepted_id.clone(),
            verdict: "false_alarm".to_owned(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    // And over REST.
    let body = format!(r#"{{"pcs_id":"{escalated_id}","verdict":"false_alarm"}}"#);
    let (status, text) = http(
        kpi_srv.addr,
        "POST",
        "/v1/feedback",
        &[("Authorization", AUTH)],
        &body,
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let (status, text) = http(
        kpi_srv.addr,
        "GET",
        "/v1/kpi/report?window=24h",
        &[("Authorization", AUTH)],
        "",
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let rest: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(rest["hallucinations_reported"], 1);
    assert_eq!(rest["false_alarms"], 1);
    // caught = 8 - 1 = 7; containment 7 / 8.
    assert_eq!(rest["containment_rate"], 7.0 / 8.0);
    assert_eq!(rest["false_alarm_rate"], 1.0 / 8.0);

    // The gauges catch up on their own (refresh on events).
    let addr = kpi_srv.addr;
    poll_until("gauges refreshed", || async move {
        let (_, text) = http(addr, "GET", "/metrics", &[("Authorization", AUTH)], "").await;
        let v = metric(
            &text,
            r#"flk_kpi_containment_rate{tenant="default",window="1h"}"#,
        )?;
        (v == 7.0 / 8.0).then_some(())
    })
    .await;
    let (_, text) = http(addr, "GET", "/metrics", &[("Authorization", AUTH)], "").await;
    assert_eq!(
        metric(
            &text,
            r#"flk_kpi_decisions{outcome="rejected",tenant="default",window="7d"}"#
        ),
        Some(4.0)
    );
    assert_eq!(metric(&text, "flk_kpi_feed_seq"), Some(last_seq as f64));
    assert_eq!(metric(&text, "flk_kpi_consumer_lag_records"), Some(0.0));
    assert_eq!(
        metric(&text, r#"flk_kpi_signal_d_hat_count{tenant="default"}"#),
        Some(12.0)
    );
    let (status, _) = http(addr, "GET", "/ready", &[], "").await;
    assert_eq!(status, 200);

    // Restart svc-kpi on the same directory; more decisions arrive meanwhile.
    drop(kc);
    kpi_srv.stop().await;
    poll_until("the stopped svc-kpi releases its store", || {
        let n = Arc::strong_count(&kpi);
        async move { (n == 1).then_some(()) }
    })
    .await;
    drop(kpi);
    for i in 12..15 {
        submit(&mut vc, &with_shard(&bases[0], &format!("e2e-{i}"))).await;
    }
    let last_seq = engine.log().last_seq();
    let (kpi_srv, kpi) = start_kpi(&cfg).await;
    let k = kpi.clone();
    poll_until("svc-kpi resumes the feed", || {
        let k = k.clone();
        async move { (k.store().cursor().ok()? >= last_seq).then_some(()) }
    })
    .await;
    let mut kc = KpiClient::new(
        with_token(&format!("http://{}", kpi_srv.addr), TOKEN)
            .await
            .unwrap(),
    );
    let r = report(&mut kc, "7d").await;
    assert_eq!(
        (r.decisions, r.accepted, r.escalated, r.rejected),
        (15, 7, 4, 4)
    );
    assert_eq!((r.hallucinations_reported, r.false_alarms), (1, 1));
    let bad = kc
        .report(v1::KpiReportRequest {
            tenant_id: String::new(),
            window: "5m".to_owned(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    drop(kc);
    kpi_srv.stop().await;
    drop(vc);
    verify.stop().await;
}

async fn start_audit(cfg: &svc_audit::AuditConfig) -> Running {
    let mut service = svc_audit::Service::open(cfg).await.expect("open svc-audit");
    service.set_security(ServerSecurity::token(TOKEN));
    service.set_peer(Peer::with_token(TOKEN).unwrap());
    let listener = TcpListener::bind(cfg.listen).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(service.serve(listener, async {
        let _ = rx.await;
    }));
    Running { addr, stop, task }
}

/// Anchoring cost from svc-audit's anchors: a real svc-audit anchors its checkpoints at a real
/// RFC 3161 TSA (`openssl ts -reply`); svc-kpi imports each anchor once as a batch of its
/// strategy and charges the configured price, and a restart neither loses nor recounts one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anchoring_cost_comes_from_svc_audit_anchors_once() {
    let dir = tempfile::tempdir().unwrap();
    let tsa = flk_anchor::test_support::TestTsa::start().await;
    let (verify, engine) = start_verify(dir.path()).await;
    let verify_url = format!("http://{}", verify.addr);
    let mut audit_cfg = svc_audit::AuditConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: dir.path().join("audit"),
        verify_url: verify_url.clone(),
        ..Default::default()
    };
    audit_cfg.anchor.strategy = svc_audit::anchoring::StrategySetting::Rfc3161;
    audit_cfg.anchor.tsa_url = Some(tsa.url.clone());
    audit_cfg.anchor.tsa_ca_cert = Some(tsa.ca_pem_path());
    // Rounds only on demand within the test.
    audit_cfg.anchor.interval_secs = 3600;
    let audit = start_audit(&audit_cfg).await;
    let audit_url = format!("http://{}", audit.addr);
    let mut cfg = config(&dir.path().join("kpi"), &verify_url);
    cfg.audit_url = Some(audit_url.clone());
    let price = cfg.prices.anchoring_usd_per_batch["rfc3161"];
    let (kpi_srv, kpi) = start_kpi(&cfg).await;

    let mut vc = VerifyClient::new(with_token(&verify_url.clone(), TOKEN).await.unwrap());
    let audit_client = AuditClient::new(with_token(&audit_url.clone(), TOKEN).await.unwrap());
    for round in 0..2 {
        for i in 0..3 {
            submit(
                &mut vc,
                &with_shard(&vector("ok"), &format!("anchor-{round}-{i}")),
            )
            .await;
        }
        // Wait until svc-audit's checkpoint covers the new decisions, then anchor it.
        let target = 3 * (round + 1);
        let ac = audit_client.clone();
        poll_until("svc-audit logs the decisions", || {
            let mut ac = ac.clone();
            async move {
                let cp = ac.get_checkpoint(v1::GetCheckpointRequest {}).await.ok()?;
                (cp.into_inner().size >= target).then_some(())
            }
        })
        .await;
        let r = ac
            .clone()
            .anchor_checkpoint(v1::AnchorCheckpointRequest {})
            .await
            .expect("AnchorCheckpoint")
            .into_inner();
        assert_eq!((r.anchored.len(), r.failed.len()), (1, 0), "{r:?}");
    }
    let last_seq = engine.log().last_seq();
    // svc-audit also anchors on start (its checkpoint then holds the strategy event): every
    // stored anchor is an rfc3161 batch of its own checkpoint.
    let listed = audit_client
        .clone()
        .list_anchors(v1::ListAnchorsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .anchors;
    assert!(listed.len() >= 2, "{listed:?}");
    let n = listed.len() as u64;
    let k = kpi.clone();
    poll_until("svc-kpi applies the feed and imports the anchors", || {
        let k = k.clone();
        async move {
            let applied = k.store().cursor().ok()? >= last_seq;
            let imported = k.store().anchor_import_cursor().ok()?.next_id >= n;
            (applied && imported).then_some(())
        }
    })
    .await;
    drop(k);
    let mut kc = KpiClient::new(
        with_token(&format!("http://{}", kpi_srv.addr), TOKEN)
            .await
            .unwrap(),
    );
    let r = report(&mut kc, "1h").await;
    // One tenant: it carries the whole anchoring cost of the window.
    assert_eq!(r.decisions, 6);
    assert_close(r.cost_breakdown_usd.unwrap().anchoring, n as f64 * price);
    let batches: Vec<(String, u64)> = r
        .anchor_batches
        .iter()
        .map(|b| (b.strategy.clone(), b.batches))
        .collect();
    assert_eq!(batches, vec![("rfc3161".to_owned(), n)]);

    // A restart re-lists svc-audit's anchors; none is counted again.
    drop(kc);
    kpi_srv.stop().await;
    poll_until("the stopped svc-kpi releases its store", || {
        let n = Arc::strong_count(&kpi);
        async move { (n == 1).then_some(()) }
    })
    .await;
    drop(kpi);
    let (kpi_srv, kpi) = start_kpi(&cfg).await;
    let k = kpi.clone();
    // One more anchor after the restart: the restarted poller imports it (having re-listed
    // the earlier ones, from the newest imported checkpoint's size on) and counts only it.
    let ac = audit_client.clone();
    let before = ac
        .clone()
        .get_checkpoint(v1::GetCheckpointRequest {})
        .await
        .unwrap()
        .into_inner()
        .size;
    submit(&mut vc, &with_shard(&vector("ok"), "anchor-after-restart")).await;
    poll_until("svc-audit logs the decision", || {
        let mut ac = ac.clone();
        async move {
            let cp = ac.get_checkpoint(v1::GetCheckpointRequest {}).await.ok()?;
            (cp.into_inner().size > before).then_some(())
        }
    })
    .await;
    let r = ac
        .clone()
        .anchor_checkpoint(v1::AnchorCheckpointRequest {})
        .await
        .expect("AnchorCheckpoint")
        .into_inner();
    assert_eq!(r.anchored.len(), 1, "{r:?}");
    poll_until("the restarted svc-kpi imports the new anchor", || {
        let k = k.clone();
        async move { (k.store().anchor_import_cursor().ok()?.next_id > n).then_some(()) }
    })
    .await;
    drop(k);
    let mut kc = KpiClient::new(
        with_token(&format!("http://{}", kpi_srv.addr), TOKEN)
            .await
            .unwrap(),
    );
    let r = report(&mut kc, "1h").await;
    assert_close(
        r.cost_breakdown_usd.unwrap().anchoring,
        (n + 1) as f64 * price,
    );
    drop(kc);
    kpi_srv.stop().await;
    drop(audit_client);
    audit.stop().await;
    drop(vc);
    verify.stop().await;
}

/// No RPC or route of svc-kpi answers a client without the token; probes stay open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn svc_kpi_refuses_clients_without_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&dir.path().join("kpi"), "http://127.0.0.1:1");
    let (kpi_srv, _kpi) = start_kpi(&cfg).await;
    let url = format!("http://{}", kpi_srv.addr);
    for peer in [Peer::plain(), Peer::with_token("wrong").unwrap()] {
        let channel = peer
            .connect(&url, flk_runtime::client::EndpointOptions::default())
            .await
            .unwrap();
        let mut kc = KpiClient::new(channel);
        let err = kc
            .report(v1::KpiReportRequest::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
        let err = kc
            .feedback(v1::FeedbackRequest::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
        let err = kc
            .record_anchor_batches(v1::RecordAnchorBatchesRequest::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
    }
    for path in ["/v1/kpi/report?window=24h", "/metrics"] {
        let (status, body) = http(kpi_srv.addr, "GET", path, &[], "").await;
        assert_eq!(status, 401, "{path}: {body}");
        assert!(body.contains("unauthenticated"), "{body}");
    }
    let (status, _) = http(kpi_srv.addr, "POST", "/v1/feedback", &[], "{}").await;
    assert_eq!(status, 401);
    let (status, _) = http(kpi_srv.addr, "GET", "/health", &[], "").await;
    assert_eq!(status, 200);
    kpi_srv.stop().await;
}
