//! The SIEM stage against local receivers that behave as the products document
//! (`flk_testkit::siem`): Splunk HEC busy (503) and refusing a token (403), Datadog rate
//! limiting (429 with `Retry-After`) and refusing oversized requests (413), Elasticsearch
//! answering HTTP 200 with per-item 429s and 409s, Sumo Logic refusing connections for a while.
//! In every case: no decision is lost, nothing that succeeded is sent again, order is kept per
//! tenant, every event names its provable leaf of the audit log; and a restart resends at most
//! the batch whose answer it never got.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::Path;

use common::*;
use flk_testkit::siem::{Faults, Product, Receiver, Seen};
use serde_json::Value;
use svc_audit::siem::{SinkConfig, SinkKind};
use svc_audit::{AuditConfig, Ledger};

const SINK_TOKEN: &str = "siem-test-token";

/// A sink with small batches and quick retries, its token in a file under `dir`.
fn sink(kind: SinkKind, url: &str, dir: &Path) -> SinkConfig {
    let mut s = SinkConfig::new("s1", kind, url);
    let token = dir.join("sink.token");
    std::fs::write(&token, SINK_TOKEN).expect("token file");
    s.token_file = Some(token);
    s.batch_max_events = 25;
    s.flush_interval_ms = 20;
    s.retry_initial_ms = 10;
    s.retry_max_ms = 200;
    s
}

struct Setup {
    verify: Verify,
    audit: Audit,
    _dir: tempfile::TempDir,
}

/// svc-verify and svc-audit with one sink pointed at `receiver`.
async fn setup(
    receiver: &Receiver,
    kind: SinkKind,
    tune: impl FnOnce(&mut SinkConfig, &mut AuditConfig),
) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let verify = Verify::start().await;
    let mut s = sink(kind, &receiver.url(), dir.path());
    let audit = Audit::start_with(&verify.url(), |cfg| {
        tune(&mut s, cfg);
        cfg.siem.sinks = vec![s];
    })
    .await;
    Setup {
        verify,
        audit,
        _dir: dir,
    }
}

/// Submits `n` fresh PCS, alternating between the two tenants; returns `(tenant, pcs_id)` of
/// each decision.
async fn submit_mixed(verify: &Verify, prefix: &str, n: usize) -> Vec<(String, String)> {
    let mut client = verify.client().await;
    let mut keys = Vec::new();
    for (i, pcs) in mixed(prefix, n).iter().enumerate() {
        let tenant = if i % 2 == 0 { TENANT } else { TWIN };
        submit(&mut client, json_request(tenant, pcs)).await;
        keys.push((tenant.to_owned(), pcs_id_of(pcs)));
    }
    keys
}

/// The decision events of what a receiver accepted, in arrival order.
fn decision_events(seen: &Seen) -> Vec<Value> {
    seen.events
        .iter()
        .filter(|e| e["type"] == "decision")
        .cloned()
        .collect()
}

async fn wait_for_decisions(receiver: &Receiver, n: usize) {
    tokio::time::timeout(
        DEADLINE,
        receiver.wait_for(|seen| {
            let ids: HashSet<&str> = seen
                .events
                .iter()
                .filter(|e| e["type"] == "decision")
                .filter_map(|e| e["event_id"].as_str())
                .collect();
            ids.len() >= n
        }),
    )
    .await
    .unwrap_or_else(|_| panic!("{n} decisions not delivered within {DEADLINE:?}"));
}

