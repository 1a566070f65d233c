//! The crate's error type for log operations and proof generation.

use crate::checkpoint::CheckpointError;
use crate::store::StoreError;

/// Why a log operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// A leaf index is not below the tree size it is asked in.
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange {
        /// The index asked for.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// A pair of sizes or a range is not valid for the operation (e.g. a consistency proof
    /// needs `0 < first <= second`).
    #[error("invalid range: first {first}, second {second}")]
    InvalidRange {
        /// First size or start.
        first: u64,
        /// Second size or end.
        second: u64,
    },
    /// A tree size beyond the log's current size.
    #[error("tree size {requested} is beyond the log size {size}")]
    BeyondSize {
        /// The size asked for.
        requested: u64,
        /// The log's size.
        size: u64,
    },
    /// An entry does not fit an entry bundle.
    #[error("entry {position} of the batch is {len} bytes, above the limit of 65535")]
    EntryTooLarge {
        /// Position in the batch.
        position: usize,
        /// Its length.
        len: usize,
    },
    /// A batch has more entries than one append may integrate.
    #[error("batch of {len} entries is above the limit of {max}")]
    BatchTooLarge {
        /// Entries in the batch.
        len: usize,
        /// The limit ([`crate::MAX_BATCH_ENTRIES`]).
        max: usize,
    },
    /// The stored checkpoint does not open with the log's key or is malformed.
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    /// The stored checkpoint belongs to another log.
    #[error("stored checkpoint has origin {found:?}, not {expected:?}")]
    OriginMismatch {
        /// The log's configured origin.
        expected: String,
        /// The checkpoint's origin.
        found: String,
    },
    /// Stored tiles or bundles are missing or disagree with the checkpoint.
    #[error("corrupt log: {0}")]
    Corrupt(String),
}
