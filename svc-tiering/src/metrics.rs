//! svc-tiering's Prometheus metrics, on a registry passed down (exported on `/metrics`, and by
//! `flk up` next to the other services').
//!
//! | metric | type | meaning |
//! |---|---|---|
//! | `flk_tiering_records{tier}` | gauge | records whose authoritative copy is in the tier |
//! | `flk_tiering_bytes{tier}` | gauge | their bytes (blob bytes; compressed frames in cold) |
//! | `flk_tiering_moves_total{from,to}` | counter | records moved between tiers |
//! | `flk_tiering_move_cost_usd_total` | counter | storage cost settled by moves and removals (bytes x months in the tier left x its price) |
//! | `flk_tiering_read_seconds{tier}` | histogram | record reads, by the tier that answered |
//! | `flk_tiering_removed_total` | counter | records removed past retention |
//! | `flk_tiering_promotions_total`, `flk_tiering_demotions_total` | counter | moves up (reads) and down (TTL, overflow) |
//! | `flk_tiering_move_failures_total` | counter | move steps that failed (retried next cycle) |
//! | `flk_tiering_reconciled_total` | counter | stored decisions replaced by a reconciled one (svc-crr's repair) |
//! | `flk_tiering_feed_received_seq`, `flk_tiering_feed_applied_seq`, `flk_tiering_feed_lag_records` | gauge | the outcome feed |
//! | `flk_tiering_journal_bytes`, `flk_tiering_journal_stale_bytes` | gauge | bytes (uncompressed) of the blobs in the hot journal's blob files and, of them, of records no longer hot, as its last garbage collection found them (before it freed any) |
//! | `flk_tiering_journal_freed_bytes_total` | counter | bytes of journal blob files dropped by garbage collection |
//! | `flk_tiering_store_up{store}` | gauge | 1 when the store answered its last check |
//! | `flk_tiering_prewarm_precision`, `flk_tiering_prewarm_recall` | gauge | only with a prewarm model |

use prometheus::{
    Counter, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};

use crate::record::Tier;

#[derive(Clone)]
pub struct TieringMetrics {
    pub records: IntGaugeVec,
    pub bytes: IntGaugeVec,
    pub moves: IntCounterVec,
    pub move_cost: Counter,
    pub read_seconds: HistogramVec,
    pub removed: IntCounter,
    pub promotions: IntCounter,
    pub demotions: IntCounter,
    pub move_failures: IntCounter,
    pub reconciled: IntCounter,
    pub received_seq: IntGauge,
    pub applied_seq: IntGauge,
    pub lag: IntGauge,
    pub journal_bytes: IntGauge,
    pub journal_stale_bytes: IntGauge,
    pub journal_freed: IntCounter,
    pub store_up: IntGaugeVec,
    pub prewarm: GaugeVec,
    pub prewarm_precision: Gauge,
    pub prewarm_recall: Gauge,
}

