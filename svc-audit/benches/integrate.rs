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

mod common;

use std::time::Instant;

// The allocator of the svc-audit binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use common::{env_or, record};
use flk_proto::v1;
use flk_tlog::{LogSigner, SyncMode};
use svc_audit::Ledger;
use svc_audit::metrics::AuditMetrics;

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
