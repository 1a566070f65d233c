//! The outcome-feed consumer every downstream service runs (svc-audit, svc-kpi, and the
//! coming svc-crr and svc-tiering): a reader task subscribed to svc-verify's
//! `Subscribe(from_seq)` hands records to an applier task, which cuts them into batches and
//! calls the service's [`FeedSink::apply`] on a blocking thread.
//!
//! * **Cursor.** The service persists its cursor with each applied batch (in the same
//!   transaction, or after the data) and starts the consumer at cursor + 1; after a
//!   reconnection the reader resumes at the record after the last one it handed over.
//! * **Batching.** A batch is cut when it holds `batch_max` records, or when its first record
//!   has waited `batch_interval` since it arrived, or when [`FeedControl::flush`] asks for it;
//!   a backlog is taken first, so batches fill.
//! * **At-least-once.** Records handed over but not applied when the process stops are
//!   redelivered on the next start (the cursor has not moved past them); sinks are idempotent
//!   on `(tenant_id, pcs_id)`.
//! * **Failures.** A failed batch is retried with capped exponential backoff (with jitter),
//!   unchanged, so nothing is skipped; meanwhile the reader stops once the channel is full and
//!   gRPC flow control holds svc-verify's stream. A lost subscription is retried the same way.
//! * **Security.** The reader dials with the service's [`Peer`] settings (TLS, client
//!   certificate, bearer token), so svc-verify may require mTLS or its token.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use flk_proto::v1;
use flk_proto::v1::verify_service_client::VerifyServiceClient;
use rand::Rng as _;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::client::{EndpointOptions, Peer};

/// What the consumer does with records; the service's part.
pub trait FeedSink: Send + Sync + 'static {
    /// Makes `batch` durable (with the cursor); called again with the same batch until it
    /// succeeds. Runs on a blocking thread.
    fn apply(&self, batch: &[v1::FeedRecord]) -> Result<(), String>;
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
    /// svc-verify's gRPC URL.
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

impl FeedConsumer {
    /// Starts the reader and the applier.
    pub fn start<S: FeedSink>(settings: FeedSettings, sink: Arc<S>) -> FeedConsumer {
        let (tx, rx) = mpsc::channel(settings.batch_max.saturating_mul(2).max(16));
        let (flush, flush_rx) = mpsc::channel(64);
        let connected = Arc::new(AtomicBool::new(false));
        let reader = tokio::spawn(read_feed(
            settings.clone(),
            tx,
            connected.clone(),
            sink.clone(),
        ));
        let applier = tokio::spawn(apply_loop(settings, sink, rx, flush_rx));
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

async fn subscribe(
    settings: &FeedSettings,
    from_seq: u64,
) -> Result<tonic::Streaming<v1::FeedRecord>, String> {
    let channel = settings
        .peer
        .connect(&settings.verify_url, EndpointOptions::default())
        .await
        .map_err(|e| format!("{e:#}"))?;
    let mut client = VerifyServiceClient::new(channel);
    let stream = client
        .subscribe(v1::SubscribeRequest { from_seq })
        .await
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?;
    Ok(stream.into_inner())
}

/// A record and when it arrived.
struct Received {
    at: Instant,
    rec: v1::FeedRecord,
}

async fn read_feed<S: FeedSink>(
    settings: FeedSettings,
    tx: mpsc::Sender<Received>,
    connected: Arc<AtomicBool>,
    sink: Arc<S>,
) {
    let mut next = settings.from_seq.max(1);
    let mut delay = settings.retry_initial;
    loop {
        match subscribe(&settings, next).await {
            Ok(mut stream) => {
                tracing::info!(from_seq = next, url = %settings.verify_url, "subscribed to the outcome feed");
                connected.store(true, Ordering::Release);
                sink.connection(true);
                delay = settings.retry_initial;
                loop {
                    match stream.message().await {
                        Ok(Some(rec)) => {
                            // Already handed over (a feed that repeats itself): skip.
                            if rec.seq < next {
                                continue;
                            }
                            next = rec.seq.saturating_add(1);
                            sink.received(rec.seq);
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
                sink.connection(false);
            }
            Err(e) => {
                tracing::warn!(error = %e, url = %settings.verify_url, "cannot subscribe to the outcome feed");
            }
        }
        sink.reconnecting();
        tokio::time::sleep(backoff(&mut delay, settings.retry_max)).await;
    }
}

async fn apply_loop<S: FeedSink>(
    settings: FeedSettings,
    sink: Arc<S>,
    mut rx: mpsc::Receiver<Received>,
    mut flush: mpsc::Receiver<oneshot::Sender<()>>,
) {
    let max = settings.batch_max.max(1);
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
                    deadline = r.at + settings.batch_interval;
                    batch.push(r.rec);
                }
                None => return,
            },
        }
        // Linger for more, up to the first record's deadline. A backlog (records that
        // arrived while the previous batch was applied) is taken first, so batches fill.
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
            apply_with_retry(&sink, std::mem::take(&mut batch), &settings).await;
            if waiters.is_empty() || !full {
                break;
            }
        }
        for w in waiters {
            let _ = w.send(());
        }
    }
}

/// Applies `batch`, retrying with backoff until it succeeds (an empty batch is a no-op).
async fn apply_with_retry<S: FeedSink>(
    sink: &Arc<S>,
    batch: Vec<v1::FeedRecord>,
    settings: &FeedSettings,
) {
    if batch.is_empty() {
        return;
    }
    let batch = Arc::new(batch);
    let mut delay = settings.retry_initial;
    loop {
        let (s, b) = (sink.clone(), batch.clone());
        match tokio::task::spawn_blocking(move || s.apply(&b)).await {
            Ok(Ok(())) => return,
            Ok(Err(e)) => {
                sink.apply_failed();
                tracing::error!(error = %e, records = batch.len(), "applying a feed batch failed; retrying it");
            }
            Err(e) => {
                sink.apply_failed();
                tracing::error!(error = %e, records = batch.len(), "the apply task died; retrying the batch");
            }
        }
        tokio::time::sleep(backoff(&mut delay, settings.retry_max)).await;
    }
}
