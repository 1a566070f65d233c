//! [`OutcomeLog`]: the cloneable handle that opens the log, queues appends for the writer thread and starts readers.

use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};

use crate::config::LogConfig;
use crate::error::LogError;
use crate::fault::Faults;
use crate::format::{MAX_PAYLOAD_LEN, frame_len};
use crate::observer::{LogObserver, NoopObserver};
use crate::reader::{Cursor, ReadFrom, Subscription};
use crate::recovery::{RecoveryReport, recover};
use crate::writer::{AppendRequest, DurableMark, QUEUE_CAPACITY, Writer};

/// Handle to an open outcome log. Clones share one writer thread; the log closes (the writer
/// finishes its batch and stops, subscriptions end) when the last clone is dropped.
#[derive(Clone)]
pub struct OutcomeLog {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    /// `None` only while dropping, so the writer sees the channel close before it is joined.
    requests: Option<mpsc::Sender<AppendRequest>>,
    durable: watch::Receiver<DurableMark>,
    failed: Arc<AtomicBool>,
    #[cfg_attr(not(feature = "fault-injection"), allow(dead_code))]
    faults: Arc<Faults>,
    writer: Option<JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.requests.take();
        if let Some(writer) = self.writer.take() {
            // Waits for at most the batch in flight, so a reopen never races the old writer.
            let _ = writer.join();
        }
    }
}

impl std::fmt::Debug for OutcomeLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutcomeLog")
            .field("dir", &self.inner.dir)
            .field("last_seq", &self.last_seq())
            .finish_non_exhaustive()
    }
}

impl OutcomeLog {
    /// Opens the log in `cfg.dir` (creating it if needed) after recovery; see the crate docs for
    /// what recovery checks and repairs. Blocking: call it before serving, or in `spawn_blocking`.
    pub fn open(cfg: LogConfig) -> Result<(OutcomeLog, RecoveryReport), LogError> {
        OutcomeLog::open_with_observer(cfg, Arc::new(NoopObserver))
    }

    /// [`open`](OutcomeLog::open), with an observer told about every batch.
    pub fn open_with_observer(
        cfg: LogConfig,
        observer: Arc<dyn LogObserver>,
    ) -> Result<(OutcomeLog, RecoveryReport), LogError> {
        cfg.validate()?;
        let (start, report) = recover(&cfg)?;
        let dir = cfg.dir.clone();
        let failed = Arc::new(AtomicBool::new(false));
        let faults = Arc::new(Faults::default());
        let (writer, durable) = Writer::new(
            cfg,
            start,
            observer,
            Arc::clone(&faults),
            Arc::clone(&failed),
        );
        let (requests, queue) = mpsc::channel(QUEUE_CAPACITY);
        let writer = std::thread::Builder::new()
            .name("flk-outcome-log".to_owned())
            .spawn(move || writer.run(queue))
            .map_err(|e| LogError::io("spawn the writer thread for", &dir, e))?;
        let inner = Inner {
            dir,
            requests: Some(requests),
            durable,
            failed,
            faults,
            writer: Some(writer),
        };
        Ok((
            OutcomeLog {
                inner: Arc::new(inner),
            },
            report,
        ))
    }

    /// Appends one record and returns its seq, once it is written and fsync'd.
    ///
    /// If the future is dropped before it resolves, the record may or may not end up in the log.
    pub async fn append(&self, payload: Bytes) -> Result<u64, LogError> {
        let seqs = self.append_many(vec![payload]).await?;
        Ok(*seqs.start())
    }

    /// Appends records with consecutive seqs in one batch (one write, one fsync) and returns
    /// their seqs once durable. Either all are acknowledged or all get the error. Like any
    /// unacknowledged write, a crash in the middle may leave a prefix of them in the log.
    pub async fn append_many(&self, payloads: Vec<Bytes>) -> Result<RangeInclusive<u64>, LogError> {
        if payloads.is_empty() {
            return Err(LogError::EmptyBatch);
        }
        if let Some(big) = payloads.iter().find(|p| p.len() > MAX_PAYLOAD_LEN) {
            return Err(LogError::PayloadTooLarge {
                len: big.len(),
                max: MAX_PAYLOAD_LEN,
            });
        }
        if self.is_failed() {
            return Err(LogError::Unavailable);
        }
        let frame_bytes = payloads.iter().map(|p| frame_len(p.len())).sum();
        let (reply, response) = oneshot::channel();
        let request = AppendRequest {
            payloads,
            frame_bytes,
            reply,
        };
        let requests = self.inner.requests.as_ref().ok_or(LogError::Closed)?;
        requests.send(request).await.map_err(|_| LogError::Closed)?;
        response.await.map_err(|_| LogError::Closed)?
    }

    /// Highest durable seq, 0 if the log is empty.
    pub fn last_seq(&self) -> u64 {
        self.inner.durable.borrow().seq
    }

    /// A failed batch could not be rolled back: appends answer `Unavailable` until the log is
    /// reopened. Meant for readiness probes.
    pub fn is_failed(&self) -> bool {
        self.inner.failed.load(Ordering::SeqCst)
    }

    /// The log directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The records with seq `>= from_seq` that are durable now (`from_seq` 0 reads like 1).
    /// Blocking iterator; see [`ReadFrom`].
    pub fn read_from(&self, from_seq: u64) -> ReadFrom {
        let mark = *self.inner.durable.borrow();
        ReadFrom::new(Cursor::new(self.inner.dir.clone(), from_seq), mark)
    }

    /// Records with seq `>= from_seq`, history first, then live as they become durable; see
    /// [`Subscription`]. A consumer that restarts from its last seen seq + 1 misses nothing and
    /// sees nothing twice.
    pub fn subscribe(&self, from_seq: u64) -> Subscription {
        Subscription::new(
            Cursor::new(self.inner.dir.clone(), from_seq),
            self.inner.durable.clone(),
        )
    }

    /// Test hook: the next `count` writer steps of kind `fault` fail (see [`Fault`](crate::Fault)).
    #[cfg(feature = "fault-injection")]
    pub fn inject_faults(&self, fault: crate::Fault, count: u32) {
        self.inner.faults.inject(fault, count);
    }
}
