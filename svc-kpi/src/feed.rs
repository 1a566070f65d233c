//! Consuming svc-verify's outcome feed: a reader task subscribed with `Subscribe(from_seq)`
//! (reconnecting with capped exponential backoff and jitter) hands records to an applier
//! task, which cuts them into batches and calls [`Kpi::apply`] on a blocking thread: one redb
//! write transaction per batch, covering the records, their buckets and the cursor.
//!
//! * **Batching.** A batch is cut when it holds `batch_max_records` records or when its first
//!   record has waited `batch_interval_ms`; a backlog is taken first, so batches fill.
//! * **At-least-once.** The reader starts at the persisted cursor + 1, and after a
//!   reconnection at the record after the last one it handed over. Records handed over but
//!   not applied when the process stops are redelivered on the next start; the store makes
//!   that harmless (**CountedOnce**, [`crate::store`]).
//! * **Failures.** A failed batch is retried with backoff, unchanged, so nothing is skipped;
//!   meanwhile the reader stops once the channel is full, and gRPC flow control holds the feed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use flk_proto::v1;
use flk_proto::v1::verify_service_client::VerifyServiceClient;
use rand::Rng as _;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::Kpi;

/// How the consumer runs.
#[derive(Debug, Clone)]
pub struct FeedSettings {
    pub verify_url: String,
    pub from_seq: u64,
    pub batch_interval: Duration,
    pub batch_max_records: usize,
    pub retry_initial: Duration,
    pub retry_max: Duration,
}

/// Aborts the task when dropped, so that dropping the service stops its workers.
pub(crate) struct AbortOnDrop(pub(crate) JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The running consumer. Dropping it stops both tasks.
pub struct FeedHandle {
    _tasks: [AbortOnDrop; 2],
}

impl FeedHandle {
    pub fn start(settings: FeedSettings, kpi: Arc<Kpi>) -> FeedHandle {
        let (tx, rx) = mpsc::channel(settings.batch_max_records.saturating_mul(2).max(16));
        let connected = kpi.feed_connected.clone();
        let reader = tokio::spawn(read_feed(
            settings.clone(),
            tx,
            connected.clone(),
            kpi.clone(),
        ));
        let applier = tokio::spawn(apply_loop(settings, kpi, rx));
        FeedHandle {
            _tasks: [AbortOnDrop(reader), AbortOnDrop(applier)],
        }
    }
}

/// The next delay of a capped exponential backoff, with jitter in [delay/2, delay].
pub(crate) fn backoff(delay: &mut Duration, max: Duration) -> Duration {
    let jittered = delay.mul_f64(rand::thread_rng().gen_range(0.5..=1.0));
    *delay = (*delay * 2).min(max);
    jittered
}

pub(crate) fn endpoint(url: &str) -> Result<tonic::transport::Endpoint, String> {
    Ok(tonic::transport::Endpoint::from_shared(url.to_owned())
        .map_err(|e| format!("invalid url: {e}"))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true))
}

async fn subscribe(url: &str, from_seq: u64) -> Result<tonic::Streaming<v1::FeedRecord>, String> {
    let channel = endpoint(url)?.connect().await.map_err(|e| e.to_string())?;
    let mut client = VerifyServiceClient::new(channel);
    let stream = client
        .subscribe(v1::SubscribeRequest { from_seq })
        .await
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?;
    Ok(stream.into_inner())
}

async fn read_feed(
    settings: FeedSettings,
    tx: mpsc::Sender<(Instant, v1::FeedRecord)>,
    connected: Arc<AtomicBool>,
    kpi: Arc<Kpi>,
) {
    let mut next = settings.from_seq.max(1);
    let mut delay = settings.retry_initial;
    loop {
        match subscribe(&settings.verify_url, next).await {
            Ok(mut stream) => {
                tracing::info!(from_seq = next, url = %settings.verify_url, "subscribed to the outcome feed");
                connected.store(true, Ordering::Release);
                delay = settings.retry_initial;
                loop {
                    match stream.message().await {
                        Ok(Some(rec)) => {
                            if rec.seq < next {
                                continue;
                            }
                            next = rec.seq.saturating_add(1);
                            kpi.metrics().received(rec.seq);
                            if tx.send((Instant::now(), rec)).await.is_err() {
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
            }
            Err(e) => {
                tracing::warn!(error = %e, url = %settings.verify_url, "cannot subscribe to the outcome feed");
            }
        }
        tokio::time::sleep(backoff(&mut delay, settings.retry_max)).await;
    }
}

async fn apply_loop(
    settings: FeedSettings,
    kpi: Arc<Kpi>,
    mut rx: mpsc::Receiver<(Instant, v1::FeedRecord)>,
) {
    let max = settings.batch_max_records.max(1);
    loop {
        let Some((at, first)) = rx.recv().await else {
            return;
        };
        let deadline = at + settings.batch_interval;
        let mut batch = vec![first];
        while batch.len() < max {
            tokio::select! {
                biased;
                r = rx.recv() => match r {
                    Some((_, rec)) => batch.push(rec),
                    None => break,
                },
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        let batch = Arc::new(batch);
        let mut delay = settings.retry_initial;
        loop {
            let (k, b) = (kpi.clone(), batch.clone());
            match tokio::task::spawn_blocking(move || k.apply(&b)).await {
                Ok(Ok(_)) => break,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, records = batch.len(), "applying a batch failed; retrying it");
                }
                Err(e) => {
                    tracing::error!(error = %e, records = batch.len(), "apply task died; retrying the batch");
                }
            }
            tokio::time::sleep(backoff(&mut delay, settings.retry_max)).await;
        }
    }
}
