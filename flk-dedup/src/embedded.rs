//! [`EmbeddedStore`]: the dedup index in one fjall keyspace (for `flk up`, tests, single node).
//!
//! # Why an LSM tree
//!
//! The index takes one insert per fresh decision at a uniformly random key (`pcs_id` is a
//! hash). A copy-on-write B-tree (redb, which this store used first) rewrites a whole leaf
//! page per such insert once the tree outgrows a transaction's worth of pages, and sustained
//! about 12,000 inserts/s on this project's 2-core machine at a million entries; fjall's LSM
//! tree appends the batch to its journal and sorts it into immutable segments in the
//! background (about 30,000 inserts/s, set-if-absent read included, in the same test; see
//! `docs/BENCHMARKS.md`). Point reads of absent keys, the common case, stop at each segment's
//! bloom filter.
//!
//! # Layout
//!
//! One keyspace directory, `<dir>/dedup.fjall` ([`DIR_NAME`]), with an exclusive lock file
//! `<dir>/dedup.lock`, and two partitions:
//!
//! - `entries`: key `pcs_id as 32 raw bytes | tenant_id bytes` (a pcs_id is always 64
//!   lowercase hex characters, so the split is unambiguous and keys differ in their first
//!   byte) -> record bytes, format 1: `0x01 | expires_at: u64 BE (ms since the Unix epoch) |
//!   seq: u64 BE | digest: 32 bytes | outcome: rest`. The expiry travels with the entry, so one
//!   read decides liveness.
//! - `expiry`: the index that [`DedupStore::purge_expired`] walks in expiry order, one
//!   entry per write batch and expiry time: key `expires_at: u64 BE | group: u64 BE` ->
//!   the entry keys of the batch's puts with that expiry, each as `length: u16 BE | key`
//!   (`group` is the keyspace's sequence number when the batch was built, so no two batches
//!   share a key). It is written in the same atomic write batch as the entries it names.
//!   Stores written before this layout hold one index entry per put, key `expires_at | entry
//!   key` (at least 41 bytes) -> empty; the purge reads both.
//!
//! An entry is live while `now < expires_at` (`now` from the injectable [`Clock`]). An index
//! entry only says "look at these keys then": a put that replaces an entry leaves the old
//! reference in place, and the purge deletes a named entry only if the expiry stored in the
//! entry itself has passed, so a stale reference is dropped without effect.
//!
//! Why a group per batch: one index insert per put doubled the LSM work of every decision
//! (memtable insert, flush, compaction); a group costs one insert per write batch (up to
//! [`EmbeddedOptions::max_batch`] puts).
//!
//! # Writes: one writer thread, group commit
//!
//! A dedicated writer thread takes every queued request (up to [`EmbeddedOptions::max_batch`]),
//! applies them in order into one atomic write batch, commits it, fsyncs the journal
//! (`PersistMode::SyncAll`) and only then answers each caller: the fsync is shared by every
//! put that arrived while the previous one was running. With
//! [`EmbeddedOptions::deferred_sync`] the commits only hand the journal to the operating
//! system (a killed process loses nothing; a power cut may lose the tail) and
//! [`DedupStore::sync`] makes everything committed so far durable. Since only this thread
//! writes, a put's read-then-insert is atomic; requests for the same key in one batch see each
//! other through the batch's own map (the first wins). A purge starts a new write batch, so its
//! scan sees every earlier put. If a commit fails, every request it carried
//! gets the error and nothing of it is visible.
//!
//! Point reads run inline on the caller's thread: they never wait for the writer, and a lookup
//! answered by a bloom filter or the block cache takes a few microseconds, less than a hop to
//! tokio's blocking pool.
//!
//! # Failure
//!
//! An I/O error is [`DedupError::Unavailable`]; after a failed journal fsync fjall refuses
//! further writes until the store is reopened (a process restart). Data that does not decode
//! (a record, a segment block, the journal at open) is [`DedupError::Corrupt`] (a bad record
//! fails that key only; other keys keep working).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use fjall::{Keyspace, PartitionCreateOptions, PartitionHandle, PersistMode};
use flk_runtime::key_filter::{KeyFilter, Writing};
use tokio::sync::oneshot;