/// Every decision arrived (at least once), each names its leaf of the audit log, and per
/// tenant the first arrivals are in log order (when `ordered`).
fn check_delivery(events: &[Value], keys: &[(String, String)], ledger: &Ledger, ordered: bool) {
    let mut first: Vec<&Value> = Vec::new();
    let mut ids = HashSet::new();
    for e in events {
        if ids.insert(e["event_id"].as_str().expect("event_id")) {
            first.push(e);
        }
    }
    let got: HashSet<(String, String)> = first
        .iter()
        .map(|e| {
            (
                e["tenant_id"].as_str().expect("tenant_id").to_owned(),
                e["details"]["pcs_id"].as_str().expect("pcs_id").to_owned(),
            )
        })
        .collect();
    let want: HashSet<(String, String)> = keys.iter().cloned().collect();
    assert_eq!(got, want, "the decisions delivered are the decisions made");
    assert_eq!(first.len(), want.len(), "one event id per decision");

    let log = ledger
        .entries(0, ledger.size())
        .expect("the audit log's entries");
    let mut last_index: HashMap<&str, u64> = HashMap::new();
    for e in &first {
        assert_eq!(
            keys_of(e),
            [
                "details",
                "event_id",
                "message",
                "region",
                "severity",
                "tenant_id",
                "time",
                "type"
            ]
        );
        let d = &e["details"];
        for k in [
            "pcs_id",
            "outcome",
            "reason_code",
            "policy_version",
            "audit_index",
        ] {
            assert!(d.get(k).is_some(), "details.{k} missing: {e}");
        }
        let severity = match d["outcome"].as_str() {
            Some("accepted") => "info",
            Some("escalated") => "warning",
            Some("rejected") => "error",
            other => panic!("outcome {other:?}"),
        };
        assert_eq!(e["severity"], severity);
        assert_eq!(e["region"], "test");
        let time = e["time"].as_str().expect("time");
        assert!(
            time.len() == 24 && time.ends_with('Z') && &time[19..20] == ".",
            "{time}"
        );
        // The event's leaf is that decision's entry in the audit log.
        let index = d["audit_index"].as_u64().expect("audit_index");
        let entry = flk_tlog::AuditEntry::decode(&log[index as usize]).expect("a decision entry");
        assert_eq!(hex::encode(entry.pcs_id), d["pcs_id"].as_str().unwrap());
        assert_eq!(entry.tenant_id, e["tenant_id"].as_str().unwrap());
        if ordered {
            let tenant = e["tenant_id"].as_str().unwrap();
            if let Some(prev) = last_index.insert(tenant, index) {
                assert!(prev < index, "tenant {tenant}: leaf {index} after {prev}");
            }
        }
    }
}

fn keys_of(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    k.sort_unstable();
    k
}

