//! The placement catalog: `<data_dir>/catalog.redb`, the durable record of which tier holds
//! each record (with its times, size, cold location and the move in progress), the live-record
//! count of every cold pack, and the feed cursor; and beside it the hot journal
//! (`<data_dir>/hot_journal.fjall`), a durable copy of every hot record's blob (the hot tier
//! itself is volatile).
//!
//! | table | key | value |
//! |---|---|---|
//! | `records` | `Key::encode` | `RecordMeta::encode` |
//! | hot journal (fjall) | `Key::encode` | blob |
//! | `packs` | pack name | live records |
//! | `meta` | `"cursor"` | last feed sequence number applied |
//!
//! **Why the journal is an LSM tree.** Every record ingested inserts its whole blob (about a
//! kilobyte) under a uniformly random key. In redb, which held the journal first, that
//! rewrote a B-tree page per record and was most of svc-tiering's CPU under load
//! (`docs/BENCHMARKS.md`, issue 23); fjall appends it to a journal file. The two stores are
//! kept in step by order: a journal copy is written before the catalog commit that makes its
//! record hot, and persisted before any durable catalog commit; a journal copy is removed only
//! after the durable catalog commit that made its record leave the hot tier. A crash can
//! therefore leave a journal copy no hot record refers to (it is ignored, and overwritten if
//! the record comes back), never a hot record without its copy. A catalog written before the
//! journal moved holds it in a redb table `hot_journal`; [`Catalog::open`] moves it over.
//!
//! Writes are batches of [`Op`]s in one transaction; the engine orders them so that every
//! crash is safe (see `engine`). Two kinds of commit do not wait for the disk
//! ([`LazyDb`]; [`Catalog::flush`] makes them durable, every
//! [`flk_runtime::embedded_db::FLUSH_INTERVAL`] and at shutdown): feed batches
//! ([`Catalog::ingest`]), which a crash rolls back together with the cursor so that the feed
//! delivers them again, and commits that only move read times (`touch`), of which a crash
//! may forget a read, which only demotes a record sooner. Every commit of a move or removal
//! is durable, and persists the lazy ones before it.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use fjall::{Keyspace, PartitionCreateOptions, PartitionHandle, PersistMode};
use flk_runtime::embedded_db::LazyDb;
use redb::{ReadableTable, TableDefinition};

use crate::record::{DecodeError, Key, RecordMeta};

/// The catalog's file in the data directory.
pub const FILE_NAME: &str = "catalog.redb";

/// The hot journal's directory, next to the catalog's file.
pub const JOURNAL_DIR: &str = "hot_journal.fjall";

const RECORDS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("records");
/// The hot journal before it moved to fjall: read once, by [`Catalog::open`].
const OLD_JOURNAL: TableDefinition<&[u8], &[u8]> = TableDefinition::new("hot_journal");
const PACKS: TableDefinition<&str, u64> = TableDefinition::new("packs");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

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

/// The hot journal: blobs by encoded key.
struct Journal {
    blobs: PartitionHandle,
    keyspace: Keyspace,
}

impl Journal {
    fn open(path: &Path) -> Result<Journal, CatalogError> {
        let keyspace = fjall::Config::new(path)
            .max_write_buffer_size(flk_runtime::embedded_db::FJALL_WRITE_BUFFER_BYTES)
            .cache_size(flk_runtime::embedded_db::FJALL_CACHE_BYTES)
            .open()
            .map_err(|e| err(format!("{}: {e}", path.display())))?;
        let blobs = keyspace
            .open_partition("blobs", PartitionCreateOptions::default())
            .map_err(err)?;
        Ok(Journal { blobs, keyspace })
    }

    /// Puts and removes in one atomic batch, handed to the operating system.
    fn write(&self, puts: &[(Vec<u8>, &[u8])], removes: &[Vec<u8>]) -> Result<(), CatalogError> {
        if puts.is_empty() && removes.is_empty() {
            return Ok(());
        }
        let mut batch = self.keyspace.batch();
        for (k, blob) in puts {
            batch.insert(&self.blobs, k.as_slice(), *blob);
        }
        for k in removes {
            batch.remove(&self.blobs, k.as_slice());
        }
        batch.commit().map_err(err)
    }

    fn persist(&self) -> Result<(), CatalogError> {
        self.keyspace.persist(PersistMode::SyncAll).map_err(err)
    }
}

