//! [`Store`]: everything svc-kpi computes from events, in one redb file
//! (`<data_dir>/kpi.redb`) and the decision rows beside it ([`crate::rows`],
//! `<data_dir>/decisions.fjall`), so it survives restarts.
//!
//! # Tables
//!
//! | table | key | value |
//! |---|---|---|
//! | rows (fjall, [`crate::rows`]) | [`decision_key`]`(tenant_id, pcs_id)` | the feed sequence number that brought it, and its [`DecisionRow`] (outcome, regime, decision time, cost inputs, ordinal) |
//! | `verdicts` | [`decision_key`] | the decision's current verdict (decisions with one only) |
//! | `buckets` | `(tenant_id, minute)` | [`Bucket`]: the tenant's counters and histograms of that minute (by decision time) |
//! | `ordinals` | ordinal | `(minute, decision key)`: decisions in the order received, for retention and audit coverage |
//! | `minute_totals` | minute | decisions of every tenant in that minute (to share anchoring costs) |
//! | `anchors` | `(minute, strategy)` | anchor batches published |
//! | `anchor_seen` | `(strategy, checkpoint_size)` | `()`: checkpoints whose anchoring batch is counted (a hybrid batch brings two anchors) |
//! | `tenants` | tenant_id | `()`: every tenant seen |
//! | `meta` | name | `cursor` (last feed seq applied), `ordinal` (decisions received), `purged_before` (minute), `anchor_next_id` / `anchor_min_size` (where the import of svc-audit's anchor journal stands) |
//!
//! A store written before the rows moved to fjall holds them in a redb table `decisions`;
//! [`Store::open`] moves them (and their verdicts) over and drops the table.
//!
//! # Exactly-once counting (**CountedOnce**)
//!
//! [`Store::apply`] writes a batch's new rows first, then counts them in one redb write
//! transaction that also moves the cursor: a crash leaves either the whole count (ordinals,
//! buckets, cursor) or none of it. The redb commit does not wait for the disk ([`LazyDb`]);
//! [`Store::flush`] makes the rows and then the counts durable, every
//! [`flk_runtime::embedded_db::FLUSH_INTERVAL`] while the service runs and at shutdown, and
//! every durable redb commit (verdicts, anchor imports) persists the rows first. A crash rolls
//! the counts back together with the cursor, and the batches lost are read again from the
//! outcome log; their rows may have survived, but a row whose sequence number is above the
//! cursor was never counted, so it is counted then. A record at or below the cursor, or whose
//! `(tenant_id, pcs_id)` has a counted row (a redelivery the cursor did not catch), changes
//! nothing; a conflicting duplicate is not a decision and is skipped. A decision replicated
//! here from another region (`replicated` in the record) is stored and ordered like a decision
//! (svc-audit logs it too) but counted as a replicated copy (`crate::model`'s module docs), not
//! as a decision of this region; feedback on it is refused (its verdicts belong to its
//! origin). Feedback ([`Store::feedback`]) updates the decision's verdict and the bucket of the
//! decision's minute in one transaction, so a window always counts each decision once, with its
//! current verdict.
//!
//! # Retention
//!
//! Each apply removes decisions (oldest received first) and buckets older than
//! `retention_days` (at least 7, so the 7d window is always whole).

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use flk_proto::v1;
use flk_runtime::embedded_db::LazyDb;
use prost::Message as _;
use redb::{Durability, ReadableTable, TableDefinition};

use crate::error::KpiError;
use crate::model::{Bucket, DecisionRow, Outcome, Regime, Signals, Verdict, minute_of};
use crate::rows::Rows;

/// The database file inside the data directory.
pub const FILE_NAME: &str = "kpi.redb";

// Byte keys, not `(&str, &str)`: redb validates UTF-8 on every comparison of a `&str` key,
// which was the largest single cost of applying a batch (perf, docs/BENCHMARKS.md).
/// The rows before they moved to fjall: read once, by [`Store::open`].
const OLD_DECISIONS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("decisions");
const VERDICTS: TableDefinition<&[u8], u8> = TableDefinition::new("verdicts");
const BUCKETS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("buckets");
const ORDINALS: TableDefinition<u64, (u64, &[u8])> = TableDefinition::new("ordinals");
const MINUTE_TOTALS: TableDefinition<u64, u64> = TableDefinition::new("minute_totals");
const ANCHORS: TableDefinition<(u64, &str), u64> = TableDefinition::new("anchors");
const ANCHOR_SEEN: TableDefinition<(&str, u64), ()> = TableDefinition::new("anchor_seen");
const TENANTS: TableDefinition<&str, ()> = TableDefinition::new("tenants");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

const META_CURSOR: &str = "cursor";
const META_ORDINAL: &str = "ordinal";
const META_PURGED_BEFORE: &str = "purged_before";
const META_ANCHOR_NEXT_ID: &str = "anchor_next_id";
const META_ANCHOR_MIN_SIZE: &str = "anchor_min_size";

