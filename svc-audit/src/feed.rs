//! Consuming svc-verify's outcome feed: a reader task subscribed with `Subscribe(from_seq)`
//! (reconnecting with capped exponential backoff and jitter) hands records to an integrator
//! task, which cuts them into batches and calls [`Ledger::integrate`] on a blocking thread.
//!
//! * **Batching.** A batch is cut when it holds `batch_max_entries` records, or when its
//!   first record has waited `checkpoint_interval` since it arrived, or when a
//!   [`FeedControl::publish`] asks for it. Each batch that appends publishes a checkpoint.
//! * **At-least-once.** The reader starts at the persisted cursor + 1 and, after a
//!   reconnection, at the record after the last one it handed over. Records handed over but
//!   not yet integrated when the process stops are redelivered on the next start (the cursor
//!   has not moved past them); the ledger's index makes that harmless.
//! * **Failures.** A failed integration is retried with backoff, on the same batch, so
//!   nothing is skipped; meanwhile the reader stops once the channel is full, and gRPC flow
//!   control holds svc-verify's stream.
//! * **Lag.** `flk_audit_consumer_lag_records` is the highest sequence number received minus
//!   the cursor. The feed does not announce its head, so while a long history is being read the
//!   gauge shows the backlog received so far, not the whole of it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use flk_proto::v1;
use flk_proto::v1::verify_service_client::VerifyServiceClient;
use rand::Rng as _;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::error::AuditError;
use crate::ledger::Ledger;
use crate::metrics::AuditMetrics;

/// How the consumer runs.
#[derive(Debug, Clone)]
pub struct FeedSettings {
    /// svc-verify's gRPC URL.
    pub verify_url: String,
    /// First sequence number to request.
    pub from_seq: u64,
    /// Longest wait of a received record before its batch is integrated.
    pub checkpoint_interval: Duration,
    /// Records per batch at most.
    pub batch_max_entries: usize,
    /// First reconnection (and integration retry) delay.
    pub retry_initial: Duration,
    /// Longest reconnection (and integration retry) delay.
    pub retry_max: Duration,
}

/// A record and when it arrived.
struct Received {
    at: Instant,
    rec: v1::FeedRecord,
}

/// Aborts the task when dropped, so that dropping the service stops its workers.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The running consumer. Dropping it stops both tasks.
pub struct FeedHandle {
    control: FeedControl,
    _tasks: [AbortOnDrop; 2],
}

/// What the handlers hold of the consumer: ask for an immediate integration, see whether the
/// feed is up. It does not keep the tasks alive.
#[derive(Clone)]
pub struct FeedControl {
    flush: mpsc::Sender<oneshot::Sender<()>>,
    connected: Arc<AtomicBool>,
}

impl FeedHandle {
    /// Starts the reader and the integrator.
    pub fn start(settings: FeedSettings, ledger: Arc<Ledger>, metrics: AuditMetrics) -> FeedHandle {
        let (tx, rx) = mpsc::channel(settings.batch_max_entries.saturating_mul(2).max(16));
        let (flush, flush_rx) = mpsc::channel(64);
        let connected = Arc::new(AtomicBool::new(false));
        let reader = tokio::spawn(read_feed(
            settings.clone(),
            tx,
            connected.clone(),
            metrics.clone(),
        ));
        let integrator = tokio::spawn(integrate_loop(settings, ledger, rx, flush_rx, metrics));
        FeedHandle {
            control: FeedControl { flush, connected },
            _tasks: [AbortOnDrop(reader), AbortOnDrop(integrator)],
        }
    }

    /// A control handle for the request handlers.
    pub fn control(&self) -> FeedControl {
        self.control.clone()
    }
}

impl FeedControl {
    /// Whether the reader is subscribed to the feed.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// Integrates every record received so far (publishing its checkpoint), waiting at most
    /// `timeout`.
    pub async fn publish(&self, timeout: Duration) -> Result<(), AuditError> {
        let (done, wait) = oneshot::channel();
        let asked = async {
            self.flush
                .send(done)
                .await
                .map_err(|_| AuditError::Busy(timeout))?;
            wait.await.map_err(|_| AuditError::Busy(timeout))
        };
        tokio::time::timeout(timeout, asked)
            .await
            .map_err(|_| AuditError::Busy(timeout))?
    }
}

/// The next delay of a capped exponential backoff, with jitter in [delay/2, delay].
fn backoff(delay: &mut Duration, max: Duration) -> Duration {
    let jittered = delay.mul_f64(rand::thread_rng().gen_range(0.5..=1.0));
    *delay = (*delay * 2).min(max);
    jittered
}