/// The catalog's two stores; dropped last by the last clone.
struct Inner {
    journal: Journal,
    db: LazyDb,
}

/// A clean close keeps every lazy commit, journal first.
impl Drop for Inner {
    fn drop(&mut self) {
        let result = self
            .journal
            .persist()
            .and_then(|()| self.db.flush().map_err(err));
        if let Err(e) = result {
            tracing::error!(error = %e, "svc-tiering could not make its last catalog commits durable");
        }
    }
}

/// The catalog. Cheap to clone.
#[derive(Clone)]
pub struct Catalog {
    inner: Arc<Inner>,
}

/// Moves the hot journal of a catalog written before it moved to fjall, then drops the redb
/// table. Idempotent: a crash before the table is dropped moves the same blobs again.
fn move_old_journal(db: &redb::Database, journal: &Journal) -> Result<(), CatalogError> {
    const CHUNK: usize = 4096;
    let read = db.begin_read().map_err(err)?;
    let old = match read.open_table(OLD_JOURNAL) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(e) => return Err(err(e)),
    };
    let mut chunk: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(CHUNK);
    let mut moved = 0;
    let mut items = old.iter().map_err(err)?.peekable();
    while let Some(item) = items.next() {
        let (k, v) = item.map_err(err)?;
        chunk.push((k.value().to_vec(), v.value().to_vec()));
        if chunk.len() == CHUNK || items.peek().is_none() {
            let puts: Vec<_> = chunk
                .iter()
                .map(|(k, v)| (k.clone(), v.as_slice()))
                .collect();
            journal.write(&puts, &[])?;
            moved += chunk.len();
            chunk.clear();
        }
    }
    drop(items);
    journal.persist()?;
    drop(old);
    drop(read);
    let txn = db.begin_write().map_err(err)?;
    txn.delete_table(OLD_JOURNAL).map_err(err)?;
    txn.commit().map_err(err)?;
    tracing::info!(
        blobs = moved,
        "moved the hot journal from catalog.redb to hot_journal.fjall"
    );
    Ok(())
}

impl Catalog {
    /// Opens (creating if needed) the catalog file `path` and the hot journal next to it.
    pub fn open(path: &Path) -> Result<Catalog, CatalogError> {
        let db = flk_runtime::embedded_db::open(path)
            .map_err(|e| err(format!("{}: {e}", path.display())))?;
        let txn = db.begin_write().map_err(err)?;
        txn.open_table(RECORDS).map_err(err)?;
        txn.open_table(PACKS).map_err(err)?;
        txn.open_table(META).map_err(err)?;
        txn.commit().map_err(err)?;
        // The redb file's lock (held while `db` lives) guards the journal too.
        let journal = Journal::open(&path.with_file_name(JOURNAL_DIR))?;
        move_old_journal(&db, &journal)?;
        Ok(Catalog {
            inner: Arc::new(Inner {
                journal,
                db: LazyDb::new(db),
            }),
        })
    }

    fn db(&self) -> &LazyDb {
        &self.inner.db
    }

    /// Makes every lazy commit durable, journal first (see the module docs); nothing when
    /// none is pending.
    pub fn flush(&self) -> Result<(), CatalogError> {
        if !self.db().pending() {
            return Ok(());
        }
        self.inner.journal.persist()?;
        self.db().flush().map_err(err)
    }

    /// The last feed sequence number applied (0: none).
    pub fn cursor(&self) -> Result<u64, CatalogError> {
        let txn = self.db().begin_read().map_err(err)?;
        let t = txn.open_table(META).map_err(err)?;
        Ok(t.get("cursor").map_err(err)?.map_or(0, |v| v.value()))
    }

    pub fn get(&self, key: &Key) -> Result<Option<RecordMeta>, CatalogError> {
        let txn = self.db().begin_read().map_err(err)?;
        let t = txn.open_table(RECORDS).map_err(err)?;
        let v = t.get(key.encode().as_slice()).map_err(err)?;
        Ok(v.map(|v| RecordMeta::decode(v.value())).transpose()?)
    }

    pub fn journal_get(&self, key: &Key) -> Result<Option<Vec<u8>>, CatalogError> {
        let v = self.inner.journal.blobs.get(key.encode()).map_err(err)?;
        Ok(v.map(|v| v.to_vec()))
    }

