//! [`KeyFilter`]: an in-memory Bloom filter over every key of a fjall partition, so that a
//! point read of a key the partition does not hold (the common case: "is this decision new?")
//! is answered without reading the partition.
//!
//! **Why.** Every decision makes several such reads: svc-verify's dedup index before deciding
//! and again in its writer, and each feed consumer before storing the record (svc-kpi's rows,
//! svc-audit's index, svc-tiering's catalog, svc-crr's tree). fjall's segments answer an absent
//! key from their own Bloom filters, but its memtables (where the newest keys are, up to
//! [`crate::embedded_db::FJALL_WRITE_BUFFER_BYTES`] of them) are skip lists: an absent key
//! costs a full descent, a dozen cache misses. Those reads were the largest single item of the
//! submit path (perf, `docs/BENCHMARKS.md`, issue 23). One probe of this filter (two cache
//! misses on average for an absent key) answers most of them.
//!
//! **Never a false "absent".** A writer inserts a key into the filter before the batch that
//! writes it commits, inside [`KeyFilter::writing`]; a filter is built by a scan of the
//! partition, started under the exclusive side of the same lock, so every key is either in the
//! scan's snapshot or written after it by a writer that sees the filter being built and inserts
//! into it too. Until its first build completes (at open, in the background), and whenever a
//! key may be present, the caller reads the partition as before.
//!
//! **Size.** 10 bits per key (1 % false positives) for twice the keys the partition held at the
//! last build, at least [`MIN_KEYS`]. A filter that has taken as many inserts as it was sized
//! for (new keys, or removed keys it cannot forget) is rebuilt, at twice the keys it then holds,
//! in the background; the old one answers meanwhile. About 2.5 bytes per key held.
//!
//! Written here because no crate pairs a filter with an LSM partition this way; the filter
//! itself is `fastbloom`'s.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};

use fastbloom::AtomicBloomFilter;
use fjall::PartitionHandle;

/// The fewest keys a filter is sized for (about 2.4 MiB).
pub const MIN_KEYS: u64 = 1 << 21;
/// Target false-positive rate.
const FALSE_POSITIVES: f64 = 0.01;

/// One filter and what it was sized for.
struct Generation {
    bloom: AtomicBloomFilter,
    /// Keys it was sized for.
    capacity: u64,
    /// Keys inserted (the scan's and the writers'; removals are not subtracted).
    inserted: AtomicU64,
}

impl Generation {
    fn new(capacity: u64) -> Generation {
        Generation {
            bloom: AtomicBloomFilter::with_false_pos(FALSE_POSITIVES)
                .expected_items(usize::try_from(capacity).unwrap_or(usize::MAX)),
            capacity,
            inserted: AtomicU64::new(0),
        }
    }

    fn insert(&self, hash: u64) {
        self.bloom.insert_hash(hash);
        self.inserted.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Default)]
struct Generations {
    /// The filter that answers (`None` until the first build completes).
    current: Option<Arc<Generation>>,
    /// A filter being built: writers insert into it too.
    building: Option<Arc<Generation>>,
}

struct Inner {
    partition: PartitionHandle,
    /// The fewest keys a filter is sized for.
    min_keys: u64,
    /// For logs.
    name: String,
    state: RwLock<Generations>,
    /// A build is running (at most one).
    rebuilding: AtomicBool,
    /// Set by [`KeyFilter::close`]: a build in progress stops.
    closed: AtomicBool,
    /// The last build's failure, if any (the partition could not be read).
    failure: Mutex<Option<String>>,
}

/// The filter over one partition's keys. Cheap to clone.
#[derive(Clone)]
pub struct KeyFilter {
    inner: Arc<Inner>,
}

/// Held while a batch that writes keys is built and committed ([`KeyFilter::writing`]).
pub struct Writing<'a> {
    filter: &'a KeyFilter,
    state: RwLockReadGuard<'a, Generations>,
}

fn hash(key: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key)
}

impl KeyFilter {
    /// A filter over `partition`'s keys, built by a background scan; until it completes,
    /// [`KeyFilter::may_contain`] answers `true` (read the partition).
    pub fn open(partition: PartitionHandle, name: &str) -> KeyFilter {
        let filter = KeyFilter::unbuilt(partition, name, MIN_KEYS);
        filter.start_build();
        filter
    }

