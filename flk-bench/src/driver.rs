//! The run: hands out items in index order to the protocol workers (`rest.rs`, `grpc.rs`),
//! paces them for a target rate, holds a duplicate back until its original is decided,
//! prints progress, and merges what the workers saw into a [`Report`].

use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, oneshot};

use crate::Error;
use crate::expect::Observed;
use crate::mix::Kind;
use crate::report::{Report, RunInfo, Stats, group};
use crate::workload::{Item, Workload};

/// Items pre-generated per second of a flat-out run.
const PREGENERATE_PER_SEC: f64 = 20_000.0;

/// Which API to drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `POST /v1/pcs/submit` (PROTOCOL.md section 5) over HTTP/1.1 keep-alive.
    Rest,
    /// `flk.v1.VerifyService` (the gateway's port, or svc-verify's).
    Grpc,
}

/// How to call gRPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrpcMode {
    /// Unary `Submit`, one call in flight per caller.
    Unary,
    /// `SubmitStream`, a bounded window of items in flight per stream.
    Stream,
}

/// When a run ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Stop handing out items after this long (those in flight still count).
    Duration(Duration),
    /// Send exactly this many items.
    Count(u64),
}

/// Settings of one run.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// `http://host:port` of the gateway (or of svc-verify for gRPC).
    pub url: String,
    pub protocol: Protocol,
    pub grpc_mode: GrpcMode,
    /// Sent as `X-Tenant-Id` (REST) or in the request's `tenant_id` (gRPC).
    pub tenant: String,
    /// REST: keep-alive connections; gRPC unary: concurrent callers, each on its own HTTP/2
    /// connection.
    pub connections: usize,
    /// gRPC stream: concurrent `SubmitStream` calls, each on its own HTTP/2 connection.
    pub streams: usize,
    /// gRPC stream: most items in flight per stream.
    pub window: usize,
    pub stop: Stop,
    /// Items per second, open loop (see the crate docs); `None` sends flat out.
    pub rate: Option<f64>,
    /// Per request (REST, gRPC unary); for streams, the longest wait for the next answer.
    pub timeout: Duration,
    /// Print a progress line on stderr once a second.
    pub progress: bool,
    /// Most items built before the clock starts; later ones are built by the workers.
    pub pregenerate: u64,
    /// gRPC: TLS (CA, client certificate) and bearer token towards the server, e.g. the mesh
    /// credentials of an svc-verify port that requires them.
    pub peer: flk_runtime::client::Peer,
}

impl RunConfig {
    /// REST against `url`, 64 connections, 10 s flat out.
    pub fn new(url: impl Into<String>) -> RunConfig {
        RunConfig {
            url: url.into(),
            protocol: Protocol::Rest,
            grpc_mode: GrpcMode::Unary,
            tenant: "default".to_owned(),
            connections: 64,
            streams: 4,
            window: 256,
            stop: Stop::Duration(Duration::from_secs(10)),
            rate: None,
            timeout: Duration::from_secs(30),
            progress: false,
            pregenerate: 200_000,
            peer: flk_runtime::client::Peer::plain(),
        }
    }

    fn validate(&self) -> Result<(), Error> {
        let bad = |m: &str| Err(Error::Config(m.to_owned()));
        if self.connections == 0 || self.streams == 0 || self.window == 0 {
            return bad("connections, streams and window must be at least 1");
        }
        if let Some(r) = self.rate
            && !(r.is_finite() && r > 0.0)
        {
            return bad("the rate must be a positive number of items per second");
        }
        match self.stop {
            Stop::Count(0) => bad("the count must be at least 1"),
            Stop::Duration(d) if d.is_zero() => bad("the duration must be positive"),
            _ => Ok(()),
        }
    }

