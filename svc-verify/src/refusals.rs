//! Submissions refused for their signature (401: `signature_missing`, `signature_undecodable`,
//! `signature_invalid`, `no_active_key`: the key set's reason codes), counted per
//! `(tenant, reason, minute)` in a persisted store, so that compliance reports and SIEM burst
//! rules can use them after restarts.
//!
//! **Off the submit path.** A refusal only bumps a counter in an in-memory map under a mutex
//! that nothing on the accept path takes ([`Refusals::record`]); a background task
//! ([`Refusals::flush`], every [`FLUSH_INTERVAL`] and once more at shutdown) adds the map's
//! counts to the store in one redb write transaction on a blocking thread. Only configured
//! tenants reach the signature check, and reasons are a closed set, so the map is bounded by
//! tenants x 4 x the minutes in one flush interval.
//!
//! **What a crash may lose.** The counts recorded since the last flush (at most
//! [`FLUSH_INTERVAL`] of refusals; a clean shutdown flushes them). A flush commits with
//! `Durability::Immediate`, so a count once flushed is never lost or counted twice: a failed
//! flush puts its counts back into the map for the next one.
//!
//! **Format** (`<data_dir>/refusals.redb`): one table `refusals`, key `(minute, tenant,
//! reason)` where `minute` is Unix milliseconds of the minute's start, value the count. Other
//! processes read it with [`read_dir`], which copies the file first: redb locks the file of a
//! running svc-verify.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use redb::{Database, Durability, ReadableTable, TableDefinition};
use time::OffsetDateTime;

/// The store's file in svc-verify's data directory.
pub const FILE_NAME: &str = "refusals.redb";
/// How often the counts recorded in memory are added to the store.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// `(minute start, Unix ms; tenant; reason code) -> count`.
const TABLE: TableDefinition<(i64, &str, &str), u64> = TableDefinition::new("refusals");

/// Refusals of one tenant for one reason in one minute.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct RefusalCount {
    /// Start of the minute, Unix milliseconds.
    pub minute_unix_ms: i64,
    pub tenant_id: String,
    pub reason_code: String,
    pub count: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum RefusalError {
    #[error("refusal store {path}: {message}")]
    Store { path: PathBuf, message: String },
}

type Key = (i64, String, String);

/// The refusal counts of one svc-verify: recorded in memory, flushed to the store.
pub struct Refusals {
    db: Database,
    path: PathBuf,
    unflushed: Mutex<BTreeMap<Key, u64>>,
}

impl std::fmt::Debug for Refusals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Refusals")
            .field("path", &self.path)
            .finish()
    }
}

fn minute_of(t: OffsetDateTime) -> i64 {
    let ms = (t.unix_timestamp_nanos() / 1_000_000) as i64;
    ms - ms.rem_euclid(60_000)
}

impl Refusals {
    /// Opens (creating if needed) `<data_dir>/refusals.redb`.
    pub fn open(data_dir: &Path) -> Result<Refusals, RefusalError> {
        let path = data_dir.join(FILE_NAME);
        let db = flk_runtime::embedded_db::open(&path).map_err(|e| store_err(&path, e))?;
        let txn = db.begin_write().map_err(|e| store_err(&path, e))?;
        txn.open_table(TABLE).map_err(|e| store_err(&path, e))?;
        txn.commit().map_err(|e| store_err(&path, e))?;
        Ok(Refusals {
            db,
            path,
            unflushed: Mutex::new(BTreeMap::new()),
        })
    }

