//! The placement catalog: one fjall keyspace, `<data_dir>/catalog.fjall`, holding the durable
//! record of which tier holds each record (with its times, size, cold location and the move in
//! progress), the hot journal (a durable copy of every hot record's blob: the hot tier itself
//! is volatile), the live-record count of every cold pack, and the feed cursor.
//!
//! | partition | key | value |
//! |---|---|---|
//! | `records` | `Key::encode` | `RecordMeta::encode` |
//! | `journal` (the hot journal, key-value separated) | `Key::encode` | blob |
//! | `packs` | pack name | live records (u64, big-endian) |
//! | `meta` | `cursor` | last feed sequence number applied (u64, big-endian) |
//!
//! **Why an LSM tree.** Every record ingested inserts an entry and its whole blob (about a
//! kilobyte) under a uniformly random key, and every move rewrites entries at random keys. In
//! redb, which held the entries first (and the journal before that), each insert rewrote a
//! B-tree page, and the catalog's inserts, commits, lookups and flushes were 10-13 % of the
//! whole stack's CPU under load (`docs/BENCHMARKS.md`, issue 23); fjall appends a batch to its
//! journal and sorts it into segments in the background.
//!
//! **The journal's blobs stay out of compaction.** The `journal` partition is key-value
//! separated: its LSM tree holds each key with a pointer, and the blob itself is written once,
//! when its memtable is flushed, into an append-only blob file. Compactions then move
//! pointers, not kilobytes; kept in the tree, every blob was rewritten by each level it passed
//! through, and svc-tiering quadrupled the flush and compaction work per decision of the whole
//! process (`docs/BENCHMARKS.md`, issue 23). A blob file's space comes back when its records
//! leave the hot tier: [`Catalog::collect_journal_garbage`], run after each placement cycle
//! that moved records out of it, drops the files with no live blob and rewrites the live rest
//! of those mostly stale ([`JOURNAL_GC_STALENESS`]). Records leave the hot tier roughly in the
//! order they came (by age), so most files empty whole and are dropped without a rewrite.
//!
//! **One atomic batch per change.** A feed batch ([`Catalog::ingest`]: entries, journal
//! copies, cursor) and every [`Catalog::commit`] (entries, journal copies added or dropped,
//! pack counts, cursor) is one fjall batch, which a crash keeps whole or loses whole, and
//! batches are recovered in the order they were written (the keyspace has one journal). An
//! entry and its journal copy, or records and the cursor that brought them, therefore never
//! disagree after a crash. Writers serialize on one mutex, since pack counts and the cursor
//! are read, changed and written back; within a batch each key is written once (the last
//! change of an entry or journal copy wins, a pack's releases are summed). Reads take no lock:
//! a walk of the entries reads a snapshot as of the last batch applied whole, a point read
//! the key's latest value.
//!
//! **Durability.** Every batch is handed to the operating system when it commits (a killed
//! process loses none). Two kinds do not wait for the disk ([`Catalog::flush`] makes them
//! durable, every [`flk_runtime::embedded_db::FLUSH_INTERVAL`] and when the last handle is
//! dropped): feed batches ([`Catalog::ingest`]), which a power loss rolls back together with
//! the cursor so that the feed delivers them again, and commits that only move read times
//! (`touch`), of which a power loss may forget a read, which only demotes a record sooner.
//! Every commit of a move or removal is durable (`PersistMode::SyncAll` before it returns),
//! which persists every lazy batch before it too: the journal is synced up to its end.
//!
//! **Lock.** fjall does not lock its directory: `<data_dir>/catalog.lock` ([`LOCK_FILE`]) is
//! held while the catalog is open, so that a second process never opens it
//! ([`Catalog::open_if_free`] tells a reader that svc-tiering is running).
//!
//! **Older layouts** are moved by [`Catalog::open`], once. The journal was the partition
//! `blobs`, not key-value separated (a partition's kind is fixed when it is created): its
//! blobs are copied into `journal`, persisted, and only then is `blobs` deleted. The keyspace was
//! `hot_journal.fjall` while it held only the journal (renamed, then its `blobs` moved as
//! above); the entries, pack counts and cursor were in
//! `catalog.redb` (tables `records`, `packs`, `meta`; before that the journal too, table
//! `hot_journal`). Their contents are written into the keyspace and persisted, and only then
//! is the file deleted: a crash in between moves the same values again at the next open.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use fjall::{
    GarbageCollection, Keyspace, KvSeparationOptions, PartitionCreateOptions, PartitionHandle,
    PersistMode,
};
use flk_runtime::key_filter::KeyFilter;
use flk_runtime::lock::{DirLock, LockError};
use redb::{ReadableTable, TableDefinition};

use crate::record::{DecodeError, Key, RecordMeta};

/// The catalog's keyspace in the data directory.
pub const DIR_NAME: &str = "catalog.fjall";
/// The lock file that keeps a second process off the keyspace.
pub const LOCK_FILE: &str = "catalog.lock";
/// The redb file that held the entries, pack counts and cursor before; moved at open.
pub const OLD_FILE_NAME: &str = "catalog.redb";
/// The keyspace's name while it held only the hot journal; renamed at open.
pub const OLD_JOURNAL_DIR: &str = "hot_journal.fjall";

const RECORDS: &str = "records";
/// The hot journal's partition, key-value separated (module docs).
const JOURNAL: &str = "journal";
/// The hot journal's partition before it was key-value separated; moved at open.
const OLD_JOURNAL: &str = "blobs";
/// Blobs from this size up go to the journal's blob files; smaller ones (none in practice: a
/// stored record is about a kilobyte) stay in its tree.
const JOURNAL_SEPARATION_BYTES: u32 = 128;
/// The journal's blob files are rolled at this size: the unit its space is reclaimed in.
const JOURNAL_BLOB_FILE_BYTES: u64 = 32 * 1024 * 1024;
/// A journal blob file at least this stale (by bytes) has its live blobs rewritten and is
/// dropped; one wholly stale is dropped without a rewrite.
pub const JOURNAL_GC_STALENESS: f32 = 0.75;
const PACKS: &str = "packs";
const META: &str = "meta";
const CURSOR: &[u8] = b"cursor";