fn sink_metric(audit: &Audit, name: &str) -> f64 {
    metric(&audit.metrics(), &format!("{name}{{sink=\"s1\"}}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn splunk_hec_busy_is_retried_and_everything_arrives_once_in_order() {
    let faults = Faults {
        busy_requests: 3,
        ..Faults::default()
    };
    let receiver = Receiver::start(Product::Splunk, SINK_TOKEN, faults)
        .await
        .expect("receiver");
    let s = setup(&receiver, SinkKind::SplunkHec, |_, _| {}).await;
    let keys = submit_mixed(&s.verify, "hec", 60).await;
    // The first PCS again with other signed content: a conflicting duplicate event.
    let mut conflict = mixed("hec", 1).remove(0);
    conflict["budget"] = serde_json::json!(0.123);
    sign(&mut conflict);
    submit(
        &mut s.verify.client().await,
        json_request(TENANT, &conflict),
    )
    .await;
    wait_for_decisions(&receiver, keys.len()).await;
    tokio::time::timeout(
        DEADLINE,
        receiver.wait_for(|seen| {
            seen.events
                .iter()
                .any(|e| e["type"] == "conflicting_duplicate")
        }),
    )
    .await
    .expect("the conflicting duplicate reaches the SIEM");
    receiver.seen(|seen| {
        let c = seen
            .events
            .iter()
            .find(|e| e["type"] == "conflicting_duplicate")
            .expect("conflict event");
        assert_eq!(c["severity"], "warning");
        assert_eq!(c["tenant_id"], TENANT);
        assert_eq!(c["details"]["pcs_id"], keys[0].1.as_str());
    });

    let events = receiver.seen(decision_events);
    assert_eq!(
        events.len(),
        keys.len(),
        "a 503 request is not resent once accepted"
    );
    check_delivery(&events, &keys, s.audit.ledger(), true);
    receiver.seen(|seen| {
        assert_eq!(seen.statuses.get(&503), Some(&3));
        assert_eq!(
            seen.last_headers.get("authorization").map(String::as_str),
            Some(format!("Splunk {SINK_TOKEN}").as_str())
        );
    });
    assert!(sink_metric(&s.audit, "flk_siem_events_retried_total") >= 1.0);
    assert_eq!(sink_metric(&s.audit, "flk_siem_dead_letter_total"), 0.0);
    // Checkpoints are events too.
    assert!(receiver.seen(|seen| seen.events.iter().any(|e| e["type"] == "audit_checkpoint")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn splunk_hec_refusing_the_token_dead_letters_each_batch_once() {
    let receiver = Receiver::start(Product::Splunk, "another-token", Faults::default())
        .await
        .expect("receiver");
    let s = setup(&receiver, SinkKind::SplunkHec, |_, _| {}).await;
    let keys = submit_mixed(&s.verify, "hec403", 30).await;
    s.audit.wait_caught_up(s.verify.last_seq()).await;
    // The counter also counts refused checkpoint events, and is counted once the file has
    // them: wait for the file to hold every decision and the counter to reach their number.
    let file = s.audit.data_dir().join("siem/s1/dead-letters.ndjson");
    let (file, n, audit) = (&file, keys.len(), &s.audit);
    let (dead, lines) = poll_until("every decision is dead-lettered", || async move {
        let dead = std::fs::read_to_string(file).unwrap_or_default();
        let lines: Vec<Value> = dead
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect();
        let decisions = lines
            .iter()
            .filter(|l| l["event"]["type"] == "decision")
            .map(|l| l["event_id"].as_str().unwrap())
            .collect::<HashSet<_>>()
            .len();
        let counted = sink_metric(audit, "flk_siem_dead_letter_total") >= n as f64;
        (decisions == n && counted).then_some((dead, lines))
    })
    .await;
    assert!(
        lines
            .iter()
            .all(|l| l["reason"].as_str().unwrap().contains("403"))
    );
    // Each request was refused once: no retry loop on a fatal answer.
    receiver.seen(|seen| {
        assert_eq!(seen.statuses.get(&403), Some(&seen.requests));
        assert!(seen.events.is_empty());
    });
    assert_eq!(sink_metric(&s.audit, "flk_siem_events_retried_total"), 0.0);
    assert!(!dead.contains(SINK_TOKEN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datadog_429_waits_for_retry_after_and_413_splits_the_request() {
    let faults = Faults {
        busy_requests: 1,
        max_entries: Some(7),
        ..Faults::default()
    };
    let receiver = Receiver::start(Product::Datadog, SINK_TOKEN, faults)
        .await
        .expect("receiver");
    let s = setup(&receiver, SinkKind::Datadog, |sink, _| {
        sink.batch_max_events = 40;
        sink.flush_interval_ms = 200;
    })
    .await;
    let keys = submit_mixed(&s.verify, "dd", 60).await;
    let started = std::time::Instant::now();
    wait_for_decisions(&receiver, keys.len()).await;
    // The one 429 said `Retry-After: 1`.
    assert!(started.elapsed() >= std::time::Duration::from_secs(1));

    let events = receiver.seen(decision_events);
    assert_eq!(events.len(), keys.len(), "nothing sent twice");
    check_delivery(&events, &keys, s.audit.ledger(), true);
    receiver.seen(|seen| {
        assert_eq!(seen.statuses.get(&429), Some(&1));
        assert!(
            seen.statuses.get(&413).copied().unwrap_or(0) >= 1,
            "{:?}",
            seen.statuses
        );
        assert!(seen.max_entries <= 7);
        assert_eq!(
            seen.last_headers
                .get("content-encoding")
                .map(String::as_str),
            Some("gzip")
        );
        assert_eq!(
            seen.last_headers.get("dd-api-key").map(String::as_str),
            Some(SINK_TOKEN)
        );
    });
    assert_eq!(sink_metric(&s.audit, "flk_siem_dead_letter_total"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elasticsearch_item_429s_are_retried_alone_and_no_document_is_sent_twice() {
    let faults = Faults {
        item_429_one_in: 3,
        ..Faults::default()
    };
    let receiver = Receiver::start(Product::Elasticsearch, SINK_TOKEN, faults)
        .await
        .expect("receiver");
    let s = setup(&receiver, SinkKind::Elasticsearch, |sink, _| {
        sink.index = Some("flk-events".into());
    })
    .await;
    let keys = submit_mixed(&s.verify, "es", 60).await;
    wait_for_decisions(&receiver, keys.len()).await;

    let events = receiver.seen(decision_events);
    check_delivery(&events, &keys, s.audit.ledger(), false);
    receiver.seen(|seen| {
        assert!(
            seen.resent_after_success.is_empty(),
            "items that succeeded were sent again: {:?}",
            seen.resent_after_success
        );
        assert_eq!(seen.docs.len(), seen.events.len(), "no duplicate documents");
        assert_eq!(
            seen.last_headers.get("authorization").map(String::as_str),
            Some(format!("ApiKey {SINK_TOKEN}").as_str())
        );
        assert_eq!(seen.statuses.keys().copied().collect::<Vec<_>>(), [200]);
    });
    assert!(sink_metric(&s.audit, "flk_siem_events_retried_total") >= 1.0);
    // A partly refused bulk request is counted as such.
    assert!(
        metric(
            &s.audit.metrics(),
            "flk_siem_requests_total{result=\"partial\",sink=\"s1\"}"
        ) >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sumo_refusing_connections_for_a_while_loses_nothing() {
    let mut receiver = Receiver::start(Product::Sumo, SINK_TOKEN, Faults::default())
        .await
        .expect("receiver");
    receiver.pause().await;
    let s = setup(&receiver, SinkKind::Sumo, |sink, _| {
        sink.category = Some("flk/prod".into());
    })
    .await;
    let keys = submit_mixed(&s.verify, "sumo", 60).await;
    let audit = &s.audit;
    poll_until("the sink retries while Sumo refuses connections", || async move {
        (sink_metric(audit, "flk_siem_events_retried_total") >= 1.0).then_some(())
    })
    .await;
    assert!(sink_metric(&s.audit, "flk_siem_spool_bytes") > 0.0);
    receiver.resume().await.expect("resume");
    wait_for_decisions(&receiver, keys.len()).await;

    let events = receiver.seen(decision_events);
    assert_eq!(events.len(), keys.len());
    check_delivery(&events, &keys, s.audit.ledger(), true);
    receiver.seen(|seen| {
        assert_eq!(
            seen.last_headers.get("x-sumo-category").map(String::as_str),
            Some("flk/prod")
        );
        assert_eq!(
            seen.last_headers
                .get("content-encoding")
                .map(String::as_str),
            Some("gzip")
        );
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spool_stays_within_its_bound_while_the_sink_is_down() {
    const BOUND: u64 = 1 << 20;
    let mut receiver = Receiver::start(Product::Sumo, SINK_TOKEN, Faults::default())
        .await
        .expect("receiver");
    receiver.pause().await;
    let s = setup(&receiver, SinkKind::Sumo, |sink, cfg| {
        sink.batch_max_events = 500;
        cfg.siem.spool_max_bytes = BOUND;
    })
    .await;
    // About 2.2 MiB of events: more than twice the bound.
    let keys = submit_mixed(&s.verify, "bound", 4000).await;
    s.audit.wait_caught_up(s.verify.last_seq()).await;
    let audit = &s.audit;
    let full = poll_until("the spool fills up to its bound", || async move {
        let bytes = sink_metric(audit, "flk_siem_spool_bytes");
        (bytes > (BOUND as f64) * 0.9).then_some(bytes)
    })
    .await;
    assert!(full <= BOUND as f64, "spool of {full} bytes over its bound");
    let on_disk: u64 = std::fs::read_dir(s.audit.data_dir().join("siem/s1/spool"))
        .expect("spool dir")
        .map(|e| e.expect("entry").metadata().expect("metadata").len())
        .sum();
    assert!(on_disk <= BOUND, "{on_disk} bytes on disk");

    receiver.resume().await.expect("resume");
    wait_for_decisions(&receiver, keys.len()).await;
    let events = receiver.seen(decision_events);
    assert_eq!(events.len(), keys.len());
    check_delivery(&events, &keys, s.audit.ledger(), true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_resends_only_the_batch_whose_answer_was_lost() {
    // The third request is indexed, but its answer never comes: then svc-audit dies.
    let faults = Faults {
        hold_after: Some(2),
        ..Faults::default()
    };
    let receiver = Receiver::start(Product::Elasticsearch, SINK_TOKEN, faults)
        .await
        .expect("receiver");
    let mut s = setup(&receiver, SinkKind::Elasticsearch, |_, _| {}).await;
    let keys = submit_mixed(&s.verify, "crash", 120).await;
    tokio::time::timeout(
        DEADLINE,
        receiver.wait_for(|seen| seen.accepted_requests >= 3),
    )
    .await
    .expect("three requests");
    s.audit.kill().await;
    let held = receiver.seen(|seen| seen.events.len());
    s.audit.reopen().await;
    wait_for_decisions(&receiver, keys.len()).await;

    let events = receiver.seen(decision_events);
    check_delivery(&events, &keys, s.audit.ledger(), false);
    receiver.seen(|seen| {
        let resent: usize = seen.resent_after_success.values().sum();
        // At most the one batch whose answer was lost, each of its events once.
        assert!(resent <= 25, "{resent} events sent again");
        assert!(seen.resent_after_success.values().all(|n| *n == 1));
        assert!(resent >= 1 || held == 0, "the held batch is sent again");
        assert_eq!(seen.docs.len(), seen.events.len());
    });
}
