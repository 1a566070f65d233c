//! Benchmarks of flk-tlog: append+integrate throughput on the embedded backend (fsync on),
//! and proof latency on a 1,000,000-entry tree with its tiles cached. (Full verification of
//! a 1M-entry log is `examples/verify_1m.rs`: it runs once, not in a criterion loop.)
//!
//! Run: `CARGO_TARGET_DIR=target-tlog cargo bench -p flk-tlog --bench tlog`

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use flk_tlog::{FsStore, Log, LogSigner, MemStore, SyncMode};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const ORIGIN: &str = "bench.example/log";

fn signer() -> LogSigner {
    LogSigner::from_seed(ORIGIN, &[1; 32]).unwrap()
}

/// A batch of `n` entries of ~300 bytes, distinct per `seq`.
fn batch(seq: u64, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let mut e = vec![0u8; 300];
            e[..8].copy_from_slice(&seq.to_be_bytes());
            e[8..16].copy_from_slice(&(i as u64).to_be_bytes());
            e
        })
        .collect()
}

fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("append_fs");
    group.throughput(Throughput::Elements(1024));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(10));
    for (name, mode) in [
        ("per_file_fsync", SyncMode::PerFile),
        ("syncfs", SyncMode::Filesystem),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open_with(dir.path(), mode).unwrap();
        let mut log = Log::open(store, signer(), ORIGIN).unwrap();
        let mut seq = 0u64;
        group.bench_function(format!("batch_1024x300B_{name}"), |b| {
            b.iter_batched(
                || {
                    seq += 1;
                    batch(seq, 1024)
                },
                |entries| log.append_batch(&entries).unwrap(),
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

/// A 1,000,000-entry log in memory; every tile ends up in the log's cache while appending.
fn million() -> Log<MemStore> {
    let mut log = Log::open(MemStore::new(), signer(), ORIGIN).unwrap();
    for seq in 0..(1_000_000 / 10_000) {
        log.append_batch(&batch(seq, 10_000)).unwrap();
    }
    log
}

fn percentiles(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    println!(
        "{name}: n={} p50={:?} p99={:?} p99.9={:?} max={:?}",
        samples.len(),
        at(0.50),
        at(0.99),
        at(0.999),
        samples[samples.len() - 1]
    );
}

fn proofs(c: &mut Criterion) {
    let log = million();
    let size = log.size();
    let mut rng = StdRng::seed_from_u64(7);

    // Per-call latency distribution (criterion reports means; p99 needs the raw samples).
    let mut samples = Vec::with_capacity(200_000);
    for _ in 0..200_000 {
        let index = rng.gen_range(0..size);
        let t = Instant::now();
        black_box(log.inclusion_proof(index, size).unwrap());
        samples.push(t.elapsed());
    }
    percentiles("inclusion_proof 1M (latest size)", samples);
    let mut samples = Vec::with_capacity(200_000);
    for _ in 0..200_000 {
        let s = rng.gen_range(1..=size);
        let index = rng.gen_range(0..s);
        let t = Instant::now();
        black_box(log.inclusion_proof(index, s).unwrap());
        samples.push(t.elapsed());
    }
    percentiles("inclusion_proof 1M (random older size)", samples);
    let mut samples = Vec::with_capacity(100_000);
    for _ in 0..100_000 {
        let m = rng.gen_range(1..=size);
        let t = Instant::now();
        black_box(log.consistency_proof(m, size).unwrap());
        samples.push(t.elapsed());
    }
    percentiles("consistency_proof 1M", samples);

    let mut group = c.benchmark_group("proofs_1m");
    group.bench_function("inclusion_proof", |b| {
        b.iter(|| log.inclusion_proof(rng.gen_range(0..size), size).unwrap())
    });
    group.bench_function("consistency_proof", |b| {
        b.iter(|| {
            log.consistency_proof(rng.gen_range(1..=size), size)
                .unwrap()
        })
    });
    group.bench_function("root_at_random_size", |b| {
        b.iter(|| log.root_at(rng.gen_range(1..=size)).unwrap())
    });
    group.finish();
}

criterion_group!(benches, append, proofs);
criterion_main!(benches);
