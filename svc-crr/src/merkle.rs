//! Per-tenant Merkle trees of decided keys `(tenant_id, pcs_id, outcome digest)`, kept in the
//! caller's redb database and updated in the caller's write transactions, and [`diff`], the
//! anti-entropy comparison that lists exactly the keys two regions disagree on.
//!
//! # Shape
//!
//! Each tenant has a 16-ary tree of depth [`LEVELS`] = 4: level 0 is the root, level 4 holds
//! [`BUCKETS`] = 65,536 buckets. A key lands in the bucket named by the first 16 bits of
//! `SHA-256(pcs_id)`, so keys spread evenly whatever their naming scheme (at 10 million keys in
//! one tenant a bucket holds about 150 leaves: one bucket is one cheap range scan).
//!
//! - leaf hash: `SHA-256(len(tenant_id) ‖ tenant_id ‖ len(pcs_id) ‖ pcs_id ‖ digest)`, lengths
//!   as 8-byte big-endian integers so no two different keys hash the same input;
//! - bucket hash: XOR of its leaves' hashes (all zeros when empty);
//! - inner node: SHA-256 of its 16 children's hashes, except that a node whose children are all
//!   zero is zero, so an empty subtree is cheap to recognise (and a tenant's root is zero exactly
//!   when the tenant holds no leaf).
//!
//! # Storage
//!
//! Three tables, all prefixed `merkle_`, live next to the caller's own tables so the tree and
//! the caller's replication cursor commit in one transaction:
//! `merkle_leaves (tenant, bucket, pcs_id) -> (digest, decided_at_ms)` (a bucket is one range),
//! `merkle_buckets (tenant, bucket) -> hash` (non-zero buckets only, loaded at open) and
//! `merkle_by_time (decided_at_ms, tenant, pcs_id)` (retention walks the oldest first).
//!
//! Memory holds every non-empty tenant's whole tree (2 MiB of buckets plus 140 KiB of inner
//! nodes per tenant). [`Merkle::publish`] updates the changed buckets' ancestors at once (at
//! most one SHA-256 of 512 bytes per changed node per level), so the reads the comparison
//! protocol makes ([`Merkle::roots`], [`Merkle::nodes`]) are lookups.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use flk_runtime::embedded_db::LazyDb;
use redb::{Database, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// A SHA-256 output: leaf, bucket and node hashes, and outcome digests.
pub type Digest = [u8; 32];

/// Children per inner node.
pub const FANOUT: u32 = 16;
/// Depth of a tenant's tree: level 0 is the root, level `LEVELS` the buckets.
pub const LEVELS: u8 = 4;
/// Buckets per tenant (`FANOUT ^ LEVELS`): the first 16 bits of `SHA-256(pcs_id)`.
pub const BUCKETS: u32 = FANOUT.pow(LEVELS as u32);
/// At most this many node indices in one [`TreeSource::nodes`] call that [`diff`] makes
/// (128 KiB of hashes), so a request to a peer stays bounded.
pub const MAX_NODES_PER_CALL: usize = 4096;
/// At most this many buckets in one [`TreeSource::bucket_leaves`] call that [`diff`] makes:
/// at 10 million keys per tenant that is about 40,000 leaves (a few MB on the wire).
pub const MAX_BUCKETS_PER_CALL: usize = 256;
/// Leaves removed per transaction by [`Merkle::remove_older_than`]: large enough to amortise
/// the commit, small enough not to hold the single redb writer for long.
const RETENTION_CHUNK: usize = 20_000;

const ZERO: Digest = [0; 32];

const LEAVES: TableDefinition<(&str, u32, &str), (Digest, i64)> =
    TableDefinition::new("merkle_leaves");
const BUCKET_HASHES: TableDefinition<(&str, u32), Digest> = TableDefinition::new("merkle_buckets");
const BY_TIME: TableDefinition<(i64, &str, &str), ()> = TableDefinition::new("merkle_by_time");

/// A failure of the Merkle store or of a tree source.
#[derive(Debug, thiserror::Error)]
pub enum MerkleError {
    /// The database failed (boxed: redb's error is large and this one travels in every
    /// `Result` of the comparison).
    #[error("merkle store: {0}")]
    Store(#[source] Box<redb::Error>),
    #[error("merkle store is inconsistent: {0}")]
    Corrupt(String),
    #[error("invalid key: {0}")]
    InvalidKey(&'static str),
    #[error("invalid tree request: {0}")]
    InvalidRequest(String),
    /// A remote tree source (a peer region) failed or answered something malformed.
    #[error("remote tree: {0}")]
    Remote(String),
    /// A blocking read task did not complete (panicked or cancelled at shutdown).
    #[error("tree read task: {0}")]
    Task(String),
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for MerkleError {
            fn from(e: $t) -> Self {
                MerkleError::Store(Box::new(e.into()))
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

/// One key's leaf as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf {
    pub pcs_id: String,
    /// The outcome digest.
    pub digest: Digest,
    /// The original decision time (retention and the reconciler's choose-first use it).
    pub decided_at_ms: i64,
}

/// Insert or replace one key's leaf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafUpdate {
    pub tenant_id: String,
    pub pcs_id: String,
    pub digest: Digest,
    pub decided_at_ms: i64,
}

/// A key, as listed in a [`Divergence`].
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub tenant_id: String,
    pub pcs_id: String,
}

/// A key both sides hold with different outcome digests (hex).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub tenant_id: String,
    pub pcs_id: String,
    pub digest_here: String,
    pub digest_there: String,
    pub decided_at_here_ms: i64,
    pub decided_at_there_ms: i64,
}

/// What [`diff`] found, each list sorted by `(tenant_id, pcs_id)`. Serialises to the body of
/// `GET /v1/crr/divergence` without `peer`, which the caller adds.
#[derive(Serialize, Deserialize, Default, Debug, Clone, PartialEq, Eq)]
pub struct Divergence {
    /// Keys the other side holds and this one does not.
    pub missing_here: Vec<Key>,
    /// Keys this side holds and the other does not.
    pub missing_there: Vec<Key>,
    pub conflicting: Vec<Conflict>,
}

impl Divergence {
    /// Whether the two sides agree.
    pub fn is_empty(&self) -> bool {
        self.missing_here.is_empty() && self.missing_there.is_empty() && self.conflicting.is_empty()
    }
}

/// The bucket (`0..BUCKETS`) a key lands in.
pub fn bucket_of(pcs_id: &str) -> u32 {
    let h = Sha256::digest(pcs_id.as_bytes());
    u32::from(u16::from_be_bytes([h[0], h[1]]))
}

/// A leaf's hash; see the module documentation.
pub fn leaf_hash(tenant_id: &str, pcs_id: &str, digest: &Digest) -> Digest {
    let mut h = Sha256::new();
    h.update((tenant_id.len() as u64).to_be_bytes());
    h.update(tenant_id.as_bytes());
    h.update((pcs_id.len() as u64).to_be_bytes());
    h.update(pcs_id.as_bytes());
    h.update(digest);
    h.finalize().into()
}

/// An inner node's hash from its 16 children.
fn node_hash(children: &[Digest]) -> Digest {
    if children.iter().all(|c| *c == ZERO) {
        return ZERO;
    }
    let mut h = Sha256::new();
    for c in children {
        h.update(c);
    }
    h.finalize().into()
}

fn xor_into(acc: &mut Digest, x: &Digest) {
    for (a, b) in acc.iter_mut().zip(x) {
        *a ^= b;
    }
}

/// Nodes at `level` (1 at the root, `BUCKETS` at the leaves' level).
fn width(level: u8) -> u32 {
    FANOUT.pow(u32::from(level))
}

fn validate(tenant_id: &str, pcs_id: &str) -> Result<(), MerkleError> {
    if tenant_id.is_empty() {
        return Err(MerkleError::InvalidKey("empty tenant_id"));
    }
    if pcs_id.is_empty() {
        return Err(MerkleError::InvalidKey("empty pcs_id"));
    }
    Ok(())
}

/// One tenant's tree in memory: `levels[l]` holds level `l`'s `16^l` hashes.
struct TenantTree {
    levels: Vec<Box<[Digest]>>,
}

impl TenantTree {
    fn empty() -> TenantTree {
        TenantTree {
            levels: (0..=LEVELS)
                .map(|l| vec![ZERO; width(l) as usize].into_boxed_slice())
                .collect(),
        }
    }

    fn root(&self) -> Digest {
        self.levels[0][0]
    }

    fn recompute(&mut self, level: usize, index: usize) {
        let (upper, lower) = self.levels.split_at_mut(level + 1);
        let f = FANOUT as usize;
        upper[level][index] = node_hash(&lower[0][index * f..(index + 1) * f]);
    }

    /// Recomputes every inner node from the buckets (at open).
    fn rebuild(&mut self) {
        for level in (0..LEVELS as usize).rev() {
            for index in 0..self.levels[level].len() {
                self.recompute(level, index);
            }
        }
    }

    /// XORs `deltas` (sorted by bucket) into the buckets and recomputes their ancestors, each
    /// changed node once.
    fn apply(&mut self, deltas: &[(u32, Digest)]) {
        let mut changed: Vec<usize> = Vec::with_capacity(deltas.len());
        let buckets = &mut self.levels[LEVELS as usize];
        for (b, d) in deltas {
            xor_into(&mut buckets[*b as usize], d);
            changed.push(*b as usize);
        }
        for level in (0..LEVELS as usize).rev() {
            // Sorted input stays sorted under division, so dedup removes every repeat.
            for c in changed.iter_mut() {
                *c /= FANOUT as usize;
            }
            changed.dedup();
            for &index in &changed {
                self.recompute(level, index);
            }
        }
    }
}

/// Bucket hash changes made in a write transaction, to apply to memory with
/// [`Merkle::publish`] once that transaction has committed. Dropping it (the transaction
/// aborted) leaves memory unchanged.
///
/// It carries XOR deltas rather than new hashes: XOR commutes, so publishing two committed
/// transactions in either order gives the same memory, and no ordering between the caller's
/// commits and publishes is needed.
#[derive(Debug, Default)]
#[must_use = "publish it after the transaction commits"]
pub struct Staged {
    deltas: Vec<(String, Vec<(u32, Digest)>)>,
}

impl Staged {
    /// Whether the transaction changed no bucket hash.
    pub fn is_empty(&self) -> bool {
        self.deltas.is_empty()
    }

    /// How many buckets the transaction changed.
    pub fn changed_buckets(&self) -> usize {
        self.deltas.iter().map(|(_, d)| d.len()).sum()
    }
}

/// The store: the tables above plus every tenant's tree in memory.
pub struct Merkle {
    trees: RwLock<BTreeMap<String, TenantTree>>,
}

impl Merkle {
    /// Creates the tables if needed and loads every tenant's buckets.
    pub fn open(db: &Database) -> Result<Merkle, MerkleError> {
        let txn = db.begin_write()?;
        {
            txn.open_table(LEAVES)?;
            txn.open_table(BUCKET_HASHES)?;
            txn.open_table(BY_TIME)?;
        }
        txn.commit()?;

        let read = db.begin_read()?;
        let table = read.open_table(BUCKET_HASHES)?;
        let mut trees = BTreeMap::new();
        let mut current: Option<(String, TenantTree)> = None;
        for row in table.iter()? {
            let (k, v) = row?;
            let (tenant, bucket) = k.value();
            if bucket >= BUCKETS {
                return Err(MerkleError::Corrupt(format!(
                    "bucket {bucket} of tenant {tenant:?} is out of range"
                )));
            }
            // Rows come sorted by tenant: build one tree at a time.
            if current.as_ref().is_none_or(|(t, _)| t != tenant) {
                if let Some((t, tree)) = current.take() {
                    trees.insert(t, tree);
                }
                current = Some((tenant.to_owned(), TenantTree::empty()));
            }
            if let Some((_, tree)) = current.as_mut() {
                tree.levels[LEVELS as usize][bucket as usize] = v.value();
            }
        }
        if let Some((t, tree)) = current {
            trees.insert(t, tree);
        }
        for tree in trees.values_mut() {
            tree.rebuild();
        }
        trees.retain(|_, tree| tree.root() != ZERO);
        Ok(Merkle {
            trees: RwLock::new(trees),
        })
    }

    fn read(&self) -> RwLockReadGuard<'_, BTreeMap<String, TenantTree>> {
        // Updates under the lock cannot panic halfway except on a bug; the data stays usable.
        self.trees.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, BTreeMap<String, TenantTree>> {
        self.trees.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Inserts or replaces leaves in the caller's transaction and persists the changed bucket
    /// hashes there too. A later update of the same key in `updates` wins. Setting a leaf to
    /// the digest it has changes no hash (a different `decided_at_ms` is still recorded).
    /// Publish the result after committing `txn`.
    pub fn stage(
        &self,
        txn: &WriteTransaction,
        updates: &[LeafUpdate],
    ) -> Result<Staged, MerkleError> {
        for u in updates {
            validate(&u.tenant_id, &u.pcs_id)?;
        }
        // Table order, so the B-tree is written front to back; the index breaks ties so the
        // last update of a key is the one kept.
        let mut order: Vec<(u32, usize)> = updates
            .iter()
            .enumerate()
            .map(|(i, u)| (bucket_of(&u.pcs_id), i))
            .collect();
        order.sort_unstable_by(|a, b| {
            let (ua, ub) = (&updates[a.1], &updates[b.1]);
            (ua.tenant_id.as_str(), a.0, ua.pcs_id.as_str(), a.1).cmp(&(
                ub.tenant_id.as_str(),
                b.0,
                ub.pcs_id.as_str(),
                b.1,
            ))
        });

        let mut deltas: BTreeMap<(&str, u32), Digest> = BTreeMap::new();
        {
            let mut leaves = txn.open_table(LEAVES)?;
            let mut by_time = txn.open_table(BY_TIME)?;
            for (pos, &(bucket, i)) in order.iter().enumerate() {
                let u = &updates[i];
                let superseded = order.get(pos + 1).is_some_and(|&(_, j)| {
                    updates[j].tenant_id == u.tenant_id && updates[j].pcs_id == u.pcs_id
                });
                if superseded {
                    continue;
                }
                let (tenant, pcs) = (u.tenant_id.as_str(), u.pcs_id.as_str());
                let old = leaves.get((tenant, bucket, pcs))?.map(|g| g.value());
                let mut delta = ZERO;
                match old {
                    Some((d, t)) if d == u.digest && t == u.decided_at_ms => continue,
                    Some((d, t)) => {
                        if t != u.decided_at_ms {
                            by_time.remove((t, tenant, pcs))?;
                            by_time.insert((u.decided_at_ms, tenant, pcs), ())?;
                        }
                        if d != u.digest {
                            delta = leaf_hash(tenant, pcs, &d);
                            xor_into(&mut delta, &leaf_hash(tenant, pcs, &u.digest));
                        }
                    }
                    None => {
                        by_time.insert((u.decided_at_ms, tenant, pcs), ())?;
                        delta = leaf_hash(tenant, pcs, &u.digest);
                    }
                }
                leaves.insert((tenant, bucket, pcs), (u.digest, u.decided_at_ms))?;
                xor_into(deltas.entry((tenant, bucket)).or_insert(ZERO), &delta);
            }
        }
        persist_deltas(txn, deltas)
    }

    /// Applies a committed transaction's bucket changes to memory.
    pub fn publish(&self, staged: Staged) {
        if staged.deltas.is_empty() {
            return;
        }
        let mut trees = self.write();
        for (tenant, deltas) in staged.deltas {
            let tree = trees
                .entry(tenant.clone())
                .or_insert_with(TenantTree::empty);
            tree.apply(&deltas);
            if tree.root() == ZERO {
                // No leaf left: free the tenant's 2 MiB.
                trees.remove(&tenant);
            }
        }
    }

    /// Stages `updates` in a transaction of its own, commits and publishes.
    pub fn apply(&self, db: &Database, updates: &[LeafUpdate]) -> Result<(), MerkleError> {
        let txn = db.begin_write()?;
        let staged = self.stage(&txn, updates)?;
        txn.commit()?;
        self.publish(staged);
        Ok(())
    }

    /// Retention: removes every leaf decided before `cutoff_ms`, oldest first, in transactions
    /// of its own of at most 20,000 leaves each (memory follows each commit). Returns how many
    /// it removed.
    pub fn remove_older_than(&self, db: &Database, cutoff_ms: i64) -> Result<usize, MerkleError> {
        let mut total = 0;
        loop {
            let txn = db.begin_write()?;
            let victims: Vec<(i64, String, String)> = {
                let by_time = txn.open_table(BY_TIME)?;
                by_time
                    .range::<(i64, &str, &str)>(..(cutoff_ms, "", ""))?
                    .take(RETENTION_CHUNK)
                    .map(|row| {
                        row.map(|(k, _)| {
                            let (t, tenant, pcs) = k.value();
                            (t, tenant.to_owned(), pcs.to_owned())
                        })
                    })
                    .collect::<Result<_, _>>()?
            };
            if victims.is_empty() {
                return Ok(total);
            }
            let mut deltas: BTreeMap<(&str, u32), Digest> = BTreeMap::new();
            {
                let mut leaves = txn.open_table(LEAVES)?;
                let mut by_time = txn.open_table(BY_TIME)?;
                for (t, tenant, pcs) in &victims {
                    by_time.remove((*t, tenant.as_str(), pcs.as_str()))?;
                    let bucket = bucket_of(pcs);
                    let old = leaves.remove((tenant.as_str(), bucket, pcs.as_str()))?;
                    let Some((digest, _)) = old.map(|g| g.value()) else {
                        return Err(MerkleError::Corrupt(format!(
                            "time index names {tenant:?}/{pcs:?}, which has no leaf"
                        )));
                    };
                    xor_into(
                        deltas.entry((tenant.as_str(), bucket)).or_insert(ZERO),
                        &leaf_hash(tenant, pcs, &digest),
                    );
                }
            }
            let staged = persist_deltas(&txn, deltas)?;
            txn.commit()?;
            self.publish(staged);
            total += victims.len();
            if victims.len() < RETENTION_CHUNK {
                return Ok(total);
            }
        }
    }

    /// One key's leaf, if stored.
    pub fn leaf(
        &self,
        db: &Database,
        tenant_id: &str,
        pcs_id: &str,
    ) -> Result<Option<Leaf>, MerkleError> {
        let read = db.begin_read()?;
        let leaves = read.open_table(LEAVES)?;
        let found = leaves.get((tenant_id, bucket_of(pcs_id), pcs_id))?;
        Ok(found.map(|g| {
            let (digest, decided_at_ms) = g.value();
            Leaf {
                pcs_id: pcs_id.to_owned(),
                digest,
                decided_at_ms,
            }
        }))
    }

    /// Every non-empty tenant's root, sorted by tenant.
    pub fn roots(&self) -> Vec<(String, Digest)> {
        self.read()
            .iter()
            .map(|(t, tree)| (t.clone(), tree.root()))
            .collect()
    }

    /// The hashes of nodes `indices` at `level` (0 ..= `LEVELS`; `LEVELS` is the buckets), in
    /// the order asked; all zeros for a tenant with no leaf.
    pub fn nodes(
        &self,
        tenant_id: &str,
        level: u8,
        indices: &[u32],
    ) -> Result<Vec<Digest>, MerkleError> {
        if level > LEVELS {
            return Err(MerkleError::InvalidRequest(format!(
                "level {level} is beyond {LEVELS}"
            )));
        }
        if let Some(bad) = indices.iter().find(|&&i| i >= width(level)) {
            return Err(MerkleError::InvalidRequest(format!(
                "node {bad} does not exist at level {level}"
            )));
        }
        let trees = self.read();
        Ok(match trees.get(tenant_id) {
            Some(tree) => indices
                .iter()
                .map(|&i| tree.levels[level as usize][i as usize])
                .collect(),
            None => vec![ZERO; indices.len()],
        })
    }

    /// The leaves of `buckets` of a tenant, as `(bucket, leaf)` in the order the buckets were
    /// asked, each bucket's leaves sorted by `pcs_id`.
    pub fn bucket_leaves(
        &self,
        db: &Database,
        tenant_id: &str,
        buckets: &[u32],
    ) -> Result<Vec<(u32, Leaf)>, MerkleError> {
        if let Some(bad) = buckets.iter().find(|&&b| b >= BUCKETS) {
            return Err(MerkleError::InvalidRequest(format!(
                "bucket {bad} does not exist"
            )));
        }
        let read = db.begin_read()?;
        let leaves = read.open_table(LEAVES)?;
        let mut out = Vec::new();
        for &b in buckets {
            // "" sorts first, so this is every pcs_id of bucket b.
            for row in leaves.range((tenant_id, b, "")..(tenant_id, b + 1, ""))? {
                let (k, v) = row?;
                let (digest, decided_at_ms) = v.value();
                out.push((
                    b,
                    Leaf {
                        pcs_id: k.value().2.to_owned(),
                        digest,
                        decided_at_ms,
                    },
                ));
            }
        }
        Ok(out)
    }
}

/// Writes the non-zero `deltas` into the bucket table and returns them grouped by tenant.
fn persist_deltas(
    txn: &WriteTransaction,
    deltas: BTreeMap<(&str, u32), Digest>,
) -> Result<Staged, MerkleError> {
    let mut staged = Staged::default();
    let mut table = txn.open_table(BUCKET_HASHES)?;
    for ((tenant, bucket), delta) in deltas {
        if delta == ZERO {
            continue;
        }
        let mut hash = table.get((tenant, bucket))?.map_or(ZERO, |g| g.value());
        xor_into(&mut hash, &delta);
        // Only non-empty buckets are stored: an empty tenant costs nothing on disk.
        if hash == ZERO {
            table.remove((tenant, bucket))?;
        } else {
            table.insert((tenant, bucket), hash)?;
        }
        match staged.deltas.last_mut() {
            Some((t, d)) if t == tenant => d.push((bucket, delta)),
            _ => staged
                .deltas
                .push((tenant.to_owned(), vec![(bucket, delta)])),
        }
    }
    Ok(staged)
}

/// One side of a comparison: this region's tree ([`LocalTree`]) or a peer's, over gRPC.
#[async_trait::async_trait]
pub trait TreeSource: Send + Sync {
    /// Every non-empty tenant's root, sorted by tenant.
    async fn roots(&self) -> Result<Vec<(String, Digest)>, MerkleError>;
    /// Node hashes at `level` in the order of `indices` (zeros for an unknown tenant).
    async fn nodes(
        &self,
        tenant_id: &str,
        level: u8,
        indices: &[u32],
    ) -> Result<Vec<Digest>, MerkleError>;
    /// The leaves of `buckets`, as `(bucket, leaf)`.
    async fn bucket_leaves(
        &self,
        tenant_id: &str,
        buckets: &[u32],
    ) -> Result<Vec<(u32, Leaf)>, MerkleError>;
}

/// This region's tree as a [`TreeSource`].
#[derive(Clone)]
pub struct LocalTree {
    merkle: Arc<Merkle>,
    db: Arc<LazyDb>,
}

impl LocalTree {
    pub fn new(merkle: Arc<Merkle>, db: Arc<LazyDb>) -> LocalTree {
        LocalTree { merkle, db }
    }
}

#[async_trait::async_trait]
impl TreeSource for LocalTree {
    // Roots and nodes are memory lookups: answered on the caller's task.
    async fn roots(&self) -> Result<Vec<(String, Digest)>, MerkleError> {
        Ok(self.merkle.roots())
    }

    async fn nodes(
        &self,
        tenant_id: &str,
        level: u8,
        indices: &[u32],
    ) -> Result<Vec<Digest>, MerkleError> {
        self.merkle.nodes(tenant_id, level, indices)
    }

    // Leaves come from disk (up to MAX_BUCKETS_PER_CALL range scans): a blocking thread keeps
    // them off the async workers.
    async fn bucket_leaves(
        &self,
        tenant_id: &str,
        buckets: &[u32],
    ) -> Result<Vec<(u32, Leaf)>, MerkleError> {
        let (merkle, db) = (self.merkle.clone(), self.db.clone());
        let (tenant_id, buckets) = (tenant_id.to_owned(), buckets.to_vec());
        tokio::task::spawn_blocking(move || merkle.bucket_leaves(&db, &tenant_id, &buckets))
            .await
            .map_err(|e| MerkleError::Task(e.to_string()))?
    }
}

/// Compares two trees and lists exactly the keys they disagree on.
///
/// Tenants whose roots differ are descended level by level, only into differing nodes (one
/// `nodes` call per side per level, or several of at most [`MAX_NODES_PER_CALL`] indices); the
/// differing buckets' leaves are then fetched from both sides ([`MAX_BUCKETS_PER_CALL`] buckets
/// per call) and compared. A key counts only if one side holds it decided at or after
/// `horizon_ms`: copies older than the retention horizon may have been removed on one side
/// and not yet on the other, which is not divergence.
pub async fn diff(
    here: &dyn TreeSource,
    there: &dyn TreeSource,
    horizon_ms: i64,
) -> Result<Divergence, MerkleError> {
    let (roots_here, roots_there) = futures::try_join!(here.roots(), there.roots())?;
    let roots_here: HashMap<String, Digest> = roots_here.into_iter().collect();
    let roots_there: HashMap<String, Digest> = roots_there.into_iter().collect();
    let tenants: BTreeSet<&String> = roots_here.keys().chain(roots_there.keys()).collect();

    let mut out = Divergence::default();
    for tenant in tenants {
        let a = roots_here.get(tenant).unwrap_or(&ZERO);
        let b = roots_there.get(tenant).unwrap_or(&ZERO);
        if a == b {
            continue;
        }
        let buckets = differing_buckets(here, there, tenant).await?;
        for chunk in buckets.chunks(MAX_BUCKETS_PER_CALL) {
            let (lh, lt) = futures::try_join!(
                here.bucket_leaves(tenant, chunk),
                there.bucket_leaves(tenant, chunk)
            )?;
            compare_leaves(tenant, &lh, &lt, horizon_ms, &mut out);
        }
    }
    out.missing_here.sort();
    out.missing_there.sort();
    out.conflicting
        .sort_by(|x, y| (&x.tenant_id, &x.pcs_id).cmp(&(&y.tenant_id, &y.pcs_id)));
    Ok(out)
}

/// Descends from the root of `tenant` into differing nodes only; returns the differing
/// buckets, sorted.
async fn differing_buckets(
    here: &dyn TreeSource,
    there: &dyn TreeSource,
    tenant: &str,
) -> Result<Vec<u32>, MerkleError> {
    let mut frontier = vec![0u32];
    for level in 1..=LEVELS {
        let children: Vec<u32> = frontier
            .iter()
            .flat_map(|&i| i * FANOUT..(i + 1) * FANOUT)
            .collect();
        let mut next = Vec::new();
        for chunk in children.chunks(MAX_NODES_PER_CALL) {
            let (nh, nt) = futures::try_join!(
                here.nodes(tenant, level, chunk),
                there.nodes(tenant, level, chunk)
            )?;
            if nh.len() != chunk.len() || nt.len() != chunk.len() {
                return Err(MerkleError::Remote(format!(
                    "asked {} nodes of level {level}, got {} here and {} there",
                    chunk.len(),
                    nh.len(),
                    nt.len()
                )));
            }
            next.extend(
                chunk
                    .iter()
                    .zip(nh.iter().zip(&nt))
                    .filter(|(_, (x, y))| x != y)
                    .map(|(&i, _)| i),
            );
        }
        frontier = next;
    }
    Ok(frontier)
}

/// Adds to `out` the differences between the two sides' leaves of the same buckets.
fn compare_leaves(
    tenant: &str,
    here: &[(u32, Leaf)],
    there: &[(u32, Leaf)],
    horizon_ms: i64,
    out: &mut Divergence,
) {
    // Borrowed keys: a large divergence compares millions of leaves, so no copy per leaf.
    fn index(leaves: &[(u32, Leaf)]) -> HashMap<&str, &Leaf> {
        leaves.iter().map(|(_, l)| (l.pcs_id.as_str(), l)).collect()
    }
    let (here, there) = (index(here), index(there));
    let key = |pcs_id: &str| Key {
        tenant_id: tenant.to_owned(),
        pcs_id: pcs_id.to_owned(),
    };
    let live = |l: Option<&Leaf>| l.is_some_and(|l| l.decided_at_ms >= horizon_ms);
    for (&pcs_id, &h) in &here {
        let t = there.get(pcs_id).copied();
        if !live(Some(h)) && !live(t) {
            continue;
        }
        match t {
            None => out.missing_there.push(key(pcs_id)),
            Some(t) if t.digest != h.digest => out.conflicting.push(Conflict {
                tenant_id: tenant.to_owned(),
                pcs_id: pcs_id.to_owned(),
                digest_here: hex::encode(h.digest),
                digest_there: hex::encode(t.digest),
                decided_at_here_ms: h.decided_at_ms,
                decided_at_there_ms: t.decided_at_ms,
            }),
            Some(_) => {}
        }
    }
    for (&pcs_id, &t) in &there {
        if !here.contains_key(pcs_id) && live(Some(t)) {
            out.missing_here.push(key(pcs_id));
        }
    }
}

#[cfg(test)]
mod tests;
