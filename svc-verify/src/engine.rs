//! The submit pipeline of PROTOCOL.md section 4: admission, parse, signature, dedup lookup,
//! verification, durable record (outcome log, then dedup set-if-absent), answer.
//!
//! Invariants:
//! - `LogDurability`: nothing is answered 200/202 as a fresh decision before its record is
//!   fsync'd in the outcome log.
//! - `Idempotency`: per `(tenant_id, pcs_id)` at most one decision record is appended by this
//!   process: submissions of one key serialize on a lock stripe and re-check the index (and
//!   the repair queue) under it before appending.
//! - `IndexCoversLog`: every decision in the log below the persisted watermark is in the dedup
//!   index. A decision whose index write is still owed waits in the pending map (and keeps the
//!   watermark below it); lookups see the pending map before the store. On start, the log
//!   above the watermark is replayed into the index.
//!
//! Index writes are owed in two cases. With a shared store (Redis, PostgreSQL) the put runs
//! before the answer, because another replica may have decided the key first; only a put that
//! failed after the log append is owed (a repair). With a single-writer store (the embedded
//! fjall keyspace, [`DedupStore::single_writer`]) the stripe lock already decides first-write-wins
//! and the log already holds the decision, so every fresh decision is answered as soon as its
//! log record is durable and its index write is owed: [`Engine::flush_pending`] writes them
//! in large batches (one write batch and one journal fsync for thousands of keys) instead of one
//! commit per group of concurrent submissions.

use std::collections::HashMap;
use std::future::Future;
use std::hash::BuildHasher;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use flk_core::{OutcomeRecord, Pcs, canonicalize, parse_pcs, verify};
use flk_dedup::{DedupEntry, DedupError, DedupKey, DedupStore, PutOutcome};
use flk_outcome_log::{LogError, OutcomeLog};
use flk_proto::v1;
use flk_proto::{ApiError, ErrorKind};
use futures::StreamExt as _;
use prost::Message;
use time::OffsetDateTime;
use tokio::sync::{Mutex as AsyncMutex, RwLock};

mod replica;

use crate::metrics::VerifyMetrics;
use crate::tenants::{Tenant, TenantRegistry};

/// How long clients are told to wait when a store is down.
pub const RETRY_AFTER_UNAVAILABLE: Duration = Duration::from_secs(1);
const STRIPES: usize = 1024;
/// Owed index writes that wake the flusher before its next tick.
const FLUSH_AT: usize = 4096;
/// Owed index writes above which fresh submissions are refused (fail closed) until the
/// store catches up: the pending map lives in memory.
const MAX_PENDING: usize = 1_000_000;
/// Index writes a flush keeps in flight (the embedded writer groups them into transactions).
const FLUSH_CONCURRENCY: usize = 4096;
/// Owed writes one flush round takes (later rounds take the rest).
const FLUSH_CHUNK: usize = 16_384;
/// Write-behind backlog above which fresh submissions wait for the flusher: the service then
/// runs at the index's write rate instead of piling up owed writes in memory.
const BACKLOG_HIGH_WATER: usize = 65_536;
/// Longest such a wait before answering unavailable.
const BACKLOG_WAIT: Duration = Duration::from_secs(5);
/// The watermark file in the data directory (`IndexCoversLog`).
pub const WATERMARK_FILE: &str = "dedup.watermark";

/// An index write the store does not have yet.
struct Owed {
    entry: DedupEntry,
    ttl: Duration,
    since: Instant,
}

impl Owed {
    fn new(entry: DedupEntry, ttl: Duration) -> Owed {
        Owed {
            entry,
            ttl,
            since: Instant::now(),
        }
    }

    /// The lifetime left (zero once expired, as the store would count it).
    fn ttl_left(&self) -> Duration {
        self.ttl.saturating_sub(self.since.elapsed())
    }
}

/// A submission body as it arrived.
#[derive(Debug, Clone)]
pub enum Body {
    Json(Bytes),
    Structured(Box<v1::Pcs>),
}