    fn label(&self) -> (String, String) {
        match (self.protocol, self.grpc_mode) {
            (Protocol::Rest, _) => ("rest".into(), format!("{} connections", self.connections)),
            (Protocol::Grpc, GrpcMode::Unary) => {
                ("grpc-unary".into(), format!("{} callers", self.connections))
            }
            (Protocol::Grpc, GrpcMode::Stream) => (
                "grpc-stream".into(),
                format!("{} streams x window {}", self.streams, self.window),
            ),
        }
    }
}

/// Runs `workload` against the server of `cfg` and reports what happened. Fails only when the
/// run cannot start (bad settings, server unreachable); every answer, error or not, is in the
/// report.
pub async fn run(workload: Arc<Workload>, cfg: &RunConfig) -> Result<Report, Error> {
    cfg.validate()?;
    let url = base_url(&cfg.url, cfg.protocol == Protocol::Grpc)?;
    let planned = match (cfg.stop, cfg.rate) {
        (Stop::Count(n), _) => n,
        (Stop::Duration(d), Some(r)) => (d.as_secs_f64() * r).ceil() as u64,
        (Stop::Duration(_), None) => u64::MAX,
    };
    // Flat out for a duration, the count is unknown: enough for a fast server's first
    // stretch, without making a short run wait for a long generation.
    let expected = match (cfg.stop, cfg.rate) {
        (Stop::Duration(d), None) => (d.as_secs_f64() * PREGENERATE_PER_SEC) as u64,
        _ => planned,
    };
    let pregen = expected.min(cfg.pregenerate);
    let generated_at = Instant::now();
    let pregenerated = {
        let w = workload.clone();
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        tokio::task::spawn_blocking(move || w.items(0..pregen, threads))
            .await
            .map_err(|e| Error::Generator(e.to_string()))?
    };
    if cfg.progress {
        eprintln!(
            "generated {} items in {:.2} s",
            group(pregen),
            generated_at.elapsed().as_secs_f64()
        );
    }

    let workers = match cfg.protocol {
        Protocol::Rest => crate::rest::connect(&url, cfg).await?,
        Protocol::Grpc => crate::grpc::connect(&url, cfg).await?,
    };

    let start = Instant::now();
    let shared = Arc::new(Shared {
        workload: workload.clone(),
        pregenerated,
        next: AtomicU64::new(0),
        limit: planned,
        start,
        end: match cfg.stop {
            Stop::Duration(d) => Some(start + d),
            Stop::Count(_) => None,
        },
        rate: cfg.rate,
        decided: Decided::new(),
        sent: AtomicU64::new(0),
        completed: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        mismatched: AtomicU64::new(0),
    });
    let (finished, finished_rx) = oneshot::channel();
    let progress = cfg
        .progress
        .then(|| tokio::spawn(progress(shared.clone(), finished_rx)));
    let handles: Vec<_> = workers
        .into_iter()
        .map(|w| tokio::spawn(w.run(shared.clone())))
        .collect();
    let mut stats = Stats::new();
    for h in handles {
        match h.await {
            Ok(s) => stats.merge(s),
            Err(e) => return Err(Error::Generator(format!("a worker stopped: {e}"))),
        }
    }
    let _ = finished.send(());
    if let Some(p) = progress {
        let _ = p.await;
    }
    let (protocol, concurrency) = cfg.label();
    Ok(Report::from_stats(
        RunInfo {
            protocol,
            url,
            tenant: cfg.tenant.clone(),
            concurrency,
            rate: cfg.rate,
            mix: workload.mix().to_string(),
            pregenerated: pregen,
            start,
        },
        stats,
    ))
}

/// `http://host:port` without a trailing slash; `https://` too for gRPC, whose channels take
/// their TLS from [`RunConfig::peer`] (REST is plain HTTP only).
fn base_url(url: &str, grpc: bool) -> Result<String, Error> {
    let bad = |reason: &str| Error::Url {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let (scheme, rest) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
        (Some(rest), _) => ("http", rest),
        (None, Some(rest)) if grpc => ("https", rest),
        _ => {
            return Err(bad(
                "it must start with http:// (https:// for gRPC with a CA to trust)",
            ));
        }
    };
    let hostport = rest.trim_end_matches('/');
    if hostport.is_empty() || hostport.contains('/') {
        return Err(bad("expected http://HOST:PORT"));
    }
    Ok(format!("{scheme}://{hostport}"))
}

