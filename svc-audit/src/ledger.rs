//! The ledger: the Merkle log (`flk_tlog::Log` over an `FsStore` in `<data_dir>/tlog`), the
//! `(tenant_id, pcs_id)` index and the feed cursor, kept consistent with each other.
//!
//! Synchronous (call it from a blocking thread). [`Ledger::integrate`] is the only writer
//! path; queries take a read lock on the log and may run concurrently with each other (an
//! append holds the write lock for its duration).
//!
//! # Integration order (crash safety)
//!
//! For each batch of feed records: map them to entries, drop those whose key the index (or an
//! earlier record of the batch) already has, then
//!
//! 1. `Log::append_batch`: tiles, bundles and the signed checkpoint are durable;
//! 2. [`Index::commit`]: the new keys and `indexed_size = log size`, one transaction
//!    (durable every few batches: the index is derived from the log, see [`crate::index`]);
//! 3. [`Cursor::store`]: the batch's highest sequence number, durably.
//!
//! A crash after 1 leaves entries the index does not know (so does a crash that rolls the
//! index back to its last durable commit); [`Ledger::open`] (and any integration after a
//! failure) first re-indexes the log from `indexed_size` up to its size by decoding the stored
//! entries, so the redelivered records find their keys and become no leaf
//! (**OneLeafPerDecision**). A crash after 3 only means a redelivery that the index absorbs.
//! A crash before 1 loses nothing: the cursor has not moved. The cursor never names a record
//! whose entry is not durable in the log (**CursorBehindLog**).

use std::borrow::{Borrow, Cow};
use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard};
use std::time::Instant;

use flk_proto::v1;
use flk_tlog::tile::{TILE_WIDTH, decode_bundle};
use flk_tlog::{
    AuditEntry, EventEntry, FsStore, Hash, Log, LogEntry, LogSigner, LogVerifier,
    MAX_BATCH_ENTRIES, SyncMode, TileKind, TileStore,
};

use crate::cursor::Cursor;
use crate::error::AuditError;
use crate::index::{self, Index};
use crate::mapping::{BurstDetector, Skip, decode_hex32, event_key, map_record};
use crate::metrics::AuditMetrics;

/// Directory of the tile store inside the data directory.
pub const TLOG_DIR: &str = "tlog";

/// Keys re-indexed per index transaction during recovery.
const REINDEX_CHUNK: u64 = 65_536;

/// A signed checkpoint with what a client needs to check it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointView {
    /// The signed note.
    pub note: String,
    pub origin: String,
    pub size: u64,
    pub root_hash: Hash,
    /// `<name>+<key id hex>+<base64 key>`.
    pub verifier_key: String,
}

/// An entry, its inclusion proof, and the latest checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InclusionView {
    pub leaf_index: u64,
    pub tree_size: u64,
    pub entry: Vec<u8>,
    pub proof: Vec<Hash>,
    pub checkpoint: CheckpointView,
}

/// What one [`Ledger::integrate`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Integrated {
    /// Feed records in the batch.
    pub records: usize,
    /// New entries appended.
    pub appended: u64,
    /// Decisions whose key was already in the log (or earlier in the batch).
    pub redelivered: u64,
    /// Records that are not decisions or could not be mapped.
    pub skipped: u64,
    /// Log size afterwards.
    pub size: u64,
    /// Cursor afterwards.
    pub cursor: u64,
}

/// The Merkle log, its index and the feed cursor.
pub struct Ledger {
    log: RwLock<Log<Box<dyn TileStore>>>,
    index: Index,
    cursor_file: Cursor,
    verifier: LogVerifier,
    verifier_key: String,
    metrics: AuditMetrics,
    /// Serializes writers (integration, recovery).
    writer: Mutex<Writer>,
    /// The persisted cursor, readable without the writer lock.
    cursor: AtomicU64,
    /// False after a failed integration, until one succeeds.
    writable: AtomicBool,
    /// Test-only crash point: see [`Ledger::halt_after_next_append`].
    fault: AtomicU8,
    /// The log size after every append, for consumers that tail the log (the SIEM stage).
    size_tx: tokio::sync::watch::Sender<u64>,
}

/// The writer's state.
struct Writer {
    /// The persisted cursor.
    cursor: u64,
    /// Non-durable index commits since the last durable one.
    since_durable: u32,
    last_durable: Instant,
    /// Signature failures per tenant, for burst events (`mapping::BurstDetector`).
    bursts: BurstDetector,
}

impl Writer {
    /// Whether the next index commit must be durable.
    fn durable_due(&self) -> bool {
        self.since_durable + 1 >= index::DURABLE_EVERY
            || self.last_durable.elapsed() >= index::DURABLE_INTERVAL
    }

    fn committed(&mut self, durable: bool) {
        if durable {
            self.since_durable = 0;
            self.last_durable = Instant::now();
        } else {
            self.since_durable += 1;
        }
    }
}