use crate::clock::{Clock, SystemClock, millis_since_epoch};
use crate::key::validate_put;
use crate::{DedupEntry, DedupError, DedupKey, DedupStore, PutOutcome, codec};

/// The keyspace directory inside the store's directory.
pub const DIR_NAME: &str = "dedup.fjall";
/// The lock file that keeps a second process (or store) off the keyspace.
pub const LOCK_FILE: &str = "dedup.lock";
/// The partition of entries.
pub const ENTRIES: &str = "entries";
/// The partition ordering entries by expiry.
pub const EXPIRY: &str = "expiry";
const BACKEND: &str = "embedded";
/// Default upper bound on requests per write batch.
const DEFAULT_MAX_BATCH: usize = 4096;
/// Block cache shared by both partitions.
const CACHE_BYTES: u64 = 64 * 1024 * 1024;
/// Memtables of both partitions together, before the largest is flushed (fjall's default is
/// 64 MiB; at a few hundred decisions a second they took half an hour to fill, which a soak
/// reads as growth: docs/RELIABILITY.md).
const WRITE_BUFFER_BYTES: u64 = 32 * 1024 * 1024;

/// How to open an [`EmbeddedStore`].
#[derive(Clone)]
pub struct EmbeddedOptions {
    dir: PathBuf,
    clock: Arc<dyn Clock>,
    max_batch: usize,
    deferred_sync: bool,
}

impl EmbeddedOptions {
    /// Store in `dir` (created if missing), system clock, batches of up to 4,096 requests.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            clock: Arc::new(SystemClock),
            max_batch: DEFAULT_MAX_BATCH,
            deferred_sync: false,
        }
    }

    /// Commit puts without fsync; they become durable at the next [`DedupStore::sync`] (or
    /// any later durable commit), and a power cut before it may lose them. Only for an owner
    /// that can rebuild them, as svc-verify does from its outcome log above a watermark it
    /// persists after `sync`. Default: every commit is durable.
    pub fn deferred_sync(mut self, deferred: bool) -> Self {
        self.deferred_sync = deferred;
        self
    }

    /// The clock that decides expiry (tests pass a [`crate::ManualClock`]).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Most requests applied in one write batch (one fsync); at least 1.
    pub fn max_batch(mut self, max_batch: usize) -> Self {
        self.max_batch = max_batch.max(1);
        self
    }
}

impl std::fmt::Debug for EmbeddedOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedOptions")
            .field("dir", &self.dir)
            .field("max_batch", &self.max_batch)
            .field("deferred_sync", &self.deferred_sync)
            .finish_non_exhaustive()
    }
}

/// The fjall-backed dedup index. Cheap to clone (clones share one keyspace and writer).
#[derive(Clone, Debug)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

/// The open keyspace and its partitions.
#[derive(Clone)]
struct Db {
    keyspace: Keyspace,
    entries: PartitionHandle,
    expiry: PartitionHandle,
    /// Every key of `entries`: most reads of a key never decided stop here.
    filter: KeyFilter,
}

struct Inner {
    path: PathBuf,
    db: Option<Db>,
    clock: Arc<dyn Clock>,
    requests: Option<mpsc::Sender<Request>>,
    writer: Option<JoinHandle<()>>,
    // Released (closed) last, after the keyspace has stopped its background threads.
    _lock: flk_runtime::lock::DirLock,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the channel ends the writer after its current batch; joining it and then
        // dropping the keyspace (which stops its flush and compaction threads) releases the
        // directory, so it can be reopened at once.
        drop(self.requests.take());
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            tracing::error!(path = %self.path.display(), "dedup writer thread panicked");
        }
        if let Some(db) = self.db.take() {
            db.filter.close();
        }
    }
}

/// A queued write and where its answer goes.
struct Request {
    op: Op,
    reply: Reply,
}

