//! `RECORD_KIND_RECONCILED` feed records (svc-crr's repair of a conflict between regions):
//! each replaces the stored outcome and body of its key, whichever tier held them, so that
//! reads answer the repaired decision; the stale copies go, the figures and the cursor follow,
//! a redelivery changes nothing, and the repair survives a restart.

mod common;

use common::*;
use flk_proto::v1;
use svc_tiering::{Engine, Key, ManualClock, Tier};

/// The repair of record `n`: the same key, another outcome and body, decided earlier.
fn reconciled(seq: u64, tenant: &str, n: u64, decided_ms: i64) -> v1::FeedRecord {
    let mut rec = decision(seq, tenant, n, decided_ms);
    rec.kind = v1::RecordKind::Reconciled as i32;
    rec.request_json = repaired_body(n);
    rec.region = "us".to_owned();
    rec.replicated = true;
    if let Some(o) = rec.outcome.as_mut() {
        o.outcome = v1::OutcomeKind::Rejected as i32;
        o.accepted = false;
        o.reason_code = "d_hat_above_threshold".to_owned();
        o.origin_region = "us".to_owned();
        o.replicated = true;
    }
    rec
}

fn repaired_body(n: u64) -> Vec<u8> {
    format!(r#"{{"pcs_id":"{}","repaired":true}}"#, pcs_id(n)).into_bytes()
}

fn tier_of(e: &Engine, tenant: &str, n: u64) -> Option<Tier> {
    e.catalog()
        .get(&Key::new(tenant, pcs_id(n)))
        .unwrap()
        .map(|m| m.tier)
}

/// Reads record `n` and checks that it is the repaired decision, answered from `tier`.
async fn assert_repaired(e: &Engine, tenant: &str, n: u64, tier: Tier) {
    let r = e.get(tenant, &pcs_id(n)).await.expect("read");
    assert_eq!(r.tier, tier, "record {n}");
    assert_eq!(r.record.body, repaired_body(n), "record {n} body");
    let o = r.record.outcome().unwrap();
    assert_eq!(o.outcome, v1::OutcomeKind::Rejected as i32, "record {n}");
    assert_eq!(o.origin_region, "us");
    assert!(o.replicated);
    assert_eq!(r.record.decided_at_unix_ms, T0 - MINUTE);
}

fn metrics_text(registry: &prometheus::Registry) -> String {
    use prometheus::Encoder as _;
    let mut out = Vec::new();
    prometheus::TextEncoder::new()
        .encode(&registry.gather(), &mut out)
        .unwrap();
    String::from_utf8(out).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconciled_record_replaces_the_stored_one_in_any_tier() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let cfg = config(dir.path());
    let svc = open(&cfg, &clock).await;
    let e = svc.engine();

    // Record 1 ends cold, 2 warm, 3 hot; 4 is left alone.
    e.ingest(&[decision(1, "acme", 1, T0)]).await.unwrap();
    clock.set(T0 + HOUR);
    assert_eq!(e.cycle().await.unwrap().hot_to_warm, 1);
    clock.set(T0 + HOUR + 7 * DAY);
    assert_eq!(e.cycle().await.unwrap().warm_to_cold, 1);
    e.ingest(&[decision(2, "acme", 2, T0)]).await.unwrap();
    clock.set(T0 + 2 * HOUR + 7 * DAY);
    assert_eq!(e.cycle().await.unwrap().hot_to_warm, 1);
    e.ingest(&[decision(3, "acme", 3, T0), decision(4, "acme", 4, T0)])
        .await
        .unwrap();
    assert_eq!(tier_of(e, "acme", 1), Some(Tier::Cold));
    assert_eq!(tier_of(e, "acme", 2), Some(Tier::Warm));
    assert_eq!(tier_of(e, "acme", 3), Some(Tier::Hot));
    let packs = || {
        dir.path()
            .join("cold/packs")
            .read_dir()
            .map_or(0, |d| d.count())
    };
    assert_eq!(packs(), 1);

    // A reconciled record for each, and a conflict event (not a record) after them.
    let repairs: Vec<_> = (1..=3)
        .map(|n| reconciled(4 + n, "acme", n, T0 - MINUTE))
        .collect();
    let mut batch = repairs.clone();
    batch.push(v1::FeedRecord {
        seq: 8,
        tenant_id: "acme".to_owned(),
        pcs_id: pcs_id(4),
        kind: v1::RecordKind::ConflictingDuplicate as i32,
        ..Default::default()
    });
    assert_eq!(e.ingest(&batch).await.unwrap(), 3);
    assert_eq!(e.catalog().cursor().unwrap(), 8);

    // Reads answer the repair, from hot (the new copy's tier), and the stale copies are gone.
    for n in 1..=3 {
        assert_eq!(tier_of(e, "acme", n), Some(Tier::Hot), "record {n}");
        assert_repaired(e, "acme", n, Tier::Hot).await;
    }
    let warm_copy = e
        .tiers()
        .warm
        .get(&Key::new("acme", pcs_id(2)))
        .await
        .unwrap();
    assert_eq!(warm_copy, None, "the replaced warm copy is deleted");
    assert_eq!(
        packs(),
        0,
        "the pack whose only record was replaced is deleted"
    );
    // The untouched record is as decided.
    let r = e.get("acme", &pcs_id(4)).await.unwrap();
    assert_eq!(r.record.body, body(4));
    assert_eq!(
        r.record.outcome().unwrap().outcome,
        v1::OutcomeKind::Accepted as i32
    );
    // The figures follow the copies: four records, all hot.
    assert_eq!(e.stats(0).records, [4, 0, 0]);
    let text = metrics_text(svc.registry());
    assert_eq!(metric(&text, "flk_tiering_reconciled_total"), Some(3.0));

    // Redelivered (the feed is at least once): nothing changes, nothing counted twice.
    assert_eq!(e.ingest(&repairs).await.unwrap(), 0);
    assert_eq!(e.stats(0).records, [4, 0, 0]);
    let text = metrics_text(svc.registry());
    assert_eq!(metric(&text, "flk_tiering_reconciled_total"), Some(3.0));

    // A repair moves on with its record like any other: demoted, read back, still repaired.
    clock.set(T0 + 3 * HOUR + 7 * DAY);
    e.cycle().await.unwrap();
    assert_eq!(tier_of(e, "acme", 1), Some(Tier::Warm));
    assert_repaired(e, "acme", 1, Tier::Warm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_and_repairs_of_one_batch_apply_in_feed_order_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let cfg = config(dir.path());
    {
        let svc = open(&cfg, &clock).await;
        let e = svc.engine();
        // The decision and its repair in one batch, a later decision after them, and a
        // repair of a key this region never stored (it is stored).
        let batch = vec![
            decision(1, "acme", 10, T0),
            reconciled(2, "acme", 10, T0 - MINUTE),
            decision(3, "acme", 11, T0),
            reconciled(4, "acme", 12, T0 - MINUTE),
        ];
        assert_eq!(e.ingest(&batch).await.unwrap(), 4);
        assert_eq!(e.catalog().cursor().unwrap(), 4);
        assert_repaired(e, "acme", 10, Tier::Hot).await;
        assert_repaired(e, "acme", 12, Tier::Hot).await;
        let r = e.get("acme", &pcs_id(11)).await.unwrap();
        assert_eq!(r.record.body, body(11));
        // Another tenant's key of the same id is not touched (nor found).
        assert!(e.get("other", &pcs_id(10)).await.is_err());
        assert_eq!(e.stats(0).records, [3, 0, 0]);
    }
    // The hot store is volatile: a new process refills it from the catalog's hot journal,
    // which holds the repair.
    let svc = open(&cfg, &clock).await;
    let e = svc.engine();
    e.recover().await.unwrap();
    assert_repaired(e, "acme", 10, Tier::Hot).await;
    assert_repaired(e, "acme", 12, Tier::Hot).await;
    assert_eq!(e.catalog().cursor().unwrap(), 4);
    assert_eq!(e.stats(0).records, [3, 0, 0]);
}
