//! The placement engine: ingest, reads with promotion, placement cycles, crash recovery.
//!
//! # Rules (exact)
//!
//! * A new record starts hot.
//! * hot -> warm once `hot_ttl` has passed since it entered hot or was last read, whichever
//!   is later; warm -> cold likewise after `warm_ttl`.
//! * Removed once `retention` has passed since its decision time (`None`: never).
//! * A read of a warm or cold record promotes it to hot (the read answers the tier it was read
//!   from).
//! * When the hot tier's bytes exceed `hot_max_bytes`, hot records are demoted to warm early,
//!   least valuable first ([`Prewarm::value`]; LRU without a model), never dropped.
//!
//! # Crash safety: copy, verify, then delete
//!
//! Every move of a chunk of records from tier A to tier B runs, in this order:
//!
//! 1. catalog (durable): each entry gets `pending = Move{A, B, pack}` (tier still A);
//! 2. copy to B (a cold pack is written whole), then **verify**: read back and compare;
//! 3. catalog (durable): tier = B (cold location, hot journal copy added or dropped, pack
//!    counts), `pending` kept;
//! 4. delete from A (packs whose last live record left are deleted);
//! 5. catalog: `pending` cleared.
//!
//! Until step 3 commits, the catalog says A and A holds the record; from then on it says B and
//! B holds a verified copy: a record is never absent from all tiers. Recovery (on start, and
//! at the start of every cycle for moves a failure interrupted) looks at each pending entry:
//! tier still A -> the copy in B is discarded and the move forgotten; tier B -> the stale copy
//! in A is deleted. A removal marks `pending = Remove` (durable) before deleting. Packs the
//! catalog does not know (a crash between writing a pack and step 3) are deleted on start.
//! The hot tier is volatile, so the catalog keeps each hot record's blob (its hot journal),
//! added and dropped in the same atomic catalog batch as the entry that makes the record hot
//! or makes it leave (`catalog`'s module docs); on start the hot store is refilled from it.

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use flk_proto::v1;

use crate::catalog::{Catalog, Op};
use crate::clock::Clock;
use crate::cold::{ColdStore, PackItem};
use crate::config::{Policy, Prices};
use crate::error::TieringError;
use crate::metrics::TieringMetrics;
use crate::prewarm::{Prewarm, PromotionCosts};
use crate::record::{Key, Pending, RecordMeta, StoredRecord, Tier, check_blob};
use crate::store::{KvTier, StoreError};

/// Milliseconds in the month of the price table (30 days).
const MONTH_MS: f64 = 30.0 * 86_400_000.0;
/// Bytes in the price table's GB.
const GB: f64 = 1e9;

/// Live figures (also exported as metrics).
#[derive(Default)]
struct Figures {
    records: [AtomicU64; 3],
    bytes: [AtomicU64; 3],
    moves: [[AtomicU64; 3]; 3],
    promotions: AtomicU64,
    demotions: AtomicU64,
    removals: AtomicU64,
    cost_usd: Mutex<f64>,
}

/// A snapshot of the live figures.
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    /// Per tier (hot, warm, cold): records and bytes.
    pub records: [u64; 3],
    pub bytes: [u64; 3],
    /// `moves[from][to]`.
    pub moves: [[u64; 3]; 3],
    pub promotions: u64,
    pub demotions: u64,
    pub removals: u64,
    pub move_cost_usd: f64,
    pub prewarm: Option<(f64, f64)>,
    pub feed_cursor: u64,
    pub policy: Policy,
}

/// What one placement cycle did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CycleReport {
    pub removed: u64,
    pub hot_to_warm: u64,
    /// Of `hot_to_warm`, those demoted early because the hot tier overflowed.
    pub overflow: u64,
    pub warm_to_cold: u64,
    pub recovered: u64,
    pub failures: u64,
    /// Records promoted ahead of reads by the prewarm model.
    pub prewarmed: u64,
    /// Bytes of hot journal blob files dropped after the cycle's moves out of the hot tier
    /// ([`Catalog::collect_journal_garbage`]).
    pub journal_freed_bytes: u64,
}

/// A record read and the tier that answered.
#[derive(Debug, Clone)]
pub struct Read {
    pub record: StoredRecord,
    pub tier: Tier,
    pub size: u64,
}

/// The stores the engine places records in.
pub struct Tiers {
    pub hot: Arc<dyn KvTier>,
    pub warm: Arc<dyn KvTier>,
    pub cold: Arc<ColdStore>,
}

/// Catalog records a placement cycle reads at a time.
const SCAN_PAGE: usize = 4096;

/// The engine. Its async methods may be called concurrently; moves serialize on one lock.
pub struct Engine {
    catalog: Catalog,
    tiers: Tiers,
    clock: Arc<dyn Clock>,
    policy: RwLock<Policy>,
    prices: Prices,
    prewarm: Arc<dyn Prewarm>,
    chunk: usize,
    prewarm_max: usize,
    /// Mean seconds of one promotion (exponentially weighted; 0: none measured yet).
    promotion_secs: Mutex<f64>,
    moves: tokio::sync::Mutex<()>,
    figures: Figures,
    metrics: TieringMetrics,
    /// Wakes the placement loop (overflow, policy change).
    pub(crate) kick: tokio::sync::Notify,
}

fn task_err(e: tokio::task::JoinError) -> TieringError {
    TieringError::Task(e.to_string())
}