/// The engine shared by the gRPC handlers.
pub struct Engine {
    tenants: Arc<TenantRegistry>,
    log: OutcomeLog,
    dedup: Arc<dyn DedupStore>,
    metrics: VerifyMetrics,
    stripes: Vec<AsyncMutex<()>>,
    /// Per stripe, decisions made under it so far (bumped under the stripe's lock once the
    /// decision is visible to lookups): a submission whose stripe saw none since its first
    /// lookup need not look again under the lock.
    stripe_decisions: Vec<std::sync::atomic::AtomicU64>,
    hasher: std::collections::hash_map::RandomState,
    /// Held shared from before a log append until the index write is done; the watermark
    /// checkpoint takes it exclusively to see a quiescent point.
    barrier: RwLock<()>,
    /// Decisions in the log whose index write is owed, by key (`IndexCoversLog`).
    pending: Mutex<HashMap<DedupKey, Owed>>,
    /// The store is written behind the answers ([`DedupStore::single_writer`]).
    write_behind: bool,
    /// Wakes the flusher when many writes are owed.
    flush_wake: tokio::sync::Notify,
    /// One flush at a time.
    flushing: AsyncMutex<()>,
    /// Signalled after every flush round (submissions waiting on the backlog).
    flushed: tokio::sync::Notify,
    /// The store reported lost entries (or could not say at startup): misses are refused
    /// until the whole log has been replayed into it again ([`Engine::rebuild_if_needed`]).
    rebuild: std::sync::atomic::AtomicBool,
    region: String,
    max_body_bytes: usize,
    watermark_path: PathBuf,
    /// Signature refusals per tenant, reason and minute ([`crate::refusals`]), once set.
    refusals: std::sync::OnceLock<Arc<crate::refusals::Refusals>>,
}

impl Engine {
    /// Builds the engine and replays the log above the watermark into the dedup index.
    pub async fn start(
        tenants: Arc<TenantRegistry>,
        log: OutcomeLog,
        dedup: Arc<dyn DedupStore>,
        metrics: VerifyMetrics,
        region: String,
        max_body_bytes: usize,
        data_dir: &Path,
    ) -> Result<Arc<Engine>, anyhow::Error> {
        let write_behind = dedup.single_writer();
        let engine = Arc::new(Engine {
            tenants,
            log,
            dedup,
            metrics,
            stripes: (0..STRIPES).map(|_| AsyncMutex::new(())).collect(),
            stripe_decisions: (0..STRIPES)
                .map(|_| std::sync::atomic::AtomicU64::new(0))
                .collect(),
            hasher: Default::default(),
            barrier: RwLock::new(()),
            pending: Mutex::new(HashMap::new()),
            write_behind,
            flush_wake: tokio::sync::Notify::new(),
            flushing: AsyncMutex::new(()),
            flushed: tokio::sync::Notify::new(),
            rebuild: std::sync::atomic::AtomicBool::new(false),
            region,
            max_body_bytes,
            watermark_path: data_dir.join(WATERMARK_FILE),
            refusals: std::sync::OnceLock::new(),
        });
        let from = match engine.dedup.is_complete().await {
            Ok(true) => read_watermark(&engine.watermark_path)? + 1,
            Ok(false) => {
                tracing::warn!(
                    "the dedup index does not hold every decision of this log (new or emptied store): replaying the whole log"
                );
                1
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot tell whether the dedup index is complete; will check when it answers");
                engine
                    .rebuild
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                read_watermark(&engine.watermark_path)? + 1
            }
        };
        engine.replay_into_index(from).await?;
        if from == 1 && !engine.rebuild.load(std::sync::atomic::Ordering::SeqCst) {
            engine.finish_rebuild().await;
        }
        Ok(engine)
    }

    pub fn log(&self) -> &OutcomeLog {
        &self.log
    }

    pub fn dedup(&self) -> &Arc<dyn DedupStore> {
        &self.dedup
    }

    pub fn tenants(&self) -> &TenantRegistry {
        &self.tenants
    }

    /// Counts signature refusals in `refusals` from now on (once; later calls are ignored).
    pub fn set_refusals(&self, refusals: Arc<crate::refusals::Refusals>) {
        let _ = self.refusals.set(refusals);
    }