    /// Counts one refusal (in memory: [`Refusals::flush`] persists it).
    pub fn record(&self, tenant_id: &str, reason_code: &str, at: OffsetDateTime) {
        let key = (minute_of(at), tenant_id.to_owned(), reason_code.to_owned());
        *self
            .unflushed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key)
            .or_insert(0) += 1;
    }

    /// Adds the counts recorded since the last flush to the store (blocking: call it from a
    /// blocking thread). Returns how many `(minute, tenant, reason)` rows it updated. On
    /// failure the counts go back to memory for the next flush.
    pub fn flush(&self) -> Result<usize, RefusalError> {
        let taken = std::mem::take(&mut *self.unflushed.lock().unwrap_or_else(|p| p.into_inner()));
        if taken.is_empty() {
            return Ok(0);
        }
        match self.add(&taken) {
            Ok(()) => Ok(taken.len()),
            Err(e) => {
                let mut map = self.unflushed.lock().unwrap_or_else(|p| p.into_inner());
                for (k, n) in taken {
                    *map.entry(k).or_insert(0) += n;
                }
                Err(e)
            }
        }
    }

    fn add(&self, counts: &BTreeMap<Key, u64>) -> Result<(), RefusalError> {
        let err = |e: &dyn std::fmt::Display| store_err(&self.path, e);
        let mut txn = self.db.begin_write().map_err(|e| err(&e))?;
        txn.set_durability(Durability::Immediate);
        {
            let mut table = txn.open_table(TABLE).map_err(|e| err(&e))?;
            for ((minute, tenant, reason), n) in counts {
                let key = (*minute, tenant.as_str(), reason.as_str());
                let old = table
                    .get(key)
                    .map_err(|e| err(&e))?
                    .map_or(0, |g| g.value());
                table
                    .insert(key, old.saturating_add(*n))
                    .map_err(|e| err(&e))?;
            }
        }
        txn.commit().map_err(|e| err(&e))
    }

    /// The counts of the minutes starting in `[from_unix_ms, to_unix_ms)`, flushed or not,
    /// ordered by minute, tenant, reason.
    pub fn counts(
        &self,
        from_unix_ms: i64,
        to_unix_ms: i64,
    ) -> Result<Vec<RefusalCount>, RefusalError> {
        let mut all = read_db(&self.db, &self.path, from_unix_ms, to_unix_ms)?;
        let unflushed = self.unflushed.lock().unwrap_or_else(|p| p.into_inner());
        for ((minute, tenant, reason), n) in unflushed.iter() {
            if *minute >= from_unix_ms && *minute < to_unix_ms {
                *all.entry((*minute, tenant.clone(), reason.clone()))
                    .or_insert(0) += n;
            }
        }
        Ok(into_rows(all))
    }
}

fn into_rows(map: BTreeMap<Key, u64>) -> Vec<RefusalCount> {
    map.into_iter()
        .map(
            |((minute_unix_ms, tenant_id, reason_code), count)| RefusalCount {
                minute_unix_ms,
                tenant_id,
                reason_code,
                count,
            },
        )
        .collect()
}

fn read_db(
    db: &Database,
    path: &Path,
    from_unix_ms: i64,
    to_unix_ms: i64,
) -> Result<BTreeMap<Key, u64>, RefusalError> {
    let err = |e: &dyn std::fmt::Display| store_err(path, e);
    let mut out = BTreeMap::new();
    if from_unix_ms >= to_unix_ms {
        return Ok(out);
    }
    let txn = db.begin_read().map_err(|e| err(&e))?;
    let table = txn.open_table(TABLE).map_err(|e| err(&e))?;
    let range = table
        .range((from_unix_ms, "", "")..(to_unix_ms, "", ""))
        .map_err(|e| err(&e))?;
    for row in range {
        let (k, v) = row.map_err(|e| err(&e))?;
        let (minute, tenant, reason) = k.value();
        out.insert((minute, tenant.to_owned(), reason.to_owned()), v.value());
    }
    Ok(out)
}