enum Op {
    Put {
        key: DedupKey,
        entry: DedupEntry,
        ttl_ms: u64,
        /// Overwrite a live entry ([`DedupStore::replace`]).
        replace: bool,
    },
    Purge {
        limit: usize,
    },
    /// Makes every earlier commit durable (its batch fsyncs the journal).
    Sync,
}

enum Reply {
    Put(oneshot::Sender<Result<PutOutcome, DedupError>>),
    Purge(oneshot::Sender<Result<usize, DedupError>>),
    Sync(oneshot::Sender<Result<(), DedupError>>),
}

/// What an op did inside a write batch that then committed.
enum Answer {
    /// A corrupt existing record fails only its own put, not the batch.
    Put(Result<PutOutcome, DedupError>),
    Purged(usize),
    Synced,
}

impl Reply {
    fn send(self, answer: Result<Answer, DedupError>) {
        // A caller that gave up (dropped its future) does not care about the answer.
        match (self, answer) {
            (Self::Put(tx), Ok(Answer::Put(result))) => drop(tx.send(result)),
            (Self::Purge(tx), Ok(Answer::Purged(n))) => drop(tx.send(Ok(n))),
            (Self::Put(tx), Err(e)) => drop(tx.send(Err(e))),
            (Self::Purge(tx), Err(e)) => drop(tx.send(Err(e))),
            (Self::Sync(tx), Ok(Answer::Synced)) => drop(tx.send(Ok(()))),
            (Self::Sync(tx), Err(e)) => drop(tx.send(Err(e))),
            (Self::Put(tx), Ok(_)) => drop(tx.send(Err(mismatch()))),
            (Self::Purge(tx), Ok(_)) => drop(tx.send(Err(mismatch()))),
            (Self::Sync(tx), Ok(_)) => drop(tx.send(Err(mismatch()))),
        }
    }
}

fn mismatch() -> DedupError {
    DedupError::backend_failure(BACKEND, "internal error: answer does not match its request")
}

/// The `entries` key of `key`: the pcs_id's 32 bytes, then the tenant id.
pub fn entry_key(key: &DedupKey) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + key.tenant_id.len());
    let hex = key.pcs_id.as_bytes();
    // `DedupKey::validate` has checked 64 lowercase hex digits; anything else maps to 0.
    let nibble = |c: u8| match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => 0,
    };
    out.extend(
        hex.chunks_exact(2)
            .map(|p| nibble(p[0]) << 4 | nibble(p[1])),
    );
    out.extend_from_slice(key.tenant_id.as_bytes());
    out
}

/// The key of a group of the expiry index: 16 bytes (a per-put key of the older layout is at
/// least 41).
fn group_key(expires_at_ms: u64, group: u64) -> [u8; GROUP_KEY_LEN] {
    let mut out = [0; GROUP_KEY_LEN];
    out[..8].copy_from_slice(&expires_at_ms.to_be_bytes());
    out[8..].copy_from_slice(&group.to_be_bytes());
    out
}

const GROUP_KEY_LEN: usize = 16;

/// Appends `entry_key` to a group's value.
fn push_reference(group: &mut Vec<u8>, entry_key: &[u8]) {
    // An entry key is 32 bytes plus a tenant id of at most MAX_TENANT_ID_BYTES: far below
    // u16::MAX.
    let len = u16::try_from(entry_key.len()).unwrap_or(u16::MAX);
    group.extend_from_slice(&len.to_be_bytes());
    group.extend_from_slice(entry_key);
}

/// The entry keys a group's value names, in order.
fn references(group: &[u8]) -> Result<Vec<&[u8]>, DedupError> {
    let mut out = Vec::new();
    let mut rest = group;
    while !rest.is_empty() {
        let (len, tail) = rest
            .split_first_chunk::<2>()
            .ok_or_else(|| DedupError::corrupt(BACKEND, "expiry group ends inside a length"))?;
        let len = usize::from(u16::from_be_bytes(*len));
        let (key, tail) = tail
            .split_at_checked(len)
            .ok_or_else(|| DedupError::corrupt(BACKEND, "expiry group ends inside an entry key"))?;
        out.push(key);
        rest = tail;
    }
    Ok(out)
}