    /// [`KeyFilter::open`] sized for at least `min_keys`, returning once the first build has
    /// completed (tests, tools).
    pub fn open_built(partition: PartitionHandle, name: &str, min_keys: u64) -> KeyFilter {
        let filter = KeyFilter::unbuilt(partition, name, min_keys);
        filter.inner.rebuilding.store(true, Ordering::Release);
        filter.inner.build();
        filter
    }

    fn unbuilt(partition: PartitionHandle, name: &str, min_keys: u64) -> KeyFilter {
        KeyFilter {
            inner: Arc::new(Inner {
                partition,
                min_keys: min_keys.max(1),
                name: name.to_owned(),
                state: RwLock::new(Generations::default()),
                rebuilding: AtomicBool::new(false),
                closed: AtomicBool::new(false),
                failure: Mutex::new(None),
            }),
        }
    }

    /// False when the partition certainly does not hold `key`; true when it may (or the
    /// filter is not built yet).
    pub fn may_contain(&self, key: &[u8]) -> bool {
        let state = self.inner.state.read().unwrap_or_else(|e| e.into_inner());
        match &state.current {
            Some(g) => g.bloom.contains_hash(hash(key)),
            None => true,
        }
    }

    /// Whether a build has completed (the filter answers).
    pub fn is_built(&self) -> bool {
        let state = self.inner.state.read().unwrap_or_else(|e| e.into_inner());
        state.current.is_some()
    }

    /// The last build's failure, if it failed (the filter then keeps answering `true`, or
    /// from the previous build).
    pub fn failure(&self) -> Option<String> {
        self.inner
            .failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// To hold while building and committing a batch that writes keys: insert each key written
    /// with [`Writing::insert`] before the commit.
    pub fn writing(&self) -> Writing<'_> {
        Writing {
            filter: self,
            state: self.inner.state.read().unwrap_or_else(|e| e.into_inner()),
        }
    }

    /// Stops a build in progress and waits for its thread to let go of the partition: call
    /// before the keyspace is closed (the build holds a handle of it). The filter then answers
    /// as it did; no build starts again.
    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
        self.wait_built();
    }

    /// Waits for a build in progress to complete (tests).
    pub fn wait_built(&self) {
        while self.inner.rebuilding.load(Ordering::Acquire) {
            std::thread::yield_now();
        }
    }

    fn start_build(&self) {
        if self.inner.rebuilding.swap(true, Ordering::AcqRel) {
            return;
        }
        if self.inner.closed.load(Ordering::Acquire) {
            self.inner.rebuilding.store(false, Ordering::Release);
            return;
        }
        let inner = self.inner.clone();
        let spawned = std::thread::Builder::new()
            .name("flk-key-filter".into())
            .spawn(move || inner.build());
        if let Err(e) = spawned {
            self.inner.rebuilding.store(false, Ordering::Release);
            self.inner.fail(format!("cannot start a build: {e}"));
        }
    }
}

impl Writing<'_> {
    /// [`KeyFilter::may_contain`] for the holder of this guard (which must not take the lock
    /// again: a build waiting for it would deadlock both).
    pub fn may_contain(&self, key: &[u8]) -> bool {
        match &self.state.current {
            Some(g) => g.bloom.contains_hash(hash(key)),
            None => true,
        }
    }

    /// Adds `key` to the filter (and to one being built); call before the commit that writes
    /// it.
    pub fn insert(&self, key: &[u8]) {
        let h = hash(key);
        if let Some(b) = &self.state.building {
            b.insert(h);
        }
        if let Some(g) = &self.state.current {
            g.insert(h);
        }
    }
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        // The filter is full: rebuild it (after this guard's read lock is released by the
        // build thread's wait for the write lock).
        if let Some(g) = &self.state.current
            && g.inserted.load(Ordering::Relaxed) > g.capacity
        {
            self.filter.start_build();
        }
    }
}

impl Inner {
    fn fail(&self, message: String) {
        tracing::warn!(partition = %self.name, error = %message, "key filter build failed; reads go to the partition");
        *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(message);
    }

