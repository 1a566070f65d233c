//! svc-tiering's side of the outcome-feed consumer (`flk_runtime::feed`, which subscribes,
//! batches, retries and reconnects): each batch is applied with [`Engine::ingest`], one
//! catalog transaction holding the new records (entries and hot journal copies) and the
//! cursor, made durable with the next ones every `FLUSH_INTERVAL` (a crash rolls them back
//! together with the cursor, and the feed delivers them again). Redelivered keys are skipped, so at-least-once delivery stores each record once;
//! conflict events are not records.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use flk_proto::v1;
use flk_runtime::feed::FeedSink;

use crate::engine::Engine;
use crate::metrics::TieringMetrics;

/// The engine as the consumer's sink (runs on the consumer's blocking thread).
pub struct TieringSink {
    pub engine: Arc<Engine>,
    pub metrics: TieringMetrics,
    pub connected: Arc<AtomicBool>,
    pub runtime: tokio::runtime::Handle,
}

impl FeedSink for TieringSink {
    fn apply(&self, batch: &[&v1::FeedRecord]) -> Result<(), String> {
        self.engine
            .ingest_blocking(&self.runtime, batch)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn received(&self, seq: u64) {
        self.metrics.received(seq);
    }

    fn connection(&self, up: bool) {
        self.connected.store(up, Ordering::Release);
    }
}