    /// Every record (placement cycles and recovery).
    pub fn scan(&self) -> Result<Vec<(Key, RecordMeta)>, CatalogError> {
        let txn = self.db().begin_read().map_err(err)?;
        let t = txn.open_table(RECORDS).map_err(err)?;
        let mut out = Vec::new();
        for item in t.iter().map_err(err)? {
            let (k, v) = item.map_err(err)?;
            out.push((Key::decode(k.value())?, RecordMeta::decode(v.value())?));
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
        let txn = self.db().begin_read().map_err(err)?;
        let t = txn.open_table(RECORDS).map_err(err)?;
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut out = Vec::with_capacity(limit.min(4096));
        for item in t
            .range::<&[u8]>((lower, Bound::Unbounded))
            .map_err(err)?
            .take(limit)
        {
            let (k, v) = item.map_err(err)?;
            out.push((Key::decode(k.value())?, RecordMeta::decode(v.value())?));
        }
        Ok(out)
    }

    /// The packs with live records.
    pub fn packs(&self) -> Result<HashSet<String>, CatalogError> {
        let txn = self.db().begin_read().map_err(err)?;
        let t = txn.open_table(PACKS).map_err(err)?;
        let mut out = HashSet::new();
        for item in t.iter().map_err(err)? {
            out.insert(item.map_err(err)?.0.value().to_owned());
        }
        Ok(out)
    }

    /// Applies new feed records (entry plus hot journal copy; keys already known are
    /// skipped: a redelivery) and the cursor, in one transaction, durable at the next
    /// [`Catalog::flush`]. Returns which were new.
    pub fn ingest(
        &self,
        records: &[(Key, RecordMeta, Arc<Vec<u8>>)],
        cursor: u64,
    ) -> Result<Vec<bool>, CatalogError> {
        let txn = self.db().begin_write().map_err(err)?;
        let mut fresh = Vec::with_capacity(records.len());
        let mut copies = Vec::with_capacity(records.len());
        {
            let mut recs = txn.open_table(RECORDS).map_err(err)?;
            let mut meta = txn.open_table(META).map_err(err)?;
            for (key, m, blob) in records {
                let k = key.encode();
                if recs.get(k.as_slice()).map_err(err)?.is_some() {
                    fresh.push(false);
                    continue;
                }
                recs.insert(k.as_slice(), m.encode().as_slice())
                    .map_err(err)?;
                copies.push((k, blob.as_slice()));
                fresh.push(true);
            }
            let old = meta.get("cursor").map_err(err)?.map_or(0, |v| v.value());
            meta.insert("cursor", old.max(cursor)).map_err(err)?;
        }
        // The journal copies before the commit that makes their records hot.
        self.inner.journal.write(&copies, &[])?;
        self.db().commit_lazy(txn).map_err(err)?;
        Ok(fresh)
    }

    /// Applies `ops` in one transaction (fsync'd when `durable`, else durable at the next
    /// [`Catalog::flush`]); returns the packs whose last live record left (their entries are
    /// gone: delete the objects). Journal copies are added before the catalog commit and
    /// removed after it, which is then durable whatever `durable` says (the module docs).
    pub fn commit(&self, ops: &[Op], durable: bool) -> Result<Vec<String>, CatalogError> {
        let txn = self.db().begin_write().map_err(err)?;
        let mut emptied = Vec::new();
        let mut copies: Vec<(Vec<u8>, &[u8])> = Vec::new();
        let mut dropped: Vec<Vec<u8>> = Vec::new();
        {
            let mut recs = txn.open_table(RECORDS).map_err(err)?;
            let mut packs = txn.open_table(PACKS).map_err(err)?;
            let mut meta = txn.open_table(META).map_err(err)?;
            for op in ops {
                match op {
                    Op::Put(k, m) => {
                        recs.insert(k.encode().as_slice(), m.encode().as_slice())
                            .map_err(err)?;
                    }
                    Op::Remove(k) => {
                        let k = k.encode();
                        recs.remove(k.as_slice()).map_err(err)?;
                        dropped.push(k);
                    }
                    Op::JournalPut(k, b) => copies.push((k.encode(), b.as_slice())),
                    Op::JournalDel(k) => dropped.push(k.encode()),
                    Op::PackAdd(name, n) => {
                        packs.insert(name.as_str(), *n).map_err(err)?;
                    }
                    Op::PackRelease(name) => {
                        let left = packs
                            .get(name.as_str())
                            .map_err(err)?
                            .map(|v| v.value())
                            .unwrap_or(0);
                        if left <= 1 {
                            packs.remove(name.as_str()).map_err(err)?;
                            emptied.push(name.clone());
                        } else {
                            packs.insert(name.as_str(), left - 1).map_err(err)?;
                        }
                    }
                    Op::Cursor(seq) => {
                        let old = meta.get("cursor").map_err(err)?.map_or(0, |v| v.value());
                        meta.insert("cursor", old.max(*seq)).map_err(err)?;
                    }
                }
            }
        }
        self.inner.journal.write(&copies, &[])?;
        if durable || !dropped.is_empty() {
            // Persists every earlier lazy commit too: their journal copies first.
            self.inner.journal.persist()?;
            txn.commit().map_err(err)?;
        } else {
            self.db().commit_lazy(txn).map_err(err)?;
        }
        // The catalog no longer refers to these copies; one left behind by a failure here is
        // ignored like a crash's (the module docs), so the commit stands.
        if let Err(e) = self.inner.journal.write(&[], &dropped) {
            tracing::warn!(error = %e, copies = dropped.len(), "cannot remove hot journal copies; left behind");
        }
        Ok(emptied)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Tier;

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

    #[test]
    fn pages_walk_every_record_once_in_key_order() {
        let dir = tempfile::tempdir().unwrap();
        let cat = Catalog::open(&dir.path().join("catalog.redb")).unwrap();
        let records: Vec<_> = (0..10)
            .map(|i| {
                let tenant = if i % 2 == 0 { "a" } else { "b" };
                (
                    Key::new(tenant, format!("{i:064x}")),
                    meta(i),
                    Arc::new(vec![i as u8]),
                )
            })
            .collect();
        cat.ingest(&records, 10).unwrap();

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
        assert!(cat.scan_page(after.as_deref(), 3).unwrap().is_empty());
    }

    #[test]
    fn journal_copies_come_and_go_with_hot_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let cat = Catalog::open(&path).unwrap();
        let key = Key::new("a", format!("{:064x}", 1));
        let fresh = cat
            .ingest(&[(key.clone(), meta(1), Arc::new(b"blob".to_vec()))], 1)
            .unwrap();
        assert_eq!(fresh, vec![true]);
        assert_eq!(cat.journal_get(&key).unwrap(), Some(b"blob".to_vec()));
        // A lazy commit that drops a copy is made durable before the copy goes.
        cat.commit(&[Op::JournalDel(key.clone())], false).unwrap();
        assert_eq!(cat.journal_get(&key).unwrap(), None);
        cat.commit(
            &[Op::JournalPut(key.clone(), Arc::new(b"back".to_vec()))],
            true,
        )
        .unwrap();
        drop(cat);
        let cat = Catalog::open(&path).unwrap();
        assert_eq!(cat.journal_get(&key).unwrap(), Some(b"back".to_vec()));
        assert_eq!(cat.get(&key).unwrap(), Some(meta(1)));
        cat.commit(&[Op::Remove(key.clone())], true).unwrap();
        assert_eq!(cat.journal_get(&key).unwrap(), None);
        assert_eq!(cat.get(&key).unwrap(), None);
    }

    /// A catalog from before the journal moved to fjall: the copies move at open.
    #[test]
    fn an_older_catalogs_journal_moves_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let key = Key::new("a", format!("{:064x}", 7));
        {
            let db = flk_runtime::embedded_db::open(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(RECORDS)
                .unwrap()
                .insert(key.encode().as_slice(), meta(7).encode().as_slice())
                .unwrap();
            txn.open_table(OLD_JOURNAL)
                .unwrap()
                .insert(key.encode().as_slice(), b"old blob".as_slice())
                .unwrap();
            txn.commit().unwrap();
        }
        let cat = Catalog::open(&path).unwrap();
        assert_eq!(cat.journal_get(&key).unwrap(), Some(b"old blob".to_vec()));
        assert_eq!(cat.get(&key).unwrap(), Some(meta(7)));
        let read = cat.db().begin_read().unwrap();
        assert!(matches!(
            read.open_table(OLD_JOURNAL),
            Err(redb::TableError::TableDoesNotExist(_))
        ));
    }
}