/// The tables of an older `catalog.redb`, moved into the keyspace at open.
mod old {
    use super::TableDefinition;
    pub const RECORDS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("records");
    /// The hot journal before it moved to fjall.
    pub const JOURNAL: TableDefinition<&[u8], &[u8]> = TableDefinition::new("hot_journal");
    pub const PACKS: TableDefinition<&str, u64> = TableDefinition::new("packs");
    pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
    /// Entries moved per batch.
    pub const CHUNK: usize = 4096;
}

/// The catalog failed (I/O, lock, corrupt entry).
#[derive(Debug, Clone, thiserror::Error)]
#[error("catalog: {0}")]
pub struct CatalogError(pub String);

fn err(e: impl std::fmt::Display) -> CatalogError {
    CatalogError(e.to_string())
}

impl From<DecodeError> for CatalogError {
    fn from(e: DecodeError) -> Self {
        CatalogError(e.to_string())
    }
}

impl From<fjall::Error> for CatalogError {
    fn from(e: fjall::Error) -> Self {
        err(e)
    }
}

fn decode_u64(what: &str, v: &[u8]) -> Result<u64, CatalogError> {
    <[u8; 8]>::try_from(v)
        .map(u64::from_be_bytes)
        .map_err(|_| CatalogError(format!("{what} is {} bytes, not 8", v.len())))
}

/// Makes a rename or removal in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), CatalogError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| CatalogError(format!("cannot sync {}: {e}", dir.display())))
}

/// One change of a catalog transaction.
#[derive(Debug, Clone)]
pub enum Op {
    /// Inserts or replaces a record's entry.
    Put(Key, RecordMeta),
    /// Removes a record's entry and its journal copy.
    Remove(Key),
    JournalPut(Key, Arc<Vec<u8>>),
    JournalDel(Key),
    /// A new pack with this many live records.
    PackAdd(String, u64),
    /// One record of the pack left it.
    PackRelease(String),
    /// The feed cursor moves to at least this sequence number (with the records applied in
    /// the same transaction).
    Cursor(u64),
}

/// What an audit reads of the catalog (`flk report compliance`): one walk of every entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CatalogFigures {
    /// Records and their stored bytes per tier (hot, warm, cold).
    pub records: [u64; 3],
    pub bytes: [u64; 3],
    /// Entries with a move or removal in progress (or interrupted).
    pub pending_moves: u64,
    /// Decision times (Unix ms) of the oldest and newest record held; 0 without records.
    pub oldest_decided_ms: i64,
    pub newest_decided_ms: i64,
    /// Records decided more than the asked-for span before the newest record held.
    pub past_retention: u64,
}

/// What a collection of the journal's garbage found and did
/// ([`Catalog::collect_journal_garbage`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JournalGc {
    /// Blob files, and the bytes of the blobs in them (uncompressed), before the collection.
    pub files: u64,
    pub bytes: u64,
    /// Of `bytes`, those of blobs no longer in the journal.
    pub stale_bytes: u64,
    /// Bytes on disk (compressed) of the blob files dropped, those rewritten included: their
    /// live blobs were written anew into a new file.
    pub freed_bytes: u64,
}

/// The hot journal's partition: key-value separated (module docs).
fn journal_options() -> PartitionCreateOptions {
    PartitionCreateOptions::default().with_kv_separation(
        KvSeparationOptions::default()
            .separation_threshold(JOURNAL_SEPARATION_BYTES)
            .file_target_size(JOURNAL_BLOB_FILE_BYTES),
    )
}

/// The open keyspace; dropped last by the last clone.
struct Inner {
    keyspace: Keyspace,
    records: PartitionHandle,
    journal: PartitionHandle,
    packs: PartitionHandle,
    meta: PartitionHandle,
    /// Serializes writers: pack counts and the cursor are read, changed and written back.
    writer: Mutex<()>,
    /// A lazy batch since the last sync.
    dirty: AtomicBool,
    /// Every key of `records`, so that ingesting a record never seen skips the read of
    /// `records`. Started once the older layouts are moved in (the move writes `records`
    /// without it); until then every ingest reads.
    filter: OnceLock<KeyFilter>,
    /// Released after the keyspace (fields drop in order).
    _lock: DirLock,
}

/// A clean close keeps every lazy batch.
impl Drop for Inner {
    fn drop(&mut self) {
        // The filter's build holds a handle of the keyspace.
        if let Some(filter) = self.filter.get() {
            filter.close();
        }
        if self.dirty.load(Ordering::Acquire)
            && let Err(e) = self.keyspace.persist(PersistMode::SyncAll)
        {
            tracing::error!(error = %e, "svc-tiering could not make its last catalog commits durable");
        }
    }
}

/// The catalog. Cheap to clone.
#[derive(Clone)]
pub struct Catalog {
    inner: Arc<Inner>,
}

