//! svc-crr's durable state, in two stores of the data directory:
//!
//! - `tree.fjall` (a fjall keyspace): the Merkle tree of the region's decisions (partitions
//!   owned by [`crate::merkle`]) with the feed cursor that fed it and each key's origin region,
//!   written in one atomic batch per feed batch;
//! - `crr.redb`: the shipping watermarks per target (what each peer acknowledged) and the
//!   receiving watermarks per source (what this region applied from each peer), the run-time
//!   policies and the proposal queue.
//!
//! An older `crr.redb` that still holds the tree's tables has them moved into `tree.fjall`
//! when the store opens (see [`Store::open`]).
//!
//! **Durability.** Tree batches and watermarks are written without an fsync of their own
//! ([`LazyDb`], fjall's journal handed to the operating system); [`Store::flush`] makes them
//! durable, every `FLUSH_INTERVAL` while the service runs and at shutdown. Losing the last
//! interval on a crash is safe: the tree rolls back together with its cursor (one batch) and is
//! re-read from the outcome log, and a shipping watermark that rolls back re-ships records the
//! receiver already holds (first write wins: they are counted as duplicates, not stored twice).
//! Policies and proposals, which an operator acted on, commit durably at once.

use std::path::Path;
use std::sync::Arc;

use fjall::{Keyspace, PartitionCreateOptions, PartitionHandle, PersistMode};
use flk_runtime::embedded_db::LazyDb;
use redb::{Database, ReadableTable as _, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use crate::merkle::{Digest, LeafUpdate, Merkle, MerkleError};

const SHIP_ACKED: TableDefinition<&str, u64> = TableDefinition::new("crr_ship_acked");
const RECV_ACKED: TableDefinition<&str, u64> = TableDefinition::new("crr_recv_acked");
const POLICIES: TableDefinition<&str, &str> = TableDefinition::new("crr_policies");
const PROPOSALS: TableDefinition<&str, &str> = TableDefinition::new("crr_proposals");
const POLICIES_KEY: &str = "current";

/// The tree's keyspace inside the data directory.
pub const TREE_DIR: &str = "tree.fjall";
/// `tree_cursor` -> the last feed record the tree holds (8 bytes, big-endian).
const TREE_META: &str = "crr_meta";
/// `(tenant_id, pcs_id)` (the tenant length-prefixed) -> the region that decided it.
const TREE_ORIGINS: &str = "crr_origins";
const TREE_CURSOR: &str = "tree_cursor";

/// The tables an older `crr.redb` held the tree in, moved to `tree.fjall` at open.
mod old {
    use super::{Digest, TableDefinition};
    pub const META: TableDefinition<&str, u64> = TableDefinition::new("crr_meta");
    pub const ORIGINS: TableDefinition<(&str, &str), &str> = TableDefinition::new("crr_origins");
    pub const LEAVES: TableDefinition<(&str, u32, &str), (Digest, i64)> =
        TableDefinition::new("merkle_leaves");
    pub const BUCKETS: TableDefinition<(&str, u32), Digest> =
        TableDefinition::new("merkle_buckets");
    pub const BY_TIME: TableDefinition<(i64, &str, &str), ()> =
        TableDefinition::new("merkle_by_time");
    /// Leaves moved per batch.
    pub const CHUNK: usize = 10_000;
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Boxed: redb's error is large, and every store call returns this.
    #[error("crr store: {0}")]
    Redb(Box<redb::Error>),
    #[error(transparent)]
    Merkle(#[from] MerkleError),
    #[error("crr tree store: {0}")]
    Tree(String),
    #[error("crr store record does not decode: {0}")]
    Corrupt(String),
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Redb(Box::new(e.into()))
            }
        }
    )*};
}
from_redb!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// One key's place in the tree, as the feed brought it.
#[derive(Debug, Clone)]
pub struct TreeUpdate {
    pub leaf: LeafUpdate,
    /// The region that decided it; `None` for this region. Only other regions' keys are
    /// stored (a region's own keys are nearly all of its tree, and each stored origin is one
    /// more random-key insert per decision).
    pub origin: Option<String>,
}

/// A repair waiting for, or past, its decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    pub id: String,
    /// `replay_missing`, `choose_first`, `quorum` or `manual_review`.
    pub action: String,
    pub safety: f64,
    pub peer: String,
    pub keys: Vec<crate::merkle::Key>,
    /// `pending`, `approved`, `rejected`, `applied` or `failed`.
    pub state: String,
    pub created_at_ms: i64,
    /// Who approved or rejected it (`auto` for the reconciler's own decisions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_at_ms: Option<i64>,
    /// What the action did or why it failed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

impl From<fjall::Error> for StoreError {
    fn from(e: fjall::Error) -> Self {
        StoreError::Tree(e.to_string())
    }
}

