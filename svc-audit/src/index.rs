//! The `(tenant_id, pcs_id) -> leaf index` index (a fjall keyspace, `<data_dir>/index.fjall`):
//! what makes integration idempotent and what proofs by `pcs_id` look up.
//!
//! Besides the keys it records `indexed_size`, the number of log entries it covers: every
//! entry below it is indexed (**IndexCoversLog**, with `indexed_size <= log size` always,
//! because the log is appended before the index is committed), and `indexed_decisions`, the
//! number of decisions among those entries (events, such as a conflicting duplicate, are
//! keyed too but are no decision): what svc-kpi's audit coverage counts. All of it changes in
//! one atomic write batch ([`Index::commit`]).
//!
//! # Why an LSM tree
//!
//! Every entry inserts one uniformly random key (a `pcs_id` is a hash). redb, which held this
//! index first, copies a B-tree page per such insert and was about a quarter of the
//! integration's CPU (`docs/BENCHMARKS.md`); fjall appends the batch to its journal and sorts
//! it into segments in the background.
//!
//! # Layout
//!
//! Partition `leaves`: key `pcs_id (32 bytes) | tenant_id bytes` (fixed-length first part, so
//! unambiguous) -> leaf index, u64 big-endian. Partition `meta`: `indexed_size` -> u64
//! big-endian, `indexed_decisions` -> u64 big-endian (absent from an index written before it
//! existed: the ledger counts the log's decisions once and sets it, [`Index::set_decisions`]). `<data_dir>/index.lock` is held (flock) while the index is open.
//!
//! # Durability
//!
//! The index is derived data: everything in it can be rebuilt from the log's entries. So a
//! commit need not be durable at once. A commit is handed to the operating system at once (a
//! killed process loses nothing) and is visible to every later read; a power cut may lose the
//! journal's tail, and recovery keeps a prefix of whole commits, still a consistent
//! `(keys, indexed_size)` pair, so the ledger re-indexes the log above it on the next start.
//! The ledger makes a commit durable (journal fsync) every [`DURABLE_EVERY`] batches or
//! [`DURABLE_INTERVAL`], which bounds that re-indexing. An index directory from before this
//! layout (`index.redb`) is simply not read: the new index starts empty and the ledger
//! re-indexes the whole log when it opens.

use std::path::Path;

use fjall::{Keyspace, PartitionCreateOptions, PartitionHandle, PersistMode};
use flk_runtime::key_filter::KeyFilter;

use crate::error::AuditError;

/// `pcs_id | tenant_id -> leaf index`.
const LEAVES: &str = "leaves";
/// `"indexed_size" -> entries covered`.
const META: &str = "meta";
const INDEXED_SIZE: &[u8] = b"indexed_size";
const INDEXED_DECISIONS: &[u8] = b"indexed_decisions";
/// [`Index::decisions`] not counted yet.
const UNCOUNTED: u64 = u64::MAX;

/// The most non-durable commits between two durable ones.
pub const DURABLE_EVERY: u32 = 16;
/// The longest time between two durable commits while commits happen.
pub const DURABLE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// Directory of the index inside the data directory.
pub const DIR_NAME: &str = "index.fjall";
/// Lock file next to it.
pub const LOCK_FILE: &str = "index.lock";

/// The index. Reads may run concurrently with one writer.
pub struct Index {
    leaves: PartitionHandle,
    meta: PartitionHandle,
    keyspace: Keyspace,
    /// Every key of `leaves`: lookups of keys never indexed (most of them) stop here.
    filter: KeyFilter,
    /// The committed `indexed_decisions` ([`UNCOUNTED`] when absent), for lock-free reads.
    decisions: std::sync::atomic::AtomicU64,
    // Released last, after the keyspace (and its background threads) is gone.
    _lock: flk_runtime::lock::DirLock,
}

/// The filter's build holds a handle of the keyspace: stopped before the keyspace closes.
impl Drop for Index {
    fn drop(&mut self) {
        self.filter.close();
    }
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index").finish_non_exhaustive()
    }
}

/// A consistent read view for a batch of lookups.
pub struct Snapshot {
    leaves: fjall::Snapshot,
    /// A key it says is absent was never written, so is absent from any snapshot.
    filter: KeyFilter,
}

fn key(tenant: &str, pcs_id: &[u8; 32]) -> Vec<u8> {
    let mut k = Vec::with_capacity(32 + tenant.len());
    k.extend_from_slice(pcs_id);
    k.extend_from_slice(tenant.as_bytes());
    k
}

fn decode_u64(value: &[u8], what: &str) -> Result<u64, AuditError> {
    <[u8; 8]>::try_from(value)
        .map(u64::from_be_bytes)
        .map_err(|_| AuditError::Index(format!("{what}: a {}-byte value, not 8", value.len())))
}

