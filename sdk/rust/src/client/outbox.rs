//! The outbox: at-least-once delivery across crashes.
//!
//! A PCS is written ahead to `outbox.log` and fsync'd before anything is sent; it leaves the
//! outbox only when FLK has answered it for good. After a crash (even `SIGKILL` mid-send) the
//! next [`Outbox::open`] finds every entry not yet acknowledged and [`Outbox::deliver`] sends
//! it again; the server's dedup answers a copy that had arrived before the crash as a
//! duplicate, so each PCS is decided exactly once.
//!
//! # Files (in the outbox directory), shared by the FLK SDKs
//!
//! The layout is the Python and Go SDKs' (`sdk/testdata/outbox/` holds a log each of them
//! replays to the same state, and so do this crate's tests), so an outbox left by one SDK can
//! be drained by another:
//!
//! * `outbox.log`: JSON lines, each fsync'd before the call returns:
//!   `{"op":"put","seq":N,"body":"<the PCS JSON>"}` (written ahead),
//!   `{"op":"ack","seq":N,"status":S}` (answered for good: decided, or refused and
//!   dead-lettered), and after a compaction a first line `{"op":"seq","seq":M}` keeping the
//!   highest sequence number used, so numbers never repeat. A torn last line (a crash
//!   mid-append) is ignored and cut off at open; other unreadable lines are skipped. When
//!   acknowledgements outnumber pending entries (and at open) the log is rewritten with only
//!   the pending entries: temp file, fsync, rename, directory fsync.
//! * `dead-letter.jsonl`: one line per permanent refusal (400, 401, 403, 413...):
//!   `{"seq", "http_status", "answer", "body"}`, fsync'd before the entry is acknowledged, so
//!   nothing refused is lost silently.
//! * `outbox.lock`: `flock`ed while the outbox is open (Unix): one process at a time.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read as _, Write};
use std::path::{Path, PathBuf};
use std::string::String;
use std::vec::Vec;

use bytes::Bytes;
use serde_json::json;

use super::{Answer, AnswerClass, Client, ClientError};

const LOG: &str = "outbox.log";
const DEAD: &str = "dead-letter.jsonl";
const LOCK: &str = "outbox.lock";

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
    /// Still pending (retryable answers after the last attempt).
    pub pending: u64,
}