impl Catalog {
    /// Opens (creating if needed) the catalog in the data directory `dir`, moving an older
    /// layout's stores into it first (module docs). Fails when another process holds it.
    pub fn open(dir: &Path) -> Result<Catalog, CatalogError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| CatalogError(format!("cannot create {}: {e}", dir.display())))?;
        let lock = DirLock::acquire(dir.join(LOCK_FILE)).map_err(err)?;
        Catalog::open_locked(dir, lock)
    }

    /// [`Catalog::open`] for a reader of a data directory that may be in use: `None` when
    /// another process (a running svc-tiering) holds the catalog.
    pub fn open_if_free(dir: &Path) -> Result<Option<Catalog>, CatalogError> {
        match DirLock::acquire(dir.join(LOCK_FILE)) {
            Ok(lock) => Catalog::open_locked(dir, lock).map(Some),
            Err(LockError::Held { .. }) => Ok(None),
            Err(e) => Err(err(e)),
        }
    }

    /// Whether `dir` holds a catalog, in this layout or an older one.
    pub fn exists(dir: &Path) -> bool {
        dir.join(DIR_NAME).is_dir()
            || dir.join(OLD_FILE_NAME).is_file()
            || dir.join(OLD_JOURNAL_DIR).is_dir()
    }

    fn open_locked(dir: &Path, lock: DirLock) -> Result<Catalog, CatalogError> {
        let path = dir.join(DIR_NAME);
        let old_journal = dir.join(OLD_JOURNAL_DIR);
        if old_journal.is_dir() {
            if path.exists() {
                return Err(CatalogError(format!(
                    "both {} and {} exist: keep the one svc-tiering last wrote",
                    old_journal.display(),
                    path.display()
                )));
            }
            std::fs::rename(&old_journal, &path).map_err(|e| {
                CatalogError(format!(
                    "cannot rename {} to {}: {e}",
                    old_journal.display(),
                    path.display()
                ))
            })?;
            sync_dir(dir)?;
            tracing::info!("svc-tiering renamed {OLD_JOURNAL_DIR} to {DIR_NAME}");
        }
        let keyspace = fjall::Config::new(&path)
            .max_write_buffer_size(flk_runtime::embedded_db::FJALL_WRITE_BUFFER_BYTES)
            .cache_size(flk_runtime::embedded_db::FJALL_CACHE_BYTES)
            .open()
            .map_err(|e| CatalogError(format!("{}: {e}", path.display())))?;
        let partition = |name: &str, options: PartitionCreateOptions| {
            keyspace
                .open_partition(name, options)
                .map_err(|e| CatalogError(format!("partition {name}: {e}")))
        };
        let plain = PartitionCreateOptions::default;
        let catalog = Catalog {
            inner: Arc::new(Inner {
                records: partition(RECORDS, plain())?,
                journal: partition(JOURNAL, journal_options())?,
                packs: partition(PACKS, plain())?,
                meta: partition(META, plain())?,
                keyspace,
                writer: Mutex::new(()),
                dirty: AtomicBool::new(false),
                filter: OnceLock::new(),
                _lock: lock,
            }),
        };
        if catalog.inner.keyspace.partition_exists(OLD_JOURNAL) {
            catalog.move_old_journal()?;
        }
        let old_file = dir.join(OLD_FILE_NAME);
        if old_file.is_file() {
            catalog.move_from_redb(&old_file)?;
        }
        let records = catalog.inner.records.clone();
        let _ = catalog
            .inner
            .filter
            .set(KeyFilter::open(records, "tiering records"));
        Ok(catalog)
    }

    /// Copies the journal's older partition into the key-value separated one, persists it,
    /// then deletes the old partition (module docs). Copying twice gives the same journal.
    fn move_old_journal(&self) -> Result<(), CatalogError> {
        let inner = &*self.inner;
        let old = inner
            .keyspace
            .open_partition(OLD_JOURNAL, PartitionCreateOptions::default())?;
        let mut batch = inner.keyspace.batch();
        let mut n = 0usize;
        for item in old.iter() {
            let (k, v) = item?;
            batch.insert(&inner.journal, k, v);
            n += 1;
            if batch.len() == old::CHUNK {
                std::mem::replace(&mut batch, inner.keyspace.batch()).commit()?;
            }
        }
        batch.commit()?;
        inner.keyspace.persist(PersistMode::SyncAll)?;
        inner.keyspace.delete_partition(old)?;
        tracing::info!(
            blobs = n,
            "svc-tiering moved its hot journal into a key-value separated partition"
        );
        Ok(())
    }

    /// Moves an older `catalog.redb` into the keyspace, persists it, then deletes the file
    /// (module docs). Every value is set, not added: moving twice gives the same catalog.
    fn move_from_redb(&self, file: &Path) -> Result<(), CatalogError> {
        let inner = &*self.inner;
        let db = flk_runtime::embedded_db::open(file)
            .map_err(|e| CatalogError(format!("{}: {e}", file.display())))?;
        let read = db.begin_read().map_err(err)?;
        let records = self.move_old_table(&read, old::RECORDS, &inner.records)?;
        let blobs = self.move_old_table(&read, old::JOURNAL, &inner.journal)?;
        let mut batch = inner.keyspace.batch();
        let mut packs = 0usize;
        if let Some(t) = open_old(&read, old::PACKS)? {
            for item in t.iter().map_err(err)? {
                let (name, live) = item.map_err(err)?;
                batch.insert(
                    &inner.packs,
                    name.value().as_bytes(),
                    &live.value().to_be_bytes()[..],
                );
                packs += 1;
            }
        }
        if let Some(t) = open_old(&read, old::META)?
            && let Some(cursor) = t.get("cursor").map_err(err)?
        {
            let cursor = cursor.value().max(self.cursor()?);
            batch.insert(&inner.meta, CURSOR, &cursor.to_be_bytes()[..]);
        }
        batch.commit()?;
        inner.keyspace.persist(PersistMode::SyncAll)?;
        drop(read);
        drop(db);
        std::fs::remove_file(file)
            .map_err(|e| CatalogError(format!("cannot remove {}: {e}", file.display())))?;
        sync_dir(file.parent().unwrap_or(Path::new(".")))?;
        tracing::info!(
            records,
            blobs,
            packs,
            "svc-tiering moved its placement catalog from {OLD_FILE_NAME} to {DIR_NAME}"
        );
        Ok(())
    }

    /// Copies an old byte table into `to` in batches of [`old::CHUNK`]; how many entries.
    fn move_old_table(
        &self,
        read: &redb::ReadTransaction,
        def: TableDefinition<&'static [u8], &'static [u8]>,
        to: &PartitionHandle,
    ) -> Result<usize, CatalogError> {
        let Some(table) = open_old(read, def)? else {
            return Ok(0);
        };
        let keyspace = &self.inner.keyspace;
        let mut batch = keyspace.batch();
        let mut n = 0;
        for item in table.iter().map_err(err)? {
            let (k, v) = item.map_err(err)?;
            batch.insert(to, k.value(), v.value());
            n += 1;
            if batch.len() == old::CHUNK {
                std::mem::replace(&mut batch, keyspace.batch()).commit()?;
            }
        }
        batch.commit()?;
        Ok(n)
    }

    /// Makes every lazy batch durable (one sync of the journal); nothing when none is
    /// pending.
    pub fn flush(&self) -> Result<(), CatalogError> {
        if !self.inner.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        self.inner
            .keyspace
            .persist(PersistMode::SyncAll)
            .map_err(|e| {
                self.inner.dirty.store(true, Ordering::Release);
                err(e)
            })
    }

    /// Reclaims the journal's blob files held by blobs of records no longer hot (module
    /// docs): one walk of the journal's keys, then the stale files dropped and the mostly
    /// stale ones rewritten. Concurrent writes to the journal wait while a file is rewritten.
    pub fn collect_journal_garbage(&self) -> Result<JournalGc, CatalogError> {
        let journal = &self.inner.journal;
        let scan = journal.gc_scan()?;
        let freed_bytes = journal.gc_with_staleness_threshold(JOURNAL_GC_STALENESS)?;
        Ok(JournalGc {
            files: scan.segment_count as u64,
            bytes: scan.total_bytes,
            stale_bytes: scan.stale_bytes,
            freed_bytes,
        })
    }

    /// Writes the journal's memtable out now, its blobs into a blob file (otherwise done when
    /// the memtable fills): for tests and tools that look at the blob files.
    #[doc(hidden)]
    pub fn seal_journal(&self) -> Result<(), CatalogError> {
        Ok(self.inner.journal.rotate_memtable_and_wait()?)
    }

    /// The last feed sequence number applied (0: none).
    pub fn cursor(&self) -> Result<u64, CatalogError> {
        match self.inner.meta.get(CURSOR)? {
            Some(v) => decode_u64("the cursor", &v),
            None => Ok(0),
        }
    }

    pub fn get(&self, key: &Key) -> Result<Option<RecordMeta>, CatalogError> {
        let v = self.inner.records.get(key.encode())?;
        Ok(v.map(|v| RecordMeta::decode(&v)).transpose()?)
    }

    pub fn journal_get(&self, key: &Key) -> Result<Option<Vec<u8>>, CatalogError> {
        let v = self.inner.journal.get(key.encode())?;
        Ok(v.map(|v| v.to_vec()))
    }

    /// The entries as of the last batch applied whole (fjall applies a batch item by item and
    /// then makes it visible at once); kept alive while its iterators are read.
    fn records_view(&self) -> fjall::Snapshot {
        self.inner
            .records
            .snapshot_at(self.inner.keyspace.instant())
    }

    /// Every record (recovery and prewarm ranking).
    pub fn scan(&self) -> Result<Vec<(Key, RecordMeta)>, CatalogError> {
        let view = self.records_view();
        let mut out = Vec::new();
        for item in view.iter() {
            let (k, v) = item.map_err(err)?;
            out.push((Key::decode(&k)?, RecordMeta::decode(&v)?));
        }
        Ok(out)
    }

    /// At most `limit` records in key order, after the encoded key `after` (from the first
    /// when `None`): placement cycles walk the catalog page by page, so their memory is a
    /// page and what they decide to move, not every record held.
    pub fn scan_page(
        &self,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Key, RecordMeta)>, CatalogError> {
        use std::ops::Bound;
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        let view = self.records_view();
        let mut out = Vec::with_capacity(limit.min(4096));
        for item in view
            .range::<&[u8], _>((lower, Bound::Unbounded))
            .take(limit)
        {
            let (k, v) = item.map_err(err)?;
            out.push((Key::decode(&k)?, RecordMeta::decode(&v)?));
        }
        Ok(out)
    }

    /// The packs with live records.
    pub fn packs(&self) -> Result<HashSet<String>, CatalogError> {
        let mut out = HashSet::new();
        for item in self.inner.packs.iter() {
            let (name, _) = item?;
            out.insert(
                String::from_utf8(name.to_vec())
                    .map_err(|_| CatalogError("a pack name is not UTF-8".into()))?,
            );
        }
        Ok(out)
    }

    fn pack_count(&self, name: &str) -> Result<u64, CatalogError> {
        match self.inner.packs.get(name)? {
            Some(v) => decode_u64("a pack count", &v),
            None => Ok(0),
        }
    }

    /// Applies new feed records (entry plus hot journal copy; keys already known, or earlier
    /// in `records`, are skipped: a redelivery) and the cursor, in one batch, durable at the
    /// next [`Catalog::flush`]. Returns which were new.
    pub fn ingest(
        &self,
        records: &[(Key, RecordMeta, Arc<Vec<u8>>)],
        cursor: u64,
    ) -> Result<Vec<bool>, CatalogError> {
        let inner = &*self.inner;
        let _writer = inner.writer.lock().unwrap_or_else(|e| e.into_inner());
        // Every key this batch writes is in the filter before it commits.
        let filter = inner.filter.get().map(KeyFilter::writing);
        let mut batch = inner.keyspace.batch();
        let mut fresh = Vec::with_capacity(records.len());
        let mut seen = HashSet::with_capacity(records.len());
        for (key, m, blob) in records {
            let k = key.encode();
            let may_hold = filter.as_ref().is_none_or(|f| f.may_contain(&k));
            if seen.contains(&k) || (may_hold && inner.records.contains_key(&k)?) {
                fresh.push(false);
                continue;
            }
            if let Some(f) = &filter {
                f.insert(&k);
            }
            batch.insert(&inner.records, k.as_slice(), m.encode());
            batch.insert(&inner.journal, k.as_slice(), blob.as_slice());
            seen.insert(k);
            fresh.push(true);
        }
        let cursor = self.cursor()?.max(cursor);
        batch.insert(&inner.meta, CURSOR, &cursor.to_be_bytes()[..]);
        batch.commit()?;
        inner.dirty.store(true, Ordering::Release);
        Ok(fresh)
    }

    /// Applies `ops` in one batch (synced when `durable`, else durable at the next
    /// [`Catalog::flush`]); returns the packs whose last live record left (their entries are
    /// gone: delete the objects). The last change of an entry or journal copy wins; pack
    /// releases are counted against the stored count, once per pack.
    pub fn commit(&self, ops: &[Op], durable: bool) -> Result<Vec<String>, CatalogError> {
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        let inner = &*self.inner;
        let _writer = inner.writer.lock().unwrap_or_else(|e| e.into_inner());
        let mut records: HashMap<Vec<u8>, Option<Vec<u8>>> = HashMap::new();
        let mut journal: HashMap<Vec<u8>, Option<&[u8]>> = HashMap::new();
        // Live records per pack as this batch leaves them (0: the entry goes).
        let mut packs: HashMap<&str, u64> = HashMap::new();
        let mut emptied: Vec<String> = Vec::new();
        let mut cursor = None;
        for op in ops {
            match op {
                Op::Put(k, m) => {
                    records.insert(k.encode(), Some(m.encode()));
                }
                Op::Remove(k) => {
                    let k = k.encode();
                    journal.insert(k.clone(), None);
                    records.insert(k, None);
                }
                Op::JournalPut(k, b) => {
                    journal.insert(k.encode(), Some(b.as_slice()));
                }
                Op::JournalDel(k) => {
                    journal.insert(k.encode(), None);
                }
                Op::PackAdd(name, n) => {
                    packs.insert(name, *n);
                }
                Op::PackRelease(name) => {
                    let left = match packs.get(name.as_str()) {
                        Some(n) => *n,
                        None => self.pack_count(name)?,
                    };
                    packs.insert(name, left.saturating_sub(1));
                    if left <= 1 && !emptied.contains(name) {
                        emptied.push(name.clone());
                    }
                }
                Op::Cursor(seq) => cursor = Some(cursor.unwrap_or(0).max(*seq)),
            }
        }
        // A pack added again after its last release (not done today) is not emptied.
        emptied.retain(|p| packs.get(p.as_str()) == Some(&0));
        let filter = inner.filter.get().map(KeyFilter::writing);
        let mut batch = inner.keyspace.batch();
        for (k, v) in records {
            match v {
                Some(v) => {
                    if let Some(f) = &filter {
                        f.insert(&k);
                    }
                    batch.insert(&inner.records, k, v);
                }
                None => batch.remove(&inner.records, k),
            }
        }
        for (k, v) in journal {
            match v {
                Some(v) => batch.insert(&inner.journal, k, v),
                None => batch.remove(&inner.journal, k),
            }
        }
        for (name, live) in packs {
            if live == 0 {
                batch.remove(&inner.packs, name.as_bytes());
            } else {
                batch.insert(&inner.packs, name.as_bytes(), &live.to_be_bytes()[..]);
            }
        }
        if let Some(seq) = cursor {
            let cursor = self.cursor()?.max(seq);
            batch.insert(&inner.meta, CURSOR, &cursor.to_be_bytes()[..]);
        }
        if durable {
            // Syncs the journal to its end: every lazy batch before this one too.
            batch.durability(Some(PersistMode::SyncAll)).commit()?;
            inner.dirty.store(false, Ordering::Release);
        } else {
            batch.commit()?;
            inner.dirty.store(true, Ordering::Release);
        }
        Ok(emptied)
    }

    /// The figures an audit reads, from one walk of every entry; `past_retention_after_ms`:
    /// count the records decided more than that long before the newest one (none when
    /// `None`).
    pub fn figures(
        &self,
        past_retention_after_ms: Option<u64>,
    ) -> Result<CatalogFigures, CatalogError> {
        let mut f = CatalogFigures::default();
        let (mut oldest, mut newest) = (i64::MAX, i64::MIN);
        let mut decided = Vec::new();
        let view = self.records_view();
        for item in view.iter() {
            let (_, v) = item.map_err(err)?;
            let m = RecordMeta::decode(&v)?;
            let t = m.tier.index();
            f.records[t] += 1;
            f.bytes[t] += m.stored_bytes();
            f.pending_moves += u64::from(m.pending.is_some());
            oldest = oldest.min(m.decided_ms);
            newest = newest.max(m.decided_ms);
            if past_retention_after_ms.is_some() {
                decided.push(m.decided_ms);
            }
        }
        if f.records.iter().all(|n| *n == 0) {
            (oldest, newest) = (0, 0);
        }
        f.oldest_decided_ms = oldest;
        f.newest_decided_ms = newest;
        if let Some(after) = past_retention_after_ms {
            let limit = newest.saturating_sub(i64::try_from(after).unwrap_or(i64::MAX));
            f.past_retention = decided.iter().filter(|d| **d < limit).count() as u64;
        }
        Ok(f)
    }
}