/// Signature failures of one tenant that make a burst event, by default ...
pub const DEFAULT_BURST_THRESHOLD: u32 = 10;
/// ... within this many milliseconds.
pub const DEFAULT_BURST_WINDOW_MS: u64 = 60_000;

/// Records below which a batch is mapped on the calling thread alone.
const PARALLEL_MIN: usize = 512;

/// `f` over `items`, in order, on up to `available_parallelism` (at most 8) scoped threads;
/// the first error wins.
fn parallel_map<T: Sync, U: Send>(
    items: &[T],
    f: impl Fn(&T) -> Result<U, AuditError> + Sync,
) -> Result<Vec<U>, AuditError> {
    let workers = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(8)
        .min(items.len() / PARALLEL_MIN)
        .max(1);
    if workers == 1 {
        return items.iter().map(&f).collect();
    }
    let chunk = items.len().div_ceil(workers);
    std::thread::scope(|s| {
        let f = &f;
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    let started = flk_runtime::feed::thread_cpu_seconds();
                    let mapped = part.iter().map(f).collect::<Result<Vec<U>, _>>();
                    (mapped, flk_runtime::feed::thread_cpu_seconds() - started)
                })
            })
            .collect();
        let mut out = Vec::with_capacity(items.len());
        let mut result = Ok(());
        for handle in handles {
            match handle.join() {
                Ok((part, cpu)) => {
                    // The feed's CPU share of svc-audit counts its helper threads too.
                    flk_runtime::feed::charge_cpu(cpu);
                    match part {
                        Ok(part) if result.is_ok() => out.extend(part),
                        Ok(_) => {}
                        Err(e) => result = result.and(Err(e)),
                    }
                }
                // Mapping does not panic on any input; if it did, re-raise it here.
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        result.map(|()| out)
    })
}