impl Snapshot {
    /// The leaf of `(tenant, pcs_id)`, if indexed.
    pub fn get(&self, tenant: &str, pcs_id: &[u8; 32]) -> Result<Option<u64>, AuditError> {
        let k = key(tenant, pcs_id);
        if !self.filter.may_contain(&k) {
            return Ok(None);
        }
        self.leaves
            .get(k)
            .map_err(AuditError::index)?
            .map(|v| decode_u64(&v, "leaf index"))
            .transpose()
    }
}

impl Index {
    /// Opens (creating if needed) the index in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Index, AuditError> {
        let lock = flk_runtime::lock::DirLock::acquire(data_dir.join(LOCK_FILE)).map_err(|e| {
            AuditError::Index(format!(
                "{e} (is another svc-audit using this data directory?)"
            ))
        })?;
        let path = data_dir.join(DIR_NAME);
        let keyspace = fjall::Config::new(&path)
            .max_write_buffer_size(flk_runtime::embedded_db::FJALL_WRITE_BUFFER_BYTES)
            .cache_size(flk_runtime::embedded_db::FJALL_CACHE_BYTES)
            .open()
            .map_err(|e| AuditError::Index(format!("cannot open {}: {e:?}", path.display())))?;
        let partition = |name| {
            keyspace
                .open_partition(name, PartitionCreateOptions::default())
                .map_err(|e| AuditError::Index(format!("cannot open partition {name}: {e:?}")))
        };
        let (leaves, meta) = (partition(LEAVES)?, partition(META)?);
        let decisions = match meta.get(INDEXED_DECISIONS).map_err(AuditError::index)? {
            Some(v) => decode_u64(&v, "indexed_decisions")?,
            None if leaves.is_empty().map_err(AuditError::index)? => 0,
            None => UNCOUNTED,
        };
        Ok(Index {
            filter: KeyFilter::open(leaves.clone(), "audit index"),
            leaves,
            meta,
            keyspace,
            decisions: std::sync::atomic::AtomicU64::new(decisions),
            _lock: lock,
        })
    }

    /// Decisions among the first [`Index::indexed_size`] entries; `None` for an index written
    /// before the count existed, until [`Index::set_decisions`].
    pub fn decisions(&self) -> Option<u64> {
        match self.decisions.load(std::sync::atomic::Ordering::Acquire) {
            UNCOUNTED => None,
            n => Some(n),
        }
    }

    /// Sets the decision count of an index that had none (counted from the log by the
    /// caller, under the writer lock), durably.
    pub fn set_decisions(&self, n: u64) -> Result<(), AuditError> {
        self.meta
            .insert(INDEXED_DECISIONS, n.to_be_bytes())
            .map_err(AuditError::index)?;
        self.sync()?;
        self.decisions
            .store(n, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    /// A read view.
    pub fn snapshot(&self) -> Result<Snapshot, AuditError> {
        Ok(Snapshot {
            leaves: self.leaves.snapshot(),
            filter: self.filter.clone(),
        })
    }

    /// The leaf of `(tenant, pcs_id)`, if indexed.
    pub fn get(&self, tenant: &str, pcs_id: &[u8; 32]) -> Result<Option<u64>, AuditError> {
        self.snapshot()?.get(tenant, pcs_id)
    }

    /// Number of log entries the index covers.
    pub fn indexed_size(&self) -> Result<u64, AuditError> {
        self.meta
            .get(INDEXED_SIZE)
            .map_err(AuditError::index)?
            .map_or(Ok(0), |v| decode_u64(&v, "indexed_size"))
    }

    /// Adds `keys` (each with its leaf index, `decisions` of them decisions) and sets
    /// `indexed_size`, in one write batch, durable on disk when `durable` (see the module
    /// docs). A key already present keeps its
    /// first leaf; the leaves of such keys are returned (they mean the log holds the key
    /// twice, which integration never does).
    pub fn commit(
        &self,
        keys: &[(&str, &[u8; 32], u64)],
        indexed_size: u64,
        decisions: u64,
        durable: bool,
    ) -> Result<Vec<u64>, AuditError> {
        let filter = self.filter.writing();
        let mut batch = self.keyspace.batch();
        let mut twice = Vec::new();
        let mut added = std::collections::HashSet::with_capacity(keys.len());
        for &(tenant, pcs_id, leaf) in keys {
            let k = key(tenant, pcs_id);
            if added.contains(&k)
                || (filter.may_contain(&k)
                    && self.leaves.contains_key(&k).map_err(AuditError::index)?)
            {
                twice.push(leaf);
                continue;
            }
            filter.insert(&k);
            batch.insert(&self.leaves, k.clone(), leaf.to_be_bytes());
            added.insert(k);
        }
        self.finish(batch, indexed_size, decisions, durable)?;
        Ok(twice)
    }

    /// [`Index::commit`] of keys the caller has just found absent (through a [`Snapshot`]
    /// taken under the same exclusive writer) and distinct: no lookup per key, which is most
    /// of a commit's cost.
    pub fn commit_absent(
        &self,
        keys: &[(&str, &[u8; 32], u64)],
        indexed_size: u64,
        decisions: u64,
        durable: bool,
    ) -> Result<(), AuditError> {
        let filter = self.filter.writing();
        let mut batch = self.keyspace.batch();
        for &(tenant, pcs_id, leaf) in keys {
            let k = key(tenant, pcs_id);
            filter.insert(&k);
            batch.insert(&self.leaves, k, leaf.to_be_bytes());
        }
        self.finish(batch, indexed_size, decisions, durable)
    }

    /// Commits `batch` with the new `indexed_size` and `added` more decisions (one writer at
    /// a time, so the counter's read-modify-write is not racing; an uncounted index stays
    /// uncounted).
    fn finish(
        &self,
        mut batch: fjall::Batch,
        indexed_size: u64,
        added: u64,
        durable: bool,
    ) -> Result<(), AuditError> {
        batch.insert(&self.meta, INDEXED_SIZE, indexed_size.to_be_bytes());
        let decisions = self.decisions().map(|n| n + added);
        if let Some(n) = decisions {
            batch.insert(&self.meta, INDEXED_DECISIONS, n.to_be_bytes());
        }
        batch.commit().map_err(AuditError::index)?;
        if let Some(n) = decisions {
            self.decisions
                .store(n, std::sync::atomic::Ordering::Release);
        }
        if durable {
            self.sync()?;
        }
        Ok(())
    }

    /// Forgets the decision count, as in an index written before it existed (tests).
    #[cfg(test)]
    pub(crate) fn meta_remove_decisions_for_test(&self) {
        self.meta.remove(INDEXED_DECISIONS).unwrap();
        self.sync().unwrap();
    }

    /// Makes every earlier commit durable (fsyncs the journal).
    pub fn sync(&self) -> Result<(), AuditError> {
        self.keyspace
            .persist(PersistMode::SyncAll)
            .map_err(AuditError::index)
    }

    /// Number of indexed keys (counted by a scan: for tests and tools).
    pub fn len(&self) -> Result<u64, AuditError> {
        self.leaves
            .len()
            .map(|n| n as u64)
            .map_err(AuditError::index)
    }

    /// Whether no key is indexed.
    pub fn is_empty(&self) -> Result<bool, AuditError> {
        self.leaves.is_empty().map_err(AuditError::index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_size_commit_together_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(dir.path()).unwrap();
        assert_eq!(index.indexed_size().unwrap(), 0);
        assert!(index.is_empty().unwrap());
        let twice = index
            .commit(&[("a", &[1; 32], 0), ("b", &[1; 32], 1)], 2, 2, true)
            .unwrap();
        assert!(twice.is_empty());
        let twice = index.commit(&[("a", &[1; 32], 2)], 3, 0, false).unwrap();
        assert_eq!(twice, vec![2]);
        assert_eq!(index.indexed_size().unwrap(), 3);
        assert_eq!(index.decisions(), Some(2));
        index.sync().unwrap();
        drop(index);
        let index = Index::open(dir.path()).unwrap();
        assert_eq!(index.indexed_size().unwrap(), 3);
        assert_eq!(index.decisions(), Some(2));
        assert_eq!(index.get("a", &[1; 32]).unwrap(), Some(0));
        assert_eq!(index.get("b", &[1; 32]).unwrap(), Some(1));
        assert_eq!(index.get("a", &[2; 32]).unwrap(), None);
        assert_eq!(index.len().unwrap(), 2);
        // An event's key: no decision.
        index
            .commit_absent(&[("c", &[3; 32], 3)], 4, 0, true)
            .unwrap();
        assert_eq!(index.get("c", &[3; 32]).unwrap(), Some(3));
        assert_eq!(index.indexed_size().unwrap(), 4);
        assert_eq!(index.decisions(), Some(2));
        assert!(Index::open(dir.path()).is_err(), "a second open is refused");

        // An index written before the count existed has none until it is set; commits then
        // keep it current.
        index.meta.remove(INDEXED_DECISIONS).unwrap();
        index.sync().unwrap();
        drop(index);
        let index = Index::open(dir.path()).unwrap();
        assert_eq!(index.decisions(), None);
        index
            .commit_absent(&[("d", &[4; 32], 4)], 5, 1, true)
            .unwrap();
        assert_eq!(index.decisions(), None);
        index.set_decisions(3).unwrap();
        index
            .commit_absent(&[("e", &[5; 32], 5)], 6, 1, true)
            .unwrap();
        drop(index);
        assert_eq!(Index::open(dir.path()).unwrap().decisions(), Some(4));
    }
}
