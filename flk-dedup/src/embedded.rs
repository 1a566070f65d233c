//! [`EmbeddedStore`]: the dedup index in one redb file (for `flk up`, tests, single node).
//!
//! # Layout
//!
//! One file, `<dir>/dedup.redb` ([`FILE_NAME`]), two tables:
//!
//! - `dedup_entries`: `(tenant_id: &str, pcs_id: &str)` -> record bytes, format 1:
//!   `0x01 | expires_at: u64 BE (ms since the Unix epoch) | seq: u64 BE | digest: 32 bytes |
//!   outcome: rest`. The expiry travels with the entry, so one read decides liveness.
//! - `dedup_expiry`: `(expires_at_ms: u64, tenant_id, pcs_id)` -> `()`, the index that
//!   [`DedupStore::purge_expired`] walks in expiry order. Both tables change in the same
//!   transaction, so they always agree.
//!
//! An entry is live while `now < expires_at` (`now` from the injectable [`Clock`]).
//!
//! # Writes: one writer thread, group commit
//!
//! redb serializes write transactions, so a put's read-then-insert inside one write
//! transaction is atomic. A dedicated writer thread takes every queued request (up to
//! [`EmbeddedOptions::max_batch`]), applies them in order inside one write transaction,
//! commits once with `Durability::Immediate` (fsync) and only then answers each caller: the
//! fsync is shared by every put that arrived while the previous commit was running. With
//! [`EmbeddedOptions::deferred_sync`] the commits skip the fsync (`Durability::None`) and
//! [`DedupStore::sync`] makes everything committed so far durable. Requests
//! for the same key in one batch see each other (the first wins). If the commit fails, every
//! request of the batch gets the error and nothing of it is visible.
//!
//! Point reads run inline on the caller's thread, each in its own MVCC read transaction: they
//! never wait for the writer, and a lookup served from redb's page cache takes a few
//! microseconds, less than a hop to tokio's blocking pool (which is where the slower
//! `check_ready` and scans go).
//!
//! # Failure
//!
//! An I/O error is [`DedupError::Unavailable`]; redb then refuses further writes until the
//! store is reopened (a process restart). A record that does not decode is
//! [`DedupError::Corrupt`] (for that key only; other keys keep working).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use redb::{Database, ReadableTable, TableDefinition};
use tokio::sync::oneshot;

use crate::clock::{Clock, SystemClock, millis_since_epoch};
use crate::key::validate_put;
use crate::{DedupEntry, DedupError, DedupKey, DedupStore, PutOutcome, codec};

/// The database file inside the data directory.
pub const FILE_NAME: &str = "dedup.redb";
const BACKEND: &str = "embedded";
const ENTRIES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("dedup_entries");
const EXPIRY: TableDefinition<(u64, &str, &str), ()> = TableDefinition::new("dedup_expiry");
/// Default upper bound on requests per write transaction.
const DEFAULT_MAX_BATCH: usize = 4096;

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

    /// Commit puts without fsync (`Durability::None`); they become durable at the next
    /// [`DedupStore::sync`] (or any later durable commit), and a crash before it loses them.
    /// Only for an owner that can rebuild them, as svc-verify does from its outcome log below
    /// a watermark it persists after `sync`. Default: every commit is durable.
    pub fn deferred_sync(mut self, deferred: bool) -> Self {
        self.deferred_sync = deferred;
        self
    }

    /// The clock that decides expiry (tests pass a [`crate::ManualClock`]).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Most requests applied in one write transaction (one fsync); at least 1.
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

/// The redb-backed dedup index. Cheap to clone (clones share one database and writer).
#[derive(Clone, Debug)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    db: Arc<Database>,
    clock: Arc<dyn Clock>,
    requests: Option<mpsc::Sender<Request>>,
    writer: Option<JoinHandle<()>>,
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
        // Closing the channel ends the writer after its current batch; joining it releases
        // the database file so the directory can be reopened at once.
        drop(self.requests.take());
        if let Some(writer) = self.writer.take() {
            if writer.join().is_err() {
                tracing::error!(path = %self.path.display(), "dedup writer thread panicked");
            }
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
    },
    Purge {
        limit: usize,
    },
    /// Makes every earlier commit durable (its batch commits with fsync).
    Sync,
}

enum Reply {
    Put(oneshot::Sender<Result<PutOutcome, DedupError>>),
    Purge(oneshot::Sender<Result<usize, DedupError>>),
    Sync(oneshot::Sender<Result<(), DedupError>>),
}

