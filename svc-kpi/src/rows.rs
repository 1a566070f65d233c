//! The decision rows: `<data_dir>/decisions.fjall`, one row per decision received, keyed by
//! [`crate::store::decision_key`], holding the feed sequence number that brought it and its
//! [`DecisionRow`] (the verdict is not in it: verdicts live in the store's redb file, next to
//! the buckets they change).
//!
//! # Why an LSM tree
//!
//! Every decision inserts one uniformly random key (a `pcs_id` is a hash). In redb, which held
//! these rows first, each such insert read and copied a B-tree page of a table far larger
//! than its page cache: 15-20 % of `flk up`'s CPU under load (`docs/BENCHMARKS.md`, issue 23).
//! fjall appends a batch to its journal and sorts it into segments in the background, as it
//! does for svc-audit's index and svc-verify's dedup index.
//!
//! Most rows asked for do not exist (is this decision new?): a [`KeyFilter`] over the rows'
//! keys answers those without reading the partition.
//!
//! # Consistency with the store
//!
//! The rows are written (handed to the operating system, not fsync'd) before the redb
//! transaction that counts them commits, and made durable ([`Rows::persist`]) before any redb
//! commit that is. So every row the counts refer to is stored; the reverse may not hold after
//! a crash: a row whose counting transaction was lost carries a sequence number above the
//! store's cursor, and the store counts it again when the feed delivers it again
//! (`crate::store`'s module docs).

use std::path::Path;

use fjall::{Keyspace, PartitionCreateOptions, PartitionHandle, PersistMode};
use flk_runtime::key_filter::KeyFilter;

use crate::error::KpiError;
use crate::model::DecisionRow;

/// The keyspace's directory inside the data directory.
pub const DIR_NAME: &str = "decisions.fjall";
const ROWS: &str = "rows";

/// A stored row and the feed record that brought it.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// The record's feed sequence number (0 for rows moved from an older store, which were
    /// all counted).
    pub seq: u64,
    pub row: DecisionRow,
}

fn err(e: impl std::fmt::Display) -> KpiError {
    KpiError::Store(format!("decision rows: {e}"))
}

fn encode(seq: u64, row: &DecisionRow) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + 44);
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(&row.encode());
    v
}

fn decode(v: &[u8]) -> Result<Stored, KpiError> {
    let (seq, row) = v
        .split_first_chunk::<8>()
        .ok_or_else(|| err(format!("a {}-byte row", v.len())))?;
    Ok(Stored {
        seq: u64::from_be_bytes(*seq),
        row: DecisionRow::decode(row)?,
    })
}

/// The rows. Reads may run concurrently with the store's one writer.
pub struct Rows {
    rows: PartitionHandle,
    keyspace: Keyspace,
    /// Every key of `rows`.
    filter: KeyFilter,
}

/// The filter's build holds a handle of the keyspace: stopped before the keyspace closes.
impl Drop for Rows {
    fn drop(&mut self) {
        self.filter.close();
    }
}

impl std::fmt::Debug for Rows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rows").finish_non_exhaustive()
    }
}

impl Rows {
    /// Opens (creating if needed) the rows in `data_dir`. The caller holds the data
    /// directory (the store's redb file is locked first).
    pub fn open(data_dir: &Path) -> Result<Rows, KpiError> {
        let path = data_dir.join(DIR_NAME);
        let keyspace = fjall::Config::new(&path)
            .max_write_buffer_size(flk_runtime::embedded_db::FJALL_WRITE_BUFFER_BYTES)
            .cache_size(flk_runtime::embedded_db::FJALL_CACHE_BYTES)
            .open()
            .map_err(|e| err(format!("cannot open {}: {e}", path.display())))?;
        let rows = keyspace
            .open_partition(ROWS, PartitionCreateOptions::default())
            .map_err(err)?;
        let filter = KeyFilter::open(rows.clone(), "kpi rows");
        Ok(Rows {
            rows,
            keyspace,
            filter,
        })
    }

    /// The row under `key`, if any.
    pub fn get(&self, key: &[u8]) -> Result<Option<Stored>, KpiError> {
        if !self.filter.may_contain(key) {
            return Ok(None);
        }
        self.rows
            .get(key)
            .map_err(err)?
            .map(|v| decode(&v))
            .transpose()
    }

    /// Stores `puts` (replacing) and removes `removes`, in one atomic batch handed to the
    /// operating system (durable at the next [`Rows::persist`]).
    pub fn write(
        &self,
        puts: &[(Vec<u8>, u64, DecisionRow)],
        removes: &[Vec<u8>],
    ) -> Result<(), KpiError> {
        if puts.is_empty() && removes.is_empty() {
            return Ok(());
        }
        // Every key written is in the filter before the commit.
        let filter = self.filter.writing();
        let mut batch = self.keyspace.batch();
        for (key, seq, row) in puts {
            filter.insert(key);
            batch.insert(&self.rows, key.as_slice(), encode(*seq, row));
        }
        for key in removes {
            batch.remove(&self.rows, key.as_slice());
        }
        batch.commit().map_err(err)
    }

    /// Makes every earlier write durable (fsyncs the journal).
    pub fn persist(&self) -> Result<(), KpiError> {
        self.keyspace.persist(PersistMode::SyncAll).map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Outcome, Regime, Verdict};

    fn row(ordinal: u64) -> DecisionRow {
        DecisionRow {
            outcome: Outcome::Accepted,
            verdict: None,
            regime: Regime::parse("sticky"),
            decided_at_unix_ms: 1_700_000_000_000,
            verify_cpu_ns: 12_345,
            stored_bytes: 900,
            replicated_bytes: 0,
            ordinal,
        }
    }

    #[test]
    fn rows_round_trip_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let rows = Rows::open(dir.path()).unwrap();
        rows.filter.wait_built();
        assert_eq!(rows.get(b"a").unwrap(), None);
        rows.write(
            &[(b"a".to_vec(), 7, row(1)), (b"b".to_vec(), 8, row(2))],
            &[],
        )
        .unwrap();
        rows.write(&[], &[b"b".to_vec()]).unwrap();
        rows.persist().unwrap();
        drop(rows);
        let rows = Rows::open(dir.path()).unwrap();
        // The rows written before are found with the filter built from them too.
        rows.filter.wait_built();
        assert!(rows.filter.is_built());
        assert_eq!(
            rows.get(b"a").unwrap(),
            Some(Stored {
                seq: 7,
                row: row(1)
            })
        );
        assert_eq!(rows.get(b"b").unwrap(), None);
    }

    #[test]
    fn a_damaged_row_is_an_error_not_a_panic() {
        assert!(decode(&[1, 2, 3]).is_err());
        let mut v = encode(1, &row(1));
        v[8] = 9;
        assert!(decode(&v).is_err());
        let mut with_verdict = row(1);
        with_verdict.verdict = Some(Verdict::Correct);
        assert_eq!(decode(&encode(3, &with_verdict)).unwrap().row, with_verdict);
    }
}
