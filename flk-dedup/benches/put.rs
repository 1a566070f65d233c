//! Throughput of `put_if_absent` + `get` (one fresh key per iteration) for each backend, with
//! 1 and 64 concurrent tasks. Redis and PostgreSQL run as private flk-testkit servers
//! (PostgreSQL with `fsync=off`); the embedded store writes to the system temp dir with real
//! fsyncs (group commit).
//!
//! `cargo bench -p flk-dedup --bench put`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use flk_dedup::{
    DEFAULT_TTL, DedupEntry, DedupKey, DedupStore, EmbeddedStore, PgOptions, PgStore, PutOutcome,
    RedisOptions, RedisStore,
};
use flk_testkit::{PgServer, RedisServer};

static NEXT_KEY: AtomicU64 = AtomicU64::new(0);

fn fresh_key() -> DedupKey {
    let n = NEXT_KEY.fetch_add(1, Ordering::Relaxed);
    DedupKey::new("bench-tenant", format!("{n:064x}")).expect("valid key")
}

fn sample_entry() -> DedupEntry {
    DedupEntry {
        seq: 42,
        digest: [0xab; 32],
        outcome: Bytes::from_static(
            br#"{"outcome":"accepted","accepted":true,"escalated":false,"reason_code":"ok","D_hat":1.41,"policy_version":"2024-01"}"#,
        ),
    }
}

/// Runs at least `iters` put+get pairs over `tasks` tasks; returns the time scaled to `iters`.
async fn run(store: Arc<dyn DedupStore>, tasks: u64, iters: u64) -> Duration {
    let per_task = iters.div_ceil(tasks).max(1);
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let entry = sample_entry();
                for _ in 0..per_task {
                    let key = fresh_key();
                    let put = store.put_if_absent(&key, &entry, DEFAULT_TTL).await;
                    assert_eq!(put.expect("put"), PutOutcome::Inserted);
                    assert!(store.get(&key).await.expect("get").is_some());
                }
            })
        })
        .collect();
    for handle in handles {
        handle.await.expect("bench task");
    }
    let done = per_task * tasks;
    started.elapsed().mul_f64(iters as f64 / done as f64)
}

fn put_and_get(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let redis_server = rt.block_on(RedisServer::start()).expect("start redis");
    let pg_server = rt.block_on(PgServer::start()).expect("start postgres");
    let dir = tempfile::tempdir().expect("tempdir");
    let stores: Vec<(&str, Arc<dyn DedupStore>)> = vec![
        (
            "embedded",
            Arc::new(EmbeddedStore::open(dir.path()).expect("open embedded")),
        ),
        (
            "redis",
            Arc::new(
                rt.block_on(RedisStore::connect(&RedisOptions::new(redis_server.url())))
                    .expect("connect redis"),
            ),
        ),
        (
            "postgres",
            Arc::new(
                rt.block_on(PgStore::connect(&PgOptions::new(pg_server.config())))
                    .expect("connect postgres"),
            ),
        ),
    ];

    let mut group = c.benchmark_group("put_if_absent+get");
    group
        .throughput(Throughput::Elements(1))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for (name, store) in &stores {
        for tasks in [1u64, 64] {
            group.bench_with_input(BenchmarkId::new(*name, tasks), &tasks, |b, &tasks| {
                b.iter_custom(|iters| rt.block_on(run(Arc::clone(store), tasks, iters)));
            });
        }
    }
    group.finish();
}

criterion_group!(benches, put_and_get);
criterion_main!(benches);
