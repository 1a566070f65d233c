//! Per-tenant Merkle trees of decided keys `(tenant_id, pcs_id, outcome digest)`, kept in a
//! fjall keyspace the caller shares (so the tree and the caller's replication cursor commit in
//! one atomic batch), and [`diff`], the anti-entropy comparison that lists exactly the keys
//! two regions disagree on.
//!
//! # Shape
//!
//! Each tenant has a 16-ary tree of depth [`LEVELS`] = 4: level 0 is the root, level 4 holds
//! [`BUCKETS`] = 65,536 buckets. A key lands in the bucket named by the first 16 bits of
//! `SHA-256(pcs_id)`, so keys spread evenly whatever their naming scheme (at 10 million keys in
//! one tenant a bucket holds about 150 leaves: one bucket is one cheap prefix scan).
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
//! Three partitions of the caller's keyspace, all prefixed `merkle_`. A tenant is written as
//! its length (2 bytes, big-endian) and its bytes, so one tenant's keys are one prefix:
//! `merkle_leaves (tenant, bucket as 2 bytes, pcs_id) -> digest ‖ decided_at_ms` (a bucket is
//! one prefix scan), `merkle_buckets (tenant, bucket) -> hash` (non-zero buckets only, loaded
//! at open) and `merkle_by_time (decided_at_ms, tenant, pcs_id)` (retention walks the oldest
//! first; the time's sign bit is flipped so the bytes sort as the numbers do).
//!
//! **Why an LSM tree.** Every decision adds a leaf under a uniformly random key (a `pcs_id`
//! is a hash) and changes a bucket row under another. In redb, which held these tables first,
//! each such insert read and copied a B-tree page of a table far larger than its cache: 13-18 %
//! of `flk up`'s CPU under load (`docs/BENCHMARKS.md`, issue 23). fjall appends a batch to its
//! journal and sorts it into segments in the background; a lookup of a key that is not there
//! (a new decision) is answered by the segments' bloom filters.
//!
//! Writes are serialised by the store ([`Merkle::commit`] holds a lock from reading the old
//! leaves to publishing the new hashes), so the bucket hashes persisted with a batch are the
//! ones in memory XOR the batch's changes.
//!
//! Memory holds every non-empty tenant's whole tree (2 MiB of buckets plus 140 KiB of inner
//! nodes per tenant). Each commit updates the changed buckets' ancestors at once (at most one
//! SHA-256 of 512 bytes per changed node per level), so the reads the comparison protocol
//! makes ([`Merkle::roots`], [`Merkle::nodes`]) are lookups.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use fjall::{Batch, Keyspace, PartitionCreateOptions, PartitionHandle};
use flk_runtime::key_filter::KeyFilter;
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
/// Leaves removed per batch by [`Merkle::remove_older_than`]: large enough to amortise the
/// commit, small enough not to hold the writer lock for long.
const RETENTION_CHUNK: usize = 20_000;

const ZERO: Digest = [0; 32];

const LEAVES: &str = "merkle_leaves";
const BUCKET_HASHES: &str = "merkle_buckets";
const BY_TIME: &str = "merkle_by_time";
/// A stored leaf: the outcome digest and the decision time (big-endian).
const LEAF_LEN: usize = 32 + 8;

