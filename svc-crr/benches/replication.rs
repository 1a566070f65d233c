//! Replication between two regions on loopback (each a real svc-verify and svc-crr, embedded
//! stores, the outcome log fsync'd as in production):
//!
//! 1. **Throughput**: N records decided in eu as fast as 64 concurrent submitters go, then
//!    the time until us has acknowledged them all; records per second replicated.
//! 2. **Lag under a steady rate**: R records per second decided in eu for S seconds; every
//!    record's replication delay (us's apply time minus eu's decision time, from svc-crr's
//!    `flk_crr_apply_delay_seconds` histogram: the quantiles are bucket upper bounds).
//!
//! `cargo bench -p svc-crr --bench replication -- [N] [RATE] [SECONDS]` (defaults 50000, 5000,
//! 20).

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use svc_crr::config::ReconcileMode;

fn arg(i: usize, default: u64) -> u64 {
    std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .nth(i)
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

async fn two(dir: &std::path::Path) -> (Region, Region) {
    two_with(dir, ReconcileMode::AutoSafe, |c| {
        c.anti_entropy_interval = "1h".into()
    })
    .await
}

async fn acked(eu: &Region) -> u64 {
    let (_, s) = eu.get_json("/v1/crr/status").await;
    s["peers"][0]["acked_watermark"].as_u64().unwrap_or(0)
}

/// Quantile `q` of a prometheus histogram (the upper bound of the bucket it falls in).
fn quantile(h: &prometheus::Histogram, q: f64) -> f64 {
    use prometheus::core::Collector as _;
    let families = h.collect();
    let hist = families[0].get_metric()[0].get_histogram();
    let total = hist.get_sample_count() as f64;
    for b in hist.get_bucket() {
        if b.cumulative_count() as f64 >= q * total {
            return b.upper_bound();
        }
    }
    f64::INFINITY
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let n = arg(0, 50_000);
    let rate = arg(1, 5_000);
    let secs = arg(2, 20);
    let pcs_pool: Arc<Vec<serde_json::Value>> = Arc::new(
        (0..n.max(rate * secs))
            .map(|i| pcs(&format!("b-{i}"), None))
            .collect(),
    );

    // 1. Throughput.
    let dir = tempfile::tempdir().unwrap();
    let (eu, us) = two(dir.path()).await;
    let eu = Arc::new(eu);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..64u64 {
        let (eu, pool) = (eu.clone(), pcs_pool.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = w;
            while i < n {
                eu.submit("full", &pool[i as usize]).await;
                i += 64;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let decided = started.elapsed();
    let head = eu.engine().log().last_seq();
    while acked(&eu).await < head {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let all = started.elapsed();
    println!(
        "throughput: {n} records decided in eu in {:.2} s ({:.0}/s); all acknowledged by us after {:.2} s: {:.0} records/s replicated",
        decided.as_secs_f64(),
        n as f64 / decided.as_secs_f64(),
        all.as_secs_f64(),
        n as f64 / all.as_secs_f64()
    );
    drop(us);
    drop(eu);

    // 2. Lag at a steady rate.
    let dir = tempfile::tempdir().unwrap();
    let (eu, us) = two(dir.path()).await;
    let eu = Arc::new(eu);
    let total = rate * secs;
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let per_tick = (rate / 100).max(1);
    let mut sent = 0u64;
    let mut inflight = Vec::new();
    while sent < total {
        tick.tick().await;
        for _ in 0..per_tick.min(total - sent) {
            let (eu, pool) = (eu.clone(), pcs_pool.clone());
            let i = sent as usize;
            inflight.push(tokio::spawn(async move {
                eu.submit("full", &pool[i]).await;
            }));
            sent += 1;
        }
        if inflight.len() > 4096 {
            for t in inflight.drain(..) {
                t.await.unwrap();
            }
        }
    }
    for t in inflight {
        t.await.unwrap();
    }
    let offered = started.elapsed();
    let head = eu.engine().log().last_seq();
    while acked(&eu).await < head {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let h = &us.core().metrics.apply_delay;
    println!(
        "steady {rate}/s for {secs} s ({total} records, offered in {:.1} s): replication delay p50 <= {} s, p99 <= {} s, max bucket <= {} s",
        offered.as_secs_f64(),
        quantile(h, 0.5),
        quantile(h, 0.99),
        quantile(h, 1.0),
    );
}