impl TieringMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<TieringMetrics> {
        let m = TieringMetrics {
            records: IntGaugeVec::new(
                Opts::new("flk_tiering_records", "Records per tier"),
                &["tier"],
            )?,
            bytes: IntGaugeVec::new(
                Opts::new("flk_tiering_bytes", "Bytes per tier (compressed in cold)"),
                &["tier"],
            )?,
            moves: IntCounterVec::new(
                Opts::new("flk_tiering_moves_total", "Records moved between tiers"),
                &["from", "to"],
            )?,
            move_cost: Counter::new(
                "flk_tiering_move_cost_usd_total",
                "Storage cost settled by moves and removals (USD)",
            )?,
            read_seconds: HistogramVec::new(
                HistogramOpts::new("flk_tiering_read_seconds", "Record reads by tier").buckets(
                    vec![
                        0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                        0.1, 0.25, 1.0,
                    ],
                ),
                &["tier"],
            )?,
            removed: IntCounter::new(
                "flk_tiering_removed_total",
                "Records removed past retention",
            )?,
            promotions: IntCounter::new("flk_tiering_promotions_total", "Promotions to hot")?,
            demotions: IntCounter::new("flk_tiering_demotions_total", "Demotions")?,
            move_failures: IntCounter::new(
                "flk_tiering_move_failures_total",
                "Move steps that failed",
            )?,
            reconciled: IntCounter::new(
                "flk_tiering_reconciled_total",
                "Stored decisions replaced by a reconciled decision (svc-crr repair)",
            )?,
            received_seq: IntGauge::new(
                "flk_tiering_feed_received_seq",
                "Last feed sequence number received",
            )?,
            applied_seq: IntGauge::new(
                "flk_tiering_feed_applied_seq",
                "Last feed sequence number applied",
            )?,
            lag: IntGauge::new(
                "flk_tiering_feed_lag_records",
                "Feed records received but not applied",
            )?,
            journal_bytes: IntGauge::new(
                "flk_tiering_journal_bytes",
                "Bytes in the hot journal's blob files, as its last garbage collection found them",
            )?,
            journal_stale_bytes: IntGauge::new(
                "flk_tiering_journal_stale_bytes",
                "Of the journal's bytes, blobs of records no longer hot, as its last garbage collection found them",
            )?,
            journal_freed: IntCounter::new(
                "flk_tiering_journal_freed_bytes_total",
                "Bytes of hot journal blob files dropped by garbage collection",
            )?,
            store_up: IntGaugeVec::new(
                Opts::new("flk_tiering_store_up", "1 when the store answered"),
                &["store"],
            )?,
            prewarm: GaugeVec::new(
                Opts::new("flk_tiering_prewarm_info", "The prewarm model in use"),
                &["model"],
            )?,
            prewarm_precision: Gauge::new(
                "flk_tiering_prewarm_precision",
                "Online precision of prewarm promotions",
            )?,
            prewarm_recall: Gauge::new(
                "flk_tiering_prewarm_recall",
                "Online recall of prewarm promotions",
            )?,
        };
        registry.register(Box::new(m.records.clone()))?;
        registry.register(Box::new(m.bytes.clone()))?;
        registry.register(Box::new(m.moves.clone()))?;
        registry.register(Box::new(m.move_cost.clone()))?;
        registry.register(Box::new(m.read_seconds.clone()))?;
        registry.register(Box::new(m.removed.clone()))?;
        registry.register(Box::new(m.promotions.clone()))?;
        registry.register(Box::new(m.demotions.clone()))?;
        registry.register(Box::new(m.move_failures.clone()))?;
        registry.register(Box::new(m.reconciled.clone()))?;
        registry.register(Box::new(m.received_seq.clone()))?;
        registry.register(Box::new(m.applied_seq.clone()))?;
        registry.register(Box::new(m.lag.clone()))?;
        registry.register(Box::new(m.journal_bytes.clone()))?;
        registry.register(Box::new(m.journal_stale_bytes.clone()))?;
        registry.register(Box::new(m.journal_freed.clone()))?;
        registry.register(Box::new(m.store_up.clone()))?;
        registry.register(Box::new(m.prewarm.clone()))?;
        for t in Tier::ALL {
            m.records.with_label_values(&[t.as_str()]).set(0);
            m.bytes.with_label_values(&[t.as_str()]).set(0);
            m.read_seconds.with_label_values(&[t.as_str()]);
        }
        Ok(m)
    }

    /// Registers the precision/recall gauges (only when a model runs).
    pub fn register_prewarm(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.prewarm_precision.clone()))?;
        registry.register(Box::new(self.prewarm_recall.clone()))
    }

    pub fn received(&self, seq: u64) {
        let seq = i64::try_from(seq).unwrap_or(i64::MAX);
        self.received_seq.set(self.received_seq.get().max(seq));
        self.lag
            .set((self.received_seq.get() - self.applied_seq.get()).max(0));
    }

    pub fn applied(&self, seq: u64) {
        let seq = i64::try_from(seq).unwrap_or(i64::MAX);
        self.applied_seq.set(self.applied_seq.get().max(seq));
        self.lag
            .set((self.received_seq.get() - self.applied_seq.get()).max(0));
    }
}