/// The flushed counts of the store in svc-verify's data directory `data_dir`, read from a
/// private copy of the file (a running svc-verify holds the file's lock; the copy is deleted
/// afterwards). `Ok(None)` when the directory has no refusal store (a svc-verify older than
/// it, or never started).
pub fn read_dir(
    data_dir: &Path,
    from_unix_ms: i64,
    to_unix_ms: i64,
) -> Result<Option<Vec<RefusalCount>>, RefusalError> {
    let path = data_dir.join(FILE_NAME);
    if !path.is_file() {
        return Ok(None);
    }
    let copy_dir = tempfile::tempdir().map_err(|e| store_err(&path, &e))?;
    let copy = copy_dir.path().join(FILE_NAME);
    // A flush may commit while the file is copied; redb checks its commit slots on open and
    // repairs (or refuses) a torn copy, in which case a second copy is taken.
    let mut last = None;
    for _ in 0..3 {
        std::fs::copy(&path, &copy).map_err(|e| store_err(&path, &e))?;
        match flk_runtime::embedded_db::open(&copy) {
            Ok(db) => {
                return read_db(&db, &path, from_unix_ms, to_unix_ms).map(|m| Some(into_rows(m)));
            }
            Err(e) => last = Some(e),
        }
    }
    Err(store_err(
        &path,
        last.map_or_else(|| "cannot open a copy".to_owned(), |e| e.to_string()),
    ))
}

fn store_err(path: &Path, e: impl std::fmt::Display) -> RefusalError {
    RefusalError::Store {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minute: i64, second: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000 + minute * 60 + second).unwrap()
    }

    #[test]
    fn counts_per_tenant_reason_minute_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let base = minute_of(at(0, 0));
        {
            let r = Refusals::open(dir.path()).unwrap();
            r.record("acme", "signature_invalid", at(0, 1));
            r.record("acme", "signature_invalid", at(0, 59));
            r.record("acme", "no_active_key", at(0, 30));
            r.record("beta", "signature_invalid", at(1, 0));
            assert_eq!(r.flush().unwrap(), 3);
            // Recorded after the flush: merged with the store on read.
            r.record("acme", "signature_invalid", at(0, 2));
            r.record("acme", "signature_invalid", at(2, 0));
            let live = r.counts(base, base + 120_000).unwrap();
            assert_eq!(
                live.iter()
                    .map(|c| (
                        c.minute_unix_ms - base,
                        c.tenant_id.as_str(),
                        c.reason_code.as_str(),
                        c.count
                    ))
                    .collect::<Vec<_>>(),
                vec![
                    (0, "acme", "no_active_key", 1),
                    (0, "acme", "signature_invalid", 3),
                    (60_000, "beta", "signature_invalid", 1),
                ]
            );
            r.flush().unwrap();
        }
        // Reopened (a restart): the flushed counts are all there, added up.
        let r = Refusals::open(dir.path()).unwrap();
        let after = r.counts(base, base + 180_000).unwrap();
        let expected = vec![
            RefusalCount {
                minute_unix_ms: base,
                tenant_id: "acme".into(),
                reason_code: "no_active_key".into(),
                count: 1,
            },
            RefusalCount {
                minute_unix_ms: base,
                tenant_id: "acme".into(),
                reason_code: "signature_invalid".into(),
                count: 3,
            },
            RefusalCount {
                minute_unix_ms: base + 60_000,
                tenant_id: "beta".into(),
                reason_code: "signature_invalid".into(),
                count: 1,
            },
            RefusalCount {
                minute_unix_ms: base + 120_000,
                tenant_id: "acme".into(),
                reason_code: "signature_invalid".into(),
                count: 1,
            },
        ];
        assert_eq!(after, expected);
        // Another process reads the same counts from a copy while the store is open.
        assert_eq!(
            read_dir(dir.path(), base, base + 180_000).unwrap(),
            Some(expected.clone())
        );
        // The period is [from, to) over minute starts.
        assert_eq!(
            r.counts(base + 60_000, base + 120_000).unwrap(),
            expected[2..3].to_vec()
        );
        assert!(read_dir(&dir.path().join("none"), 0, 1).unwrap().is_none());
    }
}
