//! The outcome-feed consumer every downstream service runs (svc-audit, svc-kpi, svc-tiering,
//! svc-crr): a reader task takes batches of records from a [`FeedSource`] and hands them to an
//! applier task, which cuts them into the service's batches and calls its [`FeedSink::apply`]
//! on a blocking thread.
//!
//! * **Sources.** Out of process the source is svc-verify's gRPC `Subscribe(from_seq)`
//!   ([`GrpcSource`], the default of [`FeedConsumer::start`]). In `flk up` it is svc-verify's
//!   in-process fan-out (handed to each service with [`FeedWiring`]): every record is read and
//!   decoded once and the same `Arc<[FeedRecord]>` batches go to every consumer, so a consumer
//!   costs its own `apply` and little else.
//! * **Cursor.** The service persists its cursor with each applied batch (in the same
//!   transaction, or after the data) and starts the consumer at cursor + 1; after a
//!   reconnection the reader resumes at the record after the last one it handed over.
//! * **Batching.** A batch is cut when it holds `batch_max` records, or when its first record
//!   has waited `batch_interval` since it arrived, or when [`FeedControl::flush`] asks for it;
//!   a backlog is taken first, so batches fill. A batch that is one source batch (or a slice of
//!   one) is applied without copying a record.
//! * **Back-pressure.** A slow consumer never slows the source's writer: its reader stops once
//!   the channel to the applier is full, so its lag grows (and is exported, see below); the
//!   in-process source then lets it fall behind the live batches and re-reads the missed
//!   records from the outcome log, as `Subscribe` always does.
//! * **At-least-once.** Records handed over but not applied when the process stops are
//!   redelivered on the next start (the cursor has not moved past them); sinks are idempotent
//!   on `(tenant_id, pcs_id)`.
//! * **Failures.** A failed batch is retried with capped exponential backoff (with jitter),
//!   unchanged, so nothing is skipped. A lost subscription is retried the same way.
//! * **Measured.** [`FeedMetrics`] exports per consumer the thread CPU time spent in `apply`
//!   (`flk_feed_apply_cpu_seconds_total{consumer}`), the records not yet applied
//!   (`flk_feed_lag_records{consumer}`: the source's newest seq minus the last applied) and
//!   how old the last applied record was when applied while behind (`flk_feed_lag_seconds`),
//!   plus the process's CPU time (`flk_process_cpu_seconds_total`) to compare them with.
//! * **Security.** The gRPC reader dials with the service's [`Peer`] settings (TLS, client
//!   certificate, bearer token), so svc-verify may require mTLS or its token.

use std::collections::VecDeque;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use flk_proto::v1;
use flk_proto::v1::verify_service_client::VerifyServiceClient;
use futures::future::BoxFuture;
use futures::{Stream, StreamExt as _};
use prometheus::core::{Collector, Desc};
use prometheus::{Counter, CounterVec, GaugeVec, IntGaugeVec, Opts, Registry};
use rand::Rng as _;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::client::{EndpointOptions, Peer};

/// Records decoded once and shared by every consumer of an in-process source.
pub type SharedBatch = Arc<[v1::FeedRecord]>;

/// Batches of records in seq order, as a [`FeedSource`] delivers them; an error ends it.
pub type BatchStream = Pin<Box<dyn Stream<Item = Result<SharedBatch, String>> + Send + 'static>>;

/// Where a consumer's records come from.
pub trait FeedSource: Send + Sync + 'static {
    /// Records with seq `>= from_seq`, history first, then live, in seq order without gaps,
    /// in non-empty batches. A batch may start before `from_seq` (the consumer skips what it
    /// has). The stream ends, or yields an error, when the source is lost; the consumer then
    /// subscribes again from where it stopped.
    fn subscribe(&self, from_seq: u64) -> BoxFuture<'static, Result<BatchStream, String>>;
    /// The newest seq the source knows of, for the lag metrics (`None`: the newest received).
    fn head(&self) -> Option<u64> {
        None
    }
    /// How logs name the source.
    fn describe(&self) -> String;
}

/// svc-verify's gRPC `Subscribe`, out of process: records arrive one message each and are cut
/// into batches of what is ready (at most [`GRPC_READY_BATCH`]).
pub struct GrpcSource {
    verify_url: String,
    peer: Peer,
}

