//! The placement catalog: `<data_dir>/catalog.redb`, the durable record of which tier holds
//! each record (with its times, size, cold location and the move in progress), the hot
//! journal (a durable copy of every hot record's blob: the hot tier itself is volatile),
//! the live-record count of every cold pack, and the feed cursor.
//!
//! | table | key | value |
//! |---|---|---|
//! | `records` | `Key::encode` | `RecordMeta::encode` |
//! | `hot_journal` | `Key::encode` | blob |
//! | `packs` | pack name | live records |
//! | `meta` | `"cursor"` | last feed sequence number applied |
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

use flk_runtime::embedded_db::LazyDb;
use redb::{ReadableTable, TableDefinition};

use crate::record::{DecodeError, Key, RecordMeta};

/// The catalog's file in the data directory.
pub const FILE_NAME: &str = "catalog.redb";

const RECORDS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("records");
const JOURNAL: TableDefinition<&[u8], &[u8]> = TableDefinition::new("hot_journal");
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

/// The catalog. Cheap to clone.
#[derive(Clone)]
pub struct Catalog {
    db: Arc<LazyDb>,
}

impl Catalog {
    pub fn open(path: &Path) -> Result<Catalog, CatalogError> {
        let db = flk_runtime::embedded_db::open(path)
            .map_err(|e| err(format!("{}: {e}", path.display())))?;
        let txn = db.begin_write().map_err(err)?;
        txn.open_table(RECORDS).map_err(err)?;
        txn.open_table(JOURNAL).map_err(err)?;
        txn.open_table(PACKS).map_err(err)?;
        txn.open_table(META).map_err(err)?;
        txn.commit().map_err(err)?;
        Ok(Catalog {
            db: Arc::new(LazyDb::new(db)),
        })
    }

    /// Makes every lazy commit durable (see the module docs); nothing when none is pending.
    pub fn flush(&self) -> Result<(), CatalogError> {
        self.db.flush().map_err(err)
    }

    /// The last feed sequence number applied (0: none).
    pub fn cursor(&self) -> Result<u64, CatalogError> {
        let txn = self.db.begin_read().map_err(err)?;
        let t = txn.open_table(META).map_err(err)?;
        Ok(t.get("cursor").map_err(err)?.map_or(0, |v| v.value()))
    }

    pub fn get(&self, key: &Key) -> Result<Option<RecordMeta>, CatalogError> {
        let txn = self.db.begin_read().map_err(err)?;
        let t = txn.open_table(RECORDS).map_err(err)?;
        let v = t.get(key.encode().as_slice()).map_err(err)?;
        Ok(v.map(|v| RecordMeta::decode(v.value())).transpose()?)
    }

    pub fn journal_get(&self, key: &Key) -> Result<Option<Vec<u8>>, CatalogError> {
        let txn = self.db.begin_read().map_err(err)?;
        let t = txn.open_table(JOURNAL).map_err(err)?;
        let v = t.get(key.encode().as_slice()).map_err(err)?;
        Ok(v.map(|v| v.value().to_vec()))
    }

    /// Every record (placement cycles and recovery).
    pub fn scan(&self) -> Result<Vec<(Key, RecordMeta)>, CatalogError> {
        let txn = self.db.begin_read().map_err(err)?;
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
        let txn = self.db.begin_read().map_err(err)?;
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
        let txn = self.db.begin_read().map_err(err)?;
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
        let txn = self.db.begin_write().map_err(err)?;
        let mut fresh = Vec::with_capacity(records.len());
        {
            let mut recs = txn.open_table(RECORDS).map_err(err)?;
            let mut journal = txn.open_table(JOURNAL).map_err(err)?;
            let mut meta = txn.open_table(META).map_err(err)?;
            for (key, m, blob) in records {
                let k = key.encode();
                if recs.get(k.as_slice()).map_err(err)?.is_some() {
                    fresh.push(false);
                    continue;
                }
                recs.insert(k.as_slice(), m.encode().as_slice())
                    .map_err(err)?;
                journal.insert(k.as_slice(), blob.as_slice()).map_err(err)?;
                fresh.push(true);
            }
            let old = meta.get("cursor").map_err(err)?.map_or(0, |v| v.value());
            meta.insert("cursor", old.max(cursor)).map_err(err)?;
        }
        self.db.commit_lazy(txn).map_err(err)?;
        Ok(fresh)
    }

    /// Applies `ops` in one transaction (fsync'd when `durable`, else durable at the next
    /// [`Catalog::flush`]); returns the packs whose last live record left (their entries are
    /// gone: delete the objects).
    pub fn commit(&self, ops: &[Op], durable: bool) -> Result<Vec<String>, CatalogError> {
        let txn = self.db.begin_write().map_err(err)?;
        let mut emptied = Vec::new();
        {
            let mut recs = txn.open_table(RECORDS).map_err(err)?;
            let mut journal = txn.open_table(JOURNAL).map_err(err)?;
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
                        journal.remove(k.as_slice()).map_err(err)?;
                    }
                    Op::JournalPut(k, b) => {
                        journal
                            .insert(k.encode().as_slice(), b.as_slice())
                            .map_err(err)?;
                    }
                    Op::JournalDel(k) => {
                        journal.remove(k.encode().as_slice()).map_err(err)?;
                    }
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
        if durable {
            txn.commit().map_err(err)?;
        } else {
            self.db.commit_lazy(txn).map_err(err)?;
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
}
