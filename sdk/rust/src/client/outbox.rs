//! The outbox: at-least-once delivery across crashes.
//!
//! A PCS is written ahead to `outbox.log` and fsync'd before anything is sent; it leaves the
//! outbox only when FLK has answered it for good. After a crash (even `SIGKILL` mid-send) the
//! next [`Outbox::open`] finds every entry not yet acknowledged and [`Outbox::deliver`] sends
//! it again; the server's dedup answers a copy that had arrived before the crash as a
//! duplicate, so each PCS is decided exactly once.
//!
//! # Files (in the outbox directory)
//!
//! * `outbox.log`: one record per line, `A <seq> <base64 of the PCS JSON>` (added) or
//!   `K <seq>` (acknowledged: decided, or refused and dead-lettered). A torn last line (a crash
//!   mid-write) is ignored and cut off at open. When acknowledged records outnumber pending
//!   ones (and at open), the log is compacted: the pending entries are written to
//!   `outbox.log.tmp`, fsync'd, renamed over the log, and the directory fsync'd.
//! * `dead-letter.ndjson`: one JSON line per permanent refusal (400, 401, 403, 413...):
//!   `{"seq", "pcs_id", "http_status", "code", "message", "pcs"}`, fsync'd before the entry is
//!   acknowledged, so nothing refused is lost silently.
//!
//! One process owns an outbox directory at a time.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::string::String;
use std::vec::Vec;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;

use super::{Answer, AnswerClass, Client, ClientError};

const LOG: &str = "outbox.log";
const DEAD: &str = "dead-letter.ndjson";

/// A pending entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    pub seq: u64,
    /// The PCS JSON exactly as it will be sent.
    pub body: Bytes,
}

/// What one [`Outbox::deliver`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    pub decided: u64,
    pub duplicates: u64,
    pub dead_lettered: u64,
    /// Still pending (retryable answers after the last attempt, or transport failures).
    pub pending: u64,
}

