//! Sustained apply rate of svc-kpi: synthetic outcome-feed records (JSON requests and
//! outcomes as svc-verify publishes them, 7 tenants, mixed outcomes and regimes, measured
//! verification times, the claimed signals svc-verify records) applied through `Kpi::apply`
//! in batches, one durable redb write
//! transaction (fsync) per batch: decision rows, ordinals, per-minute buckets, cursor. No
//! network; the feed's decode cost is not included (tonic decodes before the applier).
//!
//! `cargo bench -p svc-kpi --bench ingest` (environment: `FLK_BENCH_RECORDS`, default
//! 262,144; `FLK_BENCH_BATCH`, default 4,096; `FLK_BENCH_DIR`, default a temporary
//! directory). Target: >= 100,000 records/s on 2 cores. `cargo test -p svc-kpi --bench ingest`
//! runs it once unoptimized, as a smoke test (its figure means nothing).

use std::sync::Arc;

// The allocator of the svc-kpi binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::Instant;

use flk_proto::v1;
use svc_kpi::{Clock as _, Kpi, KpiConfig, SystemClock};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const ROOT: &str = "609f33cac6ffd6b1d3dab6089400413eaefec0019ef869f705831ddf924bab92";

/// A decision record as svc-verify would publish it, for item `n`, decided at `at_ms`.
fn record(seq: u64, n: usize, at_ms: i64) -> v1::FeedRecord {
    let shard = format!("bench-shard-{n}");
    let id = format!("{:064x}", n as u128 * 0x9e37_79b9_7f4a_7c15);
    let json = format!(
        r#"{{"pcs_id":"{id}","schema":"fractal-lba-kakeya","version":"0.1","shard_id":"{shard}","epoch":{},"attempt":1,"sent_at":"2025-01-01T00:00:00Z","seed":42,"scales":[2,4,8,16],"N_j":{{"2":8,"4":13,"8":46,"16":90}},"coh_star":0.731221,"v_star":[0.0,0.0,1.0],"D_hat":1.646363045,"r":0.504138283,"regime":"mixed","budget":0.289103089,"merkle_root":"{ROOT}","sig":"IRIcwPev1Tzi++hDC7EUC3EfeAu246mcY2CD/ppkvUI=","ft":{{"outbox_seq":{n},"degraded":false,"fallbacks":[],"clock_skew_ms":0}}}}"#,
        1000 + n
    );
    let kinds = [
        (v1::OutcomeKind::Accepted, "ok", "mixed"),
        (v1::OutcomeKind::Escalated, "budget_deviation", "sticky"),
        (v1::OutcomeKind::Rejected, "r_out_of_bounds", "non_sticky"),
    ];
    let (kind, reason, regime) = kinds[n % kinds.len()];
    let tenant = format!("tenant-{}", n % 7);
    v1::FeedRecord {
        seq,
        tenant_id: tenant.clone(),
        pcs_id: id.clone(),
        outcome: Some(v1::Outcome {
            pcs_id: id,
            tenant_id: tenant,
            outcome: kind as i32,
            reason_code: reason.into(),
            regime: regime.into(),
            policy_version: "1".into(),
            policy_hash: "5f".repeat(32),
            ..Default::default()
        }),
        canonical_digest: vec![0x5f; 32],
        request_json: json.into_bytes(),
        decided_at_unix_ms: at_ms,
        region: "bench".into(),
        key_id: "k1".into(),
        kind: v1::RecordKind::Decision as i32,
        request_pcs: None,
        verify_cpu_ns: 20_000 + (n as u64 % 50) * 1_000,
        // As svc-verify records them (the same values as the JSON).
        signals: Some(v1::ClaimedSignals {
            d_hat: 1.646363045,
            coh_star: 0.731221,
            r: 0.504138283,
        }),
        canonical_payload: Vec::new(),
        ..Default::default()
    }
}

fn main() {
    let total = env_or("FLK_BENCH_RECORDS", 262_144);
    let batch = env_or("FLK_BENCH_BATCH", 4096).max(1);
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = std::env::var_os("FLK_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.path().to_path_buf())
        .join("kpi-bench");
    let now = SystemClock.now_ms();
    // Decisions spread over the last ~30 minutes, in feed order.
    let records: Vec<v1::FeedRecord> = (0..total)
        .map(|n| {
            record(
                n as u64 + 1,
                n,
                now - 30 * 60_000 + (n as i64 * 30 * 60_000) / total.max(1) as i64,
            )
        })
        .collect();
    let cfg = KpiConfig {
        data_dir: dir.clone(),
        tenants: (0..7).map(|t| format!("tenant-{t}")).collect(),
        ..KpiConfig::default()
    };
    let kpi = Kpi::open(&cfg, Arc::new(SystemClock)).expect("open kpi");
    let started = Instant::now();
    let mut decisions = 0;
    for chunk in records.chunks(batch) {
        decisions += kpi.apply(chunk).expect("apply").decisions;
    }
    let elapsed = started.elapsed();
    assert_eq!(decisions, total as u64, "every record is a new decision");
    let report_started = Instant::now();
    kpi.refresh_metrics().expect("refresh");
    println!(
        "svc-kpi ingest: {total} records in batches of {batch}: {:.3} s, {:.0} records/s (durable, fsync per batch); gauge refresh of 7 tenants x 3 windows: {:.1} ms",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        report_started.elapsed().as_secs_f64() * 1e3
    );
}
