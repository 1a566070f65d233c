//! svc-kpi's side of the outcome-feed consumer (`flk_runtime::feed`, which subscribes,
//! batches, retries and reconnects): each batch is applied with [`Kpi::apply`], one redb
//! write transaction covering the records, their buckets and the cursor.
//!
//! * **Batching.** A batch is cut when it holds `batch_max_records` records or when its first
//!   record has waited `batch_interval_ms`.
//! * **At-least-once.** The consumer starts at the persisted cursor + 1; records handed over
//!   but not applied when the process stops are redelivered on the next start, and the store
//!   makes that harmless (**CountedOnce**, [`crate::store`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use flk_proto::v1;
use flk_runtime::feed::FeedSink;

use crate::Kpi;

/// The KPI core as the consumer's sink.
pub struct KpiSink(pub Arc<Kpi>);

impl FeedSink for KpiSink {
    fn apply(&self, batch: &[&v1::FeedRecord]) -> Result<(), String> {
        self.0.apply(batch).map(|_| ()).map_err(|e| e.to_string())
    }

    fn received(&self, seq: u64) {
        self.0.metrics().received(seq);
    }

    fn connection(&self, up: bool) {
        self.0.feed_connected.store(up, Ordering::Release);
    }
}
