//! The single writer thread: group commit (one write + one fdatasync per batch), segment rotation, rollback of failed batches.

use std::fs::File;
use std::ops::RangeInclusive;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};

use crate::config::LogConfig;
use crate::error::LogError;
use crate::fault::{Faults, Step};
use crate::files::{create_segment, sync_dir, truncate};
use crate::format::{SEGMENT_HEADER_LEN, encode_record, segment_file_name};
use crate::observer::LogObserver;
use crate::recovery::WriterStart;

/// How many append calls may wait for the writer before `append` itself waits (backpressure).
pub(crate) const QUEUE_CAPACITY: usize = 8192;

/// One `append` / `append_many` call waiting for the writer.
pub(crate) struct AppendRequest {
    pub payloads: Vec<Bytes>,
    /// Bytes the payloads take once framed.
    pub frame_bytes: usize,
    pub reply: oneshot::Sender<Result<RangeInclusive<u64>, LogError>>,
}

/// The durable end of the log, published after every commit. Readers never read past it, so they
/// never see bytes of a batch that may still be rolled back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DurableMark {
    /// Highest durable seq, 0 if none.
    pub seq: u64,
    /// The segment the writer appends to.
    pub segment_first_seq: u64,
    /// Durable length of that segment (bytes before it hold complete, fsync'd records).
    pub segment_len: u64,
}

pub(crate) struct Writer {
    cfg: LogConfig,
    file: File,
    path: PathBuf,
    segment_first_seq: u64,
    /// Durable length of the current segment: where the next batch is written.
    len: u64,
    next_seq: u64,
    durable: watch::Sender<DurableMark>,
    observer: Arc<dyn LogObserver>,
    faults: Arc<Faults>,
    /// Set when a failed batch could not be rolled back; then every append gets `Unavailable`.
    failed: Arc<AtomicBool>,
    buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn new(
        cfg: LogConfig,
        start: WriterStart,
        observer: Arc<dyn LogObserver>,
        faults: Arc<Faults>,
        failed: Arc<AtomicBool>,
    ) -> (Writer, watch::Receiver<DurableMark>) {
        let mark = DurableMark {
            seq: start.next_seq - 1,
            segment_first_seq: start.segment_first_seq,
            segment_len: start.len,
        };
        let (durable, durable_rx) = watch::channel(mark);
        let writer = Writer {
            cfg,
            file: start.file,
            path: start.path,
            segment_first_seq: start.segment_first_seq,
            len: start.len,
            next_seq: start.next_seq,
            durable,
            observer,
            faults,
            failed,
            buf: Vec::new(),
        };
        (writer, durable_rx)
    }

    /// Runs until every sender is gone: takes the first waiting request, adds whatever else is
    /// already queued up to the batch limits, commits the lot, repeats.
    pub(crate) fn run(mut self, mut requests: mpsc::Receiver<AppendRequest>) {
        let mut carried: Option<AppendRequest> = None;
        loop {
            let first = match carried.take() {
                Some(request) => request,
                None => match requests.blocking_recv() {
                    Some(request) => request,
                    None => return,
                },
            };
            let mut records = first.payloads.len();
            let mut bytes = first.frame_bytes;
            let mut batch = vec![first];
            while records < self.cfg.max_batch_records && bytes < self.cfg.max_batch_bytes {
                let Ok(request) = requests.try_recv() else {
                    break;
                };
                if records + request.payloads.len() > self.cfg.max_batch_records
                    || bytes + request.frame_bytes > self.cfg.max_batch_bytes
                {
                    carried = Some(request);
                    break;
                }
                records += request.payloads.len();
                bytes += request.frame_bytes;
                batch.push(request);
            }
            self.commit(batch);
        }
    }

    /// Commits one batch and answers every request in it: all get their seqs, or all get the error.
    fn commit(&mut self, batch: Vec<AppendRequest>) {
        let result = if self.failed.load(Ordering::SeqCst) {
            Err(LogError::Unavailable)
        } else {
            self.write_batch(&batch)
        };
        match result {
            Ok(mut seq) => {
                for request in batch {
                    let last = seq + request.payloads.len() as u64 - 1;
                    // The caller may have stopped waiting; its records are durable all the same.
                    let _ = request.reply.send(Ok(seq..=last));
                    seq = last + 1;
                }
            }
            Err(error) => {
                for request in batch {
                    let _ = request.reply.send(Err(error.clone()));
                }
            }
        }
    }