    /// The signature refusal counts, when set.
    pub fn refusals(&self) -> Option<&Arc<crate::refusals::Refusals>> {
        self.refusals.get()
    }

    fn tenant(&self, tenant_id: &str) -> Result<&Tenant, ApiError> {
        self.tenants.get(tenant_id).ok_or_else(|| {
            self.metrics
                .refused
                .with_label_values(&["unknown_tenant"])
                .inc();
            ApiError::new(
                ErrorKind::Unauthenticated,
                "unknown_tenant",
                format!("unknown tenant {tenant_id:?}"),
            )
        })
    }

    fn refuse(&self, e: ApiError) -> ApiError {
        self.metrics
            .refused
            .with_label_values(&[refusal_label(&e)])
            .inc();
        e
    }

    /// Runs one submission through the whole pipeline and answers.
    ///
    /// The pipeline runs to the end even if the caller goes away (a client's deadline, a reset
    /// stream, a dropped connection): it must not stop between the log append and the index
    /// write, or the logged decision would be missing from every lookup and a retry of the
    /// same PCS would be decided again (`Idempotency`). It runs on the caller's task; only a
    /// caller that drops it early hands the rest to a task of its own ([`RunToEnd`]).
    pub fn submit(
        self: &Arc<Self>,
        tenant_id: &str,
        body: Body,
    ) -> impl Future<Output = Result<OutcomeRecord, ApiError>> + Send + 'static {
        let engine = Arc::clone(self);
        let tenant_id = tenant_id.to_owned();
        RunToEnd::new(async move { engine.decide(&tenant_id, body).await })
    }

    /// The pipeline of [`Engine::submit`], on the caller's task: not to be dropped once it
    /// has started.
    async fn decide(&self, tenant_id: &str, body: Body) -> Result<OutcomeRecord, ApiError> {
        let started = Instant::now();
        let now = OffsetDateTime::now_utc();
        let tenant = self.tenant(tenant_id)?;
        if let Body::Json(b) = &body
            && b.len() > self.max_body_bytes
        {
            return Err(self.refuse(ApiError::new(
                ErrorKind::PayloadTooLarge,
                "payload_too_large",
                format!(
                    "body is {} bytes, the limit is {}",
                    b.len(),
                    self.max_body_bytes
                ),
            )));
        }
        tenant.admit(now).map_err(|e| self.refuse(e))?;
        self.metrics.ingest.inc();

        // Verification time: the CPU-bound steps below never yield, so a monotonic clock
        // around them measures this decision's work (cheaper than a per-thread CPU clock,
        // which is a system call). The dedup lookup between them is not counted.
        let cpu_started = Instant::now();
        let (pcs, request) = match body {
            Body::Json(b) => match parse_pcs(&b) {
                Ok(p) => (p, Request::Json(b)),
                Err(e) => return Err(self.refuse(e.into())),
            },
            Body::Structured(p) => {
                let wire = (*p).clone();
                match Pcs::try_from(*p) {
                    Ok(pcs) => (pcs, Request::Structured(Box::new(wire))),
                    Err(e) => return Err(self.refuse(e.into())),
                }
            }
        };
        let canon = canonicalize(&pcs);
        let key_id = match tenant.keys.verify(&canon, pcs.sig.as_deref(), now) {
            Ok(k) => k.unwrap_or_default().to_owned(),
            Err(e) => {
                self.metrics
                    .signature_failures
                    .with_label_values(&[&tenant.id, e.code()])
                    .inc();
                if let Some(refusals) = self.refusals.get() {
                    refusals.record(&tenant.id, e.code(), now);
                }
                return Err(e.into());
            }
        };
        let mut verify_cpu = cpu_started.elapsed();
        let key = DedupKey {
            tenant_id: tenant.id.clone(),
            pcs_id: pcs.pcs_id.clone(),
        };
        let stripe = self.stripe(&key);
        let decided_before =
            self.stripe_decisions[stripe].load(std::sync::atomic::Ordering::Acquire);
        if let Some(entry) = self.lookup(&key).await? {
            return self
                .answer_stored(tenant, &key, entry, &canon.digest, &request, now)
                .await;
        }

        let policy_started = Instant::now();
        let verdict = verify(&pcs, &tenant.policy);
        verify_cpu += policy_started.elapsed();
        let mut record = OutcomeRecord::new(
            &tenant.id,
            &pcs.pcs_id,
            verdict,
            &tenant.policy.version,
            &tenant.policy_hash,
            now,
        );
        // The answer, the log and the index say the same: which region decided it.
        record.origin_region = Some(self.region.clone());

        let _stripe = self.stripes[stripe].lock().await;
        // A concurrent first submission of the same key may have decided while we verified.
        // With a single-writer store only this process decides, and every decision bumps its
        // stripe's count: if the count has not moved, the first lookup still holds. (Shared
        // stores look again: another replica may have decided.)
        let unchanged = self.write_behind
            && self.stripe_decisions[stripe].load(std::sync::atomic::Ordering::Acquire)
                == decided_before;
        if !unchanged && let Some(entry) = self.lookup(&key).await? {
            return self
                .answer_stored(tenant, &key, entry, &canon.digest, &request, now)
                .await;
        }
        if self.write_behind {
            self.wait_for_backlog().await.map_err(|e| self.refuse(e))?;
        }
        if self.pending_len() >= MAX_PENDING {
            return Err(self.refuse(
                ApiError::new(
                    ErrorKind::Unavailable,
                    "dedup_unavailable",
                    "the dedup index is behind by too many writes",
                )
                .with_retry_after(RETRY_AFTER_UNAVAILABLE),
            ));
        }
        let _barrier = self.barrier.read().await;
        let mut feed = feed_record(
            &record,
            &canon.digest,
            &request,
            &self.region,
            &key_id,
            v1::RecordKind::Decision,
        );
        feed.verify_cpu_ns = u64::try_from(verify_cpu.as_nanos()).unwrap_or(u64::MAX);
        feed.signals = Some(v1::ClaimedSignals {
            d_hat: pcs.d_hat,
            coh_star: pcs.coh_star,
            r: pcs.r,
        });
        // The signed fields as verified, so that svc-audit need not parse the request again.
        feed.canonical_payload = canon.payload;
        let seq = self
            .log
            .append(Bytes::from(feed.encode_to_vec()))
            .await
            .map_err(log_error)?;
        record.seq = seq;
        let entry = DedupEntry {
            seq,
            digest: canon.digest,
            outcome: Bytes::from(stored_outcome(&record, &self.region).encode_to_vec()),
        };
        let ttl = Duration::from_secs(tenant.policy.dedup_ttl_secs);
        if self.write_behind {
            let owed = {
                let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
                pending.insert(key, Owed::new(entry, ttl));
                pending.len()
            };
            // Visible to lookups (pending map) before the count moves.
            self.stripe_decisions[stripe].fetch_add(1, std::sync::atomic::Ordering::Release);
            if owed >= FLUSH_AT {
                self.flush_wake.notify_one();
            }
        } else if let Some(winner) = self.put_now(&key, entry, ttl).await {
            // Another process decided the key first (first write wins).
            return decode_stored(&winner);
        }
        self.metrics
            .outcomes
            .with_label_values(&[
                &tenant.id,
                record.outcome.as_str(),
                record.reason_code.as_str(),
            ])
            .inc();
        self.metrics
            .verify_latency
            .with_label_values(&[&tenant.id])
            .observe(started.elapsed().as_secs_f64());
        Ok(record)
    }

    /// The synchronous index write of a shared store; the winner's entry when another process
    /// decided the key first.
    async fn put_now(
        &self,
        key: &DedupKey,
        entry: DedupEntry,
        ttl: Duration,
    ) -> Option<DedupEntry> {
        match self.dedup.put_if_absent(key, &entry, ttl).await {
            Ok(PutOutcome::Inserted) => None,
            Ok(PutOutcome::Existing(winner)) => Some(winner),
            Err(e) => {
                // The decision is durable in the log; the index catches up from the pending
                // map as soon as the store is back. Until then this key answers from the map,
                // so it is never decided twice.
                tracing::warn!(error = %e, "dedup write failed after log append; queued for repair");
                self.pending
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(key.clone(), Owed::new(entry, ttl));
                None
            }
        }
    }

    /// Backpressure of the write-behind index: waits while the flusher is far behind.
    async fn wait_for_backlog(&self) -> Result<(), ApiError> {
        let deadline = tokio::time::Instant::now() + BACKLOG_WAIT;
        loop {
            let flushed = self.flushed.notified();
            tokio::pin!(flushed);
            flushed.as_mut().enable();
            if self.pending_len() < BACKLOG_HIGH_WATER {
                return Ok(());
            }
            self.flush_wake.notify_one();
            if tokio::time::timeout_at(deadline, flushed).await.is_err() {
                return Err(ApiError::new(
                    ErrorKind::Unavailable,
                    "dedup_unavailable",
                    "the dedup index is not keeping up with submissions",
                )
                .with_retry_after(RETRY_AFTER_UNAVAILABLE));
            }
        }
    }

    fn pending_len(&self) -> usize {
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Resolves when the flusher should run before its next tick.
    pub async fn flush_wanted(&self) {
        self.flush_wake.notified().await;
    }

    /// The stored outcome of `(tenant_id, pcs_id)`, if any.
    pub async fn get_outcome(
        &self,
        tenant_id: &str,
        pcs_id: &str,
    ) -> Result<OutcomeRecord, ApiError> {
        let tenant = self.tenant(tenant_id)?;
        if !flk_core::pcs::is_lower_hex64(pcs_id) {
            return Err(ApiError::new(
                ErrorKind::InvalidArgument,
                "invalid_pcs_id",
                "`pcs_id` must be 64 lowercase hex characters",
            ));
        }
        let key = DedupKey {
            tenant_id: tenant.id.clone(),
            pcs_id: pcs_id.to_owned(),
        };
        match self.lookup(&key).await? {
            Some(entry) => decode_stored(&entry),
            None => Err(ApiError::new(
                ErrorKind::NotFound,
                "not_found",
                format!("no outcome for pcs_id {pcs_id} of tenant {:?}", tenant.id),
            )),
        }
    }

    /// Replays the whole log into the index if the store lost entries; then marks it complete.
    /// Called by the maintenance task; a no-op unless a loss was seen.
    pub async fn rebuild_if_needed(&self) {
        use std::sync::atomic::Ordering;
        if !self.rebuild.load(Ordering::SeqCst) {
            return;
        }
        match self.dedup.is_complete().await {
            Ok(true) => {
                self.rebuild.store(false, Ordering::SeqCst);
                return;
            }
            Ok(false) => {}
            Err(_) => return,
        }
        tracing::warn!("the dedup index lost entries: replaying the whole outcome log into it");
        if let Err(e) = self.replay_into_index(1).await {
            tracing::warn!(error = %e, "dedup index rebuild failed; will retry");
            return;
        }
        self.finish_rebuild().await;
    }

    /// Marks the store complete once every replayed write has landed.
    async fn finish_rebuild(&self) {
        use std::sync::atomic::Ordering;
        if self.flush_pending().await > 0 {
            // Some replayed writes are still owed: not complete yet.
            self.rebuild.store(true, Ordering::SeqCst);
            return;
        }
        match self.dedup.mark_complete().await {
            Ok(()) => {
                self.rebuild.store(false, Ordering::SeqCst);
                tracing::info!("dedup index complete again");
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot mark the dedup index complete; will retry");
                self.rebuild.store(true, Ordering::SeqCst);
            }
        }
    }

    /// Index lookup, with the owed writes in front of it.
    async fn lookup(&self, key: &DedupKey) -> Result<Option<DedupEntry>, ApiError> {
        if let Some(owed) = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            && !owed.ttl_left().is_zero()
        {
            return Ok(Some(owed.entry.clone()));
        }
        self.dedup.get(key).await.map_err(|e| {
            if matches!(e, DedupError::Lost { .. }) {
                self.rebuild
                    .store(true, std::sync::atomic::Ordering::SeqCst);
            }
            self.refuse(dedup_error(e))
        })
    }

    async fn answer_stored(
        &self,
        tenant: &Tenant,
        key: &DedupKey,
        entry: DedupEntry,
        digest: &[u8; 32],
        request: &Request,
        now: OffsetDateTime,
    ) -> Result<OutcomeRecord, ApiError> {
        self.metrics
            .dedup_hits
            .with_label_values(&[&tenant.id])
            .inc();
        let stored = decode_stored(&entry)?;
        if &entry.digest != digest {
            // Conflicting duplicate: first write wins, but it is counted and recorded.
            self.metrics
                .conflicts
                .with_label_values(&[&tenant.id])
                .inc();
            let mut event = stored.clone();
            event.received_at = now;
            let feed = feed_record(
                &event,
                digest,
                request,
                &self.region,
                "",
                v1::RecordKind::ConflictingDuplicate,
            );
            if let Err(e) = self.log.append(Bytes::from(feed.encode_to_vec())).await {
                tracing::warn!(error = %e, pcs_id = %key.pcs_id, "could not record a conflicting duplicate");
            }
        }
        Ok(stored)
    }

    fn stripe(&self, key: &DedupKey) -> usize {
        (self.hasher.hash_one(key) as usize) % STRIPES
    }

    /// Writes the owed index entries (concurrently, so the store groups them into few
    /// transactions), in rounds of [`FLUSH_CHUNK`], until none is owed or a round makes no
    /// progress; returns how many are still owed. An entry leaves the pending map only after
    /// the store has it, so a lookup always finds a decided key in one of the two.
    pub async fn flush_pending(&self) -> usize {
        let _one = self.flushing.lock().await;
        loop {
            let owed: Vec<(DedupKey, DedupEntry, Duration)> = self
                .pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .take(FLUSH_CHUNK)
                .map(|(k, o)| (k.clone(), o.entry.clone(), o.ttl_left()))
                .collect();
            if owed.is_empty() {
                return 0;
            }
            // A shared store that is down fails every put: probe once rather than time out
            // thousands of times.
            if !self.write_behind && self.dedup.check_ready().await.is_err() {
                return self.pending_len();
            }
            let written: Vec<(DedupKey, u64)> = futures::stream::iter(owed)
                .map(|(key, entry, ttl)| async move {
                    // An entry that expired while owed is done: the store would not keep it.
                    if ttl.is_zero() {
                        return (key, entry.seq, Ok(PutOutcome::Inserted));
                    }
                    let r = self.dedup.put_if_absent(&key, &entry, ttl).await;
                    (key, entry.seq, r)
                })
                .buffer_unordered(FLUSH_CONCURRENCY)
                .filter_map(|(key, seq, r)| async move { r.ok().map(|_| (key, seq)) })
                .collect()
                .await;
            if !self.write_behind {
                self.metrics.dedup_repairs.inc_by(written.len() as u64);
            }
            let left = {
                let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
                for (key, seq) in &written {
                    // Only the write that was flushed: a key whose owed entry expired may
                    // have been decided again meanwhile.
                    if pending.get(key).is_some_and(|o| o.entry.seq == *seq) {
                        pending.remove(key);
                    }
                }
                pending.len()
            };
            self.metrics.dedup_owed.set(left as i64);
            self.flushed.notify_waiters();
            if left == 0 || written.is_empty() {
                return left;
            }
        }
    }

    /// Persists the watermark below which every logged decision is in the index.
    pub async fn checkpoint_watermark(&self) -> std::io::Result<u64> {
        let mark = {
            let _quiet = self.barrier.write().await;
            let last = self.log.last_seq();
            let oldest_pending = self
                .pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .map(|o| o.entry.seq)
                .min();
            match oldest_pending {
                Some(s) => s.saturating_sub(1).min(last),
                None => last,
            }
        };
        if mark > read_watermark(&self.watermark_path)? {
            // Index writes may be committed without fsync (embedded `deferred_sync`): make
            // them durable before the watermark says they are in the index.
            self.dedup
                .sync()
                .await
                .map_err(|e| std::io::Error::other(format!("dedup sync: {e}")))?;
            write_watermark(&self.watermark_path, mark)?;
        }
        Ok(mark)
    }

    /// Replays the decisions from `from_seq` on into the index (idempotent).
    async fn replay_into_index(&self, from: u64) -> Result<(), anyhow::Error> {
        let log = self.log.clone();
        let records: Vec<(u64, Bytes)> = tokio::task::spawn_blocking(move || {
            log.read_from(from).collect::<Result<Vec<_>, LogError>>()
        })
        .await??;
        let now = OffsetDateTime::now_utc();
        let mut replayed = 0usize;
        // Decode first (keeping the first decision of each key), then write concurrently so
        // the index's group commit shares fsyncs across the replay.
        // A reconciled record (svc-crr's repair) replaces the decision before it.
        let mut seen: HashMap<DedupKey, usize> = HashMap::new();
        let mut work: Vec<(DedupKey, DedupEntry, Duration, bool)> = Vec::new();
        for (seq, payload) in records {
            let feed = v1::FeedRecord::decode(payload.as_ref())
                .map_err(|e| anyhow::anyhow!("outcome log record {seq} does not decode: {e}"))?;
            let reconciled = feed.kind() == v1::RecordKind::Reconciled;
            if feed.kind() != v1::RecordKind::Decision && !reconciled {
                continue;
            }
            let Some(mut outcome) = feed.outcome else {
                continue;
            };
            outcome.seq = seq;
            let Some(tenant) = self.tenants.get(&feed.tenant_id) else {
                continue;
            };
            let age = now
                - time::OffsetDateTime::from_unix_timestamp_nanos(
                    i128::from(feed.decided_at_unix_ms) * 1_000_000,
                )?;
            let ttl = Duration::from_secs(tenant.policy.dedup_ttl_secs)
                .saturating_sub(Duration::try_from(age).unwrap_or_default());
            if ttl.is_zero() {
                continue;
            }
            let Ok(digest) = <[u8; 32]>::try_from(feed.canonical_digest.as_slice()) else {
                continue;
            };
            let key = DedupKey {
                tenant_id: feed.tenant_id.clone(),
                pcs_id: feed.pcs_id.clone(),
            };
            let entry = DedupEntry {
                seq,
                digest,
                outcome: Bytes::from(outcome.encode_to_vec()),
            };
            match seen.get(&key) {
                Some(&at) if reconciled => work[at] = (key, entry, ttl, true),
                Some(_) => {}
                None => {
                    seen.insert(key.clone(), work.len());
                    work.push((key, entry, ttl, reconciled));
                }
            }
        }
        let results: Vec<_> = futures::stream::iter(work)
            .map(|(key, entry, ttl, replace)| async move {
                let r = if replace {
                    self.dedup
                        .replace(&key, &entry, ttl)
                        .await
                        .map(|()| PutOutcome::Inserted)
                } else {
                    self.dedup.put_if_absent(&key, &entry, ttl).await
                };
                (key, entry, ttl, r)
            })
            .buffer_unordered(256)
            .collect()
            .await;
        for (key, entry, ttl, r) in results {
            match r {
                Ok(_) => replayed += 1,
                Err(e) => {
                    tracing::warn!(error = %e, "dedup store unavailable during replay; queued");
                    self.pending
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(key, Owed::new(entry, ttl));
                }
            }
        }
        if replayed > 0 {
            tracing::info!(
                from_seq = from,
                replayed,
                "replayed outcome log into the dedup index"
            );
        }
        Ok(())
    }
}

