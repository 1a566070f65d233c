//! [`LogConfig`]: where the log lives and how it batches, with its defaults in one place.

use std::path::PathBuf;

use crate::error::LogError;
use crate::format::SEGMENT_HEADER_LEN;

/// How the outcome log is opened and run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// Directory holding the segment files; created if missing. One `OutcomeLog` per directory:
    /// the log takes no lock, the caller (one svc-verify process per data directory) ensures it.
    pub dir: PathBuf,
    /// A segment is closed and a new one started when the next batch would grow it past this
    /// size. A single batch bigger than this gets a segment of its own. Default 64 MiB.
    pub segment_max_bytes: u64,
    /// `fdatasync` every batch (and new segments plus the directory). Default `true`; turning it
    /// off loses the durability promise and is meant for throwaway logs only.
    pub fsync: bool,
    /// Most records one group commit takes. Default 4096.
    pub max_batch_records: usize,
    /// Most framed bytes one group commit takes (a single larger `append_many` still goes
    /// through, alone). Default 4 MiB.
    pub max_batch_bytes: usize,
    /// How much of the existing log `open` checks. Default [`OpenCheck::AllSegments`].
    pub open_check: OpenCheck,
}

/// How much `open` reads before accepting an existing log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OpenCheck {
    /// Every record of every segment: framing, checksum, seq continuity. Cost grows with the log.
    #[default]
    AllSegments,
    /// Every record of the last segment; only the header of the others (cheap for big logs,
    /// damage in older segments then shows up when a reader reaches it, or in `verify_dir`).
    LastSegment,
}

impl LogConfig {
    pub const DEFAULT_SEGMENT_MAX_BYTES: u64 = 64 * 1024 * 1024;
    pub const DEFAULT_MAX_BATCH_RECORDS: usize = 4096;
    pub const DEFAULT_MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

    /// Defaults for everything but the directory.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        LogConfig {
            dir: dir.into(),
            ..LogConfig::default()
        }
    }

    pub(crate) fn validate(&self) -> Result<(), LogError> {
        if self.dir.as_os_str().is_empty() {
            return Err(LogError::InvalidConfig("dir must be set"));
        }
        if self.segment_max_bytes <= SEGMENT_HEADER_LEN {
            return Err(LogError::InvalidConfig(
                "segment_max_bytes must exceed the segment header",
            ));
        }
        if self.max_batch_records == 0 || self.max_batch_bytes == 0 {
            return Err(LogError::InvalidConfig(
                "max_batch_records and max_batch_bytes must be at least 1",
            ));
        }
        Ok(())
    }
}

/// `dir` is empty: `open` refuses it, use [`LogConfig::new`].
impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            dir: PathBuf::new(),
            segment_max_bytes: Self::DEFAULT_SEGMENT_MAX_BYTES,
            fsync: true,
            max_batch_records: Self::DEFAULT_MAX_BATCH_RECORDS,
            max_batch_bytes: Self::DEFAULT_MAX_BATCH_BYTES,
            open_check: OpenCheck::default(),
        }
    }
}