/// A failure of the Merkle store or of a tree source.
#[derive(Debug, thiserror::Error)]
pub enum MerkleError {
    #[error("merkle store: {0}")]
    Store(String),
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

impl From<fjall::Error> for MerkleError {
    fn from(e: fjall::Error) -> Self {
        MerkleError::Store(e.to_string())
    }
}

/// Appends a tenant as its 2-byte length and its bytes (`validate` bounds the length).
fn put_tenant(out: &mut Vec<u8>, tenant_id: &str) {
    out.extend_from_slice(&(tenant_id.len() as u16).to_be_bytes());
    out.extend_from_slice(tenant_id.as_bytes());
}

/// The key of a tenant's bucket row, which is also the prefix of that bucket's leaves.
fn bucket_key(tenant_id: &str, bucket: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(4 + tenant_id.len());
    put_tenant(&mut k, tenant_id);
    // BUCKETS is 2^16: a bucket fits two bytes.
    k.extend_from_slice(&(bucket as u16).to_be_bytes());
    k
}

fn leaf_key(tenant_id: &str, bucket: u32, pcs_id: &str) -> Vec<u8> {
    let mut k = bucket_key(tenant_id, bucket);
    k.extend_from_slice(pcs_id.as_bytes());
    k
}

/// A decision time as 8 bytes that sort as the numbers do (sign bit flipped).
fn time_bytes(t: i64) -> [u8; 8] {
    ((t as u64) ^ (1 << 63)).to_be_bytes()
}

fn time_key(t: i64, tenant_id: &str, pcs_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(10 + tenant_id.len() + pcs_id.len());
    k.extend_from_slice(&time_bytes(t));
    put_tenant(&mut k, tenant_id);
    k.extend_from_slice(pcs_id.as_bytes());
    k
}

/// Splits a 2-byte-length-prefixed tenant off the front of `b`.
fn take_tenant(b: &[u8]) -> Option<(&str, &[u8])> {
    let (len, rest) = b.split_first_chunk::<2>()?;
    let len = usize::from(u16::from_be_bytes(*len));
    let (tenant, rest) = rest.split_at_checked(len)?;
    Some((std::str::from_utf8(tenant).ok()?, rest))
}

fn decode_bucket_key(k: &[u8]) -> Option<(&str, u32)> {
    let (tenant, rest) = take_tenant(k)?;
    let bucket: [u8; 2] = rest.try_into().ok()?;
    Some((tenant, u32::from(u16::from_be_bytes(bucket))))
}

fn decode_time_key(k: &[u8]) -> Option<(i64, String, String)> {
    let (t, rest) = k.split_first_chunk::<8>()?;
    let t = (u64::from_be_bytes(*t) ^ (1 << 63)) as i64;
    let (tenant, pcs) = take_tenant(rest)?;
    Some((
        t,
        tenant.to_owned(),
        std::str::from_utf8(pcs).ok()?.to_owned(),
    ))
}

fn encode_leaf(digest: &Digest, decided_at_ms: i64) -> [u8; LEAF_LEN] {
    let mut v = [0; LEAF_LEN];
    v[..32].copy_from_slice(digest);
    v[32..].copy_from_slice(&decided_at_ms.to_be_bytes());
    v
}

fn decode_leaf(v: &[u8]) -> Result<(Digest, i64), MerkleError> {
    if let Some((digest, t)) = v.split_first_chunk::<32>()
        && let Ok(t) = <[u8; 8]>::try_from(t)
    {
        return Ok((*digest, i64::from_be_bytes(t)));
    }
    Err(MerkleError::Corrupt(format!("a {}-byte leaf", v.len())))
}

fn decode_hash(v: &[u8]) -> Result<Digest, MerkleError> {
    v.try_into()
        .map_err(|_| MerkleError::Corrupt(format!("a {}-byte bucket hash", v.len())))
}

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
    if tenant_id.len() > usize::from(u16::MAX) {
        return Err(MerkleError::InvalidKey(
            "tenant_id longer than 65,535 bytes",
        ));
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

/// Bucket hash changes of one committed batch, grouped by tenant, as XOR deltas to apply to
/// memory.
#[derive(Debug, Default)]
struct Staged {
    deltas: Vec<(String, Vec<(u32, Digest)>)>,
}

/// The store: the partitions above plus every tenant's tree in memory.
pub struct Merkle {
    trees: RwLock<BTreeMap<String, TenantTree>>,
    keyspace: Keyspace,
    leaves: PartitionHandle,
    /// Every key of `leaves`: a new decision's leaf (most of them) is known absent without a
    /// read of the partition.
    leaves_filter: KeyFilter,
    buckets: PartitionHandle,
    by_time: PartitionHandle,
    /// Held from reading the old leaves of a batch to publishing its hashes.
    writer: Mutex<()>,
}

/// The filter's build holds a handle of the keyspace: stopped before the keyspace closes.
impl Drop for Merkle {
    fn drop(&mut self) {
        self.leaves_filter.close();
    }
}

impl Merkle {
    /// Opens (creating if needed) the partitions in `keyspace` and loads every tenant's
    /// buckets.
    pub fn open(keyspace: &Keyspace) -> Result<Merkle, MerkleError> {
        let open = |name| keyspace.open_partition(name, PartitionCreateOptions::default());
        let (leaves, buckets, by_time) = (open(LEAVES)?, open(BUCKET_HASHES)?, open(BY_TIME)?);

        let mut trees = BTreeMap::new();
        let mut current: Option<(String, TenantTree)> = None;
        for row in buckets.iter() {
            let (k, v) = row?;
            let Some((tenant, bucket)) = decode_bucket_key(&k) else {
                return Err(MerkleError::Corrupt(format!(
                    "a bucket key of {} bytes",
                    k.len()
                )));
            };
            // Rows come sorted by tenant: build one tree at a time.
            if current.as_ref().is_none_or(|(t, _)| t != tenant) {
                if let Some((t, tree)) = current.take() {
                    trees.insert(t, tree);
                }
                current = Some((tenant.to_owned(), TenantTree::empty()));
            }
            if let Some((_, tree)) = current.as_mut() {
                tree.levels[LEVELS as usize][bucket as usize] = decode_hash(&v)?;
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
            keyspace: keyspace.clone(),
            leaves_filter: KeyFilter::open(leaves.clone(), "crr leaves"),
            leaves,
            buckets,
            by_time,
            writer: Mutex::new(()),
        })
    }

    fn read(&self) -> RwLockReadGuard<'_, BTreeMap<String, TenantTree>> {
        // Updates under the lock cannot panic halfway except on a bug; the data stays usable.
        self.trees.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, BTreeMap<String, TenantTree>> {
        self.trees.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Inserts or replaces leaves, and writes whatever `also` adds to the same batch (the
    /// caller's cursor), in one atomic batch handed to the operating system (durable at the
    /// next [`Merkle::persist`]); memory follows the commit. A later update of the same key
    /// in `updates` wins. Setting a leaf to the digest it has changes no hash (a different
    /// `decided_at_ms` is still recorded). Nothing is written when a key is invalid.
    pub fn commit(
        &self,
        updates: &[LeafUpdate],
        also: impl FnOnce(&mut Batch),
    ) -> Result<(), MerkleError> {
        for u in updates {
            validate(&u.tenant_id, &u.pcs_id)?;
        }
        // Key order, so the memtable takes the batch front to back; the index breaks ties so
        // the last update of a key is the one kept.
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

        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        // Every leaf key written is in the filter before the commit.
        let filter = self.leaves_filter.writing();
        let mut batch = self.keyspace.batch();
        let mut deltas: BTreeMap<(&str, u32), Digest> = BTreeMap::new();
        for (pos, &(bucket, i)) in order.iter().enumerate() {
            let u = &updates[i];
            let superseded = order.get(pos + 1).is_some_and(|&(_, j)| {
                updates[j].tenant_id == u.tenant_id && updates[j].pcs_id == u.pcs_id
            });
            if superseded {
                continue;
            }
            let (tenant, pcs) = (u.tenant_id.as_str(), u.pcs_id.as_str());
            let key = leaf_key(tenant, bucket, pcs);
            let old = if filter.may_contain(&key) {
                self.leaves
                    .get(&key)?
                    .map(|v| decode_leaf(&v))
                    .transpose()?
            } else {
                None
            };
            let mut delta = ZERO;
            match old {
                Some((d, t)) if d == u.digest && t == u.decided_at_ms => continue,
                Some((d, t)) => {
                    if t != u.decided_at_ms {
                        batch.remove(&self.by_time, time_key(t, tenant, pcs));
                        batch.insert(&self.by_time, time_key(u.decided_at_ms, tenant, pcs), []);
                    }
                    if d != u.digest {
                        delta = leaf_hash(tenant, pcs, &d);
                        xor_into(&mut delta, &leaf_hash(tenant, pcs, &u.digest));
                    }
                }
                None => {
                    batch.insert(&self.by_time, time_key(u.decided_at_ms, tenant, pcs), []);
                    delta = leaf_hash(tenant, pcs, &u.digest);
                }
            }
            filter.insert(&key);
            batch.insert(&self.leaves, key, encode_leaf(&u.digest, u.decided_at_ms));
            xor_into(deltas.entry((tenant, bucket)).or_insert(ZERO), &delta);
        }
        let staged = self.stage_buckets(&mut batch, deltas);
        also(&mut batch);
        batch.commit()?;
        drop(filter);
        self.publish(staged);
        Ok(())
    }

    /// Inserts or replaces leaves in a batch of their own (see [`Merkle::commit`]).
    pub fn apply(&self, updates: &[LeafUpdate]) -> Result<(), MerkleError> {
        self.commit(updates, |_| {})
    }

    /// Writes the buckets that `deltas` change (their hash in memory XOR the delta) into
    /// `batch`, and returns the non-zero deltas grouped by tenant. The caller holds the
    /// writer lock until it has published them.
    fn stage_buckets(&self, batch: &mut Batch, deltas: BTreeMap<(&str, u32), Digest>) -> Staged {
        let mut staged = Staged::default();
        let trees = self.read();
        for ((tenant, bucket), delta) in deltas {
            if delta == ZERO {
                continue;
            }
            let mut hash = trees
                .get(tenant)
                .map_or(ZERO, |tree| tree.levels[LEVELS as usize][bucket as usize]);
            xor_into(&mut hash, &delta);
            // Only non-empty buckets are stored: an empty tenant costs nothing on disk.
            if hash == ZERO {
                batch.remove(&self.buckets, bucket_key(tenant, bucket));
            } else {
                batch.insert(&self.buckets, bucket_key(tenant, bucket), hash);
            }
            match staged.deltas.last_mut() {
                Some((t, d)) if t == tenant => d.push((bucket, delta)),
                _ => staged
                    .deltas
                    .push((tenant.to_owned(), vec![(bucket, delta)])),
            }
        }
        staged
    }

    /// Applies a committed batch's bucket changes to memory.
    fn publish(&self, staged: Staged) {
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

    /// Makes every earlier commit durable (fsyncs the keyspace's journal).
    pub fn persist(&self) -> Result<(), MerkleError> {
        Ok(self.keyspace.persist(fjall::PersistMode::SyncAll)?)
    }

    /// Retention: removes every leaf decided before `cutoff_ms`, oldest first, in batches of
    /// at most 20,000 leaves each (memory follows each commit). Returns how many it removed.
    pub fn remove_older_than(&self, cutoff_ms: i64) -> Result<usize, MerkleError> {
        let mut total = 0;
        loop {
            let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
            let mut victims = Vec::new();
            for row in self
                .by_time
                .range(..time_bytes(cutoff_ms))
                .take(RETENTION_CHUNK)
            {
                let (k, _) = row?;
                let Some(v) = decode_time_key(&k) else {
                    return Err(MerkleError::Corrupt(format!(
                        "a time key of {} bytes",
                        k.len()
                    )));
                };
                victims.push((k, v));
            }
            if victims.is_empty() {
                return Ok(total);
            }
            let mut batch = self.keyspace.batch();
            let mut deltas: BTreeMap<(&str, u32), Digest> = BTreeMap::new();
            for (k, (_, tenant, pcs)) in &victims {
                batch.remove(&self.by_time, k.clone());
                let bucket = bucket_of(pcs);
                let key = leaf_key(tenant, bucket, pcs);
                let Some(old) = self.leaves.get(&key)? else {
                    return Err(MerkleError::Corrupt(format!(
                        "time index names {tenant:?}/{pcs:?}, which has no leaf"
                    )));
                };
                let (digest, _) = decode_leaf(&old)?;
                batch.remove(&self.leaves, key);
                xor_into(
                    deltas.entry((tenant.as_str(), bucket)).or_insert(ZERO),
                    &leaf_hash(tenant, pcs, &digest),
                );
            }
            let staged = self.stage_buckets(&mut batch, deltas);
            batch.commit()?;
            self.publish(staged);
            total += victims.len();
            if victims.len() < RETENTION_CHUNK {
                return Ok(total);
            }
        }
    }

    /// One key's leaf, if stored.
    pub fn leaf(&self, tenant_id: &str, pcs_id: &str) -> Result<Option<Leaf>, MerkleError> {
        if validate(tenant_id, pcs_id).is_err() {
            return Ok(None);
        }
        let key = leaf_key(tenant_id, bucket_of(pcs_id), pcs_id);
        if !self.leaves_filter.may_contain(&key) {
            return Ok(None);
        }
        let found = self.leaves.get(key)?;
        let Some(v) = found else {
            return Ok(None);
        };
        let (digest, decided_at_ms) = decode_leaf(&v)?;
        Ok(Some(Leaf {
            pcs_id: pcs_id.to_owned(),
            digest,
            decided_at_ms,
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
        tenant_id: &str,
        buckets: &[u32],
    ) -> Result<Vec<(u32, Leaf)>, MerkleError> {
        if let Some(bad) = buckets.iter().find(|&&b| b >= BUCKETS) {
            return Err(MerkleError::InvalidRequest(format!(
                "bucket {bad} does not exist"
            )));
        }
        let mut out = Vec::new();
        if tenant_id.is_empty() || tenant_id.len() > usize::from(u16::MAX) {
            return Ok(out);
        }
        for &b in buckets {
            let prefix = bucket_key(tenant_id, b);
            for row in self.leaves.prefix(&prefix) {
                let (k, v) = row?;
                let pcs_id = std::str::from_utf8(&k[prefix.len()..])
                    .map_err(|_| MerkleError::Corrupt("a pcs_id that is not UTF-8".into()))?;
                let (digest, decided_at_ms) = decode_leaf(&v)?;
                out.push((
                    b,
                    Leaf {
                        pcs_id: pcs_id.to_owned(),
                        digest,
                        decided_at_ms,
                    },
                ));
            }
        }
        Ok(out)
    }
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
}

impl LocalTree {
    pub fn new(merkle: Arc<Merkle>) -> LocalTree {
        LocalTree { merkle }
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
        let merkle = self.merkle.clone();
        let (tenant_id, buckets) = (tenant_id.to_owned(), buckets.to_vec());
        tokio::task::spawn_blocking(move || merkle.bucket_leaves(&tenant_id, &buckets))
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
