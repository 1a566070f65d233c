//! The `(tenant_id, pcs_id) -> leaf index` index (redb, `<data_dir>/index.redb`): what makes
//! integration idempotent and what proofs by `pcs_id` look up.
//!
//! Besides the keys it records `indexed_size`, the number of log entries it covers: every
//! entry below it is indexed (**IndexCoversLog**, with `indexed_size <= log size` always,
//! because the log is appended before the index is committed). Both change in one write
//! transaction ([`Index::commit`]).
//!
//! The index is derived data: everything in it can be rebuilt from the log's entries. So a
//! commit need not be durable at once. Non-durable commits are visible to every later read of
//! this process; a crash rolls the file back to its last durable commit, still a consistent
//! `(keys, indexed_size)` pair, and the ledger re-indexes the log above it on the next start.
//! The ledger makes a commit durable every [`DURABLE_EVERY`] batches or
//! [`DURABLE_INTERVAL`], which bounds that re-indexing and lets redb reclaim pages (it frees
//! them only in durable commits).

use std::path::Path;

use redb::{Database, Durability, ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::error::AuditError;

/// `(tenant_id, pcs_id bytes) -> leaf index`.
const LEAVES: TableDefinition<(&str, &[u8]), u64> = TableDefinition::new("leaves");
/// `"indexed_size" -> entries covered`.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const INDEXED_SIZE: &str = "indexed_size";

/// The most non-durable commits between two durable ones.
pub const DURABLE_EVERY: u32 = 16;
/// The longest time between two durable commits while commits happen.
pub const DURABLE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// File name of the index inside the data directory.
pub const FILE_NAME: &str = "index.redb";

/// The redb index. Reads may run concurrently with one writer.
pub struct Index {
    db: Database,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index").finish_non_exhaustive()
    }
}

/// A consistent read view for a batch of lookups.
pub struct Snapshot {
    txn: redb::ReadTransaction,
}

impl Snapshot {
    /// The leaf of `(tenant, pcs_id)`, if indexed.
    pub fn get(&self, tenant: &str, pcs_id: &[u8; 32]) -> Result<Option<u64>, AuditError> {
        let table = match self.txn.open_table(LEAVES) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(AuditError::index(e)),
        };
        Ok(table
            .get((tenant, pcs_id.as_slice()))
            .map_err(AuditError::index)?
            .map(|v| v.value()))
    }
}

impl Index {
    /// Opens (creating if needed) the index at `path`.
    pub fn open(path: &Path) -> Result<Index, AuditError> {
        let db = Database::create(path)
            .map_err(|e| AuditError::Index(format!("cannot open {}: {e}", path.display())))?;
        let txn = db.begin_write().map_err(AuditError::index)?;
        txn.open_table(LEAVES).map_err(AuditError::index)?;
        txn.open_table(META).map_err(AuditError::index)?;
        txn.commit().map_err(AuditError::index)?;
        Ok(Index { db })
    }

    /// A read view.
    pub fn snapshot(&self) -> Result<Snapshot, AuditError> {
        Ok(Snapshot {
            txn: self.db.begin_read().map_err(AuditError::index)?,
        })
    }

    /// The leaf of `(tenant, pcs_id)`, if indexed.
    pub fn get(&self, tenant: &str, pcs_id: &[u8; 32]) -> Result<Option<u64>, AuditError> {
        self.snapshot()?.get(tenant, pcs_id)
    }

    /// Number of log entries the index covers.
    pub fn indexed_size(&self) -> Result<u64, AuditError> {
        let txn = self.db.begin_read().map_err(AuditError::index)?;
        let table = txn.open_table(META).map_err(AuditError::index)?;
        Ok(table
            .get(INDEXED_SIZE)
            .map_err(AuditError::index)?
            .map_or(0, |v| v.value()))
    }

    /// Adds `keys` (each with its leaf index) and sets `indexed_size`, in one transaction,
    /// durable on disk when `durable` (see the module docs). A key already present keeps its
    /// first leaf; the leaves of such keys are returned (they mean the log holds the key
    /// twice, which integration never does).
    pub fn commit(
        &self,
        keys: &[(&str, &[u8; 32], u64)],
        indexed_size: u64,
        durable: bool,
    ) -> Result<Vec<u64>, AuditError> {
        let mut txn = self.db.begin_write().map_err(AuditError::index)?;
        if !durable {
            txn.set_durability(Durability::None);
        }
        let mut twice = Vec::new();
        {
            let mut leaves = txn.open_table(LEAVES).map_err(AuditError::index)?;
            for &(tenant, pcs_id, leaf) in keys {
                let key = (tenant, pcs_id.as_slice());
                if leaves.get(key).map_err(AuditError::index)?.is_some() {
                    twice.push(leaf);
                    continue;
                }
                leaves.insert(key, leaf).map_err(AuditError::index)?;
            }
            let mut meta = txn.open_table(META).map_err(AuditError::index)?;
            meta.insert(INDEXED_SIZE, indexed_size)
                .map_err(AuditError::index)?;
        }
        txn.commit().map_err(AuditError::index)?;
        Ok(twice)
    }

    /// Makes every earlier commit durable (an empty durable transaction).
    pub fn sync(&self) -> Result<(), AuditError> {
        let txn = self.db.begin_write().map_err(AuditError::index)?;
        txn.commit().map_err(AuditError::index)
    }

    /// Number of indexed keys.
    pub fn len(&self) -> Result<u64, AuditError> {
        let txn = self.db.begin_read().map_err(AuditError::index)?;
        let table = txn.open_table(LEAVES).map_err(AuditError::index)?;
        table.len().map_err(AuditError::index)
    }

    /// Whether no key is indexed.
    pub fn is_empty(&self) -> Result<bool, AuditError> {
        Ok(self.len()? == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_size_commit_together_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let index = Index::open(&path).unwrap();
        assert_eq!(index.indexed_size().unwrap(), 0);
        assert!(index.is_empty().unwrap());
        let twice = index
            .commit(&[("a", &[1; 32], 0), ("b", &[1; 32], 1)], 2, true)
            .unwrap();
        assert!(twice.is_empty());
        let twice = index.commit(&[("a", &[1; 32], 2)], 3, false).unwrap();
        assert_eq!(twice, vec![2]);
        assert_eq!(index.indexed_size().unwrap(), 3);
        index.sync().unwrap();
        drop(index);
        let index = Index::open(&path).unwrap();
        assert_eq!(index.indexed_size().unwrap(), 3);
        assert_eq!(index.get("a", &[1; 32]).unwrap(), Some(0));
        assert_eq!(index.get("b", &[1; 32]).unwrap(), Some(1));
        assert_eq!(index.get("a", &[2; 32]).unwrap(), None);
        assert_eq!(index.len().unwrap(), 2);
    }
}