/// What the client sent, kept in the feed for downstream re-verification.
#[derive(Debug, Clone)]
enum Request {
    Json(Bytes),
    Structured(Box<v1::Pcs>),
}

fn feed_record(
    record: &OutcomeRecord,
    digest: &[u8; 32],
    request: &Request,
    region: &str,
    key_id: &str,
    kind: v1::RecordKind,
) -> v1::FeedRecord {
    let (request_json, request_pcs) = match request {
        Request::Json(b) => (b.to_vec(), None),
        Request::Structured(p) => (Vec::new(), Some((**p).clone())),
    };
    v1::FeedRecord {
        seq: 0,
        tenant_id: record.tenant_id.clone(),
        pcs_id: record.pcs_id.clone(),
        outcome: Some(stored_outcome(record, region)),
        canonical_digest: digest.to_vec(),
        request_json,
        decided_at_unix_ms: (record.received_at.unix_timestamp_nanos() / 1_000_000) as i64,
        region: region.to_owned(),
        key_id: key_id.to_owned(),
        kind: kind as i32,
        request_pcs,
        verify_cpu_ns: 0,
        signals: None,
        canonical_payload: Vec::new(),
        replicated: false,
        event_json: String::new(),
    }
}

/// A decision as stored (index, feed): with the region that decided it, so that reads in any
/// region answer `origin_region` and `replicated`.
fn stored_outcome(record: &OutcomeRecord, region: &str) -> v1::Outcome {
    let mut o = v1::Outcome::from(record);
    o.origin_region = region.to_owned();
    o
}