async fn subscribe(url: &str, from_seq: u64) -> Result<tonic::Streaming<v1::FeedRecord>, String> {
    let endpoint = tonic::transport::Endpoint::from_shared(url.to_owned())
        .map_err(|e| format!("invalid url: {e}"))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        // A silent peer (a dead host, a partition) is noticed within ~15 s.
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true);
    let channel = endpoint.connect().await.map_err(|e| e.to_string())?;
    let mut client = VerifyServiceClient::new(channel);
    let stream = client
        .subscribe(v1::SubscribeRequest { from_seq })
        .await
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?;
    Ok(stream.into_inner())
}

async fn read_feed(
    settings: FeedSettings,
    tx: mpsc::Sender<Received>,
    connected: Arc<AtomicBool>,
    metrics: AuditMetrics,
) {
    let mut next = settings.from_seq.max(1);
    let mut delay = settings.retry_initial;
    loop {
        match subscribe(&settings.verify_url, next).await {
            Ok(mut stream) => {
                tracing::info!(from_seq = next, url = %settings.verify_url, "subscribed to the outcome feed");
                connected.store(true, Ordering::Release);
                metrics.feed_connected.set(1);
                delay = settings.retry_initial;
                loop {
                    match stream.message().await {
                        Ok(Some(rec)) => {
                            // Already handed over (a feed that repeats itself): skip.
                            if rec.seq < next {
                                continue;
                            }
                            next = rec.seq.saturating_add(1);
                            metrics.received(rec.seq);
                            let item = Received {
                                at: Instant::now(),
                                rec,
                            };
                            if tx.send(item).await.is_err() {
                                return;
                            }
                        }
                        Ok(None) => {
                            tracing::warn!("the outcome feed ended");
                            break;
                        }
                        Err(status) => {
                            tracing::warn!(code = ?status.code(), message = status.message(), "the outcome feed failed");
                            break;
                        }
                    }
                }
                connected.store(false, Ordering::Release);
                metrics.feed_connected.set(0);
            }
            Err(e) => {
                tracing::warn!(error = %e, url = %settings.verify_url, "cannot subscribe to the outcome feed");
            }
        }
        metrics.feed_reconnects.inc();
        tokio::time::sleep(backoff(&mut delay, settings.retry_max)).await;
    }
}

async fn integrate_loop(
    settings: FeedSettings,
    ledger: Arc<Ledger>,
    mut rx: mpsc::Receiver<Received>,
    mut flush: mpsc::Receiver<oneshot::Sender<()>>,
    metrics: AuditMetrics,
) {
    let max = settings.batch_max_entries.max(1);
    loop {
        let mut batch = Vec::new();
        let mut waiters = Vec::new();
        let deadline;
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
                Some(r) => {
                    deadline = r.at + settings.checkpoint_interval;
                    batch.push(r.rec);
                }
                None => return,
            },
        }
        // Linger for more, up to the first record's deadline. A backlog (records that
        // arrived while the previous batch was integrated) is taken first, so batches fill.
        while waiters.is_empty() && batch.len() < max {
            tokio::select! {
                biased;
                w = flush.recv() => {
                    waiters.extend(w);
                    break;
                }
                r = rx.recv() => match r {
                    Some(r) => batch.push(r.rec),
                    None => break,
                },
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        loop {
            // On demand: everything already received joins, in batches of at most `max`.
            if !waiters.is_empty() {
                while batch.len() < max {
                    match rx.try_recv() {
                        Ok(r) => batch.push(r.rec),
                        Err(_) => break,
                    }
                }
            }
            let full = batch.len() >= max;
            integrate_with_retry(&ledger, std::mem::take(&mut batch), &settings, &metrics).await;
            if waiters.is_empty() || !full {
                break;
            }
        }
        for w in waiters {
            let _ = w.send(());
        }
    }
}

/// Integrates `batch`, retrying with backoff until it succeeds (an empty batch is a no-op).
async fn integrate_with_retry(
    ledger: &Arc<Ledger>,
    batch: Vec<v1::FeedRecord>,
    settings: &FeedSettings,
    metrics: &AuditMetrics,
) {
    if batch.is_empty() {
        return;
    }
    let batch = Arc::new(batch);
    let mut delay = settings.retry_initial;
    loop {
        let (l, b) = (ledger.clone(), batch.clone());
        match tokio::task::spawn_blocking(move || l.integrate(&b)).await {
            Ok(Ok(report)) => {
                tracing::debug!(?report, "batch integrated");
                return;
            }
            Ok(Err(e)) => {
                metrics.integrate_failures.inc();
                tracing::error!(error = %e, records = batch.len(), "integration failed; retrying the batch");
            }
            Err(e) => {
                metrics.integrate_failures.inc();
                tracing::error!(error = %e, records = batch.len(), "integration task died; retrying the batch");
            }
        }
        tokio::time::sleep(backoff(&mut delay, settings.retry_max)).await;
    }
}
