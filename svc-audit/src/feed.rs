//! svc-audit's side of the outcome-feed consumer (`flk_runtime::feed`, which subscribes,
//! batches, retries and reconnects): each batch is integrated into the log with
//! [`Ledger::integrate`], which appends the entries, indexes them, publishes a checkpoint and
//! only then moves the cursor.
//!
//! * **Batching.** A batch is cut when it holds `batch_max_entries` records, or when its
//!   first record has waited `checkpoint_interval` since it arrived, or when
//!   `PublishCheckpoint` asks for it. Each batch that appends publishes a checkpoint.
//! * **Lag.** `flk_audit_consumer_lag_records` is the highest sequence number received minus
//!   the cursor. The feed does not announce its head, so while a long history is being read the
//!   gauge shows the backlog received so far, not the whole of it.

use std::sync::Arc;

use flk_proto::v1;
use flk_runtime::feed::FeedSink;

use crate::ledger::Ledger;
use crate::metrics::AuditMetrics;

/// The ledger as the consumer's sink, with the feed metrics.
pub struct AuditSink {
    pub ledger: Arc<Ledger>,
    pub metrics: AuditMetrics,
}

impl FeedSink for AuditSink {
    fn apply(&self, batch: &[&v1::FeedRecord]) -> Result<(), String> {
        let report = self.ledger.integrate(batch).map_err(|e| e.to_string())?;
        tracing::debug!(?report, "batch integrated");
        Ok(())
    }

    fn received(&self, seq: u64) {
        self.metrics.received(seq);
    }

    fn connection(&self, up: bool) {
        self.metrics.feed_connected.set(i64::from(up));
    }

    fn reconnecting(&self) {
        self.metrics.feed_reconnects.inc();
    }

    fn apply_failed(&self) {
        self.metrics.integrate_failures.inc();
    }
}
