//! What svc-verify's metrics cost one submission: exactly the metric updates a fresh
//! decision makes in `Engine::submit` (the admitted-submissions counter, the outcome counter
//! by tenant, outcome and reason, the verification-latency histogram by tenant) plus the
//! outcome log's per-batch fsync and batch-size observations amortized over a batch of 64
//! (the batch size seen under load, docs/BENCHMARKS.md), on a registry holding 16 tenants'
//! series. `docs/BENCHMARKS.md` sets the figure against the CPU time one submission takes
//! under sustained load to give the overhead.
//!
//! `cargo bench -p svc-verify --bench metrics`

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use flk_outcome_log::LogObserver as _;
use prometheus::Registry;
use svc_verify::metrics::{LogMetrics, VerifyMetrics};

const OUTCOMES: [(&str, &str); 3] = [
    ("accepted", "ok"),
    ("escalated", "budget_deviation"),
    ("rejected", "r_out_of_bounds"),
];

fn metrics(c: &mut Criterion) {
    let registry = Registry::new();
    let m = VerifyMetrics::register(&registry).expect("register");
    let tenants: Vec<String> = (0..16).map(|t| format!("tenant-{t}")).collect();
    // Every series exists already, as in a server that has run for a while.
    for t in &tenants {
        for (outcome, reason) in OUTCOMES {
            m.outcomes.with_label_values(&[t, outcome, reason]).inc();
        }
        m.verify_latency.with_label_values(&[t]).observe(1e-4);
    }
    let log = LogMetrics(m.clone());
    let mut n = 0usize;
    c.bench_function("svc_verify_metrics_per_fresh_decision", |b| {
        b.iter(|| {
            n = n.wrapping_add(1);
            let tenant = &tenants[n % tenants.len()];
            let (outcome, reason) = OUTCOMES[n % OUTCOMES.len()];
            m.ingest.inc();
            m.outcomes
                .with_label_values(&[tenant, outcome, reason])
                .inc();
            m.verify_latency
                .with_label_values(&[tenant])
                .observe(black_box(1.7e-4));
            if n.is_multiple_of(64) {
                log.on_commit(64, 64 * 900, Duration::from_micros(black_box(900)));
            }
        })
    });
    // A scrape's cost, for scale (not per submission).
    c.bench_function("svc_verify_metrics_render_16_tenants", |b| {
        b.iter(|| black_box(svc_verify::metrics::render(&registry)))
    });
}

criterion_group!(benches, metrics);
criterion_main!(benches);