/// An older file's table, `None` when it has none.
fn open_old<K: redb::Key + 'static, V: redb::Value + 'static>(
    read: &redb::ReadTransaction,
    def: TableDefinition<K, V>,
) -> Result<Option<redb::ReadOnlyTable<K, V>>, CatalogError> {
    match read.open_table(def) {
        Ok(t) => Ok(Some(t)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(err(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{ColdLoc, Pending, Tier};

    fn meta(i: i64) -> RecordMeta {
        RecordMeta {
            tier: Tier::Hot,
            entered_ms: i,
            last_read_ms: 0,
            decided_ms: i,
            size: 10,
            cold: None,
            pending: None,
        }
    }

    fn key(i: u64) -> Key {
        Key::new(
            if i.is_multiple_of(2) { "a" } else { "b" },
            format!("{i:064x}"),
        )
    }

    fn ingest_n(cat: &Catalog, n: u64, cursor: u64) {
        let records: Vec<_> = (0..n)
            .map(|i| (key(i), meta(i as i64), Arc::new(vec![i as u8])))
            .collect();
        cat.ingest(&records, cursor).unwrap();
    }

    #[test]
    fn pages_walk_every_record_once_in_key_order() {
        let dir = tempfile::tempdir().unwrap();
        let cat = Catalog::open(dir.path()).unwrap();
        ingest_n(&cat, 10, 10);

        let mut walked = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = cat.scan_page(after.as_deref(), 3).unwrap();
            assert!(page.len() <= 3);
            let Some((last, _)) = page.last() else { break };
            after = Some(last.encode());
            walked.extend(page);
        }
        assert_eq!(
            walked,
            cat.scan().unwrap(),
            "the pages are the whole scan, in order"
        );
        assert_eq!(walked.len(), 10);
        let encoded: Vec<_> = walked.iter().map(|(k, _)| k.encode()).collect();
        assert!(encoded.windows(2).all(|w| w[0] < w[1]), "key order");
        assert!(cat.scan_page(after.as_deref(), 3).unwrap().is_empty());
    }

    /// A kilobyte blob for record `i` (above the separation threshold).
    fn big_blob(i: u64) -> Arc<Vec<u8>> {
        Arc::new(format!("{i:0>1024}").into_bytes())
    }

    /// Blobs flushed from the journal's memtable into a blob file of their own.
    fn ingest_flushed(cat: &Catalog, range: std::ops::Range<u64>) {
        let records: Vec<_> = range
            .clone()
            .map(|i| (key(i), meta(i as i64), big_blob(i)))
            .collect();
        cat.ingest(&records, range.end).unwrap();
        cat.seal_journal().unwrap();
    }

    /// Records that leave the hot tier give their journal space back: the blob file holding
    /// only them is dropped, the other file's blobs are untouched, and nothing is dropped
    /// while every blob is live.
    #[test]
    fn the_journal_space_of_records_no_longer_hot_comes_back() {
        let dir = tempfile::tempdir().unwrap();
        let cat = Catalog::open(dir.path()).unwrap();
        ingest_flushed(&cat, 0..500);
        ingest_flushed(&cat, 500..1000);

        let idle = cat.collect_journal_garbage().unwrap();
        assert_eq!(idle.files, 2);
        assert!(idle.bytes > 0);
        assert_eq!((idle.stale_bytes, idle.freed_bytes), (0, 0));

        // The first 500 leave the hot tier (their journal copies go), as a demotion does.
        let ops: Vec<_> = (0..500).map(|i| Op::JournalDel(key(i))).collect();
        cat.commit(&ops, true).unwrap();
        let gc = cat.collect_journal_garbage().unwrap();
        assert_eq!(gc.files, 2);
        assert!(
            gc.stale_bytes > 0 && gc.stale_bytes < gc.bytes,
            "one file of two is stale: {gc:?}"
        );
        assert!(gc.freed_bytes > 0, "the stale file is dropped: {gc:?}");
        for i in 0..500 {
            assert_eq!(cat.journal_get(&key(i)).unwrap(), None);
        }
        for i in 500..1000 {
            assert_eq!(
                cat.journal_get(&key(i)).unwrap(),
                Some(big_blob(i).to_vec())
            );
        }
        let after = cat.collect_journal_garbage().unwrap();
        assert_eq!((after.files, after.stale_bytes), (1, 0));
        assert_eq!(after.bytes, gc.bytes - gc.stale_bytes);

        // And the journal reopens as it was left.
        drop(cat);
        let cat = Catalog::open(dir.path()).unwrap();
        assert_eq!(cat.journal_get(&key(0)).unwrap(), None);
        assert_eq!(
            cat.journal_get(&key(999)).unwrap(),
            Some(big_blob(999).to_vec())
        );
    }

    /// The last layout's journal (the partition `blobs`, not key-value separated) moves into
    /// the separated partition at open, once, over more than one batch.
    #[test]
    fn the_journal_moves_into_a_key_value_separated_partition() {
        let dir = tempfile::tempdir().unwrap();
        let n = old::CHUNK as u64 + 10;
        {
            let keyspace = fjall::Config::new(dir.path().join(DIR_NAME))
                .open()
                .unwrap();
            let blobs = keyspace
                .open_partition(OLD_JOURNAL, PartitionCreateOptions::default())
                .unwrap();
            let records = keyspace
                .open_partition(RECORDS, PartitionCreateOptions::default())
                .unwrap();
            for i in 0..n {
                blobs
                    .insert(key(i).encode(), big_blob(i).as_slice())
                    .unwrap();
                records
                    .insert(key(i).encode(), meta(i as i64).encode())
                    .unwrap();
            }
            keyspace.persist(PersistMode::SyncAll).unwrap();
        }
        let cat = Catalog::open(dir.path()).unwrap();
        assert!(!cat.inner.keyspace.partition_exists(OLD_JOURNAL));
        for i in [0, n / 2, n - 1] {
            assert_eq!(cat.get(&key(i)).unwrap(), Some(meta(i as i64)));
            assert_eq!(
                cat.journal_get(&key(i)).unwrap(),
                Some(big_blob(i).to_vec())
            );
        }
        // Flushed, the moved blobs go to a blob file, not the tree.
        cat.seal_journal().unwrap();
        let gc = cat.collect_journal_garbage().unwrap();
        assert_eq!(gc.files, 1);
        assert_eq!(gc.bytes, n * 1024);
        cat.commit(&[Op::JournalDel(key(0))], true).unwrap();
        drop(cat);
        let cat = Catalog::open(dir.path()).unwrap();
        assert!(!cat.inner.keyspace.partition_exists(OLD_JOURNAL));
        assert_eq!(cat.journal_get(&key(0)).unwrap(), None, "not moved twice");
        assert_eq!(
            cat.journal_get(&key(1)).unwrap(),
            Some(big_blob(1).to_vec())
        );
    }

    #[test]
    fn journal_copies_come_and_go_with_hot_records() {
        let dir = tempfile::tempdir().unwrap();
        let cat = Catalog::open(dir.path()).unwrap();
        let key = key(1);
        let fresh = cat
            .ingest(&[(key.clone(), meta(1), Arc::new(b"blob".to_vec()))], 1)
            .unwrap();
        assert_eq!(fresh, vec![true]);
        assert_eq!(cat.journal_get(&key).unwrap(), Some(b"blob".to_vec()));
        cat.commit(&[Op::JournalDel(key.clone())], false).unwrap();
        assert_eq!(cat.journal_get(&key).unwrap(), None);
        cat.commit(
            &[Op::JournalPut(key.clone(), Arc::new(b"back".to_vec()))],
            true,
        )
        .unwrap();
        drop(cat);
        let cat = Catalog::open(dir.path()).unwrap();
        assert_eq!(cat.journal_get(&key).unwrap(), Some(b"back".to_vec()));
        assert_eq!(cat.get(&key).unwrap(), Some(meta(1)));
        assert_eq!(cat.cursor().unwrap(), 1);
        cat.commit(&[Op::Remove(key.clone())], true).unwrap();
        assert_eq!(cat.journal_get(&key).unwrap(), None);
        assert_eq!(cat.get(&key).unwrap(), None);
    }

    /// A redelivered key, known or earlier in the same batch, is not new; the cursor only
    /// moves forward; lazy batches are pending until a flush or a durable commit.
    #[test]
    fn ingest_skips_redeliveries_and_keeps_the_highest_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let cat = Catalog::open(dir.path()).unwrap();
        assert!(!cat.inner.dirty.load(Ordering::Acquire));
        let rec = |i: u64, blob: &[u8]| (key(i), meta(i as i64), Arc::new(blob.to_vec()));
        let fresh = cat
            .ingest(&[rec(1, b"one"), rec(2, b"two"), rec(1, b"again")], 7)
            .unwrap();
        assert_eq!(fresh, vec![true, true, false]);
        assert!(cat.inner.dirty.load(Ordering::Acquire));
        cat.flush().unwrap();
        assert!(!cat.inner.dirty.load(Ordering::Acquire));
        let fresh = cat.ingest(&[rec(2, b"late"), rec(3, b"three")], 5).unwrap();
        assert_eq!(fresh, vec![false, true]);
        assert_eq!(cat.journal_get(&key(1)).unwrap(), Some(b"one".to_vec()));
        assert_eq!(cat.journal_get(&key(2)).unwrap(), Some(b"two".to_vec()));
        assert_eq!(
            cat.cursor().unwrap(),
            7,
            "an older cursor does not move it back"
        );
        cat.commit(&[Op::Cursor(9)], true).unwrap();
        assert!(!cat.inner.dirty.load(Ordering::Acquire));
        assert_eq!(cat.cursor().unwrap(), 9);
    }

    /// With the key filter built, keys held before the open (found by its scan), keys
    /// ingested since and keys written by a commit alone are all redeliveries; keys never
    /// written are new.
    #[test]
    fn ingest_with_the_key_filter_built_still_skips_every_held_key() {
        let dir = tempfile::tempdir().unwrap();
        let cat = Catalog::open(dir.path()).unwrap();
        ingest_n(&cat, 4, 4);
        drop(cat);
        let cat = Catalog::open(dir.path()).unwrap();
        let filter = cat
            .inner
            .filter
            .get()
            .expect("the filter is started at open");
        filter.wait_built();
        assert!(filter.is_built());
        let rec = |i: u64| (key(i), meta(i as i64), Arc::new(vec![i as u8]));
        assert_eq!(
            cat.ingest(&[rec(0), rec(3), rec(4)], 5).unwrap(),
            vec![false, false, true]
        );
        // A record written by a commit (a restore, say), not by the feed.
        cat.commit(&[Op::Put(key(9), meta(9))], false).unwrap();
        assert_eq!(
            cat.ingest(&[rec(4), rec(9), rec(10)], 6).unwrap(),
            vec![false, false, true]
        );
    }

    /// One commit writes each key once: the last change of an entry or journal copy wins,
    /// a pack's releases are summed against its stored count.
    #[test]
    fn a_commit_folds_repeated_keys_and_pack_releases() {
        let dir = tempfile::tempdir().unwrap();
        let cat = Catalog::open(dir.path()).unwrap();
        let k = key(4);
        let mut cold = meta(4);
        cold.tier = Tier::Cold;
        cold.cold = Some(ColdLoc {
            pack: "p1".into(),
            offset: 0,
            len: 10,
        });
        let emptied = cat
            .commit(
                &[
                    Op::Put(k.clone(), meta(1)),
                    Op::JournalPut(k.clone(), Arc::new(b"x".to_vec())),
                    Op::Put(k.clone(), cold.clone()),
                    Op::JournalDel(k.clone()),
                    Op::PackAdd("p1".into(), 3),
                    Op::PackAdd("p2".into(), 1),
                ],
                true,
            )
            .unwrap();
        assert!(emptied.is_empty());
        assert_eq!(cat.get(&k).unwrap(), Some(cold));
        assert_eq!(cat.journal_get(&k).unwrap(), None);
        assert_eq!(cat.pack_count("p1").unwrap(), 3);

        let release = |p: &str| Op::PackRelease(p.into());
        let emptied = cat.commit(&[release("p1"), release("p1")], true).unwrap();
        assert!(emptied.is_empty());
        assert_eq!(cat.pack_count("p1").unwrap(), 1);
        let emptied = cat
            .commit(&[release("p1"), release("p2"), release("p1")], true)
            .unwrap();
        let emptied: HashSet<String> = emptied.into_iter().collect();
        assert_eq!(emptied, HashSet::from(["p1".to_owned(), "p2".to_owned()]));
        assert!(cat.packs().unwrap().is_empty());
    }

    /// Pack counts are read, changed and written back under the writer lock: releases from
    /// many threads at once lose none, and the pack is emptied exactly once.
    #[test]
    fn concurrent_commits_do_not_lose_pack_releases() {
        let dir = tempfile::tempdir().unwrap();
        let cat = Catalog::open(dir.path()).unwrap();
        cat.commit(&[Op::PackAdd("p".into(), 200)], true).unwrap();
        let emptied: Vec<String> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..4)
                .map(|t| {
                    let cat = cat.clone();
                    s.spawn(move || {
                        let mut emptied = Vec::new();
                        for i in 0..50 {
                            let ops = [
                                Op::PackRelease("p".into()),
                                Op::Cursor(t * 100 + i),
                                Op::Put(key(t * 100 + i), meta(1)),
                            ];
                            emptied.extend(cat.commit(&ops, i % 2 == 0).unwrap());
                        }
                        emptied
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap())
                .collect()
        });
        assert_eq!(emptied, vec!["p".to_owned()]);
        assert!(cat.packs().unwrap().is_empty());
        assert_eq!(cat.cursor().unwrap(), 349);
        assert_eq!(cat.scan().unwrap().len(), 200);
    }

    /// fjall does not lock its directory: the catalog's lock file keeps a second opener off.
    #[test]
    fn a_second_opener_is_refused_while_the_catalog_is_open() {
        let dir = tempfile::tempdir().unwrap();
        let cat = Catalog::open(dir.path()).unwrap();
        let e = Catalog::open(dir.path()).err().expect("held");
        assert!(e.to_string().contains(LOCK_FILE), "{e}");
        assert!(Catalog::open_if_free(dir.path()).unwrap().is_none());
        ingest_n(&cat, 3, 3);
        drop(cat);
        let cat = Catalog::open_if_free(dir.path()).unwrap().expect("free");
        assert_eq!(cat.scan().unwrap().len(), 3);
        assert!(Catalog::exists(dir.path()));
        assert!(!Catalog::exists(&dir.path().join("elsewhere")));
    }

    #[test]
    fn figures_count_tiers_pending_moves_and_records_past_retention() {
        let dir = tempfile::tempdir().unwrap();
        let cat = Catalog::open(dir.path()).unwrap();
        assert_eq!(cat.figures(Some(10)).unwrap(), CatalogFigures::default());
        let mut ops = Vec::new();
        for i in 0..6u64 {
            let mut m = meta(1_000 + i as i64 * 100);
            m.tier = [Tier::Hot, Tier::Warm, Tier::Cold][i as usize % 3];
            if i == 5 {
                m.pending = Some(Pending::Remove);
            }
            ops.push(Op::Put(key(i), m));
        }
        cat.commit(&ops, true).unwrap();
        let f = cat.figures(Some(250)).unwrap();
        assert_eq!(f.records, [2, 2, 2]);
        assert_eq!(f.bytes[0], 2 * meta(0).stored_bytes());
        assert_eq!(f.pending_moves, 1);
        assert_eq!((f.oldest_decided_ms, f.newest_decided_ms), (1_000, 1_500));
        // Decided before 1,500 - 250: 1,000, 1,100 and 1,200.
        assert_eq!(f.past_retention, 3);
        assert_eq!(cat.figures(None).unwrap().past_retention, 0);
    }

    /// Writes the stores of the layout before this one into `dir`: `catalog.redb` with the
    /// entries of keys `0..n` (and, when `journal_in_redb`, their journal copies), a pack
    /// and the cursor; otherwise the copies in `hot_journal.fjall`.
    fn write_old_layout(dir: &Path, n: u64, journal_in_redb: bool) {
        let db = flk_runtime::embedded_db::open(&dir.join(OLD_FILE_NAME)).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut records = txn.open_table(old::RECORDS).unwrap();
            let mut journal = journal_in_redb.then(|| txn.open_table(old::JOURNAL).unwrap());
            for i in 0..n {
                let k = key(i).encode();
                records
                    .insert(k.as_slice(), meta(i as i64).encode().as_slice())
                    .unwrap();
                if let Some(j) = &mut journal {
                    j.insert(k.as_slice(), format!("blob {i}").as_bytes())
                        .unwrap();
                }
            }
            txn.open_table(old::PACKS)
                .unwrap()
                .insert("pack-1", 5)
                .unwrap();
            txn.open_table(old::META)
                .unwrap()
                .insert("cursor", 4_242)
                .unwrap();
        }
        txn.commit().unwrap();
        if !journal_in_redb {
            let keyspace = fjall::Config::new(dir.join(OLD_JOURNAL_DIR))
                .open()
                .unwrap();
            let blobs = keyspace
                .open_partition(OLD_JOURNAL, PartitionCreateOptions::default())
                .unwrap();
            for i in 0..n {
                blobs
                    .insert(key(i).encode(), format!("blob {i}").as_bytes())
                    .unwrap();
            }
            keyspace.persist(PersistMode::SyncAll).unwrap();
        }
    }

    fn assert_moved(cat: &Catalog, n: u64) {
        let all = cat.scan().unwrap();
        assert_eq!(all.len() as u64, n);
        for i in 0..n {
            assert_eq!(cat.get(&key(i)).unwrap(), Some(meta(i as i64)));
            assert_eq!(
                cat.journal_get(&key(i)).unwrap(),
                Some(format!("blob {i}").into_bytes())
            );
        }
        assert_eq!(cat.packs().unwrap(), HashSet::from(["pack-1".to_owned()]));
        assert_eq!(cat.pack_count("pack-1").unwrap(), 5);
        assert_eq!(cat.cursor().unwrap(), 4_242);
    }

    /// The layout before this one (entries in `catalog.redb`, the journal in
    /// `hot_journal.fjall`) and the one before it (the journal in `catalog.redb` too) move
    /// into `catalog.fjall` at open, once; the old stores are gone afterwards.
    #[test]
    fn an_older_catalog_moves_from_redb_to_fjall() {
        for journal_in_redb in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            // More than one batch of the move.
            let n = old::CHUNK as u64 + 10;
            write_old_layout(dir.path(), n, journal_in_redb);
            assert!(Catalog::exists(dir.path()));
            let cat = Catalog::open(dir.path()).unwrap();
            assert_moved(&cat, n);
            assert!(!dir.path().join(OLD_FILE_NAME).exists());
            assert!(!dir.path().join(OLD_JOURNAL_DIR).exists());
            assert!(!cat.inner.keyspace.partition_exists(OLD_JOURNAL));
            // The catalog goes on from there, and a second open moves nothing back.
            cat.commit(&[Op::Remove(key(0)), Op::Cursor(5_000)], true)
                .unwrap();
            drop(cat);
            let cat = Catalog::open(dir.path()).unwrap();
            assert_eq!(cat.get(&key(0)).unwrap(), None);
            assert_eq!(cat.journal_get(&key(0)).unwrap(), None);
            assert_eq!(cat.cursor().unwrap(), 5_000);
            assert_eq!(cat.scan().unwrap().len() as u64, n - 1);
        }
    }

    /// A move cut short (part of the entries written to the keyspace, `catalog.redb` still
    /// there) is done again, whole, at the next open.
    #[test]
    fn a_move_cut_short_is_redone_at_the_next_open() {
        let dir = tempfile::tempdir().unwrap();
        write_old_layout(dir.path(), 20, false);
        // What a crash mid-move leaves: the keyspace renamed, some entries and no cursor in
        // it, the redb file untouched.
        std::fs::rename(dir.path().join(OLD_JOURNAL_DIR), dir.path().join(DIR_NAME)).unwrap();
        let aside = dir.path().join("aside.redb");
        std::fs::rename(dir.path().join(OLD_FILE_NAME), &aside).unwrap();
        {
            let cat = Catalog::open(dir.path()).unwrap();
            let ops: Vec<_> = (0..7).map(|i| Op::Put(key(i), meta(i as i64))).collect();
            cat.commit(&ops, true).unwrap();
            assert_eq!(cat.cursor().unwrap(), 0);
        }
        std::fs::rename(&aside, dir.path().join(OLD_FILE_NAME)).unwrap();
        let cat = Catalog::open(dir.path()).unwrap();
        assert_moved(&cat, 20);
        assert!(!dir.path().join(OLD_FILE_NAME).exists());
    }
}
