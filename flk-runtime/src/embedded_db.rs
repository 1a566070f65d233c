//! Opening the services' embedded redb databases with a bounded page cache.
//!
//! redb keeps every page a transaction writes in its read cache after the commit, and every
//! page it reads, until the cache is full; `redb::Database::create` sizes that cache at 1 GiB
//! per database. A service that writes per decision therefore holds what it wrote in memory
//! until it has written about 1 GiB, and `flk up` opens five such databases in one process
//! (svc-verify's refusals, svc-kpi's store, svc-tiering's catalog and warm tier, svc-crr's
//! store): its resident memory grew with the data written, about 60 MiB a minute at 300
//! decisions/s (issue 22, docs/RELIABILITY.md "Long runs"). Every service opens its databases
//! with [`open`] instead, so each one's cache stays within [`CACHE_BYTES`].

use std::path::Path;

/// Page cache of one database: redb gives 90 % to pages read or written by committed
/// transactions (least recently used evicted first) and 10 % to a transaction's dirty pages
/// before they spill to the file. It holds the upper levels of the B-trees a service walks per
/// decision many times over; the leaves it misses are read back from the OS page cache.
pub const CACHE_BYTES: usize = 32 * 1024 * 1024;

/// Opens (creating if needed) the redb database at `path` with a [`CACHE_BYTES`] page cache.
pub fn open(path: &Path) -> Result<redb::Database, redb::DatabaseError> {
    open_with_cache(path, CACHE_BYTES)
}

/// [`open`] with a page cache of `cache_bytes`.
pub fn open_with_cache(
    path: &Path,
    cache_bytes: usize,
) -> Result<redb::Database, redb::DatabaseError> {
    redb::Builder::new()
        .set_cache_size(cache_bytes)
        .create(path)
}

/// The most a feed consumer's fjall keyspace (svc-kpi's rows, svc-tiering's catalog,
/// svc-crr's tree, svc-audit's index) holds in memtables before it flushes them: fjall's
/// default, 64 MiB per keyspace, filled over half an hour at a few hundred decisions a second
/// and read as growth by `flk soak` (docs/RELIABILITY.md, "Long runs").
pub const FJALL_WRITE_BUFFER_BYTES: u64 = 16 * 1024 * 1024;
/// The block cache of such a keyspace (fjall's default: 32 MiB each). Their reads are point
/// lookups of recent keys (mostly answered by bloom filters) and rare scans.
pub const FJALL_CACHE_BYTES: u64 = 8 * 1024 * 1024;

/// How often a service makes its [`LazyCommits`] durable while it runs: the most a crash
/// rolls back (all of it re-derived from the outcome log).
pub const FLUSH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(200);

/// Runs `flush` every [`FLUSH_INTERVAL`] for ever (a late tick delays the next rather than
/// bunching them); a failure is logged as `what`'s and retried at the next tick. The loop of
/// a service whose commits are lazy: spawn it, and abort it when the service stops (which
/// flushes once more itself).
pub async fn flush_every_interval<F, Fut, E>(what: &'static str, mut flush: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let mut tick = tokio::time::interval(FLUSH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = flush().await {
            tracing::warn!(error = %e, "{what} flush failed; retrying");
        }
    }
}

/// A database whose commits may skip the disk ([`LazyDb::commit_lazy`]), made durable
/// together later by [`LazyDb::flush`] and when it is dropped. Dereferences to the
/// [`redb::Database`] for everything else.
///
/// For state a service derives from a log it can re-read: a feed consumer's tables committed
/// with the cursor that produced them. redb keeps the database consistent across a crash and
/// opens it at its last durable commit, so a crash rolls the tables back together with their
/// cursor and the consumer re-reads what it lost; nothing a client was told is stored goes
/// with it. One fsync per [`FLUSH_INTERVAL`] instead of one per batch: each batch's fsync
/// competed with the outcome log's own on the same disk (docs/BENCHMARKS.md, issue 23).
/// Anything a client acted on (a verdict, a policy) still commits durably, which persists
/// every earlier lazy commit too.
pub struct LazyDb {
    db: redb::Database,
    /// A lazy commit since the last durable one.
    dirty: std::sync::atomic::AtomicBool,
}