/// A write-ahead, fsync'd queue of PCS to deliver.
#[derive(Debug)]
pub struct Outbox {
    dir: PathBuf,
    log: File,
    /// Holds the directory's lock for as long as the outbox is open.
    _lock: File,
    pending: BTreeMap<u64, Bytes>,
    next_seq: u64,
    acked_in_log: u64,
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn line(v: serde_json::Value) -> String {
    let mut s = v.to_string();
    s.push('\n');
    s
}

impl Outbox {
    /// Opens (or creates) the outbox in `dir`, recovering every entry not acknowledged.
    /// Fails with `WouldBlock` while another process has it open.
    pub fn open(dir: impl AsRef<Path>) -> io::Result<Outbox> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK))?;
        #[cfg(unix)]
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(
            |e| {
                io::Error::new(
                    io::ErrorKind::WouldBlock,
                    std::format!("outbox {} is in use by another process: {e}", dir.display()),
                )
            },
        )?;
        let mut pending = BTreeMap::new();
        let mut next_seq = 1u64;
        let mut acked = 0u64;
        if let Ok(mut f) = File::open(dir.join(LOG)) {
            let mut data = Vec::new();
            f.read_to_end(&mut data)?;
            // What follows the last newline is a torn append; the compaction below drops it.
            let complete = match data.iter().rposition(|&b| b == b'\n') {
                Some(i) => &data[..i],
                None => &[][..],
            };
            for raw in complete.split(|&b| b == b'\n') {
                let Ok(rec) = serde_json::from_slice::<serde_json::Value>(raw) else {
                    continue; // a torn line followed by later appends
                };
                let Some(seq) = rec.get("seq").and_then(serde_json::Value::as_u64) else {
                    continue;
                };
                match rec.get("op").and_then(serde_json::Value::as_str) {
                    Some("put") => {
                        if let Some(body) = rec.get("body").and_then(serde_json::Value::as_str) {
                            pending.insert(seq, Bytes::from(body.as_bytes().to_vec()));
                        }
                    }
                    Some("ack") => {
                        pending.remove(&seq);
                        acked += 1;
                    }
                    _ => {}
                }
                next_seq = next_seq.max(seq + 1);
            }
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(LOG))?;
        let mut outbox = Outbox {
            dir,
            log,
            _lock: lock,
            pending,
            next_seq,
            acked_in_log: acked,
        };
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

    fn append(&mut self, record: &str) -> io::Result<()> {
        self.log.write_all(record.as_bytes())?;
        self.log.sync_data()
    }

    /// Writes a PCS's JSON (UTF-8) ahead, fsync'd, and returns its sequence number.
    pub fn enqueue(&mut self, body: impl Into<Bytes>) -> io::Result<u64> {
        let body = body.into();
        let text = std::str::from_utf8(&body)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "a PCS body is UTF-8 JSON"))?;
        let seq = self.next_seq;
        self.append(&line(json!({"op": "put", "seq": seq, "body": text})))?;
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

    /// The next sequence number [`Outbox::enqueue`] will use.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Records that `seq` was answered for good (fsync'd), with the answer's status when
    /// known; compacts when acknowledgements outnumber the pending entries.
    pub fn ack(&mut self, seq: u64, status: Option<u16>) -> io::Result<()> {
        if self.pending.remove(&seq).is_none() {
            return Ok(());
        }
        let rec = match status {
            Some(s) => json!({"op": "ack", "seq": seq, "status": s}),
            None => json!({"op": "ack", "seq": seq}),
        };
        self.append(&line(rec))?;
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
        let rec = line(json!({
            "seq": seq,
            "http_status": answer.http_status,
            "answer": answer.body,
            "body": String::from_utf8_lossy(body),
        }));
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dead_letter_path())?;
        f.write_all(rec.as_bytes())?;
        f.sync_data()?;
        self.ack(seq, Some(answer.http_status))
    }

    /// Rewrites the log with only the pending entries (atomic rename, fsync'd).
    pub fn compact(&mut self) -> io::Result<()> {
        let tmp = self.dir.join("outbox.log.tmp");
        {
            // The highest sequence number used survives, so numbers never repeat.
            let mut text = line(json!({"op": "seq", "seq": self.next_seq - 1}));
            for (seq, body) in &self.pending {
                let body = String::from_utf8_lossy(body);
                text.push_str(&line(json!({"op": "put", "seq": seq, "body": body})));
            }
            let mut f = File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
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
                    self.ack(entry.seq, Some(answer.http_status))?;
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
                        self.ack(e.seq, Some(a.http_status))?;
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
        o.ack(a, Some(200)).unwrap();
        drop(o);
        // A crash mid-write leaves half a record.
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join(LOG))
            .unwrap();
        f.write_all(b"{\"op\":\"put\",\"seq\":3,\"bo").unwrap();
        drop(f);
        let mut o = Outbox::open(dir.path()).unwrap();
        assert_eq!(
            o.pending(),
            [OutboxEntry {
                seq: b,
                body: Bytes::from_static(b"{\"b\":2}")
            }]
        );
        // Compacted at open: the sequence marker and the pending entry.
        let text = std::fs::read_to_string(dir.path().join(LOG)).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(text.starts_with("{\"op\":\"seq\",\"seq\":2}\n"), "{text}");
        assert_eq!(o.enqueue(&b"{}"[..]).unwrap(), 3);
        let refused = Answer::from_rest(
            400,
            serde_json::json!({"error": {"code": "malformed", "message": "m"}}),
            None,
        );
        o.dead_letter(b, &refused).unwrap();
        let dead = std::fs::read_to_string(o.dead_letter_path()).unwrap();
        assert!(dead.contains("\"http_status\":400"), "{dead}");
        assert!(dead.contains("\"code\":\"malformed\""), "{dead}");
        drop(o);
        let o = Outbox::open(dir.path()).unwrap();
        assert_eq!(o.pending().len(), 1);
        assert_eq!(o.pending()[0].seq, 3);
    }

    #[test]
    fn one_process_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let _o = Outbox::open(dir.path()).unwrap();
        // flock locks belong to the open file description: a second open conflicts even in
        // the same process.
        let e = Outbox::open(dir.path()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    }

    #[test]
    fn replays_the_shared_fixture_like_python_and_go() {
        // sdk/testdata/outbox/outbox.log: a compaction marker, puts, an ack, a torn last line.
        let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/outbox/outbox.log");
        let Ok(log) = std::fs::read(fixture) else {
            return; // the crate outside this repository
        };
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LOG), log).unwrap();
        let o = Outbox::open(dir.path()).unwrap();
        let seqs: Vec<u64> = o.pending().iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [6, 7]);
        assert_eq!(
            o.pending()[0].body,
            Bytes::from_static("{\"pcs_id\":\"six\",\"shard_id\":\"\\u00e9<&>\"}".as_bytes())
        );
        assert_eq!(o.next_seq(), 8);
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
            o.ack(*s, Some(200)).unwrap();
        }
        let text = std::fs::read_to_string(dir.path().join(LOG)).unwrap();
        assert!(
            text.lines().count() < 100,
            "log not compacted: {} lines",
            text.lines().count()
        );
        drop(o);
        let o = Outbox::open(dir.path()).unwrap();
        assert_eq!(o.len(), 10);
        assert_eq!(o.next_seq(), 101);
    }
}
