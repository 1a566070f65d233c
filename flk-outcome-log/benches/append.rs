//! Append throughput with fsync on: 1, 16 and 64 concurrent appenders of 200-byte payloads, with the mean group-commit batch size.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use flk_outcome_log::{LogConfig, LogObserver, OutcomeLog};

const PAYLOAD_BYTES: usize = 200;

/// Counts committed batches and records, for the mean batch size.
#[derive(Default)]
struct BatchStats {
    batches: AtomicU64,
    records: AtomicU64,
}

impl LogObserver for BatchStats {
    fn on_commit(&self, records: usize, _bytes: usize, _write_and_fsync: Duration) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.records.fetch_add(records as u64, Ordering::Relaxed);
    }
}

fn append_throughput(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    // A temp dir on the real disk (not tmpfs), so fsync costs what it costs.
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let payload = Bytes::from(vec![0xabu8; PAYLOAD_BYTES]);

    let mut group = c.benchmark_group("append_fsync_200B");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    for appenders in [1u64, 16, 64] {
        let stats = Arc::new(BatchStats::default());
        let cfg = LogConfig::new(tmp.path().join(format!("appenders-{appenders}")));
        let (log, _) = OutcomeLog::open_with_observer(cfg, stats.clone()).expect("open");
        group.bench_function(BenchmarkId::new("appenders", appenders), |b| {
            b.iter_custom(|iters| {
                runtime.block_on(async {
                    let per_task = iters.div_ceil(appenders);
                    let started = Instant::now();
                    let tasks: Vec<_> = (0..appenders)
                        .map(|_| {
                            let log = log.clone();
                            let payload = payload.clone();
                            tokio::spawn(async move {
                                for _ in 0..per_task {
                                    log.append(payload.clone()).await.expect("append");
                                }
                            })
                        })
                        .collect();
                    for task in tasks {
                        task.await.expect("appender");
                    }
                    // Scale to exactly `iters` records.
                    started
                        .elapsed()
                        .mul_f64(iters as f64 / (per_task * appenders) as f64)
                })
            });
        });
        let batches = stats.batches.load(Ordering::Relaxed).max(1);
        let records = stats.records.load(Ordering::Relaxed);
        eprintln!(
            "append_fsync_200B/appenders/{appenders}: mean batch size {:.1} records ({records} records in {batches} batches)",
            records as f64 / batches as f64
        );
    }
    group.finish();
}

criterion_group!(benches, append_throughput);
criterion_main!(benches);