    /// Builds a new filter from a scan and makes it current; clears `rebuilding`.
    fn build(&self) {
        let started = std::time::Instant::now();
        let held = self.partition.approximate_len() as u64;
        let generation = Arc::new(Generation::new(held.saturating_mul(2).max(self.min_keys)));
        // Install it and take the snapshot with no writer in between (module docs).
        let snapshot = {
            let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
            state.building = Some(generation.clone());
            self.partition.snapshot()
        };
        let mut scanned = 0u64;
        let mut result = Ok(());
        for item in snapshot.keys() {
            if scanned.is_multiple_of(4_096) && self.closed.load(Ordering::Acquire) {
                result = Err("closed".to_owned());
                break;
            }
            match item {
                Ok(key) => {
                    generation.insert(hash(&key));
                    scanned += 1;
                }
                Err(e) => {
                    result = Err(e.to_string());
                    break;
                }
            }
        }
        drop(snapshot);
        {
            let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
            state.building = None;
            if result.is_ok() {
                state.current = Some(generation.clone());
            }
        }
        match result {
            Ok(()) => {
                *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = None;
                tracing::debug!(
                    partition = %self.name,
                    keys = scanned,
                    capacity = generation.capacity,
                    ms = started.elapsed().as_millis() as u64,
                    "key filter built"
                );
            }
            Err(e) if e == "closed" => {}
            Err(e) => self.fail(e),
        }
        self.rebuilding.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fjall::{Config, PartitionCreateOptions};

    fn partition(dir: &std::path::Path) -> (fjall::Keyspace, PartitionHandle) {
        let keyspace = Config::new(dir).open().unwrap();
        let p = keyspace
            .open_partition("p", PartitionCreateOptions::default())
            .unwrap();
        (keyspace, p)
    }

    fn key(i: u64) -> Vec<u8> {
        format!("key-{i:016x}").into_bytes()
    }

    /// Keys present before the build and keys written through `writing` are never reported
    /// absent; most keys never written are.
    #[test]
    fn no_key_held_is_reported_absent_and_most_others_are() {
        let dir = tempfile::tempdir().unwrap();
        let (_ks, p) = partition(dir.path());
        for i in 0..10_000 {
            p.insert(key(i), b"v").unwrap();
        }
        let f = KeyFilter::open_built(p.clone(), "p", 1_000);
        assert!(f.is_built());
        {
            let w = f.writing();
            for i in 10_000..20_000 {
                w.insert(&key(i));
                p.insert(key(i), b"v").unwrap();
            }
        }
        assert!((0..20_000).all(|i| f.may_contain(&key(i))));
        let false_positives = (1_000_000..1_100_000)
            .filter(|i| f.may_contain(&key(*i)))
            .count();
        assert!(false_positives < 2_000, "{false_positives} of 100,000");
    }

    /// Until the first build completes the filter says "maybe" for every key.
    #[test]
    fn an_unbuilt_filter_sends_every_read_to_the_partition() {
        let dir = tempfile::tempdir().unwrap();
        let (_ks, p) = partition(dir.path());
        let f = KeyFilter::unbuilt(p, "p", 1_000);
        assert!(!f.is_built());
        assert!(f.may_contain(b"anything"));
    }

    /// Writers running while a build scans (at open, or a rebuild of a full filter) lose no
    /// key: each is in the scan's snapshot or inserted into the filter being built.
    #[test]
    fn keys_written_during_builds_are_kept_and_a_full_filter_is_rebuilt_larger() {
        let dir = tempfile::tempdir().unwrap();
        let (_ks, p) = partition(dir.path());
        for i in 0..50_000 {
            p.insert(key(i), b"v").unwrap();
        }
        // Sized for 100,000 keys (twice those held): writing 150,000 more fills it.
        let f = KeyFilter::unbuilt(p.clone(), "p", 1_000);
        f.start_build();
        let total = 200_000;
        let mut i = 50_000;
        while i < total {
            let w = f.writing();
            let mut batch = Vec::new();
            for _ in 0..4_096 {
                w.insert(&key(i));
                batch.push(key(i));
                i += 1;
            }
            for k in batch {
                p.insert(k, b"v").unwrap();
            }
        }
        // The first build may have finished after the last batch: a writer then sees the
        // filter full.
        f.wait_built();
        drop(f.writing());
        f.wait_built();
        let state = f.inner.state.read().unwrap();
        let capacity = state.current.as_ref().unwrap().capacity;
        drop(state);
        assert!(capacity > 100_000, "rebuilt larger: {capacity}");
        assert!((0..total).all(|i| f.may_contain(&key(i))));
        assert!(f.failure().is_none());
    }
}