impl EmbeddedStore {
    /// Opens (or creates) the store in `dir` with default options. Blocking: call it at
    /// startup or inside `spawn_blocking`.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, DedupError> {
        Self::open_with(EmbeddedOptions::new(dir.as_ref()))
    }

    /// Opens (or creates) the store described by `options`. Blocking, like [`Self::open`].
    pub fn open_with(options: EmbeddedOptions) -> Result<Self, DedupError> {
        std::fs::create_dir_all(&options.dir).map_err(|e| {
            DedupError::unavailable(
                BACKEND,
                format!("cannot create {}: {e}", options.dir.display()),
            )
        })?;
        // fjall does not lock its directory; two writers would corrupt it.
        let lock_path = options.dir.join(LOCK_FILE);
        let lock = flk_runtime::lock::DirLock::acquire(&lock_path).map_err(|e| {
            let message = match e {
                flk_runtime::lock::LockError::Held { .. } => format!(
                    "{} is already open in another store or process",
                    options.dir.display()
                ),
                other => other.to_string(),
            };
            DedupError::unavailable(BACKEND, message)
        })?;
        let path = options.dir.join(DIR_NAME);
        let keyspace = fjall::Config::new(&path)
            .max_write_buffer_size(WRITE_BUFFER_BYTES)
            .cache_size(CACHE_BYTES)
            .open()
            .map_err(|e| fjall_error(e, &format!("opening {}", path.display())))?;
        let partition = |name| {
            keyspace
                .open_partition(name, PartitionCreateOptions::default())
                .map_err(|e| fjall_error(e, &format!("opening partition {name}")))
        };
        let entries = partition(ENTRIES)?;
        let db = Db {
            filter: KeyFilter::open(entries.clone(), "dedup entries"),
            entries,
            expiry: partition(EXPIRY)?,
            keyspace: keyspace.clone(),
        };

        let (requests, queue) = mpsc::channel();
        let writer = Writer {
            db: db.clone(),
            clock: Arc::clone(&options.clock),
            max_batch: options.max_batch,
            deferred_sync: options.deferred_sync,
        };
        let writer = std::thread::Builder::new()
            .name("flk-dedup-writer".to_owned())
            .spawn(move || writer.run(&queue))
            .map_err(|e| {
                DedupError::backend_failure(BACKEND, format!("cannot spawn the writer thread: {e}"))
            })?;
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                db: Some(db),
                clock: options.clock,
                requests: Some(requests),
                writer: Some(writer),
                _lock: lock,
            }),
        })
    }

    /// The keyspace directory.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    fn db(&self) -> Result<&Db, DedupError> {
        self.inner
            .db
            .as_ref()
            .ok_or_else(|| DedupError::unavailable(BACKEND, "the store is closed"))
    }

    fn send(&self, request: Request) -> Result<(), DedupError> {
        let gone = || DedupError::unavailable(BACKEND, "the writer thread has stopped");
        self.inner
            .requests
            .as_ref()
            .ok_or_else(gone)?
            .send(request)
            .map_err(|_| gone())
    }

    async fn ask<T>(
        &self,
        op: Op,
        reply: impl FnOnce(oneshot::Sender<Result<T, DedupError>>) -> Reply,
    ) -> Result<T, DedupError> {
        let (tx, answer) = oneshot::channel();
        self.send(Request {
            op,
            reply: reply(tx),
        })?;
        answer
            .await
            .map_err(|_| DedupError::unavailable(BACKEND, "the writer thread has stopped"))?
    }
}