    /// Frames, writes and syncs the batch; returns its first seq. On failure nothing of the batch
    /// stays in the file and no seq is used up.
    fn write_batch(&mut self, batch: &[AppendRequest]) -> Result<u64, LogError> {
        let first_seq = self.next_seq;
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let mut seq = first_seq;
        for payload in batch.iter().flat_map(|r| &r.payloads) {
            encode_record(&mut buf, seq, payload);
            seq += 1;
        }
        let records = (seq - first_seq) as usize;
        let result = self.write_framed(&buf, first_seq);
        match &result {
            Ok(write_and_fsync) => {
                self.len += buf.len() as u64;
                self.next_seq = seq;
                self.durable.send_replace(DurableMark {
                    seq: seq - 1,
                    segment_first_seq: self.segment_first_seq,
                    segment_len: self.len,
                });
                self.observer
                    .on_commit(records, buf.len(), *write_and_fsync);
            }
            Err(error) => {
                tracing::warn!(%error, records, "outcome log: batch failed, appends get an error");
                self.observer.on_failed_batch(records);
            }
        }
        // Keep the buffer for the next batch, unless one huge `append_many` blew it up.
        if buf.capacity() <= self.cfg.max_batch_bytes.saturating_mul(2) {
            self.buf = buf;
        }
        result.map(|_| first_seq)
    }

    /// Rotates if needed, then one write and one fdatasync. Rolls the segment back on failure.
    fn write_framed(
        &mut self,
        buf: &[u8],
        first_seq: u64,
    ) -> Result<std::time::Duration, LogError> {
        if self.len > SEGMENT_HEADER_LEN && self.len + buf.len() as u64 > self.cfg.segment_max_bytes
        {
            self.rotate(first_seq)?;
        }
        let started = Instant::now();
        match self.write_and_sync(buf) {
            Ok(()) => Ok(started.elapsed()),
            Err(error) => {
                self.roll_back();
                Err(error)
            }
        }
    }

    fn write_and_sync(&self, buf: &[u8]) -> Result<(), LogError> {
        if let Some(error) = self.faults.take(Step::Write) {
            // A realistic failure leaves part of the batch behind.
            let _ = self.file.write_all_at(&buf[..buf.len() / 2], self.len);
            return Err(LogError::io("write batch to", &self.path, error));
        }
        self.file
            .write_all_at(buf, self.len)
            .map_err(|e| LogError::io("write batch to", &self.path, e))?;
        if let Some(error) = self.faults.take(Step::Fsync) {
            return Err(LogError::io("fsync", &self.path, error));
        }
        if self.cfg.fsync {
            self.file
                .sync_data()
                .map_err(|e| LogError::io("fsync", &self.path, e))?;
        }
        Ok(())
    }

    /// Cuts the segment back to its durable length. If even that fails, the file may hold bytes
    /// that were never acknowledged where the next batch would go: stop taking appends.
    fn roll_back(&mut self) {
        let result = match self.faults.take(Step::Rollback) {
            Some(error) => Err(LogError::io("truncate segment", &self.path, error)),
            None => truncate(&self.file, &self.path, self.len, self.cfg.fsync),
        };
        if let Err(error) = result {
            tracing::error!(%error, "outcome log: rollback failed, log unavailable until reopened");
            self.failed.store(true, Ordering::SeqCst);
        }
    }

    /// Starts the segment whose first record is `first_seq`.
    fn rotate(&mut self, first_seq: u64) -> Result<(), LogError> {
        match create_segment(&self.cfg.dir, first_seq, self.cfg.fsync) {
            Ok((file, path)) => {
                self.file = file;
                self.path = path;
                self.segment_first_seq = first_seq;
                self.len = SEGMENT_HEADER_LEN;
                Ok(())
            }
            Err(error) => {
                // A leftover file would claim `first_seq` while the records go to the old segment.
                let path = self.cfg.dir.join(segment_file_name(first_seq));
                let cleaned = match std::fs::remove_file(&path) {
                    Ok(()) => sync_dir(&self.cfg.dir),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(LogError::io("remove", &path, e)),
                };
                if let Err(cleanup) = cleaned {
                    tracing::error!(%cleanup, "outcome log: could not remove a half-created segment, log unavailable until reopened");
                    self.failed.store(true, Ordering::SeqCst);
                }
                Err(error)
            }
        }
    }
}
