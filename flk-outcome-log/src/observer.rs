//! [`LogObserver`]: the hook through which the caller's metrics see group commits (this crate has no metrics library).

use std::time::Duration;

/// Told about every batch the writer thread finishes. Called on the writer thread, between
/// batches: keep it cheap (bump counters, record a histogram), never block.
pub trait LogObserver: Send + Sync {
    /// A batch became durable: `records` records in `bytes` framed bytes, and the time the single
    /// write plus fdatasync took (segment rotation not included).
    fn on_commit(&self, records: usize, bytes: usize, write_and_fsync: Duration);

    /// A batch of `records` records failed and every append in it got an error.
    fn on_failed_batch(&self, records: usize) {
        let _ = records;
    }
}

/// The observer used when the caller passes none.
pub(crate) struct NoopObserver;

impl LogObserver for NoopObserver {
    fn on_commit(&self, _records: usize, _bytes: usize, _write_and_fsync: Duration) {}
}