/// What an op did inside a transaction that then committed.
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
        let path = options.dir.join(FILE_NAME);
        let db = Database::create(&path)
            .map_err(|e| redb_error(e, &format!("opening {}", path.display())))?;
        let txn = db
            .begin_write()
            .map_err(|e| redb_error(e, "creating tables"))?;
        txn.open_table(ENTRIES)
            .map_err(|e| redb_error(e, "creating tables"))?;
        txn.open_table(EXPIRY)
            .map_err(|e| redb_error(e, "creating tables"))?;
        txn.commit().map_err(|e| redb_error(e, "creating tables"))?;

        let db = Arc::new(db);
        let (requests, queue) = mpsc::channel();
        let writer = Writer {
            db: Arc::clone(&db),
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
                db,
                clock: options.clock,
                requests: Some(requests),
                writer: Some(writer),
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
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

    async fn read<T, F>(&self, what: &'static str, f: F) -> Result<T, DedupError>
    where
        T: Send + 'static,
        F: FnOnce(&Database, u64) -> Result<T, DedupError> + Send + 'static,
    {
        let db = Arc::clone(&self.inner.db);
        let now_ms = millis_since_epoch(self.inner.clock.now());
        tokio::task::spawn_blocking(move || f(&db, now_ms))
            .await
            .map_err(|e| DedupError::backend_failure(BACKEND, format!("{what} task failed: {e}")))?
    }
}

#[async_trait::async_trait]
impl DedupStore for EmbeddedStore {
    async fn get(&self, key: &DedupKey) -> Result<Option<DedupEntry>, DedupError> {
        key.validate()?;
        let now_ms = millis_since_epoch(self.inner.clock.now());
        let db = &self.inner.db;
        let txn = db.begin_read().map_err(|e| redb_error(e, "get"))?;
        let table = txn.open_table(ENTRIES).map_err(|e| redb_error(e, "get"))?;
        let Some(value) = table
            .get((key.tenant_id.as_str(), key.pcs_id.as_str()))
            .map_err(|e| redb_error(e, "get"))?
        else {
            return Ok(None);
        };
        let (expires_at_ms, entry) =
            codec::decode_record(value.value()).map_err(|m| corrupt_record(key, &m))?;
        Ok((now_ms < expires_at_ms).then_some(entry))
    }

    async fn put_if_absent(
        &self,
        key: &DedupKey,
        entry: &DedupEntry,
        ttl: Duration,
    ) -> Result<PutOutcome, DedupError> {
        let ttl_ms = validate_put(key, entry, ttl)?;
        let (reply, answer) = oneshot::channel();
        self.send(Request {
            op: Op::Put {
                key: key.clone(),
                entry: entry.clone(),
                ttl_ms,
            },
            reply: Reply::Put(reply),
        })?;
        answer
            .await
            .map_err(|_| DedupError::unavailable(BACKEND, "the writer thread has stopped"))?
    }

    async fn check_ready(&self) -> Result<(), DedupError> {
        self.read("ready check", |db, _| {
            let txn = db.begin_read().map_err(|e| redb_error(e, "ready check"))?;
            txn.open_table(ENTRIES)
                .map_err(|e| redb_error(e, "ready check"))?;
            Ok(())
        })
        .await?;
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
        let (reply, answer) = oneshot::channel();
        self.send(Request {
            op: Op::Sync,
            reply: Reply::Sync(reply),
        })?;
        answer
            .await
            .map_err(|_| DedupError::unavailable(BACKEND, "the writer thread has stopped"))?
    }

    async fn purge_expired(&self, limit: usize) -> Result<usize, DedupError> {
        if limit == 0 {
            return Ok(0);
        }
        let (reply, answer) = oneshot::channel();
        self.send(Request {
            op: Op::Purge { limit },
            reply: Reply::Purge(reply),
        })?;
        answer
            .await
            .map_err(|_| DedupError::unavailable(BACKEND, "the writer thread has stopped"))?
    }

    fn backend(&self) -> &'static str {
        BACKEND
    }

    /// redb locks its file: one process writes it.
    fn single_writer(&self) -> bool {
        true
    }
}

