//! Builds a 1,000,000-entry log (300-byte entries) on the embedded backend in a temporary
//! directory, then times a full `verify_log` of it (every entry rehashed, every tile
//! recomputed and compared, the checkpoint signature and root checked).
//!
//! Run: `CARGO_TARGET_DIR=target-tlog cargo run --release -p flk-tlog --example verify_1m`
//! (an optional argument sets the number of entries).

use std::time::Instant;

use flk_tlog::{FsStore, Log, LogSigner, SyncMode, VerifyOptions, verify_log};

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("entry count"))
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let signer = LogSigner::from_seed("bench.example/log", &[1; 32]).expect("signer");

    let t = Instant::now();
    {
        let store = FsStore::open_with(dir.path(), SyncMode::Filesystem).expect("store");
        let mut log = Log::open(store, signer.clone(), "bench.example/log").expect("log");
        let mut next = 0u64;
        while next < n {
            let len = (n - next).min(65_536);
            let batch: Vec<Vec<u8>> = (next..next + len)
                .map(|i| {
                    let mut e = vec![0u8; 300];
                    e[..8].copy_from_slice(&i.to_be_bytes());
                    e
                })
                .collect();
            log.append_batch(&batch).expect("append");
            next += len;
        }
    }
    println!("built {n} entries in {:?}", t.elapsed());

    let store = FsStore::open(dir.path()).expect("store");
    let t = Instant::now();
    let report = verify_log(&store, &signer.verifier(), &VerifyOptions::default()).expect("verify");
    let elapsed = t.elapsed();
    println!(
        "verify_log: {} entries, {} tiles, {} MiB of bundles in {:?} ({:.0} entries/s)",
        report.entries_checked,
        report.tiles_checked,
        report.bundle_bytes >> 20,
        elapsed,
        report.entries_checked as f64 / elapsed.as_secs_f64()
    );
    let t = Instant::now();
    let opts = VerifyOptions {
        entries: None,
        decode_entries: false,
    };
    let _ = verify_log(&store, &signer.verifier(), &opts).expect("verify");
    println!("verify_log again (warm page cache): {:?}", t.elapsed());
}