impl Engine {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        catalog: Catalog,
        tiers: Tiers,
        clock: Arc<dyn Clock>,
        policy: Policy,
        prices: Prices,
        prewarm: Arc<dyn Prewarm>,
        chunk: usize,
        prewarm_max: usize,
        metrics: TieringMetrics,
    ) -> Engine {
        Engine {
            catalog,
            tiers,
            clock,
            policy: RwLock::new(policy),
            prices,
            prewarm,
            chunk: chunk.max(1),
            prewarm_max,
            promotion_secs: Mutex::new(0.0),
            moves: tokio::sync::Mutex::new(()),
            figures: Figures::default(),
            metrics,
            kick: tokio::sync::Notify::new(),
        }
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The hot-tier valuation in use.
    pub fn prewarm(&self) -> &Arc<dyn Prewarm> {
        &self.prewarm
    }

    pub fn tiers(&self) -> &Tiers {
        &self.tiers
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    pub fn policy(&self) -> Policy {
        *self.policy.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces the policy (validated); wakes the placement loop.
    pub fn set_policy(&self, p: Policy) -> Result<Policy, TieringError> {
        p.validate().map_err(TieringError::InvalidArgument)?;
        *self.policy.write().unwrap_or_else(|e| e.into_inner()) = p;
        self.kick.notify_one();
        tracing::info!(?p, "placement policy changed");
        Ok(p)
    }

    /// Makes the catalog's lazy commits durable ([`Catalog::flush`]).
    pub async fn flush(&self) -> Result<(), TieringError> {
        self.cat(|c| c.flush()).await
    }

    async fn cat<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Catalog) -> Result<T, crate::catalog::CatalogError> + Send + 'static,
    ) -> Result<T, TieringError> {
        let c = self.catalog.clone();
        Ok(tokio::task::spawn_blocking(move || f(&c))
            .await
            .map_err(task_err)??)
    }

    fn kv(&self, tier: Tier) -> &Arc<dyn KvTier> {
        match tier {
            Tier::Hot => &self.tiers.hot,
            _ => &self.tiers.warm,
        }
    }

    // ---------------------------------------------------------------- figures

    fn add_figure(&self, tier: Tier, records: i64, bytes: i64) {
        let i = tier.index();
        let upd = |a: &AtomicU64, d: i64| {
            if d >= 0 {
                a.fetch_add(d as u64, Ordering::Relaxed);
            } else {
                // Saturating: figures are rebuilt from the catalog on start.
                let _ = a.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                    Some(v.saturating_sub(d.unsigned_abs()))
                });
            }
        };
        upd(&self.figures.records[i], records);
        upd(&self.figures.bytes[i], bytes);
        self.metrics
            .records
            .with_label_values(&[tier.as_str()])
            .set(self.figures.records[i].load(Ordering::Relaxed) as i64);
        self.metrics
            .bytes
            .with_label_values(&[tier.as_str()])
            .set(self.figures.bytes[i].load(Ordering::Relaxed) as i64);
    }

    /// The storage cost a record settles when it leaves its tier.
    fn settle(&self, meta: &RecordMeta, now: i64) -> f64 {
        let months = (now - meta.entered_ms).max(0) as f64 / MONTH_MS;
        meta.stored_bytes() as f64 / GB * months * self.prices.by_tier()[meta.tier as usize]
    }

    fn add_cost(&self, usd: f64) {
        if usd > 0.0 && usd.is_finite() {
            *self
                .figures
                .cost_usd
                .lock()
                .unwrap_or_else(|e| e.into_inner()) += usd;
            self.metrics.move_cost.inc_by(usd);
        }
    }

    /// Recomputes the per-tier figures from the catalog (on start).
    fn rebuild_figures(&self, all: &[(Key, RecordMeta)]) {
        let mut recs = [0u64; 3];
        let mut bytes = [0u64; 3];
        for (_, m) in all {
            recs[m.tier.index()] += 1;
            bytes[m.tier.index()] += m.stored_bytes();
        }
        for t in Tier::ALL {
            let i = t.index();
            self.figures.records[i].store(recs[i], Ordering::Relaxed);
            self.figures.bytes[i].store(bytes[i], Ordering::Relaxed);
            self.add_figure(t, 0, 0);
        }
    }

    pub fn stats(&self, feed_cursor: u64) -> Stats {
        let f = &self.figures;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut moves = [[0u64; 3]; 3];
        for (i, row) in f.moves.iter().enumerate() {
            for (j, m) in row.iter().enumerate() {
                moves[i][j] = load(m);
            }
        }
        Stats {
            records: [
                load(&f.records[0]),
                load(&f.records[1]),
                load(&f.records[2]),
            ],
            bytes: [load(&f.bytes[0]), load(&f.bytes[1]), load(&f.bytes[2])],
            moves,
            promotions: load(&f.promotions),
            demotions: load(&f.demotions),
            removals: load(&f.removals),
            move_cost_usd: *f.cost_usd.lock().unwrap_or_else(|e| e.into_inner()),
            prewarm: self.prewarm.precision_recall(),
            feed_cursor,
            policy: self.policy(),
        }
    }

    pub fn hot_bytes(&self) -> u64 {
        self.figures.bytes[Tier::Hot.index()].load(Ordering::Relaxed)
    }

    // ---------------------------------------------------------------- ingest

    /// Applies a batch of feed records: decisions become hot records (a redelivered key is
    /// skipped), reconciled decisions replace the stored ones ([`Engine::replace`]), conflict
    /// and replication events are skipped, and the cursor moves to the batch's last seq (never
    /// past a reconciled record not yet applied). Returns how many records were new or
    /// replaced.
    pub async fn ingest<R: Borrow<v1::FeedRecord> + Sync>(
        &self,
        batch: &[R],
    ) -> Result<u64, TieringError> {
        self.ingest_inner(batch, false).await
    }

    /// [`Engine::ingest`] for a caller on a blocking thread (the feed consumer's): the
    /// catalog transaction runs on this thread rather than on another of the blocking pool,
    /// so the consumer's CPU accounting (`flk_feed_apply_cpu_seconds_total`, the CPU share
    /// `flk bench --stack-metrics` reports) includes it, and the batch saves a thread hop.
    pub fn ingest_blocking<R: Borrow<v1::FeedRecord> + Sync>(
        &self,
        runtime: &tokio::runtime::Handle,
        batch: &[R],
    ) -> Result<u64, TieringError> {
        runtime.block_on(self.ingest_inner(batch, true))
    }

    async fn ingest_inner<R: Borrow<v1::FeedRecord> + Sync>(
        &self,
        batch: &[R],
        on_this_thread: bool,
    ) -> Result<u64, TieringError> {
        let now = self.now_ms();
        let mut cursor = 0;
        let mut items = Vec::with_capacity(batch.len());
        let mut replacements = Vec::new();
        for rec in batch {
            let rec = rec.borrow();
            cursor = cursor.max(rec.seq);
            let Some(stored) = StoredRecord::from_feed(rec) else {
                continue;
            };
            let key = Key::new(&rec.tenant_id, &rec.pcs_id);
            if !key.valid() {
                tracing::warn!(seq = rec.seq, "feed record without a usable key: skipped");
                continue;
            }
            let blob = Arc::new(stored.encode());
            let meta = RecordMeta {
                tier: Tier::Hot,
                entered_ms: now,
                last_read_ms: 0,
                decided_ms: rec.decided_at_unix_ms,
                size: blob.len() as u64,
                cold: None,
                pending: None,
            };
            if rec.kind == v1::RecordKind::Reconciled as i32 {
                replacements.push((rec.seq, key, meta, blob));
            } else {
                items.push((key, meta, blob));
            }
        }
        // The decisions commit first; a later decision of the batch cannot be of a key a
        // reconciled record of the batch replaces (a key's decision precedes its repairs).
        let decisions_cursor = replacements
            .first()
            .map_or(cursor, |(seq, ..)| cursor.min(seq.saturating_sub(1)));
        let items = Arc::new(items);
        let fresh = if on_this_thread {
            self.catalog.ingest(&items, decisions_cursor)?
        } else {
            let items = items.clone();
            self.cat(move |c| c.ingest(&items, decisions_cursor))
                .await?
        };
        let new: Vec<(Key, Arc<Vec<u8>>)> = items
            .iter()
            .zip(&fresh)
            .filter(|(_, f)| **f)
            .map(|((k, _, b), _)| (k.clone(), b.clone()))
            .collect();
        if let Err(e) = self.tiers.hot.put_many(&new).await {
            // The catalog's hot journal holds them: reads fall back to it, and the hot store
            // is refilled on start.
            tracing::warn!(error = %e, records = new.len(), "hot store write failed; serving from the hot journal");
        }
        let bytes: u64 = new.iter().map(|(_, b)| b.len() as u64).sum();
        self.add_figure(Tier::Hot, new.len() as i64, bytes as i64);
        self.metrics.applied(decisions_cursor);
        let n = replacements.len();
        let mut replaced = 0;
        for (i, (seq, key, meta, blob)) in replacements.into_iter().enumerate() {
            // The last one carries the batch's cursor: everything before it is applied.
            let at = if i + 1 == n { cursor } else { seq };
            replaced += u64::from(self.replace(key, meta, blob, at).await?);
            self.metrics.applied(at);
        }
        if self.hot_bytes() > self.policy().hot_max_bytes {
            self.kick.notify_one();
        }
        Ok(new.len() as u64 + replaced)
    }

    /// Replaces the stored decision of `key` with a reconciled one (svc-crr's repair of a
    /// conflict between regions), so that reads answer the repaired outcome and body; stores
    /// it when the key is unknown. The new blob goes hot whatever tier held the old one, and
    /// the cursor moves to `cursor` in the same catalog transaction. Under the move lock, in
    /// this order:
    ///
    /// 1. an interrupted move or removal of the key is finished first ([`Engine::finish_pending`]);
    /// 2. the hot store gets the new blob (reads prefer it to the journal; if the write fails
    ///    and the old copy was hot, the old copy is deleted so reads fall back to the journal);
    /// 3. catalog (durable): the entry (hot, the new size and decision time), the journal
    ///    copy, the old cold pack released, the cursor;
    /// 4. the stale warm copy or emptied pack is deleted (a failure leaves an orphan warm copy,
    ///    which the next move of the record to warm overwrites).
    ///
    /// A crash before 3 leaves the old decision and the cursor before this record, so the
    /// feed delivers it again. A redelivery whose blob is already stored only moves the
    /// cursor. Returns whether anything was replaced.
    async fn replace(
        &self,
        key: Key,
        meta: RecordMeta,
        blob: Arc<Vec<u8>>,
        cursor: u64,
    ) -> Result<bool, TieringError> {
        let _guard = self.moves.lock().await;
        let mut old = self.catalog.get(&key)?;
        if let Some(m) = old.clone().filter(|m| m.pending.is_some()) {
            self.finish_pending(vec![(key.clone(), m)]).await?;
            old = self.catalog.get(&key)?;
        }
        if let Some(m) = &old {
            match self.read_from(&key, m).await {
                Ok(Some(stored)) if stored.as_slice() == blob.as_slice() => {
                    self.cat(move |c| c.commit(&[Op::Cursor(cursor)], true))
                        .await?;
                    return Ok(false);
                }
                Ok(_) => {}
                // Replaced whatever the old copy holds.
                Err(e) => {
                    tracing::debug!(error = %e, key = %key, "cannot read the copy being replaced")
                }
            }
        }
        let was_hot = old.as_ref().is_some_and(|m| m.tier == Tier::Hot);
        if let Err(e) = self
            .tiers
            .hot
            .put_many(&[(key.clone(), blob.clone())])
            .await
        {
            tracing::warn!(error = %e, key = %key, "hot store write failed; serving the reconciled record from the hot journal");
            if was_hot && let Err(e) = self.tiers.hot.delete(&key).await {
                tracing::error!(error = %e, key = %key, "cannot delete the replaced hot copy: reads may answer it until the hot store is refilled");
            }
        }
        let mut ops = vec![
            Op::Put(key.clone(), meta.clone()),
            Op::JournalPut(key.clone(), blob),
            Op::Cursor(cursor),
        ];
        if let Some(RecordMeta {
            tier: Tier::Cold,
            cold: Some(loc),
            ..
        }) = &old
        {
            ops.push(Op::PackRelease(loc.pack.clone()));
        }
        let emptied = self.cat(move |c| c.commit(&ops, true)).await?;
        let now = self.now_ms();
        if let Some(m) = &old {
            self.add_figure(m.tier, -1, -(m.stored_bytes() as i64));
            self.add_cost(self.settle(m, now));
        }
        self.add_figure(Tier::Hot, 1, meta.stored_bytes() as i64);
        if old.as_ref().is_some_and(|m| m.tier == Tier::Warm)
            && let Err(e) = self.tiers.warm.delete(&key).await
        {
            tracing::warn!(error = %e, key = %key, "cannot delete the replaced warm copy");
        }
        self.delete_packs(&emptied).await;
        self.metrics.reconciled.inc();
        tracing::info!(key = %key, from = old.as_ref().map_or("none", |m| m.tier.as_str()), "stored decision replaced by a reconciled one");
        Ok(true)
    }

    // ---------------------------------------------------------------- reads

    /// Reads one copy of a record from `tier` (hot falls back to the journal).
    async fn read_from(
        &self,
        key: &Key,
        meta: &RecordMeta,
    ) -> Result<Option<Vec<u8>>, TieringError> {
        match meta.tier {
            Tier::Hot => match self.tiers.hot.get(key).await {
                Ok(Some(b)) => Ok(Some(b)),
                other => {
                    if let Err(e) = other {
                        tracing::debug!(error = %e, "hot read failed; using the hot journal");
                    }
                    let k = key.clone();
                    self.cat(move |c| c.journal_get(&k)).await
                }
            },
            Tier::Warm => Ok(self.tiers.warm.get(key).await?),
            Tier::Cold => match &meta.cold {
                Some(loc) => Ok(Some(self.tiers.cold.get(loc).await?)),
                None => Ok(None),
            },
        }
    }

    /// Reads a record; a warm or cold record is then promoted to hot. `Read::tier` is the
    /// tier that answered.
    pub async fn get(&self, tenant: &str, pcs_id: &str) -> Result<Read, TieringError> {
        let key = Key::new(tenant, pcs_id);
        let not_found = || TieringError::NotFound {
            tenant: tenant.to_owned(),
            pcs_id: pcs_id.to_owned(),
        };
        if !key.valid() {
            return Err(not_found());
        }
        // A move may delete the copy between the catalog read and the store read: the
        // catalog then names the new tier, so read again.
        for _ in 0..4 {
            let started = Instant::now();
            let Some(meta) = self.catalog.get(&key)? else {
                return Err(not_found());
            };
            if matches!(meta.pending, Some(Pending::Remove)) {
                return Err(not_found());
            }
            let Some(blob) = self.read_from(&key, &meta).await? else {
                continue;
            };
            let record = StoredRecord::decode(&blob).map_err(|e| TieringError::Corrupt {
                key: key.to_string(),
                tier: meta.tier.as_str(),
                message: e.to_string(),
            })?;
            self.metrics
                .read_seconds
                .with_label_values(&[meta.tier.as_str()])
                .observe(started.elapsed().as_secs_f64());
            let now = self.now_ms();
            self.prewarm.accessed(&key, meta.size, meta.tier, now);
            if meta.tier == Tier::Hot {
                let mut m = meta.clone();
                m.last_read_ms = now;
                let k = key.clone();
                // Not fsync'd: a forgotten read only demotes the record sooner.
                if let Err(e) = self
                    .cat(move |c| c.commit(&[Op::Put(k.clone(), m)], false))
                    .await
                {
                    tracing::warn!(error = %e, "cannot record a read time");
                }
            } else if let Err(e) = self.promote(&key, Arc::new(blob)).await {
                tracing::warn!(error = %e, key = %key, "promotion on read failed");
            }
            return Ok(Read {
                size: meta.size,
                tier: meta.tier,
                record,
            });
        }
        let meta = self.catalog.get(&key)?;
        Err(TieringError::Corrupt {
            key: key.to_string(),
            tier: meta.map_or("none", |m| m.tier.as_str()),
            message: "the catalog's tier does not hold the record".into(),
        })
    }

    /// Promotes a record just read (its blob known) to hot.
    async fn promote(&self, key: &Key, blob: Arc<Vec<u8>>) -> Result<(), TieringError> {
        let _guard = self.moves.lock().await;
        let Some(meta) = self.catalog.get(key)? else {
            return Ok(());
        };
        if meta.tier == Tier::Hot || meta.pending.is_some() {
            return Ok(());
        }
        let mut blobs = HashMap::new();
        blobs.insert(key.clone(), blob);
        let started = Instant::now();
        if self
            .move_chunk(vec![(key.clone(), meta)], Tier::Hot, blobs)
            .await?
            == 1
        {
            let t = started.elapsed().as_secs_f64();
            let mut p = self
                .promotion_secs
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            *p = if *p == 0.0 { t } else { 0.9 * *p + 0.1 * t };
        }
        if self.hot_bytes() > self.policy().hot_max_bytes {
            self.kick.notify_one();
        }
        Ok(())
    }

    // ---------------------------------------------------------------- moves

    /// Deletes copies from a tier (hot: best effort, the store is volatile).
    async fn delete_from(&self, tier: Tier, keys: &[Key]) -> Result<(), StoreError> {
        match tier {
            Tier::Hot => {
                if let Err(e) = self.tiers.hot.delete_many(keys).await {
                    tracing::warn!(error = %e, "cannot delete stale hot copies");
                }
                Ok(())
            }
            Tier::Warm => self.tiers.warm.delete_many(keys).await,
            // Cold copies go with their pack (catalog pack counts).
            Tier::Cold => Ok(()),
        }
    }

    async fn delete_packs(&self, packs: &[String]) {
        for p in packs {
            if let Err(e) = self.tiers.cold.delete_pack(p).await {
                // Found again (unknown to the catalog) and deleted on the next start.
                tracing::warn!(error = %e, pack = %p, "cannot delete an emptied pack");
            }
        }
    }

    /// Moves `chunk` (all in one tier, none pending) to `to`, crash-safely (module docs).
    /// `known` holds blobs already read. Returns how many moved.
    async fn move_chunk(
        &self,
        chunk: Vec<(Key, RecordMeta)>,
        to: Tier,
        mut known: HashMap<Key, Arc<Vec<u8>>>,
    ) -> Result<u64, TieringError> {
        let Some(from) = chunk.first().map(|(_, m)| m.tier) else {
            return Ok(0);
        };
        // Read and check every source copy first: a record whose copy is unreadable stays.
        let mut items: Vec<(Key, RecordMeta, Arc<Vec<u8>>)> = Vec::with_capacity(chunk.len());
        for (key, meta) in chunk {
            let blob = match known.remove(&key) {
                Some(b) => b,
                None => match self.read_from(&key, &meta).await? {
                    Some(b) => Arc::new(b),
                    None => {
                        tracing::error!(key = %key, tier = from.as_str(), "record missing from its tier; not moved");
                        continue;
                    }
                },
            };
            if let Err(e) = check_blob(&blob) {
                tracing::error!(key = %key, tier = from.as_str(), error = %e, "corrupt copy; not moved");
                continue;
            }
            items.push((key, meta, blob));
        }
        if items.is_empty() {
            return Ok(0);
        }
        let now = self.now_ms();
        let pack = (to == Tier::Cold).then(|| self.tiers.cold.new_pack_name(now));
        // 1. intent
        let pending = Pending::Move {
            from,
            to,
            pack: pack.clone(),
        };
        let ops: Vec<Op> = items
            .iter()
            .map(|(k, m, _)| {
                let mut m = m.clone();
                m.pending = Some(pending.clone());
                Op::Put(k.clone(), m)
            })
            .collect();
        self.cat(move |c| c.commit(&ops, true)).await?;
        // 2. copy and verify
        let copied = self.copy_verify(&items, to, pack.as_deref()).await;
        let locs = match copied {
            Ok(locs) => locs,
            Err(e) => {
                self.metrics.move_failures.inc();
                // Undo the intent (the copy, if any, is discarded by recovery otherwise).
                let keys: Vec<Key> = items.iter().map(|(k, _, _)| k.clone()).collect();
                self.abort_copies(to, &keys, pack.as_deref()).await;
                let ops: Vec<Op> = items
                    .iter()
                    .map(|(k, m, _)| Op::Put(k.clone(), m.clone()))
                    .collect();
                self.cat(move |c| c.commit(&ops, true)).await?;
                return Err(e);
            }
        };
        // 3. switch
        let mut ops = Vec::with_capacity(items.len() * 2 + 1);
        let mut done = Vec::with_capacity(items.len());
        let mut cost = 0.0;
        for (i, (k, old, blob)) in items.iter().enumerate() {
            let new = RecordMeta {
                tier: to,
                entered_ms: now,
                last_read_ms: 0,
                decided_ms: old.decided_ms,
                size: old.size,
                cold: locs.as_ref().map(|l| l[i].clone()),
                pending: Some(pending.clone()),
            };
            cost += self.settle(old, now);
            ops.push(Op::Put(k.clone(), new.clone()));
            if to == Tier::Hot {
                ops.push(Op::JournalPut(k.clone(), blob.clone()));
            }
            if from == Tier::Hot {
                ops.push(Op::JournalDel(k.clone()));
            }
            if let (Tier::Cold, Some(loc)) = (from, &old.cold) {
                ops.push(Op::PackRelease(loc.pack.clone()));
            }
            done.push((k.clone(), old.clone(), new));
        }
        if let (Some(p), Some(l)) = (&pack, &locs) {
            ops.push(Op::PackAdd(p.clone(), l.len() as u64));
        }
        let emptied = self.cat(move |c| c.commit(&ops, true)).await?;
        // Figures: the move has happened.
        let n = done.len() as u64;
        for (_, old, new) in &done {
            self.add_figure(from, -1, -(old.stored_bytes() as i64));
            self.add_figure(to, 1, new.stored_bytes() as i64);
        }
        self.figures.moves[from.index()][to.index()].fetch_add(n, Ordering::Relaxed);
        self.metrics
            .moves
            .with_label_values(&[from.as_str(), to.as_str()])
            .inc_by(n);
        if to < from {
            self.figures.promotions.fetch_add(n, Ordering::Relaxed);
            self.metrics.promotions.inc_by(n);
        } else {
            self.figures.demotions.fetch_add(n, Ordering::Relaxed);
            self.metrics.demotions.inc_by(n);
        }
        self.add_cost(cost);
        // 4. delete the stale copies
        let keys: Vec<Key> = done.iter().map(|(k, _, _)| k.clone()).collect();
        if from == Tier::Hot {
            self.prewarm.left_hot(&keys);
        }
        self.delete_from(from, &keys).await?;
        self.delete_packs(&emptied).await;
        // 5. forget the intent
        let ops: Vec<Op> = done
            .into_iter()
            .map(|(k, _, mut new)| {
                new.pending = None;
                Op::Put(k, new)
            })
            .collect();
        self.cat(move |c| c.commit(&ops, false)).await?;
        Ok(n)
    }

    /// Step 2: copies to `to` and reads back; for cold, the pack's locations.
    async fn copy_verify(
        &self,
        items: &[(Key, RecordMeta, Arc<Vec<u8>>)],
        to: Tier,
        pack: Option<&str>,
    ) -> Result<Option<Vec<crate::record::ColdLoc>>, TieringError> {
        if to == Tier::Cold {
            let pack_items: Vec<PackItem> = items
                .iter()
                .map(|(k, _, b)| PackItem {
                    key: k.clone(),
                    blob: b.clone(),
                })
                .collect();
            let written = self
                .tiers
                .cold
                .write_pack(pack.unwrap_or_default(), &pack_items)
                .await?;
            return Ok(Some(written.locs));
        }
        let store = self.kv(to);
        let puts: Vec<(Key, Arc<Vec<u8>>)> = items
            .iter()
            .map(|(k, _, b)| (k.clone(), b.clone()))
            .collect();
        store.put_many(&puts).await?;
        for (k, _, b) in items {
            match store.get(k).await? {
                Some(back) if back.as_slice() == b.as_slice() => {}
                _ => {
                    return Err(TieringError::Store(StoreError::new(
                        store.name(),
                        format!("verify: {k} reads back different bytes"),
                    )));
                }
            }
        }
        Ok(None)
    }

    /// Discards copies of an interrupted move in its destination.
    async fn abort_copies(&self, to: Tier, keys: &[Key], pack: Option<&str>) {
        let r = match to {
            Tier::Cold => match pack {
                Some(p) => self.tiers.cold.delete_pack(p).await,
                None => Ok(()),
            },
            t => self.kv(t).delete_many(keys).await,
        };
        if let Err(e) = r {
            tracing::warn!(error = %e, "cannot discard the copies of an interrupted move");
        }
    }

    /// Removes records past retention (module docs: marked, deleted, then forgotten).
    async fn remove_chunk(&self, chunk: Vec<(Key, RecordMeta)>) -> Result<u64, TieringError> {
        if chunk.is_empty() {
            return Ok(0);
        }
        let now = self.now_ms();
        let ops: Vec<Op> = chunk
            .iter()
            .map(|(k, m)| {
                let mut m = m.clone();
                m.pending = Some(Pending::Remove);
                Op::Put(k.clone(), m)
            })
            .collect();
        self.cat(move |c| c.commit(&ops, true)).await?;
        self.finish_removals(&chunk, now).await
    }

    async fn finish_removals(
        &self,
        chunk: &[(Key, RecordMeta)],
        now: i64,
    ) -> Result<u64, TieringError> {
        let mut by_tier: [Vec<Key>; 3] = Default::default();
        for (k, m) in chunk {
            by_tier[m.tier.index()].push(k.clone());
        }
        self.prewarm.left_hot(&by_tier[Tier::Hot.index()]);
        for t in Tier::ALL {
            self.delete_from(t, &by_tier[t.index()]).await?;
        }
        let mut ops = Vec::with_capacity(chunk.len() * 2);
        let mut cost = 0.0;
        for (k, m) in chunk {
            ops.push(Op::Remove(k.clone()));
            if let (Tier::Cold, Some(loc)) = (m.tier, &m.cold) {
                ops.push(Op::PackRelease(loc.pack.clone()));
            }
            cost += self.settle(m, now);
        }
        let emptied = self.cat(move |c| c.commit(&ops, true)).await?;
        self.delete_packs(&emptied).await;
        for (_, m) in chunk {
            self.add_figure(m.tier, -1, -(m.stored_bytes() as i64));
        }
        let n = chunk.len() as u64;
        self.figures.removals.fetch_add(n, Ordering::Relaxed);
        self.metrics.removed.inc_by(n);
        self.add_cost(cost);
        Ok(n)
    }

    /// Completes or undoes moves and removals a crash or failure interrupted.
    async fn finish_pending(&self, pending: Vec<(Key, RecordMeta)>) -> Result<u64, TieringError> {
        let n = pending.len() as u64;
        let now = self.now_ms();
        let mut removals = Vec::new();
        let mut clear = Vec::new();
        for (k, m) in pending {
            match m.pending.clone() {
                Some(Pending::Remove) => removals.push((k, m)),
                Some(Pending::Move { from, to, pack }) => {
                    if m.tier == from {
                        // The switch never committed: the source is authoritative.
                        let packs = self.catalog.packs()?;
                        match (to, pack) {
                            (Tier::Cold, Some(p)) if !packs.contains(&p) => {
                                self.abort_copies(Tier::Cold, &[], Some(&p)).await;
                            }
                            (Tier::Cold, _) => {}
                            (t, _) => self.abort_copies(t, std::slice::from_ref(&k), None).await,
                        }
                    } else {
                        // Copied and switched: the stale source copy goes.
                        self.delete_from(from, std::slice::from_ref(&k)).await?;
                    }
                    let mut m = m;
                    m.pending = None;
                    clear.push(Op::Put(k, m));
                }
                None => {}
            }
        }
        if !clear.is_empty() {
            self.cat(move |c| c.commit(&clear, true)).await?;
        }
        if !removals.is_empty() {
            // Figures count removals once: they were not yet subtracted.
            self.finish_removals(&removals, now).await?;
        }
        Ok(n)
    }

    /// On start: finishes interrupted moves, deletes packs the catalog does not know,
    /// refills the hot store from the hot journal, and rebuilds the figures.
    pub async fn recover(&self) -> Result<u64, TieringError> {
        let _guard = self.moves.lock().await;
        let all = self.cat(|c| c.scan()).await?;
        self.rebuild_figures(&all);
        let pending: Vec<_> = all
            .iter()
            .filter(|(_, m)| m.pending.is_some())
            .cloned()
            .collect();
        let n = self.finish_pending(pending).await?;
        let known = self.catalog.packs()?;
        let mut orphans = 0;
        for p in self.tiers.cold.list_packs().await? {
            if !known.contains(&p) {
                self.tiers.cold.delete_pack(&p).await?;
                orphans += 1;
            }
        }
        let all = self.cat(|c| c.scan()).await?;
        self.rebuild_figures(&all);
        let hot: Vec<Key> = all
            .into_iter()
            .filter(|(_, m)| m.tier == Tier::Hot)
            .map(|(k, _)| k)
            .collect();
        let mut refilled = 0;
        for chunk in hot.chunks(self.chunk) {
            let mut items = Vec::with_capacity(chunk.len());
            for k in chunk {
                if let Some(b) = self.catalog.journal_get(k)? {
                    items.push((k.clone(), Arc::new(b)));
                }
            }
            refilled += items.len();
            if let Err(e) = self.tiers.hot.put_many(&items).await {
                tracing::warn!(error = %e, "cannot refill the hot store; serving from the hot journal");
                break;
            }
        }
        if n > 0 || orphans > 0 {
            tracing::info!(
                interrupted = n,
                orphan_packs = orphans,
                hot_refilled = refilled,
                "recovered the placement catalog"
            );
        }
        Ok(n)
    }

    // ---------------------------------------------------------------- placement

    /// One placement cycle at the clock's `now`: retention, hot -> warm (TTL, then
    /// overflow), warm -> cold, each in crash-safe chunks.
    pub async fn cycle(&self) -> Result<CycleReport, TieringError> {
        let mut report = CycleReport::default();
        let policy = self.policy();
        let now = self.now_ms();
        let mut expired = Vec::new();
        let mut hot_due = Vec::new();
        let mut hot_rest = Vec::new();
        let mut warm_due = Vec::new();
        // The hot records that are not due are only ranked when the hot tier is over its
        // bytes: otherwise nothing is kept of them.
        let overflowing = self.hot_bytes() > policy.hot_max_bytes;
        // Page by page: the cycle holds one page and what it will act on, never the whole
        // catalog (which grows with every record held). Moves re-read each record under the
        // move lock, so a record that changed after its page was read is acted on as it is.
        let mut after: Option<Vec<u8>> = None;
        loop {
            let from = after.clone();
            let page = self
                .cat(move |c| c.scan_page(from.as_deref(), SCAN_PAGE))
                .await?;
            let Some((last, _)) = page.last() else {
                break;
            };
            after = Some(last.encode());
            let full = page.len() == SCAN_PAGE;
            let mut pending = Vec::new();
            for (k, m) in page {
                if m.pending.is_some() {
                    pending.push((k, m));
                    continue;
                }
                if let Some(r) = policy.retention_ms
                    && m.decided_ms.saturating_add(r as i64) <= now
                {
                    expired.push((k, m));
                    continue;
                }
                let due = |ttl: u64| m.last_access_ms().saturating_add(ttl as i64) <= now;
                match m.tier {
                    Tier::Hot if due(policy.hot_ttl_ms) => hot_due.push((k, m)),
                    Tier::Hot if overflowing => hot_rest.push((k, m)),
                    Tier::Warm if due(policy.warm_ttl_ms) => warm_due.push((k, m)),
                    _ => {}
                }
            }
            if !pending.is_empty() {
                // Read again under the move lock: a move running when the page was read has
                // finished since; what is still pending was interrupted and is finished now
                // (its record is placed next cycle).
                let _guard = self.moves.lock().await;
                let mut still = Vec::with_capacity(pending.len());
                for (k, _) in pending {
                    if let Some(m) = self.catalog.get(&k)?
                        && m.pending.is_some()
                    {
                        still.push((k, m));
                    }
                }
                report.recovered += self.finish_pending(still).await?;
            }
            if !full {
                break;
            }
        }
        for chunk in expired.chunks(self.chunk) {
            let _guard = self.moves.lock().await;
            // Re-read: a read may have promoted some meanwhile (retention ignores reads, but
            // the tier to delete from must be current).
            let fresh = self.current(chunk, None)?;
            report.removed += self.remove_chunk(fresh).await?;
        }
        let demote = |report: &mut CycleReport, n: u64, overflow: bool| {
            report.hot_to_warm += n;
            if overflow {
                report.overflow += n;
            }
        };
        for chunk in hot_due.chunks(self.chunk) {
            let n = self
                .move_now(chunk, Tier::Hot, Tier::Warm, &mut report)
                .await;
            demote(&mut report, n, false);
        }
        // Overflow: least valuable first until the hot bytes fit.
        let max = policy.hot_max_bytes;
        if self.hot_bytes() > max {
            hot_rest.sort_by(|a, b| {
                self.prewarm
                    .value(&a.0, &a.1, now)
                    .total_cmp(&self.prewarm.value(&b.0, &b.1, now))
            });
            let mut excess = self.hot_bytes().saturating_sub(max);
            let mut victims = Vec::new();
            for (k, m) in hot_rest {
                if excess == 0 {
                    break;
                }
                excess = excess.saturating_sub(m.size);
                victims.push((k, m));
            }
            for chunk in victims.chunks(self.chunk) {
                let n = self
                    .move_now(chunk, Tier::Hot, Tier::Warm, &mut report)
                    .await;
                demote(&mut report, n, true);
            }
        }
        for chunk in warm_due.chunks(self.chunk) {
            report.warm_to_cold += self
                .move_now(chunk, Tier::Warm, Tier::Cold, &mut report)
                .await;
        }
        if self.prewarm.predictive() {
            report.prewarmed = self.prewarm_cycle(now).await?;
        }
        if report.hot_to_warm + report.removed > 0 {
            report.journal_freed_bytes = self.collect_journal_garbage().await?;
        }
        Ok(report)
    }

    /// Reclaims the hot journal's space left by records no longer hot; the bytes freed.
    pub async fn collect_journal_garbage(&self) -> Result<u64, TieringError> {
        let gc = self.cat(|c| c.collect_journal_garbage()).await?;
        let m = &self.metrics;
        m.journal_bytes
            .set(i64::try_from(gc.bytes).unwrap_or(i64::MAX));
        m.journal_stale_bytes
            .set(i64::try_from(gc.stale_bytes).unwrap_or(i64::MAX));
        m.journal_freed.inc_by(gc.freed_bytes);
        if gc.freed_bytes > 0 {
            tracing::debug!(?gc, "hot journal garbage collected");
        }
        Ok(gc.freed_bytes)
    }

    /// The measured costs a prewarm promotion is weighed against.
    fn promotion_costs(&self) -> PromotionCosts {
        let mut read_secs = [0.0; 3];
        for t in Tier::ALL {
            let h = self.metrics.read_seconds.with_label_values(&[t.as_str()]);
            let n = h.get_sample_count();
            read_secs[t.index()] = if n == 0 {
                0.0
            } else {
                h.get_sample_sum() / n as f64
            };
        }
        PromotionCosts {
            read_secs,
            promotion_secs: *self
                .promotion_secs
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        }
    }

    /// Retrains the model when due, then promotes the records it expects to be read.
    async fn prewarm_cycle(&self, now: i64) -> Result<u64, TieringError> {
        let p = self.prewarm.clone();
        tokio::task::spawn_blocking(move || p.maybe_retrain(now))
            .await
            .map_err(task_err)?;
        let costs = self.promotion_costs();
        let mut promoted = 0;
        // No promotion measured yet: no basis for the rule.
        if costs.promotion_secs > 0.0 {
            let all = self.cat(|c| c.scan()).await?;
            let chosen: HashSet<Key> = self
                .prewarm
                .candidates(&all, now, costs, self.prewarm_max)
                .into_iter()
                .collect();
            for tier in [Tier::Warm, Tier::Cold] {
                let group: Vec<(Key, RecordMeta)> = all
                    .iter()
                    .filter(|(k, m)| m.tier == tier && chosen.contains(k))
                    .cloned()
                    .collect();
                for chunk in group.chunks(self.chunk) {
                    let _guard = self.moves.lock().await;
                    let fresh = self.current(chunk, Some(tier))?;
                    let keys: Vec<Key> = fresh.iter().map(|(k, _)| k.clone()).collect();
                    match self.move_chunk(fresh, Tier::Hot, HashMap::new()).await {
                        Ok(n) => {
                            promoted += n;
                            self.prewarm.promoted_ahead(&keys);
                        }
                        Err(e) => tracing::warn!(error = %e, "a prewarm promotion failed"),
                    }
                }
            }
        }
        if let Some((precision, recall)) = self.prewarm.precision_recall() {
            self.metrics.prewarm_precision.set(precision);
            self.metrics.prewarm_recall.set(recall);
        }
        Ok(promoted)
    }

    /// The current entries of `chunk`'s keys that are still in `tier` (all if `None`) and
    /// not pending.
    fn current(
        &self,
        chunk: &[(Key, RecordMeta)],
        tier: Option<Tier>,
    ) -> Result<Vec<(Key, RecordMeta)>, TieringError> {
        let mut out = Vec::with_capacity(chunk.len());
        for (k, _) in chunk {
            if let Some(m) = self.catalog.get(k)?
                && m.pending.is_none()
                && tier.is_none_or(|t| m.tier == t)
            {
                out.push((k.clone(), m));
            }
        }
        Ok(out)
    }

    /// Moves a chunk under the move lock, counting a failure instead of failing the cycle.
    async fn move_now(
        &self,
        chunk: &[(Key, RecordMeta)],
        from: Tier,
        to: Tier,
        report: &mut CycleReport,
    ) -> u64 {
        let _guard = self.moves.lock().await;
        let fresh = match self.current(chunk, Some(from)) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the catalog");
                report.failures += 1;
                return 0;
            }
        };
        match self.move_chunk(fresh, to, HashMap::new()).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, from = from.as_str(), to = to.as_str(), "a move failed; retried next cycle");
                report.failures += 1;
                0
            }
        }
    }

    /// Which stores are down (for `/ready`), checked now.
    pub async fn stores_down(&self) -> Vec<StoreError> {
        let mut down = Vec::new();
        let checks = [
            self.tiers.hot.check_ready().await,
            self.tiers.warm.check_ready().await,
            self.tiers.cold.check_ready().await,
        ];
        let names = [
            self.tiers.hot.name(),
            self.tiers.warm.name(),
            self.tiers.cold.name(),
        ];
        for (r, name) in checks.into_iter().zip(names) {
            self.metrics
                .store_up
                .with_label_values(&[name])
                .set(i64::from(r.is_ok()));
            if let Err(e) = r {
                down.push(e);
            }
        }
        down
    }

    /// Every key the catalog holds (tests and tools).
    pub fn keys(&self) -> Result<HashSet<Key>, TieringError> {
        Ok(self.catalog.scan()?.into_iter().map(|(k, _)| k).collect())
    }
}