fn origin_key(tenant_id: &str, pcs_id: &str) -> Option<Vec<u8>> {
    let len = u16::try_from(tenant_id.len()).ok()?;
    let mut k = Vec::with_capacity(2 + tenant_id.len() + pcs_id.len());
    k.extend_from_slice(&len.to_be_bytes());
    k.extend_from_slice(tenant_id.as_bytes());
    k.extend_from_slice(pcs_id.as_bytes());
    Some(k)
}

/// The store.
pub struct Store {
    /// Watermarks, policies, proposals.
    pub db: Arc<LazyDb>,
    pub merkle: Arc<Merkle>,
    tree: Keyspace,
    meta: PartitionHandle,
    origins: PartitionHandle,
}

impl Store {
    /// Opens (creating if needed) the store in `dir`, first moving the tree out of an older
    /// `crr.redb` that still holds it.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Corrupt(format!("cannot create {}: {e}", dir.display())))?;
        // redb first: its lock on crr.redb keeps a second process off the directory.
        let db = flk_runtime::embedded_db::open(&dir.join("crr.redb"))?;
        {
            let txn = db.begin_write()?;
            txn.open_table(SHIP_ACKED)?;
            txn.open_table(RECV_ACKED)?;
            txn.open_table(POLICIES)?;
            txn.open_table(PROPOSALS)?;
            txn.commit()?;
        }
        let path = dir.join(TREE_DIR);
        let tree = fjall::Config::new(&path)
            .max_write_buffer_size(flk_runtime::embedded_db::FJALL_WRITE_BUFFER_BYTES)
            .cache_size(flk_runtime::embedded_db::FJALL_CACHE_BYTES)
            .open()
            .map_err(|e| StoreError::Tree(format!("cannot open {}: {e}", path.display())))?;
        let meta = tree.open_partition(TREE_META, PartitionCreateOptions::default())?;
        let origins = tree.open_partition(TREE_ORIGINS, PartitionCreateOptions::default())?;
        let merkle = Merkle::open(&tree)?;
        let store = Store {
            db: Arc::new(LazyDb::new(db)),
            merkle: Arc::new(merkle),
            tree,
            meta,
            origins,
        };
        store.move_tree_from_redb()?;
        Ok(store)
    }

    /// Moves an older store's tree, origins and cursor from `crr.redb` into `tree.fjall`, then
    /// drops the old tables. The leaves go through [`Merkle::commit`], which rebuilds the
    /// bucket hashes and the time index from them; a move cut short by a crash runs again at
    /// the next open (setting a leaf to what it holds changes nothing).
    fn move_tree_from_redb(&self) -> Result<(), StoreError> {
        let db: &Database = &self.db;
        let read = db.begin_read()?;
        let leaves = match read.open_table(old::LEAVES) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let mut moved = 0usize;
        let mut chunk = Vec::with_capacity(old::CHUNK);
        for row in leaves.iter()? {
            let (k, v) = row?;
            let (tenant, _, pcs) = k.value();
            let (digest, decided_at_ms) = v.value();
            chunk.push(LeafUpdate {
                tenant_id: tenant.to_owned(),
                pcs_id: pcs.to_owned(),
                digest,
                decided_at_ms,
            });
            if chunk.len() == old::CHUNK {
                self.merkle.apply(&chunk)?;
                moved += chunk.len();
                chunk.clear();
            }
        }
        self.merkle.apply(&chunk)?;
        moved += chunk.len();
        let mut batch = self.tree.batch();
        if let Ok(origins) = read.open_table(old::ORIGINS) {
            for row in origins.iter()? {
                let (k, v) = row?;
                let (tenant, pcs) = k.value();
                if let Some(key) = origin_key(tenant, pcs) {
                    batch.insert(&self.origins, key, v.value());
                }
            }
        }
        if let Ok(meta) = read.open_table(old::META)
            && let Some(cursor) = meta.get(TREE_CURSOR)?
        {
            let cursor = cursor.value().max(self.tree_cursor()?);
            batch.insert(&self.meta, TREE_CURSOR, cursor.to_be_bytes());
        }
        batch.commit()?;
        self.tree.persist(PersistMode::SyncAll)?;
        drop(leaves);
        drop(read);
        let txn = db.begin_write()?;
        txn.delete_table(old::LEAVES)?;
        txn.delete_table(old::BUCKETS)?;
        txn.delete_table(old::BY_TIME)?;
        txn.delete_table(old::ORIGINS)?;
        txn.delete_table(old::META)?;
        txn.commit()?;
        tracing::info!(
            leaves = moved,
            "svc-crr moved its Merkle tree from crr.redb to tree.fjall"
        );
        Ok(())
    }

    /// Commits without waiting for the disk (see the module's note on durability).
    fn commit_lazy(&self, txn: WriteTransaction) -> Result<(), StoreError> {
        self.db.commit_lazy(txn).map_err(StoreError::Redb)
    }

    /// Makes every earlier commit durable (one fsync; nothing to do when none is pending).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.merkle.persist()?;
        self.db.flush().map_err(StoreError::Redb)
    }

    /// The last feed record the tree holds.
    pub fn tree_cursor(&self) -> Result<u64, StoreError> {
        match self.meta.get(TREE_CURSOR)? {
            None => Ok(0),
            Some(v) => <[u8; 8]>::try_from(&*v)
                .map(u64::from_be_bytes)
                .map_err(|_| StoreError::Corrupt(format!("a {}-byte tree cursor", v.len()))),
        }
    }

    /// Adds a batch of the feed to the tree and moves the cursor, in one atomic batch.
    pub fn apply_tree(&self, updates: &[TreeUpdate], cursor: u64) -> Result<(), StoreError> {
        let cursor = cursor.max(self.tree_cursor()?);
        let leaves: Vec<LeafUpdate> = updates.iter().map(|u| u.leaf.clone()).collect();
        let mut origins: Vec<(Vec<u8>, Option<&str>)> = Vec::new();
        for u in updates {
            let Some(key) = origin_key(&u.leaf.tenant_id, &u.leaf.pcs_id) else {
                continue; // refused by the tree's own key check below
            };
            match &u.origin {
                Some(origin) => origins.push((key, Some(origin))),
                // Usually absent, and then nothing is written (a removal would still write a
                // tombstone); present when the key was first held as another region's copy.
                None => {
                    if self.origins.contains_key(&key)? {
                        origins.push((key, None));
                    }
                }
            }
        }
        self.merkle.commit(&leaves, |batch| {
            for (key, origin) in origins {
                match origin {
                    Some(o) => batch.insert(&self.origins, key, o),
                    None => batch.remove(&self.origins, key),
                }
            }
            batch.insert(&self.meta, TREE_CURSOR, cursor.to_be_bytes());
        })?;
        Ok(())
    }

    /// The region that decided a key this region holds, when it is not this region (`None`
    /// for this region's own keys and for keys it does not hold).
    pub fn origin(&self, tenant_id: &str, pcs_id: &str) -> Result<Option<String>, StoreError> {
        let Some(key) = origin_key(tenant_id, pcs_id) else {
            return Ok(None);
        };
        match self.origins.get(key)? {
            None => Ok(None),
            Some(v) => String::from_utf8(v.to_vec())
                .map(Some)
                .map_err(|_| StoreError::Corrupt("an origin region that is not UTF-8".into())),
        }
    }

    /// Removes the tree's leaves decided before `cutoff_ms` (retention).
    pub fn prune(&self, cutoff_ms: i64) -> Result<usize, StoreError> {
        Ok(self.merkle.remove_older_than(cutoff_ms)?)
    }

    fn watermark(&self, table: TableDefinition<&str, u64>, key: &str) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
        Ok(txn
            .open_table(table)?
            .get(key)?
            .map(|v| v.value())
            .unwrap_or(0))
    }

    fn set_watermark(
        &self,
        table: TableDefinition<&str, u64>,
        key: &str,
        seq: u64,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut t = txn.open_table(table)?;
            let old = t.get(key)?.map(|v| v.value()).unwrap_or(0);
            t.insert(key, seq.max(old))?;
        }
        self.commit_lazy(txn)
    }

    /// What `target` acknowledged of this region's feed.
    pub fn ship_acked(&self, target: &str) -> Result<u64, StoreError> {
        self.watermark(SHIP_ACKED, target)
    }

    pub fn set_ship_acked(&self, target: &str, seq: u64) -> Result<(), StoreError> {
        self.set_watermark(SHIP_ACKED, target, seq)
    }

    /// What this region applied of `source`'s feed.
    pub fn recv_acked(&self, source: &str) -> Result<u64, StoreError> {
        self.watermark(RECV_ACKED, source)
    }

    pub fn set_recv_acked(&self, source: &str, seq: u64) -> Result<(), StoreError> {
        self.set_watermark(RECV_ACKED, source, seq)
    }

    /// The run-time policies (JSON), when an admin set them.
    pub fn policies(&self) -> Result<Option<String>, StoreError> {
        let txn = self.db.begin_read()?;
        Ok(txn
            .open_table(POLICIES)?
            .get(POLICIES_KEY)?
            .map(|v| v.value().to_owned()))
    }

    pub fn set_policies(&self, json: &str) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        txn.open_table(POLICIES)?.insert(POLICIES_KEY, json)?;
        txn.commit()?;
        Ok(())
    }

    pub fn proposal(&self, id: &str) -> Result<Option<Proposal>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(PROPOSALS)?;
        match t.get(id)? {
            Some(v) => Ok(Some(
                serde_json::from_str(v.value()).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            )),
            None => Ok(None),
        }
    }

    pub fn put_proposal(&self, p: &Proposal) -> Result<(), StoreError> {
        let json = serde_json::to_string(p).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let txn = self.db.begin_write()?;
        txn.open_table(PROPOSALS)?
            .insert(p.id.as_str(), json.as_str())?;
        txn.commit()?;
        Ok(())
    }

    /// Every proposal, oldest first.
    pub fn proposals(&self) -> Result<Vec<Proposal>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(PROPOSALS)?;
        let mut out = Vec::new();
        for item in t.iter()? {
            let (_, v) = item?;
            out.push(
                serde_json::from_str::<Proposal>(v.value())
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            );
        }
        out.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(pcs: &str, origin: Option<&str>) -> TreeUpdate {
        TreeUpdate {
            leaf: LeafUpdate {
                tenant_id: "acme".to_owned(),
                pcs_id: pcs.to_owned(),
                digest: [7; 32],
                decided_at_ms: 1_000,
            },
            origin: origin.map(str::to_owned),
        }
    }

    #[test]
    fn only_other_regions_origins_are_stored_and_a_local_decision_clears_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .apply_tree(&[update("local", None), update("copy", Some("eu"))], 2)
            .unwrap();
        assert_eq!(store.origin("acme", "local").unwrap(), None);
        assert_eq!(store.origin("acme", "copy").unwrap().as_deref(), Some("eu"));

        // The copied key decided here again: this region's version now, no origin left.
        store.apply_tree(&[update("copy", None)], 3).unwrap();
        assert_eq!(store.origin("acme", "copy").unwrap(), None);
        assert_eq!(store.tree_cursor().unwrap(), 3);
    }

    #[test]
    fn an_older_stores_tree_moves_from_redb_to_fjall() {
        let dir = tempfile::tempdir().unwrap();
        // The expected tree: the same leaves committed to a store of the current layout.
        let leaves: Vec<LeafUpdate> = (0..25_000)
            .map(|i| LeafUpdate {
                tenant_id: format!("tenant-{}", i % 3),
                pcs_id: format!("pcs-{i}"),
                digest: [(i % 251) as u8; 32],
                decided_at_ms: i64::from(i),
            })
            .collect();
        let expected = {
            let fresh = Store::open(&dir.path().join("fresh")).unwrap();
            fresh.merkle.apply(&leaves).unwrap();
            fresh.merkle.roots()
        };

        // An older store: the tree, origins and cursor in crr.redb's tables.
        let old_dir = dir.path().join("old");
        std::fs::create_dir_all(&old_dir).unwrap();
        {
            let db = redb::Database::create(old_dir.join("crr.redb")).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut t = txn.open_table(old::LEAVES).unwrap();
                for l in &leaves {
                    let bucket = crate::merkle::bucket_of(&l.pcs_id);
                    t.insert(
                        (l.tenant_id.as_str(), bucket, l.pcs_id.as_str()),
                        (l.digest, l.decided_at_ms),
                    )
                    .unwrap();
                }
                txn.open_table(old::BUCKETS).unwrap();
                txn.open_table(old::BY_TIME).unwrap();
                txn.open_table(old::ORIGINS)
                    .unwrap()
                    .insert(("tenant-1", "pcs-1"), "eu")
                    .unwrap();
                txn.open_table(old::META)
                    .unwrap()
                    .insert(TREE_CURSOR, 25_000)
                    .unwrap();
                txn.open_table(RECV_ACKED).unwrap().insert("eu", 7).unwrap();
            }
            txn.commit().unwrap();
        }

        let store = Store::open(&old_dir).unwrap();
        assert_eq!(store.merkle.roots(), expected);
        assert_eq!(store.tree_cursor().unwrap(), 25_000);
        assert_eq!(
            store.origin("tenant-1", "pcs-1").unwrap().as_deref(),
            Some("eu")
        );
        assert_eq!(store.recv_acked("eu").unwrap(), 7);
        let leaf = store.merkle.leaf("tenant-2", "pcs-2").unwrap().unwrap();
        assert_eq!((leaf.digest, leaf.decided_at_ms), ([2; 32], 2));
        // Retention sees the moved leaves through the rebuilt time index.
        assert_eq!(store.prune(10).unwrap(), 10);
        let after_prune = store.merkle.roots();
        store.flush().unwrap();
        drop(store);

        // The old tables are gone: a second open moves nothing back.
        let store = Store::open(&old_dir).unwrap();
        assert_eq!(store.merkle.roots(), after_prune);
        let txn = store.db.begin_read().unwrap();
        assert!(matches!(
            txn.open_table(old::LEAVES),
            Err(redb::TableError::TableDoesNotExist(_))
        ));
    }
}
