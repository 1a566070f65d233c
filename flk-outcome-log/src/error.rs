//! The crate's one error type, [`LogError`], and the closed set of corruption reasons.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// Everything that can go wrong with the outcome log.
///
/// `Clone` because one failed batch answers every waiter in it with the same error.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LogError {
    /// An operating-system call failed; `op` names what the log was doing.
    #[error("i/o error while trying to {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: Arc<io::Error>,
    },
    /// Bytes on disk that recovery may not repair: anything but a torn tail of the last segment.
    #[error("corrupt outcome log: {segment} at byte offset {offset}: {reason}")]
    Corrupt {
        segment: PathBuf,
        offset: u64,
        reason: CorruptReason,
    },
    /// A failed batch could not be rolled back: no append succeeds until the log is reopened.
    #[error("outcome log unavailable: a failed write could not be rolled back, reopen the log")]
    Unavailable,
    /// Every handle of the log was dropped, or its writer thread is gone.
    #[error("outcome log is closed")]
    Closed,
    /// The payload is bigger than [`MAX_PAYLOAD_LEN`](crate::MAX_PAYLOAD_LEN).
    #[error("payload of {len} bytes exceeds the limit of {max} bytes")]
    PayloadTooLarge { len: usize, max: usize },
    /// `append_many` was given no payload.
    #[error("empty batch: append_many needs at least one payload")]
    EmptyBatch,
    /// The [`LogConfig`](crate::LogConfig) cannot work.
    #[error("invalid outcome log config: {0}")]
    InvalidConfig(&'static str),
}

impl LogError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        LogError::Io {
            op,
            path: path.into(),
            source: Arc::new(source),
        }
    }

    pub(crate) fn corrupt(segment: impl Into<PathBuf>, offset: u64, reason: CorruptReason) -> Self {
        LogError::Corrupt {
            segment: segment.into(),
            offset,
            reason,
        }
    }
}

/// Why bytes on disk were rejected. A closed set, so callers can match and count it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CorruptReason {
    #[error("segment file name is not 20 decimal digits followed by .seg")]
    BadFileName,
    #[error("segment header is shorter than {expected} bytes")]
    ShortHeader { expected: u64 },
    #[error("bad segment magic")]
    BadMagic,
    #[error("unsupported segment format version {0}")]
    UnsupportedVersion(u16),
    #[error("segment header checksum mismatch")]
    HeaderChecksum,
    #[error("segment header says first seq {header} but the file name says {name}")]
    FirstSeqMismatch { name: u64, header: u64 },
    #[error("record frame is cut short")]
    TruncatedRecord,
    #[error("record length {0} exceeds the maximum payload length")]
    BadLength(u32),
    #[error("record checksum mismatch")]
    Checksum,
    #[error("expected seq {expected}, found seq {found}")]
    UnexpectedSeq { expected: u64, found: u64 },
    #[error("the log does not start at seq 1 (first segment starts at {0})")]
    MissingStart(u64),
    #[error("segment starts at seq {found} but the previous one ends at {previous_last}")]
    SegmentGap { previous_last: u64, found: u64 },
}