const FAULT_NONE: u8 = 0;
const FAULT_ARMED: u8 = 1;
const FAULT_HALTED: u8 = 2;

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("verifier_key", &self.verifier_key)
            .field("cursor", &self.cursor())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the guarded cursor torn.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Ledger {
    /// Opens (creating if needed) the ledger in `data_dir`: recovers the log to its latest
    /// checkpoint, re-indexes entries the index is missing, and loads the cursor (an
    /// unreadable cursor restarts the feed from 1, see [`crate::cursor`]).
    pub fn open(
        data_dir: &Path,
        origin: &str,
        signer: LogSigner,
        sync: SyncMode,
        metrics: AuditMetrics,
    ) -> Result<Ledger, AuditError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| AuditError::Index(format!("cannot create {}: {e}", data_dir.display())))?;
        let store = FsStore::open_with(data_dir.join(TLOG_DIR), sync)
            .map_err(|e| AuditError::Log(e.into()))?;
        Ledger::open_with_store(data_dir, Box::new(store), origin, signer, metrics)
    }

    /// [`Ledger::open`] over another tile store (e.g. `flk_tlog::PgStore`); the index, cursor
    /// and key stay in `data_dir`.
    pub fn open_with_store(
        data_dir: &Path,
        store: Box<dyn TileStore>,
        origin: &str,
        signer: LogSigner,
        metrics: AuditMetrics,
    ) -> Result<Ledger, AuditError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| AuditError::Index(format!("cannot create {}: {e}", data_dir.display())))?;
        let verifier = signer.verifier();
        let verifier_key = signer.verifier_key_string();
        let log = Log::open(store, signer, origin)?;
        let index = Index::open(data_dir)?;
        let cursor_file = Cursor::new(data_dir);
        let cursor = cursor_file.load().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "unreadable feed cursor: re-reading the feed from the start");
            0
        });
        let ledger = Ledger {
            log: RwLock::new(log),
            index,
            cursor_file,
            verifier,
            verifier_key,
            metrics,
            writer: Mutex::new(Writer {
                cursor,
                since_durable: 0,
                last_durable: Instant::now(),
                bursts: BurstDetector::new(DEFAULT_BURST_THRESHOLD, DEFAULT_BURST_WINDOW_MS),
            }),
            cursor: AtomicU64::new(cursor),
            writable: AtomicBool::new(true),
            fault: AtomicU8::new(FAULT_NONE),
            size_tx: tokio::sync::watch::Sender::new(0),
        };
        {
            let _w = lock(&ledger.writer);
            let reindexed = ledger.reconcile_locked()?;
            if reindexed > 0 {
                tracing::warn!(
                    entries = reindexed,
                    "re-indexed log entries appended before a crash"
                );
            }
            if ledger.index.decisions().is_none() {
                let n = ledger.count_decisions_locked()?;
                tracing::info!(
                    decisions = n,
                    "counted the decisions of an index that predates the count"
                );
                ledger.index.set_decisions(n)?;
            }
        }
        let size = ledger.size();
        ledger.size_tx.send_replace(size);
        ledger
            .metrics
            .tree_size
            .set(i64::try_from(size).unwrap_or(i64::MAX));
        ledger.metrics.integrated_up_to(cursor);
        tracing::info!(size, cursor, "audit ledger opened");
        Ok(ledger)
    }

    fn read_log(&self) -> RwLockReadGuard<'_, Log<Box<dyn TileStore>>> {
        self.log.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Entries in the log (the size of the latest checkpoint).
    pub fn size(&self) -> u64 {
        self.read_log().size()
    }

    /// The persisted feed cursor (highest sequence number integrated).
    pub fn cursor(&self) -> u64 {
        self.cursor.load(Ordering::Acquire)
    }

    /// Entries the index covers.
    pub fn indexed_size(&self) -> Result<u64, AuditError> {
        self.index.indexed_size()
    }

    /// Whether the last integration attempt succeeded.
    pub fn writable(&self) -> bool {
        self.writable.load(Ordering::Acquire)
    }

    /// The log's verifier.
    pub fn verifier(&self) -> &LogVerifier {
        &self.verifier
    }

    /// The verifier key string.
    pub fn verifier_key(&self) -> &str {
        &self.verifier_key
    }

    /// Test-only crash point: the next integration that appends entries stops right after the
    /// append (before the index commit and the cursor), and every later integration fails at
    /// once, as if the process had died there.
    #[cfg(any(test, feature = "fault-injection"))]
    pub fn halt_after_next_append(&self) {
        self.fault.store(FAULT_ARMED, Ordering::Release);
    }

    /// Integrates a batch of feed records (see the module docs for the order of writes).
    /// Records that are not decisions, cannot be mapped, or whose key is already in the log
    /// become no entry. Returns what was done; on error nothing after the failed step was
    /// written, and the next call repairs the index first.
    pub fn integrate<R: Borrow<v1::FeedRecord> + Sync>(
        &self,
        records: &[R],
    ) -> Result<Integrated, AuditError> {
        let result = self.integrate_inner(records);
        self.writable.store(result.is_ok(), Ordering::Release);
        result
    }

    fn integrate_inner<R: Borrow<v1::FeedRecord> + Sync>(
        &self,
        records: &[R],
    ) -> Result<Integrated, AuditError> {
        let started = Instant::now();
        let mut writer = lock(&self.writer);
        if self.fault.load(Ordering::Acquire) == FAULT_HALTED {
            return Err(AuditError::Injected("halted after an append"));
        }
        if self.index.indexed_size()? < self.size() {
            let n = self.reconcile_locked()?;
            tracing::warn!(entries = n, "re-indexed entries of a failed integration");
        }
        let mut report = Integrated {
            records: records.len(),
            ..Integrated::default()
        };
        let snapshot = self.index.snapshot()?;
        let mut seen: HashSet<(&str, [u8; 32])> = HashSet::with_capacity(records.len());
        let mut fresh = Vec::with_capacity(records.len());
        // Mapping (a strict parse and canonicalization per record) and the index lookup are
        // most of a batch's CPU and independent per record: spread over the cores.
        let mapped = parallel_map(records, |r| {
            let m = map_record(r.borrow());
            let indexed = match &m {
                Ok(m) => snapshot.get(&m.tenant_id, &m.pcs_id)?.is_some(),
                Err(_) => false,
            };
            Ok((m, indexed))
        })?;
        for (rec, (m, indexed)) in records.iter().zip(&mapped) {
            let rec = rec.borrow();
            match m {
                Err(skip) => {
                    self.skipped(rec, skip);
                    report.skipped += 1;
                }
                Ok(m) => {
                    if *indexed || !seen.insert((m.tenant_id.as_str(), m.pcs_id)) {
                        report.redelivered += 1;
                        continue;
                    }
                    if m.digest_mismatch {
                        self.metrics.digest_mismatches.inc();
                        tracing::warn!(seq = rec.seq, pcs_id = %rec.pcs_id, "request does not hash to the feed's canonical digest; logged as received");
                    }
                    let burst = m
                        .signature_failure
                        .as_ref()
                        .and_then(|f| writer.bursts.observe(&m.tenant_id, &m.pcs_id, f));
                    fresh.push(Cow::Borrowed(m));
                    if let Some(b) = burst {
                        tracing::warn!(tenant = %m.tenant_id, "signature failure burst");
                        fresh.push(Cow::Owned(b));
                    }
                }
            }
        }
        drop(snapshot);
        self.metrics.redelivered.inc_by(report.redelivered);

        let mut size = self.size();
        if !fresh.is_empty() {
            let first = size;
            {
                let mut log = self.log.write().unwrap_or_else(|p| p.into_inner());
                for chunk in fresh.chunks(MAX_BATCH_ENTRIES) {
                    let entries: Vec<&[u8]> = chunk.iter().map(|m| m.bytes.as_slice()).collect();
                    let (_, new_size) = log.append_batch(&entries)?;
                    size = new_size;
                    self.metrics.checkpoints.inc();
                }
            }
            report.appended = size - first;
            self.metrics.entries_appended.inc_by(report.appended);
            self.metrics
                .tree_size
                .set(i64::try_from(size).unwrap_or(i64::MAX));
            if self
                .fault
                .compare_exchange(
                    FAULT_ARMED,
                    FAULT_HALTED,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
            {
                return Err(AuditError::Injected("halted after an append"));
            }
            let keys: Vec<(&str, &[u8; 32], u64)> = fresh
                .iter()
                .zip(first..)
                .map(|(m, leaf)| (m.tenant_id.as_str(), &m.pcs_id, leaf))
                .collect();
            let durable = writer.durable_due();
            let decisions = fresh.iter().filter(|m| m.decision).count() as u64;
            // Every key was checked against the index (and the batch) under the writer lock.
            self.index.commit_absent(&keys, size, decisions, durable)?;
            writer.committed(durable);
        }
        let max_seq = records.iter().map(|r| r.borrow().seq).max().unwrap_or(0);
        if max_seq > writer.cursor {
            self.cursor_file.store(max_seq)?;
            writer.cursor = max_seq;
            self.cursor.store(max_seq, Ordering::Release);
        }
        report.size = size;
        report.cursor = writer.cursor;
        self.size_tx.send_replace(size);
        self.metrics.integrated_up_to(writer.cursor);
        self.metrics.batches.inc();
        self.metrics.batch_records.observe(records.len() as f64);
        self.metrics
            .integrate_seconds
            .observe(started.elapsed().as_secs_f64());
        Ok(report)
    }

    fn skipped(&self, rec: &v1::FeedRecord, skip: &Skip) {
        self.metrics
            .skipped
            .with_label_values(&[skip.label()])
            .inc();
        match skip {
            Skip::NotADecision => {
                tracing::debug!(seq = rec.seq, "feed record is not a decision")
            }
            Skip::BadPcsId => tracing::warn!(
                seq = rec.seq,
                pcs_id = %rec.pcs_id.escape_debug(),
                "decision with a malformed pcs_id skipped"
            ),
            Skip::BadRecord(why) => {
                tracing::warn!(seq = rec.seq, reason = %why, "malformed decision record skipped")
            }
        }
    }

    /// Indexes the log's entries from the index's `indexed_size` up to the log size, by
    /// decoding the stored entries. Returns how many were indexed. Caller holds the writer.
    fn reconcile_locked(&self) -> Result<u64, AuditError> {
        let log = self.read_log();
        let size = log.size();
        let from = self.index.indexed_size()?;
        if from > size {
            return Err(AuditError::Inconsistent(format!(
                "the index covers {from} entries but the log holds {size}"
            )));
        }
        let mut start = from;
        while start < size {
            let end = size.min(start + REINDEX_CHUNK);
            let entries = read_entries(log.store(), size, start, end)?;
            // Log events (version-2 entries, e.g. the anchoring strategy) have no key.
            let decoded = entries
                .iter()
                .zip(start..)
                .map(|(bytes, i)| match LogEntry::decode(bytes) {
                    Ok(LogEntry::Decision(e)) => Ok(Some((e.tenant_id, e.pcs_id, i, true))),
                    // Conflicts and bursts are keyed; the strategy events are not.
                    Ok(LogEntry::Event(ev)) => {
                        Ok(event_key(&ev).map(|(tenant, key)| (tenant, key, i, false)))
                    }
                    Err(e) => Err(AuditError::Inconsistent(format!(
                        "log entry {i} does not decode: {e}"
                    ))),
                })
                .collect::<Result<Vec<_>, _>>()?;
            let keys: Vec<(&str, &[u8; 32], u64)> = decoded
                .iter()
                .flatten()
                .map(|(tenant, key, i, _)| (tenant.as_str(), key, *i))
                .collect();
            let decisions = decoded.iter().flatten().filter(|k| k.3).count() as u64;
            let twice = self.index.commit(&keys, end, decisions, true)?;
            if !twice.is_empty() {
                tracing::error!(leaves = ?twice, "the log holds keys twice; proofs use the first leaf");
            }
            self.metrics.reindexed.inc_by(end - start);
            start = end;
        }
        Ok(size - from)
    }

    /// Decisions among the entries the index covers, by reading them (once, for an index
    /// written before it counted them).
    fn count_decisions_locked(&self) -> Result<u64, AuditError> {
        let log = self.read_log();
        let size = log.size();
        let end = self.index.indexed_size()?.min(size);
        let mut n = 0;
        let mut start = 0;
        while start < end {
            let stop = end.min(start + REINDEX_CHUNK);
            for (bytes, i) in read_entries(log.store(), size, start, stop)?
                .iter()
                .zip(start..)
            {
                match LogEntry::decode(bytes) {
                    Ok(LogEntry::Decision(_)) => n += 1,
                    Ok(LogEntry::Event(_)) => {}
                    Err(e) => {
                        return Err(AuditError::Inconsistent(format!(
                            "log entry {i} does not decode: {e}"
                        )));
                    }
                }
            }
            start = stop;
        }
        Ok(n)
    }

    /// Appends one log event (a version-2 entry, see `flk_tlog::entry`) in its own batch,
    /// publishing a checkpoint, under the writer lock; then runs `then` with the event's leaf
    /// index while still holding it, so that nothing is appended between the two (the
    /// anchoring journal records the event there: after a crash in between, the event is the
    /// log's last entry). Returns the leaf index.
    pub fn append_event<T>(
        &self,
        event: &EventEntry,
        then: impl FnOnce(u64) -> Result<T, AuditError>,
    ) -> Result<T, AuditError> {
        let bytes = event
            .encode()
            .map_err(|e| AuditError::Inconsistent(format!("log event does not encode: {e}")))?;
        let mut writer = lock(&self.writer);
        if self.fault.load(Ordering::Acquire) == FAULT_HALTED {
            return Err(AuditError::Injected("halted after an append"));
        }
        if self.index.indexed_size()? < self.size() {
            self.reconcile_locked()?;
        }
        let (leaf, size) = {
            let mut log = self.log.write().unwrap_or_else(|p| p.into_inner());
            log.append_batch(&[bytes.as_slice()])?
        };
        self.metrics.checkpoints.inc();
        self.metrics
            .tree_size
            .set(i64::try_from(size).unwrap_or(i64::MAX));
        self.index.commit(&[], size, 0, true)?;
        writer.committed(true);
        self.size_tx.send_replace(size);
        then(leaf)
    }

    /// Sets how many signature failures of one tenant within `window_ms` make a
    /// `SignatureFailureBurst` event (0: none).
    pub fn set_burst_detection(&self, threshold: u32, window_ms: u64) {
        lock(&self.writer).bursts = BurstDetector::new(threshold, window_ms);
    }

    /// Follows the log size (updated after every append).
    pub fn watch_size(&self) -> tokio::sync::watch::Receiver<u64> {
        self.size_tx.subscribe()
    }

    /// The entries `start..end` (`end` at most the log size), as stored.
    pub fn entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, AuditError> {
        let log = self.read_log();
        if start > end || end > log.size() {
            return Err(AuditError::InvalidRange(format!(
                "need start <= end <= {}, got {start}..{end}",
                log.size()
            )));
        }
        read_entries(log.store(), log.size(), start, end)
    }

    /// The log's last entry, decoded (`None` when the log is empty).
    pub fn last_entry(&self) -> Result<Option<(u64, LogEntry)>, AuditError> {
        let log = self.read_log();
        let size = log.size();
        if size == 0 {
            return Ok(None);
        }
        let bytes = log.entry(size - 1)?;
        let entry = LogEntry::decode(&bytes).map_err(|e| {
            AuditError::Inconsistent(format!("log entry {} does not decode: {e}", size - 1))
        })?;
        Ok(Some((size - 1, entry)))
    }

    /// Makes the index durable up to the latest commit (on a clean shutdown, so that the next
    /// start has nothing to re-index).
    pub fn sync_index(&self) -> Result<(), AuditError> {
        let mut writer = lock(&self.writer);
        self.index.sync()?;
        writer.committed(true);
        Ok(())
    }

    /// Decisions (entries with a key, not events) among the entries the index covers; read
    /// before [`Ledger::checkpoint`], it is at most the decisions that checkpoint covers (the
    /// log is appended before the index commits), so a coverage computed from the pair reads
    /// low while an integration is in flight, never high.
    pub fn decisions(&self) -> Option<u64> {
        self.index.decisions()
    }

    /// The latest checkpoint.
    pub fn checkpoint(&self) -> CheckpointView {
        self.view(&self.read_log())
    }

    fn view(&self, log: &Log<Box<dyn TileStore>>) -> CheckpointView {
        let cp = log.checkpoint();
        CheckpointView {
            note: log.checkpoint_note().to_owned(),
            origin: cp.origin.clone(),
            size: cp.size,
            root_hash: cp.root_hash,
            verifier_key: self.verifier_key.clone(),
        }
    }

    /// The inclusion proof of the decision `(tenant, pcs_id)` at the latest checkpoint.
    pub fn inclusion_by_pcs(
        &self,
        tenant: &str,
        pcs_id: &str,
    ) -> Result<InclusionView, AuditError> {
        let key = decode_hex32(pcs_id).ok_or(AuditError::InvalidPcsId)?;
        let leaf = self
            .index
            .get(tenant, &key)?
            .ok_or_else(|| AuditError::UnknownPcs {
                tenant: tenant.to_owned(),
                pcs_id: pcs_id.to_owned(),
            })?;
        let log = self.read_log();
        let size = log.size();
        if leaf >= size {
            return Err(AuditError::Inconsistent(format!(
                "index names leaf {leaf} of a log of {size}"
            )));
        }
        let entry = log.entry(leaf)?;
        match AuditEntry::decode(&entry) {
            Ok(e) if e.tenant_id == tenant && e.pcs_id == key => {}
            _ => {
                return Err(AuditError::Inconsistent(format!(
                    "leaf {leaf} is not the entry of pcs_id {pcs_id}"
                )));
            }
        }
        Ok(InclusionView {
            leaf_index: leaf,
            tree_size: size,
            proof: log.inclusion_proof(leaf, size)?,
            entry,
            checkpoint: self.view(&log),
        })
    }

    /// The inclusion proof of entry `leaf` in the tree of `tree_size` entries (0: the latest).
    pub fn inclusion_by_leaf(
        &self,
        leaf: u64,
        tree_size: u64,
    ) -> Result<InclusionView, AuditError> {
        let log = self.read_log();
        let size = if tree_size == 0 {
            log.size()
        } else {
            tree_size
        };
        if leaf >= size || size > log.size() {
            return Err(AuditError::InvalidRange(format!(
                "need leaf_index < tree_size <= {}, got leaf_index {leaf}, tree_size {size}",
                log.size()
            )));
        }
        Ok(InclusionView {
            leaf_index: leaf,
            tree_size: size,
            proof: log.inclusion_proof(leaf, size)?,
            entry: log.entry(leaf)?,
            checkpoint: self.view(&log),
        })
    }

    /// The consistency proof from `from` to `to` entries, `0 < from <= to <= size`.
    pub fn consistency(&self, from: u64, to: u64) -> Result<Vec<Hash>, AuditError> {
        let log = self.read_log();
        if from == 0 || from > to || to > log.size() {
            return Err(AuditError::InvalidRange(format!(
                "need 0 < from <= to <= {}, got from {from}, to {to}",
                log.size()
            )));
        }
        Ok(log.consistency_proof(from, to)?)
    }

    /// The bytes of entry `index`.
    pub fn entry(&self, index: u64) -> Result<Vec<u8>, AuditError> {
        let log = self.read_log();
        if index >= log.size() {
            return Err(AuditError::InvalidRange(format!(
                "entry {index} is not below the log size {}",
                log.size()
            )));
        }
        Ok(log.entry(index)?)
    }
}