/// A protocol worker, connected and ready to send.
pub(crate) enum Worker {
    Rest(crate::rest::RestWorker),
    GrpcUnary(crate::grpc::UnaryWorker),
    GrpcStream(crate::grpc::StreamWorker),
}

impl Worker {
    async fn run(self, shared: Arc<Shared>) -> Stats {
        match self {
            Worker::Rest(w) => w.run(shared).await,
            Worker::GrpcUnary(w) => w.run(shared).await,
            Worker::GrpcStream(w) => w.run(shared).await,
        }
    }
}

/// An item ready to go, and the instant its latency is measured from (its intended send time
/// under a target rate, else set when it is sent).
pub(crate) struct Job {
    pub item: Item,
    pub intended: Option<Instant>,
}

/// State shared by the workers of a run.
pub(crate) struct Shared {
    workload: Arc<Workload>,
    pregenerated: Vec<Item>,
    next: AtomicU64,
    limit: u64,
    start: Instant,
    end: Option<Instant>,
    rate: Option<f64>,
    decided: Decided,
    sent: AtomicU64,
    completed: AtomicU64,
    failed: AtomicU64,
    mismatched: AtomicU64,
}

impl Shared {
    /// The next item to send, once it is due (and, for a duplicate, once its original is
    /// decided); `None` when the run is over.
    pub(crate) async fn next_job(&self, stats: &mut Stats) -> Option<Job> {
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            if i >= self.limit {
                return None;
            }
            let intended = self
                .rate
                .map(|r| self.start + Duration::from_secs_f64(i as f64 / r));
            if let Some(end) = self.end
                && intended.unwrap_or_else(Instant::now) >= end
            {
                // Never sent: a duplicate waiting for it must not wait forever.
                self.decided.set(i, ABANDONED);
                return None;
            }
            let item = match self.pregenerated.get(i as usize) {
                Some(item) => item.clone(),
                None => self.workload.item(i),
            };
            if let Some(t) = intended {
                tokio::time::sleep_until(t.into()).await;
            }
            if let (Kind::Duplicate, Some(j)) = (item.kind, item.original)
                && self.decided.wait(j).await != DECIDED
            {
                // The original got no decision, so this would not be a duplicate.
                self.decided.set(i, ABANDONED);
                stats.skipped += 1;
                continue;
            }
            self.sent.fetch_add(1, Ordering::Relaxed);
            return Some(Job { item, intended });
        }
    }

    /// Records the answer to `job`, sent at `sent`.
    pub(crate) fn finish(
        &self,
        stats: &mut Stats,
        job: &Job,
        sent: Instant,
        got: &Observed,
        detail: Option<String>,
        example: Option<serde_json::Value>,
    ) {
        let done = Instant::now();
        let state = match got {
            Observed::Decision { .. } => DECIDED,
            _ => ABANDONED,
        };
        self.decided.set(job.item.index, state);
        let from = job.intended.unwrap_or(sent);
        let ok = stats.record(&job.item, from, done, got, detail, example);
        self.completed.fetch_add(1, Ordering::Relaxed);
        if got.is_failure() {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        if !ok {
            self.mismatched.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Once a second on stderr, and once more at the end: elapsed, sent, answered, rate over the
/// last interval, failures and mismatches.
async fn progress(shared: Arc<Shared>, mut finished: oneshot::Receiver<()>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut last = (Instant::now(), 0u64);
    loop {
        let end = tokio::select! {
            _ = tick.tick() => false,
            _ = &mut finished => true,
        };
        let now = Instant::now();
        let done = shared.completed.load(Ordering::Relaxed);
        let rate = (done - last.1) as f64 / now.duration_since(last.0).as_secs_f64().max(1e-3);
        last = (now, done);
        eprintln!(
            "[{:>6.1}s] sent {}  answered {}  {}/s  failed {}  mismatches {}{}",
            now.duration_since(shared.start).as_secs_f64(),
            group(shared.sent.load(Ordering::Relaxed)),
            group(done),
            group(rate.round() as u64),
            shared.failed.load(Ordering::Relaxed),
            shared.mismatched.load(Ordering::Relaxed),
            if end { "  (done)" } else { "" },
        );
        if end {
            return;
        }
    }
}

/// Not sent or not answered yet.
const PENDING: u8 = 0;
/// Answered with an outcome: the server holds a decision for it.
const DECIDED: u8 = 1;
/// Never sent, or answered without a decision.
const ABANDONED: u8 = 2;

/// Items per lazily allocated block of [`Decided`].
const BLOCK: u64 = 1 << 16;
/// Blocks: 2^30 items, far more than any run sends.
const BLOCKS: usize = 1 << 14;

/// The state of every item index, so that a duplicate is only sent after its original was
/// decided (otherwise the copy could overtake the original on another connection and be the
/// one decided fresh). One byte per item, in blocks allocated on first use.
struct Decided {
    blocks: Box<[OnceLock<Box<[AtomicU8]>>]>,
    notify: Notify,
    waiters: AtomicUsize,
}

impl Decided {
    fn new() -> Decided {
        Decided {
            blocks: (0..BLOCKS).map(|_| OnceLock::new()).collect(),
            notify: Notify::new(),
            waiters: AtomicUsize::new(0),
        }
    }

    fn slot(&self, i: u64) -> Option<&AtomicU8> {
        let block = self.blocks.get(usize::try_from(i / BLOCK).ok()?)?;
        let block = block.get_or_init(|| (0..BLOCK).map(|_| AtomicU8::new(PENDING)).collect());
        block.get((i % BLOCK) as usize)
    }

    fn set(&self, i: u64, state: u8) {
        if let Some(s) = self.slot(i) {
            s.store(state, Ordering::SeqCst);
        }
        if self.waiters.load(Ordering::SeqCst) > 0 {
            self.notify.notify_waiters();
        }
    }

    fn get(&self, i: u64) -> u8 {
        // Beyond the table (over 2^30 items): assume decided.
        self.slot(i).map_or(DECIDED, |s| s.load(Ordering::SeqCst))
    }

    /// Waits until item `i` is decided or abandoned.
    async fn wait(&self, i: u64) -> u8 {
        loop {
            let state = self.get(i);
            if state != PENDING {
                return state;
            }
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            self.waiters.fetch_add(1, Ordering::SeqCst);
            // Either `set` sees the waiter and notifies, or this read sees its store.
            let state = self.get(i);
            if state == PENDING {
                notified.await;
            }
            self.waiters.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            base_url("http://127.0.0.1:8080/", false).unwrap(),
            "http://127.0.0.1:8080"
        );
        assert!(base_url("127.0.0.1:8080", false).is_err());
        assert!(base_url("https://x:1", false).is_err());
        assert_eq!(base_url("https://x:1/", true).unwrap(), "https://x:1");
        assert!(base_url("http://x:1/v1/pcs/submit", false).is_err());
    }

    #[tokio::test]
    async fn a_waiter_sees_the_decision() {
        let d = Arc::new(Decided::new());
        let waiter = tokio::spawn({
            let d = d.clone();
            async move { d.wait(70_000).await }
        });
        d.set(70_000, DECIDED);
        assert_eq!(waiter.await.unwrap(), DECIDED);
        d.set(3, ABANDONED);
        assert_eq!(d.wait(3).await, ABANDONED);
    }
}