#[async_trait::async_trait]
impl DedupStore for EmbeddedStore {
    async fn get(&self, key: &DedupKey) -> Result<Option<DedupEntry>, DedupError> {
        key.validate()?;
        let now_ms = millis_since_epoch(self.inner.clock.now());
        let db = self.db()?;
        let id = entry_key(key);
        if !db.filter.may_contain(&id) {
            return Ok(None);
        }
        let Some(value) = db.entries.get(id).map_err(|e| fjall_error(e, "get"))? else {
            return Ok(None);
        };
        let (expires_at_ms, entry) =
            codec::decode_record(&value).map_err(|m| corrupt_record(key, &m))?;
        Ok((now_ms < expires_at_ms).then_some(entry))
    }

    async fn put_if_absent(
        &self,
        key: &DedupKey,
        entry: &DedupEntry,
        ttl: Duration,
    ) -> Result<PutOutcome, DedupError> {
        let ttl_ms = validate_put(key, entry, ttl)?;
        let op = Op::Put {
            key: key.clone(),
            entry: entry.clone(),
            ttl_ms,
            replace: false,
        };
        self.ask(op, Reply::Put).await
    }

    async fn replace(
        &self,
        key: &DedupKey,
        entry: &DedupEntry,
        ttl: Duration,
    ) -> Result<(), DedupError> {
        let ttl_ms = validate_put(key, entry, ttl)?;
        let op = Op::Put {
            key: key.clone(),
            entry: entry.clone(),
            ttl_ms,
            replace: true,
        };
        self.ask(op, Reply::Put).await.map(|_| ())
    }

    async fn check_ready(&self) -> Result<(), DedupError> {
        let db = self.db()?.clone();
        // A read that may touch the disk: off the async threads.
        tokio::task::spawn_blocking(move || {
            db.entries
                .first_key_value()
                .map_err(|e| fjall_error(e, "ready check"))
        })
        .await
        .map_err(|e| DedupError::backend_failure(BACKEND, format!("ready check failed: {e}")))??;
        if self
            .inner
            .writer
            .as_ref()
            .is_some_and(JoinHandle::is_finished)
        {
            return Err(DedupError::unavailable(
                BACKEND,
                "the writer thread has stopped",
            ));
        }
        Ok(())
    }

    async fn sync(&self) -> Result<(), DedupError> {
        self.ask(Op::Sync, Reply::Sync).await
    }

    async fn purge_expired(&self, limit: usize) -> Result<usize, DedupError> {
        if limit == 0 {
            return Ok(0);
        }
        self.ask(Op::Purge { limit }, Reply::Purge).await
    }

    fn backend(&self) -> &'static str {
        BACKEND
    }

    /// The lock file keeps the keyspace to one store in one process.
    fn single_writer(&self) -> bool {
        true
    }
}

/// The single writer: drains the queue into write batches.
struct Writer {
    db: Db,
    clock: Arc<dyn Clock>,
    max_batch: usize,
    deferred_sync: bool,
}

/// What the current write batch has written, for requests later in the same batch.
#[derive(Default)]
struct Overlay {
    records: HashMap<Vec<u8>, Vec<u8>>,
    /// The batch's expiry groups: expiry time -> references.
    groups: BTreeMap<u64, Vec<u8>>,
}

impl Writer {
    fn run(self, queue: &mpsc::Receiver<Request>) {
        while let Ok(first) = queue.recv() {
            let mut batch = vec![first];
            while batch.len() < self.max_batch {
                match queue.try_recv() {
                    Ok(request) => batch.push(request),
                    Err(_) => break,
                }
            }
            let now_ms = millis_since_epoch(self.clock.now());
            let mut requests = batch.into_iter().peekable();
            // A purge starts a new segment: it scans committed data only, so every earlier
            // put must be committed before it.
            while let Some(first) = requests.next() {
                let mut segment = vec![first];
                while let Some(request) = requests.next_if(|r| !matches!(r.op, Op::Purge { .. })) {
                    segment.push(request);
                }
                match self.apply(&segment, now_ms) {
                    Ok(answers) => {
                        for (request, answer) in segment.into_iter().zip(answers) {
                            request.reply.send(Ok(answer));
                        }
                    }
                    Err(e) => {
                        for request in segment {
                            request.reply.send(Err(e.clone()));
                        }
                        for request in requests.by_ref() {
                            request.reply.send(Err(e.clone()));
                        }
                    }
                }
            }
        }
    }