/// A write-ahead, fsync'd queue of PCS to deliver.
#[derive(Debug)]
pub struct Outbox {
    dir: PathBuf,
    log: File,
    pending: BTreeMap<u64, Bytes>,
    next_seq: u64,
    acked_in_log: u64,
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Outbox {
    /// Opens (or creates) the outbox in `dir`, recovering every entry not acknowledged.
    pub fn open(dir: impl AsRef<Path>) -> io::Result<Outbox> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(LOG);
        let mut pending = BTreeMap::new();
        let mut next_seq = 1u64;
        let mut acked = 0u64;
        if let Ok(f) = File::open(&path) {
            let mut reader = BufReader::new(f);
            let mut line = Vec::new();
            loop {
                line.clear();
                let n = reader.read_until(b'\n', &mut line)?;
                if n == 0 || line.last() != Some(&b'\n') {
                    break; // end, or a torn last record
                }
                let text = std::str::from_utf8(&line[..line.len() - 1]).unwrap_or("");
                let mut parts = text.split(' ');
                match (
                    parts.next(),
                    parts.next().and_then(|s| s.parse::<u64>().ok()),
                    parts.next(),
                ) {
                    (Some("A"), Some(seq), Some(b64)) => {
                        let Ok(body) = B64.decode(b64) else { break };
                        pending.insert(seq, Bytes::from(body));
                        next_seq = next_seq.max(seq + 1);
                    }
                    (Some("K"), Some(seq), None) => {
                        pending.remove(&seq);
                        acked += 1;
                        next_seq = next_seq.max(seq + 1);
                    }
                    _ => break,
                }
            }
        }
        let log = OpenOptions::new().create(true).append(true).open(&path)?;
        let mut outbox = Outbox {
            dir,
            log,
            pending,
            next_seq,
            acked_in_log: acked,
        };
        // Rewrites the log without acknowledged records and without a torn tail.
        outbox.compact()?;
        Ok(outbox)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of the dead-letter file.
    pub fn dead_letter_path(&self) -> PathBuf {
        self.dir.join(DEAD)
    }

    fn append(&mut self, record: &[u8]) -> io::Result<()> {
        self.log.write_all(record)?;
        self.log.sync_data()
    }

    /// Writes a PCS's JSON ahead (fsync'd) and returns its sequence number.
    pub fn enqueue(&mut self, body: impl Into<Bytes>) -> io::Result<u64> {
        let body = body.into();
        let seq = self.next_seq;
        let mut rec = Vec::with_capacity(body.len() * 4 / 3 + 32);
        rec.extend_from_slice(std::format!("A {seq} ").as_bytes());
        rec.extend_from_slice(B64.encode(&body).as_bytes());
        rec.push(b'\n');
        self.append(&rec)?;
        self.next_seq += 1;
        self.pending.insert(seq, body);
        Ok(seq)
    }

    /// The entries still to deliver, oldest first.
    pub fn pending(&self) -> Vec<OutboxEntry> {
        self.pending
            .iter()
            .map(|(&seq, body)| OutboxEntry {
                seq,
                body: body.clone(),
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Records that `seq` was answered for good (fsync'd); compacts when acknowledged
    /// records outnumber the pending ones.
    pub fn ack(&mut self, seq: u64) -> io::Result<()> {
        if self.pending.remove(&seq).is_none() {
            return Ok(());
        }
        self.append(std::format!("K {seq}\n").as_bytes())?;
        self.acked_in_log += 1;
        if self.acked_in_log >= 64 && self.acked_in_log > self.pending.len() as u64 {
            self.compact()?;
        }
        Ok(())
    }

    /// Moves `seq` to the dead-letter file (fsync'd), then acknowledges it.
    pub fn dead_letter(&mut self, seq: u64, answer: &Answer) -> io::Result<()> {
        let Some(body) = self.pending.get(&seq) else {
            return Ok(());
        };
        let pcs_id = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("pcs_id").and_then(|p| p.as_str()).map(String::from));
        let line = serde_json::json!({
            "seq": seq,
            "pcs_id": pcs_id,
            "http_status": answer.http_status,
            "code": answer.error_code,
            "message": answer.error_message,
            "pcs": String::from_utf8_lossy(body),
        });
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dead_letter_path())?;
        f.write_all(std::format!("{line}\n").as_bytes())?;
        f.sync_data()?;
        self.ack(seq)
    }

    /// Rewrites the log with only the pending entries (atomic rename, fsync'd).
    pub fn compact(&mut self) -> io::Result<()> {
        let tmp = self.dir.join("outbox.log.tmp");
        {
            let mut f = File::create(&tmp)?;
            let mut buf = Vec::new();
            for (seq, body) in &self.pending {
                buf.extend_from_slice(std::format!("A {seq} ").as_bytes());
                buf.extend_from_slice(B64.encode(body).as_bytes());
                buf.push(b'\n');
            }
            f.write_all(&buf)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, self.dir.join(LOG))?;
        sync_dir(&self.dir)?;
        self.log = OpenOptions::new().append(true).open(self.dir.join(LOG))?;
        self.acked_in_log = 0;
        Ok(())
    }

    /// Delivers every pending entry in order with the client's retries: decided answers
    /// (duplicates included) are acknowledged, permanent refusals dead-lettered; an entry
    /// whose retries run out stays pending and delivery stops there (order is kept).
    /// `on_answer` sees every final answer.
    pub async fn deliver(
        &mut self,
        client: &Client,
        mut on_answer: impl FnMut(u64, &Answer),
    ) -> Result<DeliveryReport, ClientError> {
        let mut report = DeliveryReport::default();
        for entry in self.pending() {
            let answer = match client.submit_json(entry.body.clone()).await {
                Ok(a) => a,
                Err(e) => return Err(e),
            };
            on_answer(entry.seq, &answer);
            match answer.class() {
                AnswerClass::Decided => {
                    self.ack(entry.seq)?;
                    report.decided += 1;
                    if answer.duplicate {
                        report.duplicates += 1;
                    }
                }
                AnswerClass::Refused => {
                    self.dead_letter(entry.seq, &answer)?;
                    report.dead_lettered += 1;
                }
                AnswerClass::Retryable => {
                    return Err(ClientError::GaveUp {
                        attempts: client.config().retry.max_attempts,
                        last: std::format!("status {}", answer.http_status),
                    });
                }
            }
        }
        report.pending = self.pending.len() as u64;
        Ok(report)
    }

    /// Like [`Outbox::deliver`], in batches of `batch` over gRPC `SubmitStream`.
    pub async fn deliver_stream(
        &mut self,
        client: &Client,
        batch: usize,
        mut on_answer: impl FnMut(u64, &Answer),
    ) -> Result<DeliveryReport, ClientError> {
        let mut report = DeliveryReport::default();
        let entries = self.pending();
        for chunk in entries.chunks(batch.max(1)) {
            let answers = client
                .submit_stream(chunk.iter().map(|e| e.body.clone()).collect())
                .await?;
            for (e, a) in chunk.iter().zip(&answers) {
                on_answer(e.seq, a);
                match a.class() {
                    AnswerClass::Decided => {
                        self.ack(e.seq)?;
                        report.decided += 1;
                        report.duplicates += u64::from(a.duplicate);
                    }
                    AnswerClass::Refused => {
                        self.dead_letter(e.seq, a)?;
                        report.dead_lettered += 1;
                    }
                    AnswerClass::Retryable => {}
                }
            }
        }
        report.pending = self.pending.len() as u64;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_pending_and_drops_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = Outbox::open(dir.path()).unwrap();
        let a = o.enqueue(&b"{\"a\":1}"[..]).unwrap();
        let b = o.enqueue(&b"{\"b\":2}"[..]).unwrap();
        o.ack(a).unwrap();
        drop(o);
        // A crash mid-write leaves half a record.
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join(LOG))
            .unwrap();
        f.write_all(b"A 3 eyJj").unwrap();
        drop(f);
        let mut o = Outbox::open(dir.path()).unwrap();
        assert_eq!(
            o.pending(),
            [OutboxEntry {
                seq: b,
                body: Bytes::from_static(b"{\"b\":2}")
            }]
        );
        // Compacted at open: only the pending entry is left.
        let text = std::fs::read_to_string(dir.path().join(LOG)).unwrap();
        assert_eq!(text.lines().count(), 1);
        assert_eq!(o.enqueue(&b"{}"[..]).unwrap(), 3);
        let refused = Answer::from_rest(
            400,
            serde_json::json!({"error": {"code": "malformed", "message": "m"}}),
            None,
        );
        o.dead_letter(b, &refused).unwrap();
        let dead = std::fs::read_to_string(o.dead_letter_path()).unwrap();
        assert!(dead.contains("\"http_status\":400"), "{dead}");
        drop(o);
        let o = Outbox::open(dir.path()).unwrap();
        assert_eq!(o.pending().len(), 1);
        assert_eq!(o.pending()[0].seq, 3);
    }

    #[test]
    fn compacts_when_acks_outnumber_pending() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = Outbox::open(dir.path()).unwrap();
        let seqs: Vec<u64> = (0..100)
            .map(|i| {
                o.enqueue(std::format!("{{\"i\":{i}}}").into_bytes())
                    .unwrap()
            })
            .collect();
        for s in &seqs[..90] {
            o.ack(*s).unwrap();
        }
        let text = std::fs::read_to_string(dir.path().join(LOG)).unwrap();
        assert!(
            text.lines().count() < 100,
            "log not compacted: {} lines",
            text.lines().count()
        );
        drop(o);
        assert_eq!(Outbox::open(dir.path()).unwrap().len(), 10);
    }
}
