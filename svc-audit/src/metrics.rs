//! svc-audit's Prometheus metrics (`flk_audit_*`), registered on a registry passed in (never
//! a global). Labels come from closed sets: the skip reason ([`crate::mapping::Skip::label`]),
//! the anchor `kind` (`rfc3161`, `opentimestamps`, `evm`), the anchoring `strategy`
//! (`flk_anchor::optimizer::StrategyId` names) and why an EVM transaction was re-submitted
//! (`reason`: `flk_anchor::evm::DropReason` labels `vanished`, `reverted`, `stuck`).

use prometheus::{
    CounterVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

#[derive(Clone)]
pub struct AuditMetrics {
    /// Entries appended to the Merkle log.
    pub entries_appended: IntCounter,
    /// Batches of feed records integrated (one durable append + index + cursor each).
    pub batches: IntCounter,
    /// Feed records per integrated batch.
    pub batch_records: Histogram,
    /// Time of one batch's integration (append, checkpoint, index, cursor).
    pub integrate_seconds: Histogram,
    /// Signed checkpoints published (one per batch that appended entries).
    pub checkpoints: IntCounter,
    /// Feed records that did not become entries, by reason.
    pub skipped: IntCounterVec,
    /// Decisions delivered again whose key is already in the log (at-least-once redelivery).
    pub redelivered: IntCounter,
    /// Decisions whose request does not hash to the feed's canonical digest (logged anyway).
    pub digest_mismatches: IntCounter,
    /// Entries re-indexed from the log at start (after a crash between append and index).
    pub reindexed: IntCounter,
    /// Failed integration attempts (retried).
    pub integrate_failures: IntCounter,
    /// Highest feed sequence number received.
    pub feed_seq: IntGauge,
    /// Persisted cursor: highest feed sequence number integrated.
    pub cursor_seq: IntGauge,
    /// `feed_seq - cursor_seq`: records received but not yet integrated.
    pub consumer_lag: IntGauge,
    /// Feed (re)connection attempts that failed or ended.
    pub feed_reconnects: IntCounter,
    /// 1 while subscribed to the feed.
    pub feed_connected: IntGauge,
    /// Entries in the log (size of the latest checkpoint).
    pub tree_size: IntGauge,
    /// Anchoring attempts, by kind.
    pub anchor_attempts: IntCounterVec,
    /// Anchors stored durably, by kind.
    pub anchor_success: IntCounterVec,
    /// Failed anchoring attempts (retried with backoff), by kind.
    pub anchor_failures: IntCounterVec,
    /// Unix time of the last anchor stored, by kind.
    pub anchor_last_success: IntGaugeVec,
    /// The largest checkpoint size anchored.
    pub anchored_tree_size: IntGauge,
    /// Estimated anchoring cost of RFC 3161 and OpenTimestamps anchors from the optimizer's
    /// (configured) table, USD per batch, by strategy.
    pub anchor_cost: CounterVec,
    /// Wei paid for final EVM anchors (gas used x effective gas price of their receipts),
    /// by strategy.
    pub anchor_cost_wei: CounterVec,
    /// EVM anchor transactions re-submitted, by reason.
    pub evm_resubmissions: IntCounterVec,
    /// Inclusions of pending EVM anchor transactions lost or moved by a reorg.
    pub evm_reorgs: IntCounter,
    /// EVM anchors sent and not final yet.
    pub evm_pending: IntGauge,
}

impl AuditMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<AuditMetrics> {
        let m = AuditMetrics {
            entries_appended: IntCounter::new(
                "flk_audit_entries_appended_total",
                "entries appended to the audit log",
            )?,
            batches: IntCounter::new(
                "flk_audit_batches_total",
                "batches of feed records integrated",
            )?,
            batch_records: Histogram::with_opts(
                HistogramOpts::new(
                    "flk_audit_batch_records",
                    "feed records per integrated batch",
                )
                .buckets(vec![
                    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 2048.0, 4096.0, 16384.0, 65536.0,
                ]),
            )?,
            integrate_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "flk_audit_integrate_seconds",
                    "time to integrate one batch: append, checkpoint, index and cursor",
                )
                .buckets(vec![
                    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0,
                ]),
            )?,
            checkpoints: IntCounter::new(
                "flk_audit_checkpoint_publishes_total",
                "signed checkpoints published",
            )?,
            skipped: IntCounterVec::new(
                Opts::new(
                    "flk_audit_skipped_records_total",
                    "feed records that did not become entries, by reason",
                ),
                &["reason"],
            )?,
            redelivered: IntCounter::new(
                "flk_audit_redelivered_total",
                "decisions received again whose key is already in the log",
            )?,
            digest_mismatches: IntCounter::new(
                "flk_audit_digest_mismatches_total",
                "decisions whose request does not hash to the feed's canonical digest",
            )?,
            reindexed: IntCounter::new(
                "flk_audit_reindexed_entries_total",
                "log entries indexed at start because the index was behind the log",
            )?,
            integrate_failures: IntCounter::new(
                "flk_audit_integrate_failures_total",
                "failed integration attempts (each is retried)",
            )?,
            feed_seq: IntGauge::new(
                "flk_audit_feed_seq",
                "highest outcome-feed sequence number received",
            )?,
            cursor_seq: IntGauge::new(
                "flk_audit_cursor_seq",
                "highest outcome-feed sequence number integrated (the persisted cursor)",
            )?,
            consumer_lag: IntGauge::new(
                "flk_audit_consumer_lag_records",
                "feed records received but not yet integrated (feed seq - cursor)",
            )?,
            feed_reconnects: IntCounter::new(
                "flk_audit_feed_reconnects_total",
                "outcome-feed subscriptions that failed or ended",
            )?,
            feed_connected: IntGauge::new(
                "flk_audit_feed_connected",
                "1 while subscribed to the outcome feed",
            )?,
            tree_size: IntGauge::new(
                "flk_audit_tree_size",
                "entries in the audit log (size of the latest checkpoint)",
            )?,
            anchor_attempts: IntCounterVec::new(
                Opts::new(
                    "flk_audit_anchor_attempts_total",
                    "checkpoint anchoring attempts, by kind",
                ),
                &["kind"],
            )?,
            anchor_success: IntCounterVec::new(
                Opts::new(
                    "flk_audit_anchor_success_total",
                    "checkpoint anchors stored durably, by kind",
                ),
                &["kind"],
            )?,
            anchor_failures: IntCounterVec::new(
                Opts::new(
                    "flk_audit_anchor_failures_total",
                    "failed checkpoint anchoring attempts (retried with backoff), by kind",
                ),
                &["kind"],
            )?,
            anchor_last_success: IntGaugeVec::new(
                Opts::new(
                    "flk_audit_anchor_last_success_timestamp_seconds",
                    "unix time of the last checkpoint anchor stored, by kind",
                ),
                &["kind"],
            )?,
            anchored_tree_size: IntGauge::new(
                "flk_audit_anchored_tree_size",
                "largest checkpoint size anchored",
            )?,
            anchor_cost: CounterVec::new(
                Opts::new(
                    "flk_audit_anchor_cost_usd_total",
                    "estimated cost in USD of rfc3161 and opentimestamps anchors per the optimizer's strategy table, by strategy",
                ),
                &["strategy"],
            )?,
            anchor_cost_wei: CounterVec::new(
                Opts::new(
                    "flk_audit_anchor_cost_wei_total",
                    "wei paid for final evm anchors (gas used x effective gas price of the receipts), by strategy",
                ),
                &["strategy"],
            )?,
            evm_resubmissions: IntCounterVec::new(
                Opts::new(
                    "flk_audit_anchor_evm_resubmissions_total",
                    "evm anchor transactions re-submitted (vanished after a reorg or from the mempool, reverted, or stuck without a receipt), by reason",
                ),
                &["reason"],
            )?,
            evm_reorgs: IntCounter::new(
                "flk_audit_anchor_evm_reorgs_total",
                "inclusions of pending evm anchor transactions lost or moved by a reorg",
            )?,
            evm_pending: IntGauge::new(
                "flk_audit_anchor_evm_pending",
                "evm anchors sent and not final yet (waiting for confirmations)",
            )?,
        };
        for reason in ["vanished", "reverted", "stuck"] {
            m.evm_resubmissions.with_label_values(&[reason]);
        }
        for name in ["not_a_decision", "bad_pcs_id", "bad_record"] {
            m.skipped.with_label_values(&[name]);
        }
        registry.register(Box::new(m.entries_appended.clone()))?;
        registry.register(Box::new(m.batches.clone()))?;
        registry.register(Box::new(m.batch_records.clone()))?;
        registry.register(Box::new(m.integrate_seconds.clone()))?;
        registry.register(Box::new(m.checkpoints.clone()))?;
        registry.register(Box::new(m.skipped.clone()))?;
        registry.register(Box::new(m.redelivered.clone()))?;
        registry.register(Box::new(m.digest_mismatches.clone()))?;
        registry.register(Box::new(m.reindexed.clone()))?;
        registry.register(Box::new(m.integrate_failures.clone()))?;
        registry.register(Box::new(m.feed_seq.clone()))?;
        registry.register(Box::new(m.cursor_seq.clone()))?;
        registry.register(Box::new(m.consumer_lag.clone()))?;
        registry.register(Box::new(m.feed_reconnects.clone()))?;
        registry.register(Box::new(m.feed_connected.clone()))?;
        registry.register(Box::new(m.tree_size.clone()))?;
        registry.register(Box::new(m.anchor_attempts.clone()))?;
        registry.register(Box::new(m.anchor_success.clone()))?;
        registry.register(Box::new(m.anchor_failures.clone()))?;
        registry.register(Box::new(m.anchor_last_success.clone()))?;
        registry.register(Box::new(m.anchored_tree_size.clone()))?;
        registry.register(Box::new(m.anchor_cost.clone()))?;
        registry.register(Box::new(m.anchor_cost_wei.clone()))?;
        registry.register(Box::new(m.evm_resubmissions.clone()))?;
        registry.register(Box::new(m.evm_reorgs.clone()))?;
        registry.register(Box::new(m.evm_pending.clone()))?;
        Ok(m)
    }

    /// Records a newly received feed sequence number.
    pub fn received(&self, seq: u64) {
        let seq = i64::try_from(seq).unwrap_or(i64::MAX);
        if seq > self.feed_seq.get() {
            self.feed_seq.set(seq);
        }
        self.update_lag();
    }

    /// Records the persisted cursor.
    pub fn integrated_up_to(&self, cursor: u64) {
        self.cursor_seq
            .set(i64::try_from(cursor).unwrap_or(i64::MAX));
        self.update_lag();
    }

    /// Records an anchored checkpoint size (the gauge keeps the largest).
    /// An anchor of `method` is done (stored final) at `now_unix`.
    pub fn anchor_succeeded(&self, method: &str, now_unix: i64) {
        self.anchor_success.with_label_values(&[method]).inc();
        self.anchor_last_success
            .with_label_values(&[method])
            .set(now_unix);
    }

    pub fn anchored_up_to(&self, size: u64) {
        let size = i64::try_from(size).unwrap_or(i64::MAX);
        if size > self.anchored_tree_size.get() {
            self.anchored_tree_size.set(size);
        }
    }

    fn update_lag(&self) {
        self.consumer_lag
            .set((self.feed_seq.get() - self.cursor_seq.get()).max(0));
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