fn decode_stored(entry: &DedupEntry) -> Result<OutcomeRecord, ApiError> {
    let wire = v1::Outcome::decode(entry.outcome.as_ref()).map_err(|e| {
        ApiError::new(
            ErrorKind::Internal,
            "corrupt_outcome",
            format!("stored outcome does not decode: {e}"),
        )
    })?;
    let mut rec = OutcomeRecord::try_from(&wire)
        .map_err(|e| ApiError::new(ErrorKind::Internal, "corrupt_outcome", e.to_string()))?;
    rec.duplicate = true;
    rec.seq = entry.seq;
    Ok(rec)
}

fn dedup_error(e: DedupError) -> ApiError {
    ApiError::new(ErrorKind::Unavailable, "dedup_unavailable", e.to_string())
        .with_retry_after(RETRY_AFTER_UNAVAILABLE)
}

fn log_error(e: LogError) -> ApiError {
    tracing::error!(error = %e, "outcome log append failed");
    ApiError::new(
        ErrorKind::Unavailable,
        "log_unavailable",
        format!("outcome log unavailable: {e}"),
    )
    .with_retry_after(RETRY_AFTER_UNAVAILABLE)
}

fn refusal_label(e: &ApiError) -> &'static str {
    match e.code.as_str() {
        "payload_too_large" => "payload_too_large",
        "rate_limited" => "rate_limited",
        "quota_exceeded" => "quota_exceeded",
        "malformed_json" => "malformed_json",
        "invalid_pcs" => "invalid_pcs",
        "dedup_unavailable" => "dedup_unavailable",
        "unknown_tenant" => "unknown_tenant",
        _ => "other",
    }
}