/// Most records of one batch read from a gRPC `Subscribe` stream.
pub const GRPC_READY_BATCH: usize = 1024;

impl GrpcSource {
    pub fn new(verify_url: String, peer: Peer) -> GrpcSource {
        GrpcSource { verify_url, peer }
    }
}

impl FeedSource for GrpcSource {
    fn subscribe(&self, from_seq: u64) -> BoxFuture<'static, Result<BatchStream, String>> {
        let (url, peer) = (self.verify_url.clone(), self.peer.clone());
        Box::pin(async move {
            let channel = peer
                .connect(&url, EndpointOptions::default())
                .await
                .map_err(|e| format!("{e:#}"))?;
            let mut client = VerifyServiceClient::new(channel);
            let stream = client
                .subscribe(v1::SubscribeRequest { from_seq })
                .await
                .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?
                .into_inner();
            let batches = stream.ready_chunks(GRPC_READY_BATCH).flat_map(|chunk| {
                // The records before an error still count; the error ends the stream.
                let mut ok = Vec::with_capacity(chunk.len());
                let mut failed = None;
                for item in chunk {
                    match item {
                        Ok(rec) => ok.push(rec),
                        Err(s) => {
                            failed = Some(format!("{:?}: {}", s.code(), s.message()));
                            break;
                        }
                    }
                }
                let first = (!ok.is_empty()).then(|| Ok(SharedBatch::from(ok)));
                futures::stream::iter(first.into_iter().chain(failed.map(Err)))
            });
            Ok(Box::pin(batches) as BatchStream)
        })
    }

    fn describe(&self) -> String {
        self.verify_url.clone()
    }
}

/// A source that never delivers: a service left out of the feed (`flk up` with
/// `consume_feed = false` in its section, to measure what each consumer costs) keeps serving
/// its API while its consumer waits.
pub struct NoFeed;

impl FeedSource for NoFeed {
    fn subscribe(&self, _from_seq: u64) -> BoxFuture<'static, Result<BatchStream, String>> {
        Box::pin(async { Ok(Box::pin(futures::stream::pending()) as BatchStream) })
    }

    fn describe(&self) -> String {
        "nothing (consumer turned off)".to_owned()
    }
}

/// What the consumer does with records; the service's part.
pub trait FeedSink: Send + Sync + 'static {
    /// Makes `batch` durable (with the cursor); called again with the same batch until it
    /// succeeds. Runs on a blocking thread. The records are borrowed from the feed's shared
    /// batches (a consumer's batch usually spans several), so no record is copied.
    fn apply(&self, batch: &[&v1::FeedRecord]) -> Result<(), String>;
    /// A record arrived from the feed (for lag metrics).
    fn received(&self, _seq: u64) {}
    /// The subscription went up or down.
    fn connection(&self, _up: bool) {}
    /// A subscription attempt failed or a live one ended.
    fn reconnecting(&self) {}
    /// [`FeedSink::apply`] failed (it will be retried).
    fn apply_failed(&self) {}
}

/// How the consumer runs.
#[derive(Debug, Clone)]
pub struct FeedSettings {
    /// svc-verify's gRPC URL (the source unless [`FeedWiring::source`] replaces it).
    pub verify_url: String,
    /// Credentials and TLS towards svc-verify.
    pub peer: Peer,
    /// First sequence number to request (the persisted cursor + 1).
    pub from_seq: u64,
    /// Longest wait of a received record before its batch is applied.
    pub batch_interval: Duration,
    /// Records per batch at most.
    pub batch_max: usize,
    /// First reconnection (and apply retry) delay.
    pub retry_initial: Duration,
    /// Longest reconnection (and apply retry) delay.
    pub retry_max: Duration,
}

/// What `flk up` hands each service for its consumer: the in-process source instead of
/// svc-verify's port, and the metrics every consumer of the process shares (one registry, so
/// that one scrape shows them side by side). A service on its own keeps the defaults: the gRPC
/// source, and metrics in its own registry.
#[derive(Clone, Default)]
pub struct FeedWiring {
    /// `None`: gRPC `Subscribe` at [`FeedSettings::verify_url`].
    pub source: Option<Arc<dyn FeedSource>>,
    /// `None`: not exported.
    pub metrics: Option<FeedMetrics>,
}

