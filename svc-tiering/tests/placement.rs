//! The placement rules on the embedded stores, with a manual clock (no sleeping): TTLs, read
//! resetting the clock, promotion on read, retention and `none`, overflow demotion in LRU
//! order, nothing dropped, tenant isolation, bodies byte-identical in every tier, and
//! recovery of interrupted moves.

mod common;

use common::*;
use flk_proto::v1;
use prost::Message as _;
use svc_tiering::catalog::Op;
use svc_tiering::record::{Pending, StoredRecord};
use svc_tiering::{Engine, Key, ManualClock, Tier, TieringError};

fn tier_of(e: &Engine, tenant: &str, n: u64) -> Option<Tier> {
    e.catalog()
        .get(&Key::new(tenant, pcs_id(n)))
        .unwrap()
        .map(|m| m.tier)
}

async fn assert_reads(e: &Engine, tenant: &str, n: u64, tier: Tier) {
    let r = e.get(tenant, &pcs_id(n)).await.expect("read");
    assert_eq!(r.tier, tier, "record {n}");
    assert_eq!(r.record.body, body(n), "record {n} body");
    assert_eq!(r.record.body_kind.content_type(), "application/json");
    let o = r.record.outcome().unwrap();
    assert_eq!(o.pcs_id, pcs_id(n));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttls_reads_promotion_and_retention() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let svc = open(&config(dir.path()), &clock).await;
    let e = svc.engine();
    let batch: Vec<_> = (1..=5).map(|n| decision(n, "acme", n, T0)).collect();
    assert_eq!(e.ingest(&batch).await.unwrap(), 5);
    // Redelivery stores nothing twice.
    assert_eq!(e.ingest(&batch).await.unwrap(), 0);
    assert_eq!(e.catalog().cursor().unwrap(), 5);
    // The hot journal's copies in a blob file, as a full memtable would leave them.
    e.catalog().seal_journal().unwrap();

    // Just before hot_ttl nothing moves; a read at 59 min restarts record 1's clock.
    clock.set(T0 + 59 * MINUTE);
    assert_eq!(e.cycle().await.unwrap().hot_to_warm, 0);
    assert_reads(e, "acme", 1, Tier::Hot).await;
    clock.set(T0 + HOUR);
    let r = e.cycle().await.unwrap();
    assert_eq!(r.hot_to_warm, 4, "{r:?}");
    let mut journal_freed = r.journal_freed_bytes;
    assert_eq!(tier_of(e, "acme", 1), Some(Tier::Hot));
    assert_eq!(tier_of(e, "acme", 2), Some(Tier::Warm));
    clock.set(T0 + HOUR + 59 * MINUTE - 1);
    assert_eq!(e.cycle().await.unwrap().hot_to_warm, 0);
    clock.set(T0 + HOUR + 59 * MINUTE);
    let r = e.cycle().await.unwrap();
    assert_eq!(r.hot_to_warm, 1);
    assert_eq!(tier_of(e, "acme", 1), Some(Tier::Warm));
    // With no record hot, the blob file holding their journal copies is gone (dropped whole
    // now, or rewritten when 4 of 5 left and that file dropped now).
    journal_freed += r.journal_freed_bytes;
    assert!(journal_freed > 0, "{r:?}");
    let gc = e.catalog().collect_journal_garbage().unwrap();
    assert_eq!((gc.files, gc.bytes), (0, 0), "{gc:?}");

    // warm -> cold after warm_ttl since entering warm.
    clock.set(T0 + HOUR + 7 * DAY - 1);
    assert_eq!(e.cycle().await.unwrap().warm_to_cold, 0);
    clock.set(T0 + HOUR + 7 * DAY);
    let r = e.cycle().await.unwrap();
    assert_eq!(r.warm_to_cold, 4, "{r:?}");
    assert!(dir.path().join("cold/packs").read_dir().unwrap().count() >= 2);

    // Reads: warm and cold answer from their tier, byte-identical, and promote to hot.
    assert_reads(e, "acme", 1, Tier::Warm).await;
    assert_eq!(tier_of(e, "acme", 1), Some(Tier::Hot));
    assert_reads(e, "acme", 2, Tier::Cold).await;
    assert_eq!(tier_of(e, "acme", 2), Some(Tier::Hot));
    assert_reads(e, "acme", 2, Tier::Hot).await;
    let s = e.stats(0);
    assert_eq!(s.records, [2, 0, 3]);
    assert_eq!(s.moves[0][1], 5);
    assert_eq!(s.moves[1][2], 4);
    assert_eq!(s.moves[2][0], 1);
    assert_eq!(s.moves[1][0], 1);
    assert_eq!(s.promotions, 2);
    assert!(s.move_cost_usd > 0.0);

    // Tenant isolation: another tenant's key is not found.
    assert!(matches!(
        e.get("other", &pcs_id(3)).await,
        Err(TieringError::NotFound { .. })
    ));

    // Retention counts from the decision time, whatever the reads.
    clock.set(T0 + 90 * DAY - 1);
    assert_eq!(e.cycle().await.unwrap().removed, 0);
    clock.set(T0 + 90 * DAY);
    assert_eq!(e.cycle().await.unwrap().removed, 5);
    for n in 1..=5 {
        assert!(matches!(
            e.get("acme", &pcs_id(n)).await,
            Err(TieringError::NotFound { .. })
        ));
    }
    assert_eq!(e.stats(0).records, [0, 0, 0]);
    // Emptied packs are deleted with their last record.
    assert_eq!(dir.path().join("cold/packs").read_dir().unwrap().count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_none_keeps_records_forever() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let mut cfg = config(dir.path());
    cfg.retention = "none".into();
    let svc = open(&cfg, &clock).await;
    let e = svc.engine();
    e.ingest(&[decision(1, "t", 1, T0 - 400 * DAY)])
        .await
        .unwrap();
    for years in 1..=10 {
        clock.set(T0 + years * 365 * DAY);
        let r = e.cycle().await.unwrap();
        assert_eq!(r.removed, 0);
    }
    assert_eq!(tier_of(e, "t", 1), Some(Tier::Cold));
    assert_reads(e, "t", 1, Tier::Cold).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overflow_demotes_least_recently_used_first_and_drops_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let mut cfg = config(dir.path());
    let size = |n: u64| {
        StoredRecord::from_feed(&decision(n, "t", n, T0))
            .unwrap()
            .encode()
            .len() as u64
    };
    // Room for exactly the three that should stay.
    let room = size(100) + size(104) + size(105);
    cfg.hot_max_bytes = room;
    let svc = open(&cfg, &clock).await;
    let e = svc.engine();
    for n in 100..106 {
        e.ingest(&[decision(n, "t", n, T0)]).await.unwrap();
        clock.advance(MINUTE);
    }
    // Record 100 is the oldest but read last: the most recently used.
    assert_reads(e, "t", 100, Tier::Hot).await;
    clock.advance(MINUTE);
    let r = e.cycle().await.unwrap();
    assert_eq!((r.hot_to_warm, r.overflow), (3, 3), "{r:?}");
    let tiers: Vec<_> = (100..106).map(|n| tier_of(e, "t", n).unwrap()).collect();
    assert_eq!(
        tiers,
        [
            Tier::Hot,
            Tier::Warm,
            Tier::Warm,
            Tier::Warm,
            Tier::Hot,
            Tier::Hot
        ]
    );
    assert!(e.hot_bytes() <= room);
    // Never dropped: every record reads back identical.
    for n in 101..104 {
        assert_reads(e, "t", n, Tier::Warm).await;
    }
    // ... and those reads promoted three, so the next cycle demotes the three LRU again.
    let r = e.cycle().await.unwrap();
    assert_eq!(r.overflow, 3, "{r:?}");
    for n in 100..106 {
        assert!(tier_of(e, "t", n).is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn structured_bodies_and_conflict_events() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let svc = open(&config(dir.path()), &clock).await;
    let e = svc.engine();
    let mut rec = decision(1, "t", 7, T0);
    rec.request_json.clear();
    let pcs = v1::Pcs {
        pcs_id: Some(pcs_id(7)),
        d_hat: Some(1.25),
        ..Default::default()
    };
    rec.request_pcs = Some(pcs.clone());
    let mut conflict = decision(2, "t", 8, T0);
    conflict.kind = v1::RecordKind::ConflictingDuplicate as i32;
    assert_eq!(e.ingest(&[rec, conflict]).await.unwrap(), 1);
    assert_eq!(e.catalog().cursor().unwrap(), 2);
    let r = e.get("t", &pcs_id(7)).await.unwrap();
    assert_eq!(r.record.body, pcs.encode_to_vec());
    assert_eq!(r.record.body_kind.content_type(), "application/x-protobuf");
    assert!(e.get("t", &pcs_id(8)).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_finishes_or_undoes_interrupted_moves() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let cfg = config(dir.path());
    {
        let svc = open(&cfg, &clock).await;
        let e = svc.engine();
        e.ingest(&[decision(1, "t", 1, T0), decision(2, "t", 2, T0)])
            .await
            .unwrap();
        let blob = |n: u64| {
            StoredRecord::from_feed(&decision(n, "t", n, T0))
                .unwrap()
                .encode()
        };
        // Record 1: crashed after the copy to warm, before the switch.
        let k1 = Key::new("t", pcs_id(1));
        let mut m1 = e.catalog().get(&k1).unwrap().unwrap();
        m1.pending = Some(Pending::Move {
            from: Tier::Hot,
            to: Tier::Warm,
            pack: None,
        });
        e.tiers().warm.put(&k1, &blob(1)).await.unwrap();
        // Record 2: crashed after the switch to warm, before the hot copy was deleted.
        let k2 = Key::new("t", pcs_id(2));
        let mut m2 = e.catalog().get(&k2).unwrap().unwrap();
        m2.tier = Tier::Warm;
        m2.pending = Some(Pending::Move {
            from: Tier::Hot,
            to: Tier::Warm,
            pack: None,
        });
        e.tiers().warm.put(&k2, &blob(2)).await.unwrap();
        e.catalog()
            .commit(&[Op::Put(k1, m1), Op::Put(k2, m2)], true)
            .unwrap();
        // An orphan pack (written, never switched to).
        std::fs::create_dir_all(dir.path().join("cold/packs")).unwrap();
        std::fs::write(dir.path().join("cold/packs/0-orphan.pack"), b"junk").unwrap();
    }
    let svc = open(&cfg, &clock).await;
    let e = svc.engine();
    let k1 = Key::new("t", pcs_id(1));
    let m1 = e.catalog().get(&k1).unwrap().unwrap();
    assert_eq!((m1.tier, m1.pending), (Tier::Hot, None));
    assert_eq!(
        e.tiers().warm.get(&k1).await.unwrap(),
        None,
        "copy discarded"
    );
    let k2 = Key::new("t", pcs_id(2));
    let m2 = e.catalog().get(&k2).unwrap().unwrap();
    assert_eq!((m2.tier, m2.pending), (Tier::Warm, None));
    assert_eq!(
        e.tiers().hot.get(&k2).await.unwrap(),
        None,
        "stale copy gone"
    );
    assert!(!dir.path().join("cold/packs/0-orphan.pack").exists());
    // The memory hot tier was refilled from the journal after the "restart".
    assert!(e.tiers().hot.get(&k1).await.unwrap().is_some());
    assert_reads(e, "t", 1, Tier::Hot).await;
    assert_reads(e, "t", 2, Tier::Warm).await;
    assert_eq!(e.stats(0).records, [2, 0, 0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_predictive_prewarm_runs_in_the_placement_cycle() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let mut cfg = config(dir.path());
    cfg.prewarm = "predictive_logreg".into();
    cfg.hot_ttl = "30m".into();
    let svc = open(&cfg, &clock).await;
    let e = svc.engine();
    e.ingest(&(1..=4).map(|n| decision(n, "t", n, T0)).collect::<Vec<_>>())
        .await
        .unwrap();
    // Records 1 and 2 are read every hour (from warm: hot_ttl is 30 min), 3 and 4 once.
    for n in [3, 4] {
        e.get("t", &pcs_id(n)).await.unwrap();
    }
    for h in 0..30 {
        clock.set(T0 + h * HOUR + 31 * MINUTE);
        e.cycle().await.unwrap();
        clock.set(T0 + (h + 1) * HOUR);
        for n in [1, 2] {
            let r = e.get("t", &pcs_id(n)).await.unwrap();
            assert_eq!(r.record.body, body(n));
        }
    }
    // The model is trained and scored: precision and recall are reported (their values
    // depend on the measured costs of this machine's reads and promotions).
    assert!(e.prewarm().trained());
    let s = e.stats(0);
    let (precision, recall) = s.prewarm.expect("precision and recall");
    assert!((0.0..=1.0).contains(&precision) && (0.0..=1.0).contains(&recall));
    let text = {
        use prometheus::Encoder as _;
        let mut buf = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&svc.registry().gather(), &mut buf)
            .unwrap();
        String::from_utf8(buf).unwrap()
    };
    assert!(text.contains("flk_tiering_prewarm_precision"), "{text}");
    assert!(text.contains(r#"flk_tiering_prewarm_info{model="predictive_logreg"} 1"#));
    // Nothing was lost along the way.
    for n in 1..=4 {
        assert_eq!(e.get("t", &pcs_id(n)).await.unwrap().record.body, body(n));
    }
}