    /// Applies `segment` (at most one purge, as its first op) as one atomic write batch, commits
    /// it and, unless deferred (and no sync asked), fsyncs the journal.
    fn apply(&self, segment: &[Request], now_ms: u64) -> Result<Vec<Answer>, DedupError> {
        let db = &self.db;
        // Every key this batch writes is in the filter before it commits.
        let filter = db.filter.writing();
        let mut batch = db.keyspace.batch();
        let mut overlay = Overlay::default();
        let mut answers = Vec::with_capacity(segment.len());
        for request in segment {
            answers.push(match &request.op {
                Op::Put {
                    key,
                    entry,
                    ttl_ms,
                    replace,
                } => Answer::Put(self.put(
                    (&mut batch, &filter),
                    &mut overlay,
                    key,
                    entry,
                    (*ttl_ms, *replace),
                    now_ms,
                )?),
                Op::Purge { limit } => Answer::Purged(self.purge(&mut batch, *limit, now_ms)?),
                Op::Sync => Answer::Synced,
            });
        }
        for (expires_at_ms, references) in overlay.groups {
            let key = self.next_group_key(expires_at_ms)?;
            batch.insert(&db.expiry, key, references);
        }
        batch.commit().map_err(|e| fjall_error(e, "commit"))?;
        drop(filter);
        // A Sync makes every commit so far durable: this segment's and all before it.
        if !self.deferred_sync || segment.iter().any(|r| matches!(r.op, Op::Sync)) {
            db.keyspace
                .persist(PersistMode::SyncAll)
                .map_err(|e| fjall_error(e, "journal fsync"))?;
        }
        Ok(answers)
    }

