//! svc-verify's Prometheus metrics, registered on a registry passed in (never a global).
//! Label values come from closed sets: configured tenant ids, reason codes, error codes.

use std::time::Duration;

use flk_outcome_log::LogObserver;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

#[derive(Clone)]
pub struct VerifyMetrics {
    /// Submissions admitted past admission control (all tenants). Name kept for dashboards
    /// written for earlier servers.
    pub ingest: IntCounter,
    pub outcomes: IntCounterVec,
    pub dedup_hits: IntCounterVec,
    pub conflicts: IntCounterVec,
    pub signature_failures: IntCounterVec,
    pub refused: IntCounterVec,
    pub verify_latency: HistogramVec,
    pub log_fsync: Histogram,
    pub log_batch: Histogram,
    pub dedup_repairs: IntCounter,
    pub dedup_owed: IntGauge,
}

impl VerifyMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<VerifyMetrics> {
        let m = VerifyMetrics {
            ingest: IntCounter::new(
                "flk_ingest_total",
                "submissions admitted past admission control, all tenants",
            )?,
            outcomes: IntCounterVec::new(
                Opts::new(
                    "flk_verify_outcomes_total",
                    "fresh decisions by outcome and reason",
                ),
                &["tenant", "outcome", "reason_code"],
            )?,
            dedup_hits: IntCounterVec::new(
                Opts::new(
                    "flk_verify_dedup_hits_total",
                    "submissions answered from the dedup index",
                ),
                &["tenant"],
            )?,
            conflicts: IntCounterVec::new(
                Opts::new(
                    "flk_verify_dedup_conflicts_total",
                    "duplicates whose canonical digest differs from the first submission",
                ),
                &["tenant"],
            )?,
            signature_failures: IntCounterVec::new(
                Opts::new(
                    "flk_verify_signature_failures_total",
                    "submissions refused with 401",
                ),
                &["tenant", "reason"],
            )?,
            refused: IntCounterVec::new(
                Opts::new(
                    "flk_verify_refused_total",
                    "submissions refused before a decision",
                ),
                &["code"],
            )?,
            verify_latency: HistogramVec::new(
                HistogramOpts::new(
                    "flk_verify_latency_seconds",
                    "time from admission to durable answer, fresh decisions",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.002, 0.004, 0.006, 0.008, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1,
                    0.25, 0.5, 1.0,
                ]),
                &["tenant"],
            )?,
            log_fsync: Histogram::with_opts(
                HistogramOpts::new(
                    "flk_outcome_log_fsync_seconds",
                    "write + fsync time of one outcome-log batch",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1,
                ]),
            )?,
            log_batch: Histogram::with_opts(
                HistogramOpts::new(
                    "flk_outcome_log_batch_records",
                    "records per fsync (group commit)",
                )
                .buckets(vec![
                    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
                ]),
            )?,
            dedup_repairs: IntCounter::new(
                "flk_verify_dedup_repairs_total",
                "dedup entries written late (after an outage or on recovery) from the log",
            )?,
            dedup_owed: IntGauge::new(
                "flk_verify_dedup_owed_writes",
                "decisions in the log whose dedup index write is still owed (write-behind backlog or repairs)",
            )?,
        };
        registry.register(Box::new(m.ingest.clone()))?;
        registry.register(Box::new(m.outcomes.clone()))?;
        registry.register(Box::new(m.dedup_hits.clone()))?;
        registry.register(Box::new(m.conflicts.clone()))?;
        registry.register(Box::new(m.signature_failures.clone()))?;
        registry.register(Box::new(m.refused.clone()))?;
        registry.register(Box::new(m.verify_latency.clone()))?;
        registry.register(Box::new(m.log_fsync.clone()))?;
        registry.register(Box::new(m.log_batch.clone()))?;
        registry.register(Box::new(m.dedup_repairs.clone()))?;
        registry.register(Box::new(m.dedup_owed.clone()))?;
        Ok(m)
    }
}

/// Feeds the outcome log's group-commit observations into the histograms.
pub struct LogMetrics(pub VerifyMetrics);

impl LogObserver for LogMetrics {
    fn on_commit(&self, records: usize, _bytes: usize, write_and_fsync: Duration) {
        self.0.log_fsync.observe(write_and_fsync.as_secs_f64());
        self.0.log_batch.observe(records as f64);
    }
}

/// Prometheus text exposition of `registry`.
pub fn render(registry: &Registry) -> String {
    use prometheus::Encoder;
    let mut out = Vec::new();
    if prometheus::TextEncoder::new()
        .encode(&registry.gather(), &mut out)
        .is_err()
    {
        return String::new();
    }
    String::from_utf8(out).unwrap_or_default()
}
