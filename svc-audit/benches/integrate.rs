//! Sustained integration rate of svc-audit's ledger from a synthetic outcome feed: batches of
//! `FeedRecord`s (JSON requests, as svc-verify records them) handed straight to
//! `Ledger::integrate` (no network): mapping (the published canonical payload checked against
//! its digest, or a strict parse and canonicalization of the request), duplicate check, Merkle
//! append with tiles, bundles and a signed checkpoint per batch, index commit and cursor, all
//! durable (fsync on) on the embedded backend.
//!
//! `cargo bench -p svc-audit --bench integrate` (environment: `FLK_BENCH_RECORDS`, default
//! 262,144; `FLK_BENCH_BATCH`, default 4,096; `FLK_BENCH_SYNC`, `file` (default) or
//! `filesystem`; `FLK_BENCH_DIR`, default a temporary directory; `FLK_BENCH_PAYLOAD=0` leaves
//! out the `canonical_payload` svc-verify publishes, as in records written before it existed,
//! so that every entry is derived from the request: the baseline of the same binary).

use std::time::Instant;

// The allocator of the svc-audit binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use flk_core::{canonicalize, compute_pcs_id, parse_pcs};
use flk_proto::v1;
use flk_tlog::{LogSigner, SyncMode};
use svc_audit::Ledger;
use svc_audit::metrics::AuditMetrics;

const ROOT: &str = "609f33cac6ffd6b1d3dab6089400413eaefec0019ef869f705831ddf924bab92";

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A decision record as svc-verify would publish it, for shard `n`.
fn record(seq: u64, n: usize) -> v1::FeedRecord {
    let shard = format!("bench-shard-{n}");
    let id = compute_pcs_id(ROOT, 1000 + n as u64, &shard);
    let json = format!(
        r#"{{"pcs_id":"{id}","schema":"fractal-lba-kakeya","version":"0.1","shard_id":"{shard}","epoch":{},"attempt":1,"sent_at":"2025-01-01T00:00:00Z","seed":42,"scales":[2,4,8,16],"N_j":{{"2":8,"4":13,"8":46,"16":90}},"coh_star":0.731221,"v_star":[0.0,0.0,1.0],"D_hat":1.646363045,"r":0.504138283,"regime":"mixed","budget":0.289103089,"merkle_root":"{ROOT}","sig":"IRIcwPev1Tzi++hDC7EUC3EfeAu246mcY2CD/ppkvUI=","ft":{{"outbox_seq":{n},"degraded":false,"fallbacks":[],"clock_skew_ms":0}}}}"#,
        1000 + n
    );
    let canonical = canonicalize(&parse_pcs(json.as_bytes()).expect("bench pcs parses"));
    let kinds = [
        (v1::OutcomeKind::Accepted, "ok"),
        (v1::OutcomeKind::Escalated, "budget_deviation"),
        (v1::OutcomeKind::Rejected, "r_out_of_bounds"),
    ];
    let (kind, reason) = kinds[n % kinds.len()];
    v1::FeedRecord {
        seq,
        tenant_id: format!("tenant-{}", n % 7),
        pcs_id: id.clone(),
        outcome: Some(v1::Outcome {
            pcs_id: id,
            tenant_id: format!("tenant-{}", n % 7),
            outcome: kind as i32,
            reason_code: reason.into(),
            policy_version: "1".into(),
            policy_hash: "5f".repeat(32),
            ..Default::default()
        }),
        canonical_digest: canonical.digest.to_vec(),
        request_json: json.into_bytes(),
        decided_at_unix_ms: 1_735_689_600_000 + n as i64,
        region: "bench".into(),
        key_id: "k1".into(),
        kind: v1::RecordKind::Decision as i32,
        request_pcs: None,
        verify_cpu_ns: 0,
        signals: None,
        // As svc-verify publishes it: the canonical payload it verified.
        canonical_payload: canonical.payload,
    }
}

fn main() {
    let total = env_or("FLK_BENCH_RECORDS", 262_144);
    let batch = env_or("FLK_BENCH_BATCH", 4096).clamp(1, flk_tlog::MAX_BATCH_ENTRIES);
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = std::env::var_os("FLK_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.path().to_path_buf())
        .join("audit-bench");
    let with_payload = std::env::var("FLK_BENCH_PAYLOAD").as_deref() != Ok("0");
    let records: Vec<v1::FeedRecord> = (0..total)
        .map(|n| {
            let mut r = record(n as u64 + 1, n);
            if !with_payload {
                r.canonical_payload.clear();
            }
            r
        })
        .collect();
    let metrics = AuditMetrics::register(&prometheus::Registry::new()).expect("metrics");
    let signer = LogSigner::generate("bench.flk/audit").expect("key");
    let (sync, sync_name) = match std::env::var("FLK_BENCH_SYNC").as_deref() {
        Ok("filesystem") => (SyncMode::Filesystem, "syncfs per batch"),
        _ => (SyncMode::PerFile, "fsync per file"),
    };
    let ledger =
        Ledger::open(&dir, "bench.flk/audit", signer, sync, metrics.clone()).expect("open ledger");

    let started = Instant::now();
    let mut slowest = 0f64;
    for chunk in records.chunks(batch) {
        let t = Instant::now();
        let r = ledger.integrate(chunk).expect("integrate");
        assert_eq!(r.appended, chunk.len() as u64);
        slowest = slowest.max(t.elapsed().as_secs_f64());
    }
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(ledger.size(), total as u64);
    println!(
        "svc-audit integrate: {total} entries in {} batches of {batch}: {secs:.2} s, {:.0} entries/s \
         (embedded backend, {sync_name}, {}; mean batch {:.1} ms, slowest {:.1} ms)",
        total.div_ceil(batch),
        total as f64 / secs,
        if with_payload {
            "published canonical payloads"
        } else {
            "requests parsed"
        },
        secs * 1000.0 / total.div_ceil(batch) as f64,
        slowest * 1000.0
    );

    // Redelivery of the whole feed: every record is found in the index, nothing appended.
    let started = Instant::now();
    for chunk in records.chunks(batch) {
        assert_eq!(ledger.integrate(chunk).expect("integrate").appended, 0);
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "svc-audit redelivery: {total} records in {secs:.2} s, {:.0} records/s",
        total as f64 / secs
    );
}