impl FeedWiring {
    /// This wiring, with its metrics registered in `registry` when it has none (a service on
    /// its own exports them with its other metrics).
    pub fn or_metrics_in(mut self, registry: &Registry) -> prometheus::Result<FeedWiring> {
        if self.metrics.is_none() {
            self.metrics = Some(FeedMetrics::register(registry)?);
        }
        Ok(self)
    }
}

impl std::fmt::Debug for FeedWiring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedWiring")
            .field("source", &self.source.as_ref().map(|s| s.describe()))
            .field("metrics", &self.metrics.is_some())
            .finish()
    }
}

/// The per-consumer feed metrics of a process (see the module docs).
#[derive(Clone)]
pub struct FeedMetrics {
    apply_cpu: CounterVec,
    lag_records: IntGaugeVec,
    lag_seconds: GaugeVec,
    applied: prometheus::IntCounterVec,
}

impl std::fmt::Debug for FeedMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedMetrics").finish_non_exhaustive()
    }
}

impl FeedMetrics {
    /// Registers the metrics (and the process CPU counter) in `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<FeedMetrics> {
        let apply_cpu = CounterVec::new(
            Opts::new(
                "flk_feed_apply_cpu_seconds_total",
                "Thread CPU time spent in the consumer's apply (its share of the process's CPU)",
            ),
            &["consumer"],
        )?;
        let lag_records = IntGaugeVec::new(
            Opts::new(
                "flk_feed_lag_records",
                "Records the source has that the consumer has not applied yet",
            ),
            &["consumer"],
        )?;
        let lag_seconds = GaugeVec::new(
            Opts::new(
                "flk_feed_lag_seconds",
                "Age of the last applied record when it was applied while records were still \
                 waiting (0 once caught up)",
            ),
            &["consumer"],
        )?;
        let applied = prometheus::IntCounterVec::new(
            Opts::new(
                "flk_feed_applied_records_total",
                "Records the consumer has applied",
            ),
            &["consumer"],
        )?;
        registry.register(Box::new(apply_cpu.clone()))?;
        registry.register(Box::new(lag_records.clone()))?;
        registry.register(Box::new(lag_seconds.clone()))?;
        registry.register(Box::new(applied.clone()))?;
        registry.register(Box::new(ProcessCpu::new()?))?;
        Ok(FeedMetrics {
            apply_cpu,
            lag_records,
            lag_seconds,
            applied,
        })
    }

    /// The metrics in a registry of their own (`flk up` adds it to the gateway's `/metrics`).
    pub fn standalone() -> prometheus::Result<(Registry, FeedMetrics)> {
        let registry = Registry::new();
        let metrics = FeedMetrics::register(&registry)?;
        Ok((registry, metrics))
    }

    fn consumer(&self, name: &str) -> ConsumerMetrics {
        ConsumerMetrics {
            apply_cpu: self.apply_cpu.with_label_values(&[name]),
            lag_records: self.lag_records.with_label_values(&[name]),
            lag_seconds: self.lag_seconds.with_label_values(&[name]),
            applied: self.applied.with_label_values(&[name]),
        }
    }
}

/// `flk_process_cpu_seconds_total`: the process's CPU time, read when scraped.
struct ProcessCpu {
    counter: Counter,
}

impl ProcessCpu {
    fn new() -> prometheus::Result<ProcessCpu> {
        Ok(ProcessCpu {
            counter: Counter::new(
                "flk_process_cpu_seconds_total",
                "CPU time of the whole process (user + system), every thread",
            )?,
        })
    }
}

impl Collector for ProcessCpu {
    fn desc(&self) -> Vec<&Desc> {
        self.counter.desc()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let now = cpu_seconds(rustix::time::ClockId::ProcessCPUTime);
        let seen = self.counter.get();
        if now > seen {
            self.counter.inc_by(now - seen);
        }
        self.counter.collect()
    }
}