/// One anchor of svc-audit's journal, as the KPI import needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnchorSeen {
    /// Position in svc-audit's anchor journal (dense from 0).
    pub id: u64,
    /// The strategy that produced it (`rfc3161`, `polygon`, `hybrid`, ...).
    pub strategy: String,
    /// The anchored checkpoint's size: with `strategy`, names the batch.
    pub checkpoint_size: u64,
    /// When svc-audit obtained it.
    pub created_at_unix_ms: i64,
}

/// Where the import of svc-audit's anchor journal stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AnchorImportCursor {
    /// The first journal id not imported yet.
    pub next_id: u64,
    /// The checkpoint size of the newest imported anchor (anchors below it are all imported).
    pub min_checkpoint_size: u64,
}

/// Most decisions removed by retention in one apply (keeps batches' latency bounded).
const PURGE_PER_APPLY: usize = 65_536;

/// What a batch did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApplyReport {
    /// New decisions counted.
    pub decisions: u64,
    /// New copies of decisions replicated from other regions (not in `decisions`).
    pub replicated: u64,
    /// Records already applied (by cursor or by key).
    pub redelivered: u64,
    /// Records that are not decisions (conflicting duplicates) or cannot be read.
    pub skipped: u64,
    /// The cursor after the batch.
    pub cursor: u64,
    /// Signals of the new decisions, by the index of their record in the batch (for the live
    /// histograms).
    pub signals: Vec<(usize, Signals)>,
}

/// What a verdict did.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedbackReport {
    pub outcome: Outcome,
    pub verdict: Verdict,
    pub previous: Option<Verdict>,
    pub decided_at_unix_ms: i64,
}

/// Sums over a window (see [`Store::window`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WindowSums {
    pub bucket: Bucket,
    /// Decisions of every tenant in the window.
    pub all_decisions: u64,
    /// Anchor batches in the window, by strategy.
    pub anchor_batches: Vec<(String, u64)>,
    /// The tenant's decisions per minute that has any, in minute order: `(minute,
    /// [accepted, escalated, rejected])`.
    pub outcomes_by_minute: Vec<(u64, [u64; 3])>,
}

/// The KPI store. Cheap to share (`Arc`); redb serializes writers and lets readers run.
pub struct Store {
    /// Before `db`, which names the data directory's owner (its file lock).
    rows: Rows,
    db: LazyDb,
    path: PathBuf,
    retention_minutes: u64,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

fn db_err(e: impl std::fmt::Display) -> KpiError {
    KpiError::Store(e.to_string())
}

/// The key of a decision in the `decisions` table: the tenant id's length (u32, big endian),
/// the tenant id, then the pcs_id: `1` and its 32 bytes when it is 64 lowercase hex digits
/// (as svc-verify's strict parser requires; half the size, so more rows per page), else `0`
/// and its text. No two `(tenant_id, pcs_id)` pairs share a key.
pub fn decision_key(tenant: &str, pcs_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(5 + tenant.len() + pcs_id.len());
    decision_key_into(&mut k, tenant, pcs_id);
    k
}

/// [`decision_key`] into a reused buffer (cleared first).
fn decision_key_into(k: &mut Vec<u8>, tenant: &str, pcs_id: &str) {
    k.clear();
    // Feed records are at most a few MiB, so the length fits.
    k.extend_from_slice(&(tenant.len() as u32).to_be_bytes());
    k.extend_from_slice(tenant.as_bytes());
    let mut raw = [0u8; 32];
    let is_lower_hex = pcs_id
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if pcs_id.len() == 64 && is_lower_hex && hex::decode_to_slice(pcs_id, &mut raw).is_ok() {
        k.push(1);
        k.extend_from_slice(&raw);
    } else {
        k.push(0);
        k.extend_from_slice(pcs_id.as_bytes());
    }
}

/// The tenant id of a [`decision_key`].
fn tenant_of_key(key: &[u8]) -> Option<&str> {
    let len = u32::from_be_bytes(key.get(..4)?.try_into().ok()?) as usize;
    std::str::from_utf8(key.get(4..4 + len)?).ok()
}

/// The signals a decision's request claims: as svc-verify recorded them, else from the
/// request's JSON (records written before svc-verify recorded them), else from the
/// structured PCS.
fn signals_of(rec: &v1::FeedRecord) -> Option<Signals> {
    if let Some(s) = &rec.signals {
        return Some(Signals {
            d_hat: s.d_hat,
            coh_star: s.coh_star,
            r: s.r,
        });
    }
    if !rec.request_json.is_empty() {
        return serde_json::from_slice::<Signals>(&rec.request_json).ok();
    }
    let p = rec.request_pcs.as_ref()?;
    Some(Signals {
        d_hat: p.d_hat?,
        coh_star: p.coh_star?,
        r: p.r?,
    })
}

/// The feed cursor in `meta` (0: nothing applied yet).
fn cursor_in(meta: &impl ReadableTable<&'static str, u64>) -> Result<u64, KpiError> {
    Ok(meta
        .get(META_CURSOR)
        .map_err(db_err)?
        .map_or(0, |g| g.value()))
}

/// Moves the rows of a store written before they moved to fjall (redb table `decisions`,
/// verdicts inside the rows) to [`Rows`] and `verdicts`, then drops the table. Every such row
/// was counted, so each gets sequence number 0. Idempotent: a crash before the table is
/// dropped moves the same rows again at the next open.
fn move_old_rows(db: &redb::Database, rows: &Rows) -> Result<(), KpiError> {
    const CHUNK: usize = 16_384;
    let read = db.begin_read().map_err(db_err)?;
    let old = match read.open_table(OLD_DECISIONS) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(e) => return Err(db_err(e)),
    };
    let mut verdicts = Vec::new();
    let mut chunk = Vec::with_capacity(CHUNK);
    let mut moved = 0u64;
    for item in old.iter().map_err(db_err)? {
        let (k, v) = item.map_err(db_err)?;
        let mut row = DecisionRow::decode(v.value())?;
        if let Some(verdict) = row.verdict.take() {
            verdicts.push((k.value().to_vec(), verdict));
        }
        chunk.push((k.value().to_vec(), 0, row));
        if chunk.len() == CHUNK {
            rows.write(&chunk, &[])?;
            moved += chunk.len() as u64;
            chunk.clear();
        }
    }
    rows.write(&chunk, &[])?;
    moved += chunk.len() as u64;
    rows.persist()?;
    drop(old);
    drop(read);
    let mut txn = db.begin_write().map_err(db_err)?;
    txn.set_durability(Durability::Immediate);
    {
        let mut t = txn.open_table(VERDICTS).map_err(db_err)?;
        for (k, verdict) in &verdicts {
            t.insert(k.as_slice(), verdict.code()).map_err(db_err)?;
        }
    }
    txn.delete_table(OLD_DECISIONS).map_err(db_err)?;
    txn.commit().map_err(db_err)?;
    tracing::info!(
        rows = moved,
        "moved the kpi decision rows from kpi.redb to decisions.fjall"
    );
    Ok(())
}