/// The single writer: drains the queue into write transactions.
struct Writer {
    db: Arc<Database>,
    clock: Arc<dyn Clock>,
    max_batch: usize,
    deferred_sync: bool,
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
            match self.apply(&batch, now_ms) {
                Ok(answers) => {
                    for (request, answer) in batch.into_iter().zip(answers) {
                        request.reply.send(Ok(answer));
                    }
                }
                Err(e) => {
                    for request in batch {
                        request.reply.send(Err(e.clone()));
                    }
                }
            }
        }
    }

    /// Applies the batch in one write transaction and commits it (durably). On any storage
    /// error the transaction is dropped, which aborts it: nothing of the batch is visible.
    fn apply(&self, batch: &[Request], now_ms: u64) -> Result<Vec<Answer>, DedupError> {
        let mut txn = self
            .db
            .begin_write()
            .map_err(|e| redb_error(e, "begin write"))?;
        let mut answers = Vec::with_capacity(batch.len());
        {
            let mut entries = txn
                .open_table(ENTRIES)
                .map_err(|e| redb_error(e, "open table"))?;
            let mut expiry = txn
                .open_table(EXPIRY)
                .map_err(|e| redb_error(e, "open table"))?;
            for request in batch {
                answers.push(match &request.op {
                    Op::Put { key, entry, ttl_ms } => {
                        Answer::Put(put(&mut entries, &mut expiry, key, entry, *ttl_ms, now_ms)?)
                    }
                    Op::Purge { limit } => {
                        Answer::Purged(purge(&mut entries, &mut expiry, *limit, now_ms)?)
                    }
                    Op::Sync => Answer::Synced,
                });
            }
        }
        let durable = !self.deferred_sync || batch.iter().any(|r| matches!(r.op, Op::Sync));
        if !durable {
            txn.set_durability(redb::Durability::None);
        }
        txn.commit().map_err(|e| redb_error(e, "commit"))?;
        Ok(answers)
    }
}

type Entries<'t> = redb::Table<'t, (&'static str, &'static str), &'static [u8]>;
type Expiry<'t> = redb::Table<'t, (u64, &'static str, &'static str), ()>;

/// Set-if-absent inside the write transaction. The outer `Err` is a storage failure (abort);
/// the inner result is this request's answer (a corrupt record fails only this request).
fn put(
    entries: &mut Entries<'_>,
    expiry: &mut Expiry<'_>,
    key: &DedupKey,
    entry: &DedupEntry,
    ttl_ms: u64,
    now_ms: u64,
) -> Result<Result<PutOutcome, DedupError>, DedupError> {
    let id = (key.tenant_id.as_str(), key.pcs_id.as_str());
    let existing = entries
        .get(id)
        .map_err(|e| redb_error(e, "put"))?
        .map(|value| codec::decode_record(value.value()));
    match existing {
        Some(Err(message)) => return Ok(Err(corrupt_record(key, &message))),
        Some(Ok((expires_at_ms, stored))) if now_ms < expires_at_ms => {
            return Ok(Ok(PutOutcome::Existing(stored)));
        }
        Some(Ok((expires_at_ms, _))) => {
            // Expired: behaves as absent and is replaced below.
            expiry
                .remove((expires_at_ms, id.0, id.1))
                .map_err(|e| redb_error(e, "put"))?;
        }
        None => {}
    }
    let expires_at_ms = now_ms.saturating_add(ttl_ms);
    entries
        .insert(id, codec::encode_record(expires_at_ms, entry).as_slice())
        .map_err(|e| redb_error(e, "put"))?;
    expiry
        .insert((expires_at_ms, id.0, id.1), ())
        .map_err(|e| redb_error(e, "put"))?;
    Ok(Ok(PutOutcome::Inserted))
}

/// Deletes up to `limit` entries with `expires_at <= now`, oldest first.
fn purge(
    entries: &mut Entries<'_>,
    expiry: &mut Expiry<'_>,
    limit: usize,
    now_ms: u64,
) -> Result<usize, DedupError> {
    let due: Vec<(u64, String, String)> = expiry
        .range::<(u64, &str, &str)>(..(now_ms.saturating_add(1), "", ""))
        .map_err(|e| redb_error(e, "purge"))?
        .take(limit)
        .map(|item| {
            item.map(|(k, _)| {
                let (at, tenant, pcs) = k.value();
                (at, tenant.to_owned(), pcs.to_owned())
            })
        })
        .collect::<Result<_, _>>()
        .map_err(|e| redb_error(e, "purge"))?;
    for (at, tenant, pcs) in &due {
        expiry
            .remove((*at, tenant.as_str(), pcs.as_str()))
            .map_err(|e| redb_error(e, "purge"))?;
        entries
            .remove((tenant.as_str(), pcs.as_str()))
            .map_err(|e| redb_error(e, "purge"))?;
    }
    Ok(due.len())
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

fn redb_error(error: impl Into<redb::Error>, what: &str) -> DedupError {
    match error.into() {
        redb::Error::Corrupted(m) => {
            DedupError::corrupt(BACKEND, format!("{what}: database file corrupted: {m}"))
        }
        // redb reports a file that is not a redb database as invalid data.
        redb::Error::Io(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            DedupError::corrupt(BACKEND, format!("{what}: not a valid database file: {e}"))
        }
        redb::Error::Io(e) => DedupError::unavailable(BACKEND, format!("{what}: {e}")),
        redb::Error::PreviousIo => DedupError::unavailable(
            BACKEND,
            format!("{what}: an earlier i/o error disabled the database until it is reopened"),
        ),
        other => DedupError::backend_failure(BACKEND, format!("{what}: {other}")),
    }
}