fn cpu_seconds(clock: rustix::time::ClockId) -> f64 {
    let t = rustix::time::clock_gettime(clock);
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

/// The calling thread's CPU seconds so far (`CLOCK_THREAD_CPUTIME_ID`).
pub fn thread_cpu_seconds() -> f64 {
    cpu_seconds(rustix::time::ClockId::ThreadCPUTime)
}

thread_local! {
    /// CPU seconds that helper threads spent on the batch this thread is applying.
    static CHARGED_CPU: std::cell::Cell<f64> = const { std::cell::Cell::new(0.0) };
}

/// Charges `seconds` of CPU, spent by threads a sink started for the batch it is applying
/// (measured with [`thread_cpu_seconds`] on each), to that batch: call it on the applying
/// thread. `flk_feed_apply_cpu_seconds_total` then counts them with the applying thread's own.
pub fn charge_cpu(seconds: f64) {
    CHARGED_CPU.with(|c| c.set(c.get() + seconds.max(0.0)));
}

/// One consumer's series.
struct ConsumerMetrics {
    apply_cpu: Counter,
    lag_records: prometheus::IntGauge,
    lag_seconds: prometheus::Gauge,
    applied: prometheus::IntCounter,
}

/// Aborts the task when dropped, so that dropping a service stops its workers.
pub struct AbortOnDrop(pub JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The running consumer. Dropping it stops both tasks.
pub struct FeedConsumer {
    control: FeedControl,
    _tasks: [AbortOnDrop; 2],
}

/// What request handlers hold of the consumer: ask for an immediate batch, see whether the
/// feed is up. It does not keep the tasks alive.
#[derive(Clone)]
pub struct FeedControl {
    flush: mpsc::Sender<oneshot::Sender<()>>,
    connected: Arc<AtomicBool>,
}

/// The flush request could not be served in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlushTimeout;

/// Where the consumer stands, shared by its reader and applier for the lag metrics.
struct Progress {
    source: Arc<dyn FeedSource>,
    metrics: Option<ConsumerMetrics>,
    /// Highest seq handed to the applier.
    received: AtomicU64,
    /// Highest seq applied.
    applied: AtomicU64,
}

impl Progress {
    fn head(&self) -> u64 {
        let received = self.received.load(Ordering::Acquire);
        self.source.head().map_or(received, |h| h.max(received))
    }

    /// Lag in records now; the gauge follows.
    fn update_records(&self) -> u64 {
        let lag = self
            .head()
            .saturating_sub(self.applied.load(Ordering::Acquire));
        if let Some(m) = &self.metrics {
            m.lag_records.set(i64::try_from(lag).unwrap_or(i64::MAX));
        }
        lag
    }
}

impl FeedConsumer {
    /// Starts the reader (gRPC `Subscribe` at `settings.verify_url`) and the applier.
    pub fn start<S: FeedSink>(settings: FeedSettings, sink: Arc<S>) -> FeedConsumer {
        FeedConsumer::start_with(settings, FeedWiring::default(), "", sink)
    }

    /// Starts the reader on `wiring`'s source (gRPC `Subscribe` without one) and the applier;
    /// `consumer` labels the metrics (`audit`, `kpi`...).
    pub fn start_with<S: FeedSink>(
        settings: FeedSettings,
        wiring: FeedWiring,
        consumer: &str,
        sink: Arc<S>,
    ) -> FeedConsumer {
        let source = wiring.source.unwrap_or_else(|| {
            Arc::new(GrpcSource::new(
                settings.verify_url.clone(),
                settings.peer.clone(),
            ))
        });
        let applied = settings.from_seq.max(1) - 1;
        let progress = Arc::new(Progress {
            source,
            metrics: wiring.metrics.map(|m| m.consumer(consumer)),
            received: AtomicU64::new(applied),
            applied: AtomicU64::new(applied),
        });
        // In source batches: a full channel holds about two of the service's batches.
        let capacity = (settings.batch_max.saturating_mul(2) / 64).clamp(4, 256);
        let (tx, rx) = mpsc::channel(capacity);
        let (flush, flush_rx) = mpsc::channel(64);
        let connected = Arc::new(AtomicBool::new(false));
        let reader = tokio::spawn(read_feed(
            settings.clone(),
            progress.clone(),
            tx,
            connected.clone(),
            sink.clone(),
        ));
        let applier = tokio::spawn(apply_loop(settings, progress, sink, rx, flush_rx));
        FeedConsumer {
            control: FeedControl { flush, connected },
            _tasks: [AbortOnDrop(reader), AbortOnDrop(applier)],
        }
    }

    pub fn control(&self) -> FeedControl {
        self.control.clone()
    }
}

impl FeedControl {
    /// Whether the reader is subscribed.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// Applies every record received so far, waiting at most `timeout`.
    pub async fn flush(&self, timeout: Duration) -> Result<(), FlushTimeout> {
        let (done, wait) = oneshot::channel();
        let asked = async {
            self.flush.send(done).await.map_err(|_| FlushTimeout)?;
            wait.await.map_err(|_| FlushTimeout)
        };
        tokio::time::timeout(timeout, asked)
            .await
            .map_err(|_| FlushTimeout)?
    }
}

/// The next delay of a capped exponential backoff, with jitter in [delay/2, delay].
pub fn backoff(delay: &mut Duration, max: Duration) -> Duration {
    let jittered = delay.mul_f64(rand::thread_rng().gen_range(0.5..=1.0));
    *delay = (*delay * 2).min(max);
    jittered
}

/// Part of a source batch and when it arrived.
struct Chunk {
    at: Instant,
    batch: SharedBatch,
    range: Range<usize>,
}

impl Chunk {
    fn len(&self) -> usize {
        self.range.len()
    }

    fn records(&self) -> &[v1::FeedRecord] {
        &self.batch[self.range.clone()]
    }
}

async fn read_feed<S: FeedSink>(
    settings: FeedSettings,
    progress: Arc<Progress>,
    tx: mpsc::Sender<Chunk>,
    connected: Arc<AtomicBool>,
    sink: Arc<S>,
) {
    let mut next = settings.from_seq.max(1);
    let mut delay = settings.retry_initial;
    let name = progress.source.describe();
    loop {
        match progress.source.subscribe(next).await {
            Ok(mut stream) => {
                tracing::info!(from_seq = next, source = %name, "subscribed to the outcome feed");
                connected.store(true, Ordering::Release);
                sink.connection(true);
                delay = settings.retry_initial;
                loop {
                    match stream.next().await {
                        Some(Ok(batch)) => {
                            // Already handed over (a feed that repeats itself): skip.
                            let start = batch.partition_point(|r| r.seq < next);
                            if start == batch.len() {
                                continue;
                            }
                            for rec in &batch[start..] {
                                sink.received(rec.seq);
                            }
                            next = batch[batch.len() - 1].seq.saturating_add(1);
                            progress.received.store(next - 1, Ordering::Release);
                            progress.update_records();
                            let range = start..batch.len();
                            let chunk = Chunk {
                                at: Instant::now(),
                                batch,
                                range,
                            };
                            if tx.send(chunk).await.is_err() {
                                return;
                            }
                        }
                        None => {
                            tracing::warn!("the outcome feed ended");
                            break;
                        }
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "the outcome feed failed");
                            break;
                        }
                    }
                }
                connected.store(false, Ordering::Release);
                sink.connection(false);
            }
            Err(e) => {
                tracing::warn!(error = %e, source = %name, "cannot subscribe to the outcome feed");
            }
        }
        sink.reconnecting();
        tokio::time::sleep(backoff(&mut delay, settings.retry_max)).await;
    }
}

