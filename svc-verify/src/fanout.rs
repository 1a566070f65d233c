//! The outcome feed fanned out in process (`flk up`): one task follows the outcome log,
//! decodes each record once and broadcasts shared batches (`Arc<[FeedRecord]>`) to every
//! consumer of the process, instead of each consumer reading, decoding, re-encoding and
//! HTTP/2-framing every record through its own `Subscribe` call.
//!
//! The broadcast never waits: the submit path and the fan-out task go on at their own pace,
//! and a consumer that falls more than [`LIVE_BATCHES`] batches behind (or that starts behind,
//! from its cursor) reads the records it missed from the log, as `Subscribe` does, then joins
//! the live batches again. Its lag grows meanwhile and shows in `flk_feed_lag_records`.
//!
//! Correctness rests on one invariant: every record up to [`FeedHub`]'s `published` seq is
//! durable in the log and will never be broadcast again, and every record after it will be.
//! A consumer subscribes to the broadcast first, then reads from the log up to `published`;
//! whatever it then receives either continues its sequence, repeats it (skipped) or leaves a
//! gap, which is again at or below `published` and is read from the log.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use flk_outcome_log::OutcomeLog;
use flk_proto::v1;
use flk_runtime::feed::{AbortOnDrop, BatchStream, FeedSource, SharedBatch};
use futures::StreamExt as _;
use futures::future::BoxFuture;
use prost::Message as _;
use tokio::sync::{broadcast, watch};

/// Live batches kept for consumers that are momentarily slower than the fan-out.
pub const LIVE_BATCHES: usize = 512;
/// Most records per batch, live or read back from the log.
pub const BATCH_RECORDS: usize = 1024;
/// How long the fan-out lets commits accumulate after one arrives before it reads on. Under
/// load a group commit holds a handful of records; without this every one of them would be a
/// log read, a broadcast and, in every consumer, a hand-off of its own. Consumers see records
/// at most this much later.
pub const LINGER: Duration = Duration::from_millis(10);

/// A log record as the feed carries it: its `seq` (and its outcome's) set from the log's.
pub fn decode_feed(seq: u64, payload: &[u8]) -> Result<v1::FeedRecord, prost::DecodeError> {
    let mut rec = v1::FeedRecord::decode(payload)?;
    rec.seq = seq;
    if let Some(o) = rec.outcome.as_mut() {
        o.seq = seq;
    }
    Ok(rec)
}

/// The in-process fan-out of the outcome feed; hand it to consumers as a [`FeedSource`].
pub struct FeedHub {
    shared: Arc<Shared>,
    _task: AbortOnDrop,
}

struct Shared {
    log: OutcomeLog,
    live: broadcast::Sender<SharedBatch>,
    /// Every record up to here is in the log and will not be broadcast (see the module docs).
    published: AtomicU64,
    closing: watch::Receiver<bool>,
}

impl FeedHub {
    /// Starts following `log` from its current end. Consumer streams end once `closing` turns
    /// true (they resubscribe, like after a lost gRPC subscription).
    pub fn start(log: OutcomeLog, closing: watch::Receiver<bool>) -> FeedHub {
        let start = log.last_seq();
        let (live, _) = broadcast::channel(LIVE_BATCHES);
        let shared = Arc::new(Shared {
            log,
            live,
            published: AtomicU64::new(start),
            closing,
        });
        let task = tokio::spawn(follow(shared.clone(), start + 1));
        FeedHub {
            shared,
            _task: AbortOnDrop(task),
        }
    }
}