/// A clean close keeps every applied batch (rows first).
impl Drop for Store {
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            tracing::error!(error = %e, "svc-kpi could not make its last batches durable");
        }
    }
}

impl Store {
    /// Opens (creating if needed) `<dir>/kpi.redb`.
    pub fn open(dir: &Path, retention_days: u32) -> Result<Store, KpiError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            KpiError::Store(format!("cannot create data dir {}: {e}", dir.display()))
        })?;
        let path = dir.join(FILE_NAME);
        let db = flk_runtime::embedded_db::open(&path)
            .map_err(|e| KpiError::Store(format!("cannot open {}: {e}", path.display())))?;
        let txn = db.begin_write().map_err(db_err)?;
        {
            txn.open_table(VERDICTS).map_err(db_err)?;
            txn.open_table(BUCKETS).map_err(db_err)?;
            txn.open_table(ORDINALS).map_err(db_err)?;
            txn.open_table(MINUTE_TOTALS).map_err(db_err)?;
            txn.open_table(ANCHORS).map_err(db_err)?;
            txn.open_table(ANCHOR_SEEN).map_err(db_err)?;
            txn.open_table(TENANTS).map_err(db_err)?;
            txn.open_table(META).map_err(db_err)?;
        }
        txn.commit().map_err(db_err)?;
        let rows = Rows::open(dir)?;
        move_old_rows(&db, &rows)?;
        Ok(Store {
            rows,
            db: LazyDb::new(db),
            path,
            retention_minutes: u64::from(retention_days.max(7)) * 24 * 60,
        })
    }

    /// Makes every applied batch durable, rows first (see the module docs); nothing when none
    /// is pending.
    pub fn flush(&self) -> Result<(), KpiError> {
        if !self.db.pending() {
            return Ok(());
        }
        self.rows.persist()?;
        self.db.flush().map_err(db_err)
    }

    /// Commits `txn` durably, which persists every earlier lazy commit too: the rows those
    /// refer to are made durable first.
    fn commit_durable(&self, mut txn: redb::WriteTransaction) -> Result<(), KpiError> {
        self.rows.persist()?;
        txn.set_durability(Durability::Immediate);
        txn.commit().map_err(db_err)
    }

    /// The counted row of `key`: `None` when absent, or when its sequence number is above
    /// `cursor` (a row whose counting a crash rolled back; the feed delivers it again).
    fn counted_row(&self, key: &[u8], cursor: u64) -> Result<Option<DecisionRow>, KpiError> {
        Ok(self
            .rows
            .get(key)?
            .filter(|s| s.seq <= cursor)
            .map(|s| s.row))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn meta(&self, name: &str) -> Result<u64, KpiError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let t = txn.open_table(META).map_err(db_err)?;
        Ok(t.get(name).map_err(db_err)?.map_or(0, |g| g.value()))
    }

    /// The last feed sequence number applied (0: none).
    pub fn cursor(&self) -> Result<u64, KpiError> {
        self.meta(META_CURSOR)
    }

    /// Decisions received so far, all tenants (including those retention removed), replicated
    /// copies included: the count svc-audit's log is compared with.
    pub fn decisions_received(&self) -> Result<u64, KpiError> {
        self.meta(META_ORDINAL)
    }

    /// Applies a batch of feed records in one transaction, durable at the next
    /// [`Store::flush`] (see the module docs). `now_ms` drives retention only.
    pub fn apply<R: Borrow<v1::FeedRecord>>(
        &self,
        records: &[R],
        now_ms: i64,
    ) -> Result<ApplyReport, KpiError> {
        let txn = self.db.begin_write().map_err(db_err)?;
        let mut report = ApplyReport::default();
        let mut puts: Vec<(Vec<u8>, u64, DecisionRow)> = Vec::with_capacity(records.len());
        let mut purged_keys: Vec<Vec<u8>> = Vec::new();
        {
            let mut meta = txn.open_table(META).map_err(db_err)?;
            let mut ordinals = txn.open_table(ORDINALS).map_err(db_err)?;
            let mut cursor = cursor_in(&meta)?;
            let mut ordinal = meta
                .get(META_ORDINAL)
                .map_err(db_err)?
                .map_or(0, |g| g.value());
            // Ordered maps: a batch touches a few (tenant, minute) buckets, and comparing
            // them costs less than SipHash-ing every record's key.
            let mut deltas: BTreeMap<(&str, u64), Bucket> = BTreeMap::new();
            let mut totals: BTreeMap<u64, u64> = BTreeMap::new();
            let mut key = Vec::with_capacity(128);
            // Rows are counted iff their sequence number is at or below the cursor the batch
            // starts from (the module docs).
            let counted_up_to = cursor;
            let mut in_batch: HashSet<Vec<u8>> = HashSet::with_capacity(records.len());
            for (index, rec) in records.iter().enumerate() {
                let rec = rec.borrow();
                if rec.seq != 0 && rec.seq <= cursor {
                    report.redelivered += 1;
                    continue;
                }
                cursor = cursor.max(rec.seq);
                let decision = rec.kind == v1::RecordKind::Decision as i32;
                let outcome = rec
                    .outcome
                    .as_ref()
                    .and_then(|o| Outcome::from_wire(o.outcome));
                let (Some(outcome), true) = (outcome, decision && !rec.pcs_id.is_empty()) else {
                    report.skipped += 1;
                    continue;
                };
                decision_key_into(&mut key, &rec.tenant_id, &rec.pcs_id);
                // A counted row, or one this batch added: a redelivery the cursor did not
                // catch, counted nothing.
                if in_batch.contains(&key) || self.counted_row(&key, counted_up_to)?.is_some() {
                    report.redelivered += 1;
                    continue;
                }
                ordinal += 1;
                let regime = Regime::parse(rec.outcome.as_ref().map_or("", |o| o.regime.as_str()));
                // What the decision occupies in the outcome log (its record); a replicated
                // copy's record is also what crossed the network to get here.
                let bytes = rec.encoded_len() as u64;
                let row = DecisionRow {
                    outcome,
                    verdict: None,
                    regime,
                    decided_at_unix_ms: rec.decided_at_unix_ms,
                    verify_cpu_ns: rec.verify_cpu_ns,
                    stored_bytes: bytes,
                    replicated_bytes: if rec.replicated { bytes.max(1) } else { 0 },
                    ordinal,
                };
                let minute = minute_of(rec.decided_at_unix_ms);
                ordinals
                    .insert(ordinal, (minute, key.as_slice()))
                    .map_err(db_err)?;
                in_batch.insert(key.clone());
                puts.push((key.clone(), rec.seq, row));
                if row.is_replicated() {
                    deltas
                        .entry((rec.tenant_id.as_str(), minute))
                        .or_default()
                        .add_replicated(&row);
                    report.replicated += 1;
                    continue;
                }
                let signals = signals_of(rec);
                deltas
                    .entry((rec.tenant_id.as_str(), minute))
                    .or_default()
                    .add_decision(&row, signals.as_ref());
                *totals.entry(minute).or_default() += 1;
                if let Some(s) = signals {
                    report.signals.push((index, s));
                }
                report.decisions += 1;
            }
            let mut buckets = txn.open_table(BUCKETS).map_err(db_err)?;
            let mut tenants = txn.open_table(TENANTS).map_err(db_err)?;
            let mut known: Vec<&str> = Vec::new();
            for ((tenant, minute), delta) in &deltas {
                let mut b = match buckets.get((*tenant, *minute)).map_err(db_err)? {
                    Some(g) => Bucket::decode(g.value())?,
                    None => Bucket::default(),
                };
                b.merge(delta);
                buckets
                    .insert((*tenant, *minute), b.encode().as_slice())
                    .map_err(db_err)?;
                if !known.contains(tenant) {
                    known.push(tenant);
                    tenants.insert(*tenant, ()).map_err(db_err)?;
                }
            }
            let mut minute_totals = txn.open_table(MINUTE_TOTALS).map_err(db_err)?;
            for (minute, n) in totals {
                let old = minute_totals
                    .get(minute)
                    .map_err(db_err)?
                    .map_or(0, |g| g.value());
                minute_totals.insert(minute, old + n).map_err(db_err)?;
            }
            meta.insert(META_CURSOR, cursor).map_err(db_err)?;
            meta.insert(META_ORDINAL, ordinal).map_err(db_err)?;
            report.cursor = cursor;

            // Retention.
            let mut verdicts = txn.open_table(VERDICTS).map_err(db_err)?;
            let cutoff = minute_of(now_ms).saturating_sub(self.retention_minutes);
            let mut purged = 0;
            while purged < PURGE_PER_APPLY {
                let first = match ordinals.first().map_err(db_err)? {
                    Some((k, v)) => {
                        let (m, key) = v.value();
                        (k.value(), m, key.to_vec())
                    }
                    None => break,
                };
                if first.1 >= cutoff {
                    break;
                }
                ordinals.remove(first.0).map_err(db_err)?;
                verdicts.remove(first.2.as_slice()).map_err(db_err)?;
                purged_keys.push(first.2);
                purged += 1;
            }
            let purged_before = meta
                .get(META_PURGED_BEFORE)
                .map_err(db_err)?
                .map_or(0, |g| g.value());
            if cutoff > purged_before {
                let names: Vec<String> = tenants
                    .iter()
                    .map_err(db_err)?
                    .filter_map(|r| r.ok().map(|(k, _)| k.value().to_owned()))
                    .collect();
                for t in &names {
                    buckets
                        .retain_in((t.as_str(), 0)..(t.as_str(), cutoff), |_, _| false)
                        .map_err(db_err)?;
                }
                minute_totals
                    .retain_in(0..cutoff, |_, _| false)
                    .map_err(db_err)?;
                let mut anchors = txn.open_table(ANCHORS).map_err(db_err)?;
                anchors
                    .retain_in((0, "")..(cutoff, ""), |_, _| false)
                    .map_err(db_err)?;
                meta.insert(META_PURGED_BEFORE, cutoff).map_err(db_err)?;
            }
        }
        // The rows before the counts that refer to them (the module docs).
        self.rows.write(&puts, &purged_keys)?;
        self.db.commit_lazy(txn).map_err(db_err)?;
        Ok(report)
    }

    /// Records (or replaces) a verdict on the decision `(tenant, pcs_id)`.
    pub fn feedback(
        &self,
        tenant: &str,
        pcs_id: &str,
        verdict: Verdict,
    ) -> Result<FeedbackReport, KpiError> {
        let txn = self.db.begin_write().map_err(db_err)?;
        let report = {
            let cursor = cursor_in(&txn.open_table(META).map_err(db_err)?)?;
            let key = decision_key(tenant, pcs_id);
            let Some(row) = self.counted_row(&key, cursor)? else {
                return Err(KpiError::UnknownDecision {
                    tenant: tenant.to_owned(),
                    pcs_id: pcs_id.to_owned(),
                });
            };
            if row.is_replicated() {
                return Err(KpiError::ReplicatedDecision {
                    pcs_id: pcs_id.to_owned(),
                });
            }
            if !verdict.applies_to(row.outcome) {
                return Err(KpiError::VerdictNotApplicable {
                    verdict,
                    outcome: row.outcome,
                });
            }
            let mut verdicts = txn.open_table(VERDICTS).map_err(db_err)?;
            let previous = match verdicts.get(key.as_slice()).map_err(db_err)? {
                Some(g) => Verdict::from_code(g.value())?,
                None => None,
            };
            if previous != Some(verdict) {
                let minute = minute_of(row.decided_at_unix_ms);
                let mut buckets = txn.open_table(BUCKETS).map_err(db_err)?;
                let mut b = match buckets.get((tenant, minute)).map_err(db_err)? {
                    Some(g) => Bucket::decode(g.value())?,
                    None => Bucket::default(),
                };
                b.change_verdict(previous, verdict);
                buckets
                    .insert((tenant, minute), b.encode().as_slice())
                    .map_err(db_err)?;
                verdicts
                    .insert(key.as_slice(), verdict.code())
                    .map_err(db_err)?;
            }
            FeedbackReport {
                outcome: row.outcome,
                verdict,
                previous,
                decided_at_unix_ms: row.decided_at_unix_ms,
            }
        };
        self.commit_durable(txn)?;
        Ok(report)
    }

    /// Records `batches` anchor batches of `strategy` published at `at_ms`.
    pub fn record_anchor_batches(
        &self,
        strategy: &str,
        batches: u64,
        at_ms: i64,
    ) -> Result<(), KpiError> {
        let txn = self.db.begin_write().map_err(db_err)?;
        {
            let mut t = txn.open_table(ANCHORS).map_err(db_err)?;
            let key = (minute_of(at_ms), strategy);
            let old = t.get(key).map_err(db_err)?.map_or(0, |g| g.value());
            t.insert(key, old.saturating_add(batches)).map_err(db_err)?;
        }
        self.commit_durable(txn)
    }

    /// Where the anchor import stands.
    pub fn anchor_import_cursor(&self) -> Result<AnchorImportCursor, KpiError> {
        Ok(AnchorImportCursor {
            next_id: self.meta(META_ANCHOR_NEXT_ID)?,
            min_checkpoint_size: self.meta(META_ANCHOR_MIN_SIZE)?,
        })
    }

    /// Imports anchors of svc-audit's journal in one durable transaction: each anchor at or
    /// above the import cursor counts one batch of its strategy in the minute it was obtained,
    /// unless that strategy's batch for the same checkpoint is already counted (the hybrid
    /// strategy stores an RFC 3161 and a Polygon anchor for one batch, maybe in different
    /// rounds). Anchors below the cursor (a re-listed journal) change nothing. Returns the
    /// batches counted.
    pub fn import_anchors(&self, anchors: &[AnchorSeen]) -> Result<u64, KpiError> {
        let txn = self.db.begin_write().map_err(db_err)?;
        let mut counted = 0;
        {
            let mut meta = txn.open_table(META).map_err(db_err)?;
            let get = |m: &redb::Table<&str, u64>, k| -> Result<u64, KpiError> {
                Ok(m.get(k).map_err(db_err)?.map_or(0, |g| g.value()))
            };
            let mut next_id = get(&meta, META_ANCHOR_NEXT_ID)?;
            let mut min_size = get(&meta, META_ANCHOR_MIN_SIZE)?;
            let mut seen = txn.open_table(ANCHOR_SEEN).map_err(db_err)?;
            let mut batches = txn.open_table(ANCHORS).map_err(db_err)?;
            for a in anchors {
                if a.id < next_id {
                    continue;
                }
                next_id = a.id + 1;
                min_size = min_size.max(a.checkpoint_size);
                let batch = (a.strategy.as_str(), a.checkpoint_size);
                if seen.insert(batch, ()).map_err(db_err)?.is_some() {
                    continue;
                }
                let key = (minute_of(a.created_at_unix_ms), a.strategy.as_str());
                let old = batches.get(key).map_err(db_err)?.map_or(0, |g| g.value());
                batches.insert(key, old + 1).map_err(db_err)?;
                counted += 1;
            }
            meta.insert(META_ANCHOR_NEXT_ID, next_id).map_err(db_err)?;
            meta.insert(META_ANCHOR_MIN_SIZE, min_size)
                .map_err(db_err)?;
        }
        self.commit_durable(txn)?;
        Ok(counted)
    }

    /// One stored decision.
    pub fn decision(&self, tenant: &str, pcs_id: &str) -> Result<Option<DecisionRow>, KpiError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let cursor = cursor_in(&txn.open_table(META).map_err(db_err)?)?;
        let key = decision_key(tenant, pcs_id);
        let Some(mut row) = self.counted_row(&key, cursor)? else {
            return Ok(None);
        };
        row.verdict = match txn
            .open_table(VERDICTS)
            .map_err(db_err)?
            .get(key.as_slice())
            .map_err(db_err)?
        {
            Some(g) => Verdict::from_code(g.value())?,
            None => None,
        };
        Ok(Some(row))
    }

    /// Every tenant seen (sorted).
    pub fn tenants(&self) -> Result<Vec<String>, KpiError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let t = txn.open_table(TENANTS).map_err(db_err)?;
        let mut out = Vec::new();
        for r in t.iter().map_err(db_err)? {
            let (k, _) = r.map_err(db_err)?;
            out.push(k.value().to_owned());
        }
        Ok(out)
    }

    /// Sums of the tenant's buckets from `start_minute` on (later minutes included: a
    /// decision stamped ahead of this clock counts in the current windows).
    pub fn window(&self, tenant: &str, start_minute: u64) -> Result<WindowSums, KpiError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let mut sums = WindowSums::default();
        let buckets = txn.open_table(BUCKETS).map_err(db_err)?;
        for r in buckets
            .range((tenant, start_minute)..=(tenant, u64::MAX))
            .map_err(db_err)?
        {
            let (k, v) = r.map_err(db_err)?;
            let b = Bucket::decode(v.value())?;
            let outcomes = Outcome::ALL.map(|o| b.outcome(o));
            if outcomes.iter().any(|n| *n > 0) {
                sums.outcomes_by_minute.push((k.value().1, outcomes));
            }
            sums.bucket.merge(&b);
        }
        let totals = txn.open_table(MINUTE_TOTALS).map_err(db_err)?;
        for r in totals.range(start_minute..).map_err(db_err)? {
            let (_, v) = r.map_err(db_err)?;
            sums.all_decisions += v.value();
        }
        let anchors = txn.open_table(ANCHORS).map_err(db_err)?;
        let mut by_strategy: std::collections::BTreeMap<String, u64> = Default::default();
        for r in anchors.range((start_minute, "")..).map_err(db_err)? {
            let (k, v) = r.map_err(db_err)?;
            *by_strategy.entry(k.value().1.to_owned()).or_default() += v.value();
        }
        sums.anchor_batches = by_strategy.into_iter().collect();
        Ok(sums)
    }

    /// For each of `starts` (minutes), the decisions of `tenant` from that minute on whose
    /// ordinal is above `logged`: those a log holding the first `logged` decisions (in feed
    /// order) does not cover yet. One scan answers every window. Replicated copies take
    /// ordinals (the log holds them too) but are not counted. Reads at most `limit` ordinals
    /// (the newest decisions); `None` when more than that are above. `may_hold_replicated`
    /// false (no window counts a replicated copy) skips reading each decision's row to tell a
    /// copy from a decision: the scan is then one range read, which matters because the gauges
    /// run it a few times a second under load.
    pub fn not_logged(
        &self,
        tenant: &str,
        starts: &[u64],
        logged: u64,
        limit: u64,
        may_hold_replicated: bool,
    ) -> Result<Option<Vec<u64>>, KpiError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let meta = txn.open_table(META).map_err(db_err)?;
        let total = meta
            .get(META_ORDINAL)
            .map_err(db_err)?
            .map_or(0, |g| g.value());
        if total.saturating_sub(logged) > limit {
            return Ok(None);
        }
        let ordinals = txn.open_table(ORDINALS).map_err(db_err)?;
        let earliest = starts.iter().copied().min().unwrap_or(0);
        let mut counts = vec![0; starts.len()];
        for r in ordinals.range(logged.saturating_add(1)..).map_err(db_err)? {
            let (_, v) = r.map_err(db_err)?;
            let (m, key) = v.value();
            if m < earliest || tenant_of_key(key) != Some(tenant) {
                continue;
            }
            // Every ordinal's row was written before the transaction that added the ordinal.
            let replicated =
                may_hold_replicated && self.rows.get(key)?.is_some_and(|s| s.row.is_replicated());
            if !replicated {
                for (count, start) in counts.iter_mut().zip(starts) {
                    *count += u64::from(m >= *start);
                }
            }
        }
        Ok(Some(counts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DECISIONS, REPLICATED, REPLICATED_BYTES, STORED_BYTES};

    fn record(seq: u64, tenant: &str, n: u64, replicated: bool) -> v1::FeedRecord {
        let id = format!("{n:064x}");
        v1::FeedRecord {
            seq,
            tenant_id: tenant.to_owned(),
            pcs_id: id.clone(),
            outcome: Some(v1::Outcome {
                pcs_id: id,
                tenant_id: tenant.to_owned(),
                outcome: v1::OutcomeKind::Accepted as i32,
                regime: "mixed".to_owned(),
                origin_region: if replicated { "us" } else { "eu" }.to_owned(),
                replicated,
                ..Default::default()
            }),
            request_json: br#"{"D_hat":1.6,"coh_star":0.73,"r":0.52}"#.to_vec(),
            decided_at_unix_ms: 1_767_225_600_000,
            region: if replicated { "us" } else { "eu" }.to_owned(),
            kind: v1::RecordKind::Decision as i32,
            verify_cpu_ns: 1_000_000,
            replicated,
            ..Default::default()
        }
    }

    #[test]
    fn replicated_copies_are_counted_apart_from_decisions() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 7).unwrap();
        let now = 1_767_225_600_000 + 60_000;
        // Two decisions of this region, then two copies replicated from another.
        let batch = [
            record(1, "acme", 1, false),
            record(2, "acme", 2, false),
            record(3, "acme", 3, true),
            record(4, "acme", 4, true),
        ];
        let r = store.apply(&batch, now).unwrap();
        assert_eq!((r.decisions, r.replicated, r.cursor), (2, 2, 4));
        assert_eq!(
            r.signals.len(),
            2,
            "only decided records feed the live histograms"
        );
        let copy_bytes = batch[2].encoded_len() as u64 + batch[3].encoded_len() as u64;
        let all_bytes: u64 = batch.iter().map(|b| b.encoded_len() as u64).sum();

        let w = store.window("acme", 0).unwrap();
        let b = &w.bucket;
        assert_eq!(b.counts[DECISIONS], 2);
        assert_eq!(b.counts[REPLICATED], 2);
        assert_eq!(b.counts[REPLICATED_BYTES], copy_bytes);
        assert_eq!(
            b.counts[STORED_BYTES], all_bytes,
            "this region stores the copies too"
        );
        assert_eq!(
            b.counts[crate::model::CPU_NS],
            2_000_000,
            "copies are not charged here"
        );
        assert_eq!(w.all_decisions, 2, "copies take no share of anchoring");

        // A redelivered copy is counted once.
        let again = store.apply(&[record(5, "acme", 3, true)], now).unwrap();
        assert_eq!(
            (again.decisions, again.replicated, again.redelivered),
            (0, 0, 1)
        );
        assert_eq!(
            store.window("acme", 0).unwrap().bucket.counts[REPLICATED],
            2
        );

        // Copies are ordered like decisions (svc-audit logs them too) ...
        assert_eq!(store.decisions_received().unwrap(), 4);
        let row = store
            .decision("acme", &format!("{:064x}", 3))
            .unwrap()
            .unwrap();
        assert!(row.is_replicated());
        assert_eq!(row.ordinal, 3);
        assert!(
            !store
                .decision("acme", &format!("{:064x}", 1))
                .unwrap()
                .unwrap()
                .is_replicated()
        );
        // ... but a log holding only the first decision misses one decision, not three.
        assert_eq!(
            store.not_logged("acme", &[0], 1, 100, true).unwrap(),
            Some(vec![1])
        );
        assert_eq!(
            store.not_logged("acme", &[0], 0, 100, true).unwrap(),
            Some(vec![2])
        );
        // Told the window holds no copy, the scan counts every ordinal of the tenant.
        assert_eq!(
            store.not_logged("acme", &[0], 1, 100, false).unwrap(),
            Some(vec![3])
        );

        // Verdicts on a copy belong to its origin.
        let e = store
            .feedback("acme", &format!("{:064x}", 3), Verdict::Hallucination)
            .unwrap_err();
        assert!(matches!(e, KpiError::ReplicatedDecision { .. }), "{e}");
        store
            .feedback("acme", &format!("{:064x}", 1), Verdict::Hallucination)
            .unwrap();
    }

    #[test]
    fn decision_keys_are_distinct_and_name_their_tenant() {
        let hex = "ab".repeat(32);
        let upper = "AB".repeat(32);
        let keys = [
            decision_key("a", &format!("b{}", &hex[1..])),
            decision_key("ab", &hex[1..]),
            decision_key("t", &hex),
            decision_key("t", &upper),
            decision_key("t", "not-hex"),
            decision_key("", &hex),
        ];
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
        // Hex ids take 32 bytes; others keep their text.
        assert_eq!(decision_key("t", &hex).len(), 4 + 1 + 1 + 32);
        assert_eq!(tenant_of_key(&decision_key("acme", &hex)), Some("acme"));
        assert_eq!(tenant_of_key(&decision_key("", "x")), Some(""));
        assert_eq!(tenant_of_key(&[0, 0]), None);
    }

    /// What a crash between a batch's rows and its counts leaves: rows above the cursor. The
    /// redelivered records are counted then, once; feedback waits for them.
    #[test]
    fn rows_whose_counts_were_lost_are_counted_when_redelivered() {
        let dir = tempfile::tempdir().unwrap();
        let now = 1_767_225_600_000 + 60_000;
        let store = Store::open(dir.path(), 7).unwrap();
        store.apply(&[record(1, "acme", 1, false)], now).unwrap();
        // Batch 2's rows reach the rows store; its counting transaction is lost.
        let lost = [record(2, "acme", 2, false), record(3, "acme", 3, false)];
        let rows: Vec<_> = lost
            .iter()
            .map(|r| {
                let key = decision_key(&r.tenant_id, &r.pcs_id);
                let row = DecisionRow {
                    outcome: Outcome::Accepted,
                    verdict: None,
                    regime: Regime::parse("mixed"),
                    decided_at_unix_ms: r.decided_at_unix_ms,
                    verify_cpu_ns: r.verify_cpu_ns,
                    stored_bytes: r.encoded_len() as u64,
                    replicated_bytes: 0,
                    ordinal: 2,
                };
                (key, r.seq, row)
            })
            .collect();
        store.rows.write(&rows, &[]).unwrap();
        assert_eq!(
            store.decision("acme", &format!("{:064x}", 2)).unwrap(),
            None
        );
        assert!(matches!(
            store.feedback("acme", &format!("{:064x}", 2), Verdict::Correct),
            Err(KpiError::UnknownDecision { .. })
        ));
        let r = store.apply(&lost, now).unwrap();
        assert_eq!((r.decisions, r.redelivered), (2, 0));
        let again = store.apply(&lost, now).unwrap();
        assert_eq!((again.decisions, again.redelivered), (0, 2));
        assert_eq!(store.window("acme", 0).unwrap().bucket.counts[DECISIONS], 3);
        store
            .feedback("acme", &format!("{:064x}", 2), Verdict::Correct)
            .unwrap();
        assert_eq!(
            store
                .decision("acme", &format!("{:064x}", 2))
                .unwrap()
                .unwrap()
                .verdict,
            Some(Verdict::Correct)
        );
    }

    /// A store from before the rows moved to fjall: its rows and verdicts are moved at open,
    /// and behave as counted.
    #[test]
    fn rows_of_an_older_store_are_moved_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let key = decision_key("acme", &format!("{:064x}", 9));
        let row = DecisionRow {
            outcome: Outcome::Accepted,
            verdict: Some(Verdict::Hallucination),
            regime: Regime::parse("mixed"),
            decided_at_unix_ms: 1_767_225_600_000,
            verify_cpu_ns: 5,
            stored_bytes: 100,
            replicated_bytes: 0,
            ordinal: 1,
        };
        {
            let db = flk_runtime::embedded_db::open(&dir.path().join(FILE_NAME)).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(OLD_DECISIONS)
                .unwrap()
                .insert(key.as_slice(), row.encode().as_slice())
                .unwrap();
            txn.open_table(META)
                .unwrap()
                .insert(META_CURSOR, 1)
                .unwrap();
            txn.commit().unwrap();
        }
        let store = Store::open(dir.path(), 7).unwrap();
        assert_eq!(
            store.decision("acme", &format!("{:064x}", 9)).unwrap(),
            Some(row)
        );
        let read = store.db.begin_read().unwrap();
        assert!(matches!(
            read.open_table(OLD_DECISIONS),
            Err(redb::TableError::TableDoesNotExist(_))
        ));
        drop(read);
        // The verdict moved with it: the same verdict again changes nothing.
        let f = store
            .feedback("acme", &format!("{:064x}", 9), Verdict::Hallucination)
            .unwrap();
        assert_eq!(f.previous, Some(Verdict::Hallucination));
        drop(store);
        let store = Store::open(dir.path(), 7).unwrap();
        assert_eq!(
            store.decision("acme", &format!("{:064x}", 9)).unwrap(),
            Some(row)
        );
    }
}