/// Entries `start..end` of the log of size `size` (`end <= size`). Bundles are read as that
/// log stores them: full ones, and the partial one at its edge (a partial bundle of an earlier
/// size may be gone once the log has grown past it).
fn read_entries(
    store: &dyn TileStore,
    size: u64,
    start: u64,
    end: u64,
) -> Result<Vec<Vec<u8>>, AuditError> {
    let tile_width = u64::from(TILE_WIDTH);
    let mut out = Vec::with_capacity((end - start) as usize);
    let mut tile = start / tile_width;
    while tile * tile_width < end {
        let width = (size - tile * tile_width).min(tile_width) as u16;
        let locate = || store.locate(TileKind::Entries, tile, width);
        let bytes = store
            .get(TileKind::Entries, tile, width)
            .map_err(|e| AuditError::Log(e.into()))?
            .ok_or_else(|| AuditError::Inconsistent(format!("missing bundle {}", locate())))?;
        let (entries, error) = decode_bundle(&bytes);
        if error.is_some() || entries.len() != usize::from(width) {
            return Err(AuditError::Inconsistent(format!(
                "bundle {} does not hold {width} entries",
                locate()
            )));
        }
        let lo = start.saturating_sub(tile * tile_width) as usize;
        let hi = (end - tile * tile_width).min(tile_width) as usize;
        out.extend(entries[lo..hi].iter().map(|e| e.to_vec()));
        tile += 1;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flk_core::{canonicalize, compute_pcs_id, parse_pcs};

    fn metrics() -> AuditMetrics {
        AuditMetrics::register(&prometheus::Registry::new()).unwrap()
    }

    fn open(dir: &Path, signer: &LogSigner) -> Ledger {
        Ledger::open(
            dir,
            "test/audit",
            signer.clone(),
            SyncMode::PerFile,
            metrics(),
        )
        .unwrap()
    }

    /// A decision record for shard `n` of tenant `t`, at feed position `seq`.
    fn decision(seq: u64, t: &str, n: u64) -> v1::FeedRecord {
        let root = "609f33cac6ffd6b1d3dab6089400413eaefec0019ef869f705831ddf924bab92";
        let shard = format!("s{n}");
        let id = compute_pcs_id(root, 1, &shard);
        let json = format!(
            r#"{{"pcs_id":"{id}","schema":"fractal-lba-kakeya","version":"0.1","shard_id":"{shard}","epoch":1,"attempt":1,"sent_at":"2025-01-01T00:00:00Z","seed":1,"scales":[2,4],"N_j":{{"2":3,"4":9}},"coh_star":0.7,"v_star":[0,0,1],"D_hat":1.5,"r":0.5,"regime":"mixed","budget":0.44,"merkle_root":"{root}","sig":""}}"#
        );
        let digest = canonicalize(&parse_pcs(json.as_bytes()).unwrap()).digest;
        v1::FeedRecord {
            seq,
            tenant_id: t.into(),
            pcs_id: id.clone(),
            outcome: Some(v1::Outcome {
                pcs_id: id,
                tenant_id: t.into(),
                outcome: v1::OutcomeKind::Accepted as i32,
                reason_code: "ok".into(),
                policy_version: "1".into(),
                policy_hash: "00".repeat(32),
                ..Default::default()
            }),
            canonical_digest: digest.to_vec(),
            request_json: json.into_bytes(),
            decided_at_unix_ms: 1,
            region: "r".into(),
            kind: v1::RecordKind::Decision as i32,
            ..Default::default()
        }
    }

    #[test]
    fn any_range_reads_after_the_log_grew_past_its_partial_bundle() {
        let dir = tempfile::tempdir().unwrap();
        let signer = LogSigner::generate("test/audit").unwrap();
        let ledger = open(dir.path(), &signer);
        // Three batches: the partial bundles of sizes 1 and 4 are replaced as the log grows.
        for range in [1..=1, 2..=4, 5..=300] {
            let batch: Vec<_> = range.map(|i| decision(i, "a", i)).collect();
            ledger.integrate(&batch).unwrap();
        }
        let all = ledger.entries(0, 300).unwrap();
        assert_eq!(all.len(), 300);
        for (start, end) in [(0, 1), (3, 4), (255, 257), (256, 300), (10, 10), (299, 300)] {
            assert_eq!(
                ledger.entries(start, end).unwrap(),
                all[start as usize..end as usize],
                "{start}..{end}"
            );
        }
        assert!(ledger.entries(0, 301).is_err());
    }

    #[test]
    fn redelivered_and_repeated_keys_make_no_second_leaf() {
        let dir = tempfile::tempdir().unwrap();
        let signer = LogSigner::generate("test/audit").unwrap();
        let ledger = open(dir.path(), &signer);
        let batch: Vec<_> = (1..=5).map(|i| decision(i, "a", i)).collect();
        let r = ledger.integrate(&batch).unwrap();
        assert_eq!((r.appended, r.size, r.cursor), (5, 5, 5));
        // The same records again, one repeated inside the batch, a second tenant, a conflict
        // event and a malformed pcs_id.
        let mut again = batch.clone();
        again.push(decision(6, "a", 1));
        again.push(decision(7, "b", 1));
        again.push(v1::FeedRecord {
            kind: v1::RecordKind::ConflictingDuplicate as i32,
            ..decision(8, "a", 2)
        });
        again.push(v1::FeedRecord {
            pcs_id: "XYZ".into(),
            ..decision(9, "a", 9)
        });
        again.push(decision(10, "b", 1));
        let r = ledger.integrate(&again).unwrap();
        // The new decision and the conflict event.
        assert_eq!(r.appended, 2);
        assert_eq!(r.redelivered, 7);
        assert_eq!(r.skipped, 1);
        assert_eq!((r.size, r.cursor), (7, 10));
        assert!(matches!(
            LogEntry::decode(&ledger.entry(6).unwrap()).unwrap(),
            LogEntry::Event(e) if e.kind == flk_tlog::EventKind::ConflictingDuplicate
        ));
        // The same conflict again (redelivered, or resubmitted): logged once.
        let r = ledger.integrate(&again[6..8]).unwrap();
        assert_eq!((r.appended, r.redelivered), (0, 2));
        assert_eq!(
            ledger
                .inclusion_by_pcs("b", &batch[0].pcs_id)
                .unwrap()
                .leaf_index,
            5
        );
        assert_eq!(
            ledger
                .inclusion_by_pcs("a", &batch[4].pcs_id)
                .unwrap()
                .leaf_index,
            4
        );
        // An older batch does not move the cursor back.
        assert_eq!(ledger.integrate(&batch[..1]).unwrap().cursor, 10);
        // 7 entries, of which the conflict event is no decision.
        assert_eq!((ledger.size(), ledger.decisions()), (7, Some(6)));
        // Still so after a reopen that re-indexes, and after one that counts from the log.
        drop(ledger);
        let ledger = open(dir.path(), &signer);
        assert_eq!(ledger.decisions(), Some(6));
        ledger.index.meta_remove_decisions_for_test();
        drop(ledger);
        let ledger = open(dir.path(), &signer);
        assert_eq!(ledger.decisions(), Some(6));
    }

    #[test]
    fn signature_failures_in_a_window_make_one_burst_event_per_threshold() {
        let dir = tempfile::tempdir().unwrap();
        let signer = LogSigner::generate("test/audit").unwrap();
        let ledger = open(dir.path(), &signer);
        ledger.set_burst_detection(3, 1000);
        let failure = |seq: u64, t: &str, n: u64, at: i64| {
            let mut r = decision(seq, t, n);
            r.decided_at_unix_ms = at;
            if let Some(o) = r.outcome.as_mut() {
                o.outcome = v1::OutcomeKind::Rejected as i32;
                o.reason_code = "signature_invalid".into();
            }
            r
        };
        // Two failures of `a`, one of `b`, then one of `a` too late for the window.
        let r = ledger
            .integrate(&[
                failure(1, "a", 1, 1_000),
                failure(2, "a", 2, 1_500),
                failure(3, "b", 3, 1_600),
                failure(4, "a", 4, 2_600),
            ])
            .unwrap();
        assert_eq!(r.appended, 4);
        // Two more of `a` inside the window of the last: a burst of 3, right after the third.
        let r = ledger
            .integrate(&[failure(5, "a", 5, 2_700), failure(6, "a", 6, 2_800)])
            .unwrap();
        assert_eq!((r.appended, r.size), (3, 7));
        let LogEntry::Event(e) = LogEntry::decode(&ledger.entry(6).unwrap()).unwrap() else {
            panic!("entry 6 is not an event");
        };
        assert_eq!(e.kind, flk_tlog::EventKind::SignatureFailureBurst);
        let body: crate::mapping::BurstBody = serde_json::from_str(&e.body).unwrap();
        assert_eq!((body.tenant_id.as_str(), body.failures), ("a", 3));
        assert_eq!(
            (body.first_at_unix_ms, body.last_at_unix_ms),
            (2_600, 2_800)
        );
        assert_eq!(body.reason_codes, ["signature_invalid"]);
        // The count starts again after a burst; accepted decisions are not counted.
        let r = ledger
            .integrate(&[failure(7, "a", 7, 2_900), decision(8, "a", 8)])
            .unwrap();
        assert_eq!((r.appended, r.size), (2, 9));
        // The burst is keyed: re-indexing after a crash keeps it out of a second leaf.
        drop(ledger);
        let ledger = open(dir.path(), &signer);
        assert_eq!(ledger.indexed_size().unwrap(), 9);
    }

    #[test]
    fn a_crash_between_append_and_index_is_repaired_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let signer = LogSigner::generate("test/audit").unwrap();
        let ledger = open(dir.path(), &signer);
        ledger
            .integrate(&(1..=300).map(|i| decision(i, "a", i)).collect::<Vec<_>>())
            .unwrap();
        ledger.halt_after_next_append();
        let batch: Vec<_> = (301..=700).map(|i| decision(i, "a", i)).collect();
        assert!(matches!(
            ledger.integrate(&batch),
            Err(AuditError::Injected(_))
        ));
        assert!(matches!(
            ledger.integrate(&batch),
            Err(AuditError::Injected(_))
        ));
        assert!(!ledger.writable());
        assert_eq!((ledger.size(), ledger.indexed_size().unwrap()), (700, 300));
        assert_eq!(ledger.cursor(), 300);
        drop(ledger);

        let ledger = open(dir.path(), &signer);
        assert_eq!(ledger.indexed_size().unwrap(), 700);
        assert_eq!(ledger.cursor(), 300);
        let r = ledger.integrate(&batch).unwrap();
        assert_eq!(
            (r.appended, r.redelivered, r.size, r.cursor),
            (0, 400, 700, 700)
        );
        let p = ledger.inclusion_by_pcs("a", &batch[399].pcs_id).unwrap();
        assert_eq!((p.leaf_index, p.tree_size), (699, 700));
        flk_tlog::verify_inclusion_bundle(
            &p.entry,
            p.leaf_index,
            p.tree_size,
            &p.proof,
            &p.checkpoint.note,
            &signer.verifier(),
        )
        .unwrap();
    }

    #[test]
    fn queries_check_their_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let signer = LogSigner::generate("test/audit").unwrap();
        let ledger = open(dir.path(), &signer);
        ledger
            .integrate(&(1..=3).map(|i| decision(i, "a", i)).collect::<Vec<_>>())
            .unwrap();
        assert!(matches!(
            ledger.consistency(0, 3),
            Err(AuditError::InvalidRange(_))
        ));
        assert!(matches!(
            ledger.consistency(3, 2),
            Err(AuditError::InvalidRange(_))
        ));
        assert!(matches!(
            ledger.consistency(1, 4),
            Err(AuditError::InvalidRange(_))
        ));
        assert!(ledger.consistency(3, 3).unwrap().is_empty());
        assert!(matches!(ledger.entry(3), Err(AuditError::InvalidRange(_))));
        assert!(matches!(
            ledger.inclusion_by_leaf(3, 3),
            Err(AuditError::InvalidRange(_))
        ));
        assert!(matches!(
            ledger.inclusion_by_leaf(0, 4),
            Err(AuditError::InvalidRange(_))
        ));
        assert_eq!(ledger.inclusion_by_leaf(1, 0).unwrap().tree_size, 3);
        assert!(matches!(
            ledger.inclusion_by_pcs("a", "00"),
            Err(AuditError::InvalidPcsId)
        ));
        assert!(matches!(
            ledger.inclusion_by_pcs("b", &decision(1, "a", 1).pcs_id),
            Err(AuditError::UnknownPcs { .. })
        ));
    }
}
