//! The storage contract of the log ([`TileStore`]) and its backends: [`FsStore`], the embedded
//! on-disk backend in the C2SP tlog-tiles layout, [`MemStore`], an in-memory model, and
//! `PgStore` (feature `postgres`), PostgreSQL tables the database keeps append-only.
//!
//! # Contract
//!
//! A store holds three things: hash tiles, entry bundles (both addressed by
//! `(kind, index, width)`, width 256 meaning a full tile) and the latest signed checkpoint.
//!
//! * **Write-once.** [`TileStore::write_batch`] never replaces stored bytes: writing identical
//!   bytes to an existing resource succeeds (idempotent retry), different bytes fail with
//!   [`StoreError::Conflict`].
//! * **Durability.** Every resource of a `write_batch` is durable when it returns `Ok`; on
//!   error, any subset may have been stored (the log treats them as uncommitted).
//!   [`TileStore::put_checkpoint`] is durable when it returns and atomically replaces the
//!   previous checkpoint. The log writes a batch's tiles and bundles before the checkpoint that
//!   covers them, so a checkpoint never refers to data that could be lost.
//! * **Deletion** happens only in two situations, both of which leave every resource a
//!   published checkpoint refers to in place (or superseded by its full tile):
//!   [`TileStore::remove_partials`] after the full tile is durable and covered by a checkpoint
//!   (the spec allows deleting partials then), and [`TileStore::discard_uncommitted`] during
//!   recovery, for resources beyond the latest checkpoint that a crashed batch left behind.
//! * **Single writer.** One [`crate::Log`] appends at a time; a backend should refuse a second
//!   writer ([`FsStore`] holds an exclusive file lock).
//! * Methods are synchronous; async services call them from a blocking thread.
//!
//! `PgStore` (feature `postgres`) is the SQL backend: `(kind, index, width) -> bytes` tables
//! with `INSERT .. ON CONFLICT DO NOTHING` plus a byte comparison, one transaction per
//! `write_batch`, and append-only enforced by the database (its module docs).

mod fs;
mod mem;
#[cfg(feature = "postgres")]
mod pg;

pub use fs::{FsStore, SyncMode};
pub use mem::MemStore;
#[cfg(feature = "postgres")]
pub use pg::PgStore;

use std::path::PathBuf;

use crate::tile::{TileKind, tile_path};

/// A storage failure. Backend-specific details are in the message; the variants are the cases
/// callers act on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An I/O operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done (`write`, `fsync`, ...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A write-once resource already holds different bytes.
    #[error("write-once violation: {path} already holds different bytes")]
    Conflict {
        /// The resource's tlog-tiles path.
        path: String,
    },
    /// Another writer holds the store.
    #[error("store {path} is locked by another writer")]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// Stored data is unreadable (e.g. a checkpoint that is not UTF-8).
    #[error("corrupt store data: {0}")]
    Corrupt(String),
}

impl StoreError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StoreError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// One resource of a [`TileStore::write_batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TileWrite {
    /// Hash tile level or entry bundle.
    pub kind: TileKind,
    /// Tile index within its level.
    pub index: u64,
    /// Number of hashes or entries, 1..=256 (256 is a full tile).
    pub width: u16,
    /// The tile bytes (hashes, or length-prefixed entries).
    pub data: Vec<u8>,
}

/// Append-only storage of tiles, entry bundles and the latest checkpoint. See the module docs
/// for the contract every backend keeps.
pub trait TileStore: Send + Sync {
    /// Durably stores tile resources, each write-once.
    fn write_batch(&self, writes: &[TileWrite]) -> Result<(), StoreError>;

    /// Reads a tile resource, `None` if absent.
    fn get(&self, kind: TileKind, index: u64, width: u16) -> Result<Option<Vec<u8>>, StoreError>;

    /// Durably and atomically replaces the latest checkpoint note.
    fn put_checkpoint(&self, note: &str) -> Result<(), StoreError>;

    /// The latest checkpoint note, `None` for a new store.
    fn latest_checkpoint(&self) -> Result<Option<String>, StoreError>;

    /// Deletes every partial version of a tile whose full version is durable and committed.
    fn remove_partials(&self, kind: TileKind, index: u64) -> Result<(), StoreError>;

    /// Recovery only: deletes every version of a tile wider than `committed_width` (including
    /// the full tile when `committed_width < 256`). Called for resources beyond the latest
    /// checkpoint, which no published checkpoint refers to.
    fn discard_uncommitted(
        &self,
        kind: TileKind,
        index: u64,
        committed_width: u16,
    ) -> Result<(), StoreError>;

    /// Where a resource lives, for error reports: its tlog-tiles path by default.
    fn locate(&self, kind: TileKind, index: u64, width: u16) -> String {
        tile_path(kind, index, width)
    }

    /// Durably stores one hash tile (a one-resource [`TileStore::write_batch`]).
    fn put_tile(&self, level: u8, index: u64, width: u16, data: &[u8]) -> Result<(), StoreError> {
        self.write_batch(&[TileWrite {
            kind: TileKind::Hash(level),
            index,
            width,
            data: data.to_vec(),
        }])
    }

    /// [`TileStore::get`] of a hash tile.
    fn get_tile(&self, level: u8, index: u64, width: u16) -> Result<Option<Vec<u8>>, StoreError> {
        self.get(TileKind::Hash(level), index, width)
    }

    /// Durably stores one entry bundle (a one-resource [`TileStore::write_batch`]).
    fn put_bundle(&self, index: u64, width: u16, data: &[u8]) -> Result<(), StoreError> {
        self.write_batch(&[TileWrite {
            kind: TileKind::Entries,
            index,
            width,
            data: data.to_vec(),
        }])
    }

    /// [`TileStore::get`] of an entry bundle.
    fn get_bundle(&self, index: u64, width: u16) -> Result<Option<Vec<u8>>, StoreError> {
        self.get(TileKind::Entries, index, width)
    }
}

macro_rules! forward_store {
    ($($ty:ty),*) => {$(
        impl<T: TileStore + ?Sized> TileStore for $ty {
            fn write_batch(&self, writes: &[TileWrite]) -> Result<(), StoreError> {
                (**self).write_batch(writes)
            }
            fn get(&self, kind: TileKind, index: u64, width: u16) -> Result<Option<Vec<u8>>, StoreError> {
                (**self).get(kind, index, width)
            }
            fn put_checkpoint(&self, note: &str) -> Result<(), StoreError> {
                (**self).put_checkpoint(note)
            }
            fn latest_checkpoint(&self) -> Result<Option<String>, StoreError> {
                (**self).latest_checkpoint()
            }
            fn remove_partials(&self, kind: TileKind, index: u64) -> Result<(), StoreError> {
                (**self).remove_partials(kind, index)
            }
            fn discard_uncommitted(&self, kind: TileKind, index: u64, committed_width: u16) -> Result<(), StoreError> {
                (**self).discard_uncommitted(kind, index, committed_width)
            }
            fn locate(&self, kind: TileKind, index: u64, width: u16) -> String {
                (**self).locate(kind, index, width)
            }
        }
    )*};
}

forward_store!(Box<T>, std::sync::Arc<T>, &T);