fn read_watermark(path: &Path) -> std::io::Result<u64> {
    match std::fs::read_to_string(path) {
        Ok(s) => s.trim().parse::<u64>().map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e),
    }
}

/// Atomic replace: write a temporary file, fsync it, rename, fsync the directory.
fn write_watermark(path: &Path, mark: u64) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(format!("{mark}\n").as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// A future that is polled on its caller's task and, if the caller drops it after it started
/// but before it is done, is moved to a task of its own and finishes there (its output is then
/// discarded). Spawning every submission would do the same, but a task per item cost 5-11 % of
/// SubmitStream throughput when measured (docs/BENCHMARKS.md); neither tokio nor futures has a
/// future that detaches only on drop.
struct RunToEnd<T: Send + 'static> {
    work: Option<Pin<Box<dyn Future<Output = T> + Send>>>,
    started: bool,
}

impl<T: Send + 'static> RunToEnd<T> {
    fn new(work: impl Future<Output = T> + Send + 'static) -> RunToEnd<T> {
        RunToEnd {
            work: Some(Box::pin(work)),
            started: false,
        }
    }
}

impl<T: Send + 'static> Future for RunToEnd<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<T> {
        self.started = true;
        // Polling a finished future breaks the `Future` contract (async blocks panic too).
        let work = self
            .work
            .as_mut()
            .expect("RunToEnd polled after it completed");
        let out = std::task::ready!(work.as_mut().poll(cx));
        self.work = None;
        std::task::Poll::Ready(out)
    }
}

impl<T: Send + 'static> Drop for RunToEnd<T> {
    fn drop(&mut self) {
        if self.started
            && let Some(work) = self.work.take()
            // Without a runtime (it is shutting down) nothing can run it any more; a decision
            // left unfinished is found in the log by the replay at the next start.
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                let _ = work.await;
            });
        }
    }
}