    /// Set-if-absent into the write batch. The outer `Err` is a storage failure (abort);
    /// the inner result is this request's answer (a corrupt record fails only this request).
    fn put(
        &self,
        (batch, filter): (&mut fjall::Batch, &Writing<'_>),
        overlay: &mut Overlay,
        key: &DedupKey,
        entry: &DedupEntry,
        (ttl_ms, replace): (u64, bool),
        now_ms: u64,
    ) -> Result<Result<PutOutcome, DedupError>, DedupError> {
        let id = entry_key(key);
        let existing = match overlay.records.get(&id) {
            Some(record) => Some(codec::decode_record(record)),
            None if !filter.may_contain(&id) => None,
            None => self
                .db
                .entries
                .get(&id)
                .map_err(|e| fjall_error(e, "put"))?
                .map(|value| codec::decode_record(&value)),
        };
        match existing {
            Some(Err(message)) if !replace => return Ok(Err(corrupt_record(key, &message))),
            Some(Ok((expires_at_ms, stored))) if now_ms < expires_at_ms && !replace => {
                return Ok(Ok(PutOutcome::Existing(stored)));
            }
            // Absent, expired or replaced: written below. An expired or replaced entry's
            // index reference goes stale, and the purge skips it (see the module docs).
            _ => {}
        }
        let expires_at_ms = now_ms.saturating_add(ttl_ms);
        let record = codec::encode_record(expires_at_ms, entry);
        push_reference(overlay.groups.entry(expires_at_ms).or_default(), &id);
        filter.insert(&id);
        batch.insert(&self.db.entries, id.clone(), record.as_slice());
        overlay.records.insert(id, record);
        Ok(Ok(PutOutcome::Inserted))
    }

    /// The key of a new expiry group: the keyspace's sequence number, which every committed
    /// batch moves past (across restarts too), so it differs from every earlier batch's; the
    /// groups of one batch differ by expiry time. A key already held (which that rules out)
    /// is skipped rather than overwritten, since that would lose its references.
    fn next_group_key(&self, expires_at_ms: u64) -> Result<[u8; GROUP_KEY_LEN], DedupError> {
        let mut group = self.db.keyspace.instant();
        loop {
            let key = group_key(expires_at_ms, group);
            let held = self
                .db
                .expiry
                .contains_key(key)
                .map_err(|e| fjall_error(e, "expiry group"))?;
            if !held {
                return Ok(key);
            }
            group = group.saturating_add(1);
        }
    }

    /// Follows up to `limit` references of the expiry index due by `now`, oldest first, and
    /// deletes each named entry whose own expiry has passed, in `batch`. Returns how many
    /// entries it deleted (fewer than `limit` when references were stale). Only ever the first
    /// op of a write batch: the scan sees committed data.
    fn purge(
        &self,
        batch: &mut fjall::Batch,
        limit: usize,
        now_ms: u64,
    ) -> Result<usize, DedupError> {
        let end = now_ms.saturating_add(1).to_be_bytes();
        let mut followed = 0;
        let mut deleted = HashSet::new();
        for item in self.db.expiry.range(..end.as_slice()) {
            if followed >= limit {
                break;
            }
            let (k, v) = item.map_err(|e| fjall_error(e, "purge"))?;
            if k.len() == GROUP_KEY_LEN {
                let refs = references(&v)?;
                let take = refs.len().min(limit - followed);
                for id in &refs[..take] {
                    self.purge_entry(batch, id, now_ms, &mut deleted)?;
                }
                followed += take;
                if take < refs.len() {
                    let mut rest = Vec::new();
                    for id in &refs[take..] {
                        push_reference(&mut rest, id);
                    }
                    batch.insert(&self.db.expiry, k.to_vec(), rest);
                } else {
                    batch.remove(&self.db.expiry, k.to_vec());
                }
            } else {
                // The older layout: one reference per key.
                let Some(id) = k.get(8..).filter(|id| id.len() > 32) else {
                    return Err(DedupError::corrupt(
                        BACKEND,
                        format!("expiry key of {} bytes", k.len()),
                    ));
                };
                self.purge_entry(batch, id, now_ms, &mut deleted)?;
                followed += 1;
                batch.remove(&self.db.expiry, k.to_vec());
            }
        }
        Ok(deleted.len())
    }

    /// Deletes the entry `id` if its expiry has passed (or it does not decode: its reference
    /// fell due, as the older layout deleted it).
    fn purge_entry(
        &self,
        batch: &mut fjall::Batch,
        id: &[u8],
        now_ms: u64,
        deleted: &mut HashSet<Vec<u8>>,
    ) -> Result<(), DedupError> {
        if deleted.contains(id) {
            return Ok(());
        }
        let Some(record) = self
            .db
            .entries
            .get(id)
            .map_err(|e| fjall_error(e, "purge"))?
        else {
            return Ok(());
        };
        let due = codec::decode_record(&record)
            .map_or(true, |(expires_at_ms, _)| expires_at_ms <= now_ms);
        if due {
            batch.remove(&self.db.entries, id.to_vec());
            deleted.insert(id.to_vec());
        }
        Ok(())
    }
}

fn corrupt_record(key: &DedupKey, message: &str) -> DedupError {
    DedupError::corrupt(
        BACKEND,
        format!(
            "record for tenant {:?} pcs_id {}: {message}",
            key.tenant_id, key.pcs_id
        ),
    )
}

fn fjall_error(error: fjall::Error, what: &str) -> DedupError {
    use fjall::LsmError;
    match error {
        fjall::Error::Io(e) | fjall::Error::Storage(LsmError::Io(e)) => {
            DedupError::unavailable(BACKEND, format!("{what}: {e}"))
        }
        fjall::Error::Poisoned => DedupError::unavailable(
            BACKEND,
            format!(
                "{what}: an earlier journal fsync failed; the store refuses writes until it is reopened"
            ),
        ),
        fjall::Error::Decode(_)
        | fjall::Error::JournalRecovery(_)
        | fjall::Error::InvalidVersion(_)
        | fjall::Error::Storage(_) => DedupError::corrupt(
            BACKEND,
            format!("{what}: stored data does not decode: {error:?}"),
        ),
        other => DedupError::backend_failure(BACKEND, format!("{what}: {other:?}")),
    }
}