/// Reads the log as it grows, decodes once, broadcasts. Restarts after a read error (the log
/// failed and was reopened, or a record did not decode: then consumers read it from the log
/// and report it themselves).
async fn follow(shared: Arc<Shared>, mut next: u64) {
    loop {
        let mut closing = shared.closing.clone();
        let closed = Box::pin(async move {
            let _ = closing.wait_for(|c| *c).await;
        });
        let mut records = shared
            .log
            .subscribe(next)
            .ready_chunks(BATCH_RECORDS)
            .take_until(closed);
        while let Some(chunk) = records.next().await {
            let mut batch = Vec::with_capacity(chunk.len());
            let mut failed = decode_into(chunk, &mut batch);
            if !failed && batch.len() < BATCH_RECORDS {
                // Let a few commits gather, then take what one read brings: batches of about
                // `LINGER` of traffic instead of one per group commit.
                tokio::time::sleep(LINGER).await;
                while !failed && batch.len() < BATCH_RECORDS {
                    match tokio::time::timeout(Duration::ZERO, records.next()).await {
                        Ok(Some(chunk)) => failed = decode_into(chunk, &mut batch),
                        // Nothing ready yet, or the log ended: send what there is.
                        Ok(None) | Err(_) => break,
                    }
                }
            }
            if let Some(last) = batch.last() {
                let last = last.seq;
                // No receiver is fine: consumers that come later read the log first.
                let _ = shared.live.send(SharedBatch::from(batch));
                shared.published.store(last, Ordering::Release);
                next = last + 1;
            }
            if failed {
                break;
            }
        }
        // Stopping: let go of the log (this task holds a handle), so it can close.
        if *shared.closing.borrow() {
            return;
        }
        // The log failed: look again shortly.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Decodes `chunk` onto `batch`; true when a record failed (logged; the rest are dropped).
fn decode_into(
    chunk: Vec<Result<flk_outcome_log::Record, flk_outcome_log::LogError>>,
    batch: &mut Vec<v1::FeedRecord>,
) -> bool {
    for item in chunk {
        match item.map_err(|e| e.to_string()).and_then(|(seq, payload)| {
            decode_feed(seq, &payload).map_err(|e| format!("record {seq}: {e}"))
        }) {
            Ok(rec) => batch.push(rec),
            Err(e) => {
                tracing::warn!(error = %e, "the in-process outcome feed cannot read the log");
                return true;
            }
        }
    }
    false
}

impl FeedSource for FeedHub {
    fn subscribe(&self, from_seq: u64) -> BoxFuture<'static, Result<BatchStream, String>> {
        let shared = self.shared.clone();
        Box::pin(async move {
            let state = Consumer {
                live: shared.live.subscribe(),
                next: from_seq.max(1),
                history: None,
                shared: shared.clone(),
            };
            let stream = futures::stream::unfold(state, |mut state| async move {
                let item = state.next_batch().await?;
                Some((item, state))
            });
            let mut closing = shared.closing.clone();
            let closed = async move {
                let _ = closing.wait_for(|c| *c).await;
            };
            Ok(Box::pin(stream.take_until(closed)) as BatchStream)
        })
    }

    fn head(&self) -> Option<u64> {
        Some(self.shared.log.last_seq())
    }

    fn describe(&self) -> String {
        "svc-verify (in process)".to_owned()
    }
}

/// One consumer's position in the fan-out.
struct Consumer {
    shared: Arc<Shared>,
    live: broadcast::Receiver<SharedBatch>,
    next: u64,
    /// Reading missed records from the log, until `next` passes `published`.
    history: Option<futures::stream::ReadyChunks<flk_outcome_log::Subscription>>,
}

impl Consumer {
    async fn next_batch(&mut self) -> Option<Result<SharedBatch, String>> {
        loop {
            if self.next <= self.shared.published.load(Ordering::Acquire) {
                let history = self.history.get_or_insert_with(|| {
                    self.shared
                        .log
                        .subscribe(self.next)
                        .ready_chunks(BATCH_RECORDS)
                });
                let chunk = history.next().await?;
                let mut batch = Vec::with_capacity(chunk.len());
                for item in chunk {
                    let rec = item.map_err(|e| e.to_string()).and_then(|(seq, payload)| {
                        decode_feed(seq, &payload)
                            .map_err(|e| format!("outcome log record {seq} does not decode: {e}"))
                    });
                    match rec {
                        Ok(rec) => batch.push(rec),
                        // Delivered after the records before it; the consumer resubscribes.
                        Err(e) if batch.is_empty() => return Some(Err(e)),
                        Err(_) => break,
                    }
                }
                if let Some(last) = batch.last() {
                    self.next = last.seq + 1;
                    return Some(Ok(SharedBatch::from(batch)));
                }
                continue;
            }
            // Caught up with the log: live batches from here on.
            self.history = None;
            match self.live.recv().await {
                Ok(batch) => {
                    let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
                        continue;
                    };
                    if last.seq < self.next {
                        continue;
                    }
                    if first.seq > self.next {
                        // Missed some (lagged, or subscribed mid-batch): they are at or below
                        // `published` now, so the loop reads them from the log.
                        continue;
                    }
                    self.next = last.seq + 1;
                    return Some(Ok(batch));
                }
                // Fell more than LIVE_BATCHES behind: the log has what was dropped.
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}
