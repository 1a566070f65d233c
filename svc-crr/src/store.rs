//! svc-crr's durable state in one redb file (`<data_dir>/crr.redb`): the Merkle tree of the
//! region's decisions (tables owned by [`crate::merkle`]) with the feed cursor that fed it and
//! each key's origin region, committed in one transaction per batch; the shipping watermarks
//! per target (what each peer acknowledged) and the receiving watermarks per source (what
//! this region applied from each peer); the run-time policies; the proposal queue.
//!
//! **Durability.** Tree batches and watermarks commit without an fsync of their own
//! ([`LazyDb`]); [`Store::flush`] makes them durable, every `FLUSH_INTERVAL` while
//! the service runs and at shutdown. Losing the last interval on a crash is safe: the tree
//! rolls back together with its cursor and is re-read from the outcome log, and a shipping
//! watermark that rolls back re-ships records the receiver already holds (first write wins:
//! they are counted as duplicates, not stored twice). Policies and proposals, which an
//! operator acted on, commit durably at once.

use std::path::Path;
use std::sync::Arc;

use flk_runtime::embedded_db::LazyDb;
use redb::{ReadableTable as _, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use crate::merkle::{LeafUpdate, Merkle, MerkleError};

const META: TableDefinition<&str, u64> = TableDefinition::new("crr_meta");
const SHIP_ACKED: TableDefinition<&str, u64> = TableDefinition::new("crr_ship_acked");
const RECV_ACKED: TableDefinition<&str, u64> = TableDefinition::new("crr_recv_acked");
/// `(tenant_id, pcs_id)` -> the region that decided it.
const ORIGINS: TableDefinition<(&str, &str), &str> = TableDefinition::new("crr_origins");
const POLICIES: TableDefinition<&str, &str> = TableDefinition::new("crr_policies");
const PROPOSALS: TableDefinition<&str, &str> = TableDefinition::new("crr_proposals");

const TREE_CURSOR: &str = "tree_cursor";
const POLICIES_KEY: &str = "current";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Boxed: redb's error is large, and every store call returns this.
    #[error("crr store: {0}")]
    Redb(Box<redb::Error>),
    #[error(transparent)]
    Merkle(#[from] MerkleError),
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

/// The store.
pub struct Store {
    pub db: Arc<LazyDb>,
    pub merkle: Arc<Merkle>,
}

impl Store {
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Corrupt(format!("cannot create {}: {e}", dir.display())))?;
        let db = flk_runtime::embedded_db::open(&dir.join("crr.redb"))?;
        {
            let txn = db.begin_write()?;
            txn.open_table(META)?;
            txn.open_table(SHIP_ACKED)?;
            txn.open_table(RECV_ACKED)?;
            txn.open_table(ORIGINS)?;
            txn.open_table(POLICIES)?;
            txn.open_table(PROPOSALS)?;
            txn.commit()?;
        }
        let merkle = Merkle::open(&db)?;
        Ok(Store {
            db: Arc::new(LazyDb::new(db)),
            merkle: Arc::new(merkle),
        })
    }

    /// Commits without waiting for the disk (see the module's note on durability).
    fn commit_lazy(&self, txn: WriteTransaction) -> Result<(), StoreError> {
        self.db.commit_lazy(txn).map_err(StoreError::Redb)
    }

    /// Makes every earlier commit durable (one fsync; nothing to do when none is pending).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map_err(StoreError::Redb)
    }

    /// The last feed record the tree holds.
    pub fn tree_cursor(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
        Ok(txn
            .open_table(META)?
            .get(TREE_CURSOR)?
            .map(|v| v.value())
            .unwrap_or(0))
    }

    /// Adds a batch of the feed to the tree and moves the cursor, in one transaction.
    pub fn apply_tree(&self, updates: &[TreeUpdate], cursor: u64) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        let leaves: Vec<LeafUpdate> = updates.iter().map(|u| u.leaf.clone()).collect();
        let staged = self.merkle.stage(&txn, &leaves)?;
        {
            let mut origins = txn.open_table(ORIGINS)?;
            for u in updates {
                let key = (u.leaf.tenant_id.as_str(), u.leaf.pcs_id.as_str());
                match &u.origin {
                    Some(origin) => {
                        origins.insert(key, origin.as_str())?;
                    }
                    // Usually absent, and then nothing is rewritten; present when the key
                    // was first held as another region's copy.
                    None => {
                        origins.remove(key)?;
                    }
                }
            }
            let mut meta = txn.open_table(META)?;
            let old = meta.get(TREE_CURSOR)?.map(|v| v.value()).unwrap_or(0);
            meta.insert(TREE_CURSOR, cursor.max(old))?;
        }
        self.commit_lazy(txn)?;
        self.merkle.publish(staged);
        Ok(())
    }

    /// The region that decided a key this region holds, when it is not this region (`None`
    /// for this region's own keys and for keys it does not hold).
    pub fn origin(&self, tenant_id: &str, pcs_id: &str) -> Result<Option<String>, StoreError> {
        let txn = self.db.begin_read()?;
        Ok(txn
            .open_table(ORIGINS)?
            .get((tenant_id, pcs_id))?
            .map(|v| v.value().to_owned()))
    }

    /// Removes the tree's leaves decided before `cutoff_ms` (retention).
    pub fn prune(&self, cutoff_ms: i64) -> Result<usize, StoreError> {
        Ok(self.merkle.remove_older_than(&self.db, cutoff_ms)?)
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
}