/// The records of the batch being assembled.
#[derive(Default)]
struct Pending {
    chunks: VecDeque<Chunk>,
    len: usize,
}

impl Pending {
    fn push(&mut self, c: Chunk) {
        self.len += c.len();
        self.chunks.push_back(c);
    }

    /// Keeps the first `max` records and returns the others, in order (a chunk that straddles
    /// the limit is cut in two; both halves share its batch).
    fn split_off(&mut self, max: usize) -> VecDeque<Chunk> {
        let mut rest = VecDeque::new();
        while self.len > max {
            let Some(mut last) = self.chunks.pop_back() else {
                break;
            };
            let before = self.len - last.len();
            if before >= max {
                self.len = before;
                rest.push_front(last);
            } else {
                let keep = max - before;
                let cut = last.range.start + keep;
                rest.push_front(Chunk {
                    at: last.at,
                    batch: last.batch.clone(),
                    range: cut..last.range.end,
                });
                last.range.end = cut;
                self.len = max;
                self.chunks.push_back(last);
            }
        }
        rest
    }
}

async fn apply_loop<S: FeedSink>(
    settings: FeedSettings,
    progress: Arc<Progress>,
    sink: Arc<S>,
    mut rx: mpsc::Receiver<Chunk>,
    mut flush: mpsc::Receiver<oneshot::Sender<()>>,
) {
    let max = settings.batch_max.max(1);
    // Records received beyond a full batch, applied first in the next one.
    let mut carry: VecDeque<Chunk> = VecDeque::new();
    loop {
        let mut pending = Pending::default();
        let mut waiters = Vec::new();
        let deadline;
        if let Some(first) = carry.pop_front() {
            deadline = first.at + settings.batch_interval;
            pending.push(first);
            while let Some(c) = carry.pop_front() {
                pending.push(c);
            }
        } else {
            tokio::select! {
                biased;
                w = flush.recv() => match w {
                    Some(w) => {
                        waiters.push(w);
                        deadline = Instant::now();
                    }
                    None => return,
                },
                r = rx.recv() => match r {
                    Some(c) => {
                        deadline = c.at + settings.batch_interval;
                        pending.push(c);
                    }
                    None => return,
                },
            }
        }
        // Linger for more, up to the first record's deadline. A backlog (records that
        // arrived while the previous batch was applied) is taken first, so batches fill.
        while waiters.is_empty() && pending.len < max {
            tokio::select! {
                biased;
                w = flush.recv() => {
                    waiters.extend(w);
                    break;
                }
                r = rx.recv() => match r {
                    Some(c) => pending.push(c),
                    None => break,
                },
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        loop {
            // On demand: everything already received joins, in batches of at most `max`.
            if !waiters.is_empty() {
                while pending.len < max {
                    match rx.try_recv() {
                        Ok(c) => pending.push(c),
                        Err(_) => break,
                    }
                }
            }
            carry = pending.split_off(max);
            let full = pending.len >= max;
            apply_with_retry(&sink, &progress, std::mem::take(&mut pending), &settings).await;
            if waiters.is_empty() || !full {
                break;
            }
            while let Some(c) = carry.pop_front() {
                pending.push(c);
            }
        }
        for w in waiters {
            let _ = w.send(());
        }
    }
}

/// Applies `pending`, retrying with backoff until it succeeds (an empty batch is a no-op).
/// The sink sees references into the chunks' shared batches: merging them copies no record.
async fn apply_with_retry<S: FeedSink>(
    sink: &Arc<S>,
    progress: &Progress,
    pending: Pending,
    settings: &FeedSettings,
) {
    if pending.len == 0 {
        return;
    }
    let len = pending.len;
    let chunks: Arc<[Chunk]> = pending.chunks.into_iter().collect();
    let (last_seq, last_decided) = chunks
        .last()
        .and_then(|c| c.records().last())
        .map_or((0, 0), |r| (r.seq, r.decided_at_unix_ms));
    let mut delay = settings.retry_initial;
    loop {
        let (s, chunks) = (sink.clone(), chunks.clone());
        let run = tokio::task::spawn_blocking(move || {
            CHARGED_CPU.with(|c| c.set(0.0));
            let started = thread_cpu_seconds();
            let batch: Vec<&v1::FeedRecord> = chunks.iter().flat_map(Chunk::records).collect();
            let result = s.apply(&batch);
            let cpu = thread_cpu_seconds() - started + CHARGED_CPU.with(|c| c.replace(0.0));
            (result, cpu)
        })
        .await;
        let (result, cpu) = match run {
            Ok((result, cpu)) => (result.map_err(|e| e.to_string()), cpu),
            Err(e) => (Err(format!("the apply task died: {e}")), 0.0),
        };
        if let Some(m) = &progress.metrics {
            m.apply_cpu.inc_by(cpu.max(0.0));
        }
        match result {
            Ok(()) => {
                progress.applied.fetch_max(last_seq, Ordering::AcqRel);
                let behind = progress.update_records();
                if let Some(m) = &progress.metrics {
                    m.applied.inc_by(len as u64);
                    let age = if behind == 0 || last_decided <= 0 {
                        0.0
                    } else {
                        let now_ms = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
                        (now_ms.saturating_sub(last_decided).max(0)) as f64 / 1000.0
                    };
                    m.lag_seconds.set(age);
                }
                return;
            }
            Err(e) => {
                sink.apply_failed();
                tracing::error!(error = %e, records = len, "applying a feed batch failed; retrying it");
            }
        }
        tokio::time::sleep(backoff(&mut delay, settings.retry_max)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Fixed batches, then a stream that stays open.
    struct Batches {
        batches: Vec<Vec<u64>>,
        head: u64,
    }

    impl FeedSource for Batches {
        fn subscribe(&self, from_seq: u64) -> BoxFuture<'static, Result<BatchStream, String>> {
            let batches: Vec<Result<SharedBatch, String>> = self
                .batches
                .iter()
                .filter(|b| b.last().is_some_and(|l| *l >= from_seq))
                .map(|b| {
                    Ok(b.iter()
                        .map(|&seq| v1::FeedRecord {
                            seq,
                            decided_at_unix_ms: 1,
                            ..Default::default()
                        })
                        .collect())
                })
                .collect();
            Box::pin(async move {
                Ok(
                    Box::pin(futures::stream::iter(batches).chain(futures::stream::pending()))
                        as BatchStream,
                )
            })
        }

        fn head(&self) -> Option<u64> {
            Some(self.head)
        }

        fn describe(&self) -> String {
            "test batches".into()
        }
    }

    #[derive(Default)]
    struct Recorder {
        batches: Mutex<Vec<Vec<u64>>>,
    }

    impl FeedSink for Recorder {
        fn apply(&self, batch: &[&v1::FeedRecord]) -> Result<(), String> {
            let mut all = self.batches.lock().map_err(|e| e.to_string())?;
            all.push(batch.iter().map(|r| r.seq).collect());
            Ok(())
        }
    }

    fn settings(from_seq: u64, batch_max: usize) -> FeedSettings {
        FeedSettings {
            verify_url: "http://127.0.0.1:1".into(),
            peer: Peer::default(),
            from_seq,
            batch_interval: Duration::from_millis(5),
            batch_max,
            retry_initial: Duration::from_millis(10),
            retry_max: Duration::from_millis(100),
        }
    }

    async fn applied_until(sink: &Recorder, last: u64) -> Vec<Vec<u64>> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let batches = sink.batches.lock().unwrap().clone();
            if batches.iter().flatten().any(|s| *s == last) {
                return batches;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "not applied: {batches:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// A wiring reading `source`, its metrics in a registry of their own.
    fn wired(source: Batches) -> (Registry, FeedWiring) {
        let registry = Registry::new();
        let wiring = FeedWiring {
            source: Some(Arc::new(source)),
            metrics: None,
        }
        .or_metrics_in(&registry)
        .unwrap();
        (registry, wiring)
    }

    #[tokio::test]
    async fn source_batches_are_cut_to_the_sinks_batches_in_order_without_repeats() {
        let (registry, wiring) = wired(Batches {
            batches: vec![(1..=3).collect(), (3..=7).collect(), (8..=20).collect()],
            head: 20,
        });
        let sink = Arc::new(Recorder::default());
        let consumer = FeedConsumer::start_with(settings(2, 4), wiring, "test", sink.clone());
        let batches = applied_until(&sink, 20).await;
        assert!(
            batches.iter().all(|b| !b.is_empty() && b.len() <= 4),
            "{batches:?}"
        );
        let seqs: Vec<u64> = batches.into_iter().flatten().collect();
        assert_eq!(seqs, (2..=20).collect::<Vec<_>>());
        assert!(consumer.control().connected());

        let text = {
            use prometheus::Encoder as _;
            let mut out = Vec::new();
            prometheus::TextEncoder::new()
                .encode(&registry.gather(), &mut out)
                .unwrap();
            String::from_utf8(out).unwrap()
        };
        assert!(
            text.contains("flk_feed_lag_records{consumer=\"test\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("flk_feed_applied_records_total{consumer=\"test\"} 19"),
            "{text}"
        );
        assert!(text.contains("flk_feed_apply_cpu_seconds_total{consumer=\"test\"}"));
        assert!(text.contains("flk_process_cpu_seconds_total "), "{text}");
    }

    /// Spends CPU on a thread of its own per batch and charges it to the batch.
    #[derive(Default)]
    struct HelperThreads {
        charged: Mutex<f64>,
        inner: Recorder,
    }

    impl FeedSink for HelperThreads {
        fn apply(&self, batch: &[&v1::FeedRecord]) -> Result<(), String> {
            let cpu = std::thread::scope(|s| {
                s.spawn(|| {
                    let started = thread_cpu_seconds();
                    // At least 20 ms of CPU on this thread, whatever the machine's speed.
                    while thread_cpu_seconds() - started < 0.02 {
                        std::hint::black_box(started.sqrt());
                    }
                    thread_cpu_seconds() - started
                })
                .join()
                .expect("helper thread")
            });
            charge_cpu(cpu);
            *self.charged.lock().map_err(|e| e.to_string())? += cpu;
            self.inner.apply(batch)
        }
    }

    #[tokio::test]
    async fn cpu_charged_by_a_sinks_helper_threads_counts_as_the_consumers() {
        let (registry, wiring) = wired(Batches {
            batches: vec![(1..=3).collect()],
            head: 3,
        });
        let sink = Arc::new(HelperThreads::default());
        let consumer = FeedConsumer::start_with(settings(1, 16), wiring, "helpers", sink.clone());
        applied_until(&sink.inner, 3).await;
        // The apply loop takes the flush after the batch's accounting.
        consumer
            .control()
            .flush(Duration::from_secs(10))
            .await
            .expect("flushed");
        let charged = *sink.charged.lock().unwrap();
        let counted = registry
            .gather()
            .iter()
            .find(|f| f.name() == "flk_feed_apply_cpu_seconds_total")
            .and_then(|f| f.get_metric().first().map(|m| m.get_counter().value()))
            .expect("the consumer's CPU counter");
        assert!(charged >= 0.02, "{charged}");
        assert!(
            counted >= charged,
            "the helper threads' {charged} s are counted: {counted} s"
        );
    }

    #[tokio::test]
    async fn flush_applies_a_backlog_in_full_batches() {
        let source = Arc::new(Batches {
            batches: vec![(1..=10).collect()],
            head: 10,
        });
        let sink = Arc::new(Recorder::default());
        let mut s = settings(1, 3);
        // Only a flush cuts batches early.
        s.batch_interval = Duration::from_secs(3600);
        let consumer = FeedConsumer::start_with(
            s,
            FeedWiring {
                source: Some(source),
                metrics: None,
            },
            "test",
            sink.clone(),
        );
        let batches = applied_until(&sink, 9).await;
        // Three full batches of three (the size limit), the tenth record waits.
        assert_eq!(batches, vec![vec![1, 2, 3], vec![4, 5, 6], vec![7, 8, 9]]);
        consumer
            .control()
            .flush(Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(applied_until(&sink, 10).await.last(), Some(&vec![10]));
    }

    #[test]
    fn pending_splits_at_the_limit_and_keeps_the_rest_in_order() {
        let batch: SharedBatch = (1..=5)
            .map(|seq| v1::FeedRecord {
                seq,
                ..Default::default()
            })
            .collect();
        let at = Instant::now();
        let mut p = Pending::default();
        p.push(Chunk {
            at,
            batch: batch.clone(),
            range: 0..2,
        });
        p.push(Chunk {
            at,
            batch,
            range: 2..5,
        });
        let rest = p.split_off(3);
        assert_eq!(p.len, 3);
        let kept: Vec<u64> = p
            .chunks
            .iter()
            .flat_map(|c| c.records())
            .map(|r| r.seq)
            .collect();
        let carried: Vec<u64> = rest
            .iter()
            .flat_map(|c| c.records())
            .map(|r| r.seq)
            .collect();
        assert_eq!(kept, vec![1, 2, 3]);
        assert_eq!(carried, vec![4, 5]);
    }
}