impl LazyDb {
    pub fn new(db: redb::Database) -> LazyDb {
        LazyDb {
            db,
            dirty: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Commits `txn` without an fsync of its own. (Errors are boxed, as everywhere redb's
    /// large error travels.)
    pub fn commit_lazy(&self, mut txn: redb::WriteTransaction) -> Result<(), Box<redb::Error>> {
        txn.set_durability(redb::Durability::None);
        txn.commit().map_err(|e| Box::new(e.into()))?;
        self.dirty.store(true, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    /// Makes every earlier commit durable: one empty durable commit, nothing when no lazy
    /// commit is pending.
    pub fn flush(&self) -> Result<(), Box<redb::Error>> {
        use std::sync::atomic::Ordering;
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let result = self
            .db
            .begin_write()
            .map_err(|e| Box::new(e.into()))
            .and_then(|txn| txn.commit().map_err(|e| Box::new(e.into())));
        if result.is_err() {
            self.dirty.store(true, Ordering::Release);
        }
        result
    }

    /// Whether a lazy commit awaits [`LazyDb::flush`].
    pub fn pending(&self) -> bool {
        self.dirty.load(std::sync::atomic::Ordering::Acquire)
    }
}

impl std::ops::Deref for LazyDb {
    type Target = redb::Database;

    fn deref(&self) -> &redb::Database {
        &self.db
    }
}

/// A clean close keeps the lazy commits: redb itself would reopen at the last durable one.
impl Drop for LazyDb {
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            tracing::error!(error = %e, "cannot make the last lazy commits durable");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::ReadableTable as _;
    use redb::ReadableTableMetadata as _;

    const T: redb::TableDefinition<u64, u64> = redb::TableDefinition::new("t");

    fn put(db: &LazyDb, k: u64) {
        let txn = db.begin_write().unwrap();
        txn.open_table(T).unwrap().insert(k, k).unwrap();
        db.commit_lazy(txn).unwrap();
    }

    fn keys(path: &Path) -> Vec<u64> {
        let db = open(path).unwrap();
        let txn = db.begin_read().unwrap();
        let Ok(t) = txn.open_table(T) else {
            return Vec::new();
        };
        t.iter().unwrap().map(|r| r.unwrap().0.value()).collect()
    }

    /// A lazy commit is visible at once; `flush` makes it durable, and `pending` says when a
    /// flush has work.
    #[test]
    fn lazy_commits_are_visible_and_flushed_together() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.redb");
        let db = LazyDb::new(open(&path).unwrap());
        assert!(!db.pending());
        put(&db, 1);
        put(&db, 2);
        assert!(db.pending());
        let read = db.begin_read().unwrap();
        assert_eq!(read.open_table(T).unwrap().len().unwrap(), 2);
        drop(read);
        db.flush().unwrap();
        assert!(!db.pending());
        put(&db, 3);
        // Dropped with a lazy commit pending: the close keeps it.
        drop(db);
        assert_eq!(keys(&path), vec![1, 2, 3]);
    }

    /// Without `flush` or a clean close (what a crash leaves), redb reopens at the last
    /// durable commit: the lazy ones after it are gone, together.
    #[test]
    fn a_crash_rolls_back_to_the_last_flush() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.redb");
        let db = LazyDb::new(open(&path).unwrap());
        put(&db, 1);
        db.flush().unwrap();
        put(&db, 2);
        put(&db, 3);
        // The file as a killed process leaves it (what it wrote is in the OS's cache: a copy
        // reads the same), opened while the original is still held.
        let crashed = dir.path().join("crashed.redb");
        std::fs::copy(&path, &crashed).unwrap();
        assert_eq!(keys(&crashed), vec![1]);
        drop(db);
        assert_eq!(keys(&path), vec![1, 2, 3]);
    }
}
