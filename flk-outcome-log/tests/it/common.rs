//! Shared test helpers: configs in temp dirs, payloads, a counting observer, segment file access.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use flk_outcome_log::{LogConfig, LogObserver, OutcomeLog};

/// A config for a fresh log in `dir`, with fsync on (what production runs).
pub fn config(dir: &Path) -> LogConfig {
    LogConfig::new(dir.join("log"))
}

/// A recognisable payload for record `i` (lengths vary so frames do too).
pub fn payload(i: u64) -> Bytes {
    let mut text = format!("record-{i}-");
    text.extend(std::iter::repeat_n('x', (i % 37) as usize));
    Bytes::from(text)
}

/// Appends `payload(i)` for `range`, one call each, checking the seqs come back in order.
pub async fn append_range(log: &OutcomeLog, range: std::ops::RangeInclusive<u64>) {
    for i in range {
        let seq = log.append(payload(i)).await.expect("append");
        assert_eq!(seq, i);
    }
}

/// Every record from `from_seq`, panicking on a read error.
pub fn read_all(log: &OutcomeLog, from_seq: u64) -> Vec<(u64, Bytes)> {
    log.read_from(from_seq)
        .collect::<Result<Vec<_>, _>>()
        .expect("read_from")
}

/// The segment files of the log, oldest first.
pub fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    files
}

/// Byte offset of every record frame in a segment file, plus the file length at the end.
pub fn frame_offsets(path: &Path) -> Vec<u64> {
    let data = std::fs::read(path).expect("read segment");
    let mut offsets = Vec::new();
    let mut pos = flk_outcome_log::SEGMENT_HEADER_LEN as usize;
    while pos < data.len() {
        offsets.push(pos as u64);
        let len = u32::from_le_bytes(data[pos..pos + 4].try_into().expect("len")) as usize;
        pos += flk_outcome_log::RECORD_HEADER_LEN + len;
    }
    offsets.push(data.len() as u64);
    offsets
}

/// Observer that counts batches and remembers the biggest.
#[derive(Default)]
pub struct CountingObserver {
    pub batches: AtomicUsize,
    pub records: AtomicUsize,
    pub max_batch: AtomicUsize,
    pub failed_batches: AtomicUsize,
}

impl LogObserver for CountingObserver {
    fn on_commit(&self, records: usize, _bytes: usize, _write_and_fsync: Duration) {
        self.batches.fetch_add(1, Ordering::SeqCst);
        self.records.fetch_add(records, Ordering::SeqCst);
        self.max_batch.fetch_max(records, Ordering::SeqCst);
    }

    fn on_failed_batch(&self, _records: usize) {
        self.failed_batches.fetch_add(1, Ordering::SeqCst);
    }
}
