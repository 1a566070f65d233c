//! svc-verify's durable write-ahead outcome log, which is also the outcome feed downstream services consume.
//!
//! PROTOCOL.md §4 step 6: an outcome is acknowledged (200/202) only once it is durably recorded.
//! This crate is that record. Records are opaque byte payloads (the caller serializes its
//! decision record); the log numbers them 1, 2, 3... with no gap, ever, and hands them back in
//! that order to anyone reading the feed.
//!
//! # API
//!
//! ```text
//! LogConfig { dir, segment_max_bytes (64 MiB), fsync (true), max_batch_records (4096),
//!             max_batch_bytes (4 MiB), open_check (AllSegments) }   LogConfig::new(dir)
//! OutcomeLog::open(cfg) -> Result<(OutcomeLog, RecoveryReport), LogError>          blocking
//! OutcomeLog::open_with_observer(cfg, Arc<dyn LogObserver>) -> same
//! OutcomeLog::append(&self, Bytes) -> Result<u64, LogError>                         async
//! OutcomeLog::append_many(&self, Vec<Bytes>) -> Result<RangeInclusive<u64>, LogError> async
//! OutcomeLog::last_seq(&self) -> u64                      highest durable seq, 0 if empty
//! OutcomeLog::read_from(&self, from_seq) -> ReadFrom      blocking Iterator<Item = Result<(u64, Bytes)>>
//! OutcomeLog::subscribe(&self, from_seq) -> Subscription  Stream<Item = Result<(u64, Bytes)>> + Send + 'static
//! OutcomeLog::is_failed(&self) -> bool                    rollback failed, reopen needed
//! verify_dir(&Path) -> Result<VerifyReport, LogError>     offline full check
//! trait LogObserver { on_commit(records, bytes, write_and_fsync); on_failed_batch(records) }
//! ```
//!
//! `OutcomeLog` is a cheap `Clone` (an `Arc`). Only one `OutcomeLog` may have a directory open;
//! the log takes no file lock, the deployment guarantees one svc-verify per data directory.
//!
//! # Write path: group commit
//!
//! `append`/`append_many` queue a request for one dedicated writer thread. The thread takes the
//! first waiting request plus every other one already queued, up to `max_batch_records` records
//! and `max_batch_bytes` framed bytes (a single bigger `append_many` goes alone), frames them
//! with consecutive seqs into one buffer, writes it with one `pwrite` at the durable end of the
//! current segment, calls `fdatasync` once, publishes the new durable end, then answers every
//! request of the batch. While it syncs, new requests queue up and form the next batch, so N
//! concurrent callers share one write + fsync. Nothing is acknowledged before the fsync.
//!
//! If the write or the fsync fails, every request of the batch gets the error, the segment is
//! truncated back to its durable length and the batch's seqs are reused by the next batch (no
//! gap). If the truncation fails too, the log is *failed*: every append answers
//! [`LogError::Unavailable`] until the log is reopened (whose recovery then cuts the tail).
//! Callers fail closed (503) on any append error.
//!
//! # Read path
//!
//! Readers read the segment files and never talk to the writer: the writer publishes its durable
//! end `(last seq, current segment, durable length)` on a `watch` channel after each commit, and
//! readers read no byte past it. A slow reader therefore never blocks appends, and never sees a
//! batch that could still be rolled back. [`OutcomeLog::subscribe`] replays history, then waits
//! on the channel for more; it follows rotation by opening the segment named after the next seq.
//! Every record read is checked (framing, CRC, seq); a bad one ends the read with
//! [`LogError::Corrupt`].
//!
//! # On-disk format (version 1)
//!
//! A log directory holds segment files named after the seq of their first record, as 20
//! zero-padded decimal digits plus `.seg`: `00000000000000000001.seg`,
//! `00000000000000004097.seg`... The first segment is seq 1 and each next one starts right after
//! the last record of the previous one. Files not ending in `.seg` are ignored; a `.seg` file
//! with any other name is an error. All integers are little-endian.
//!
//! Segment header, 24 bytes:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `FLKOLOG\0` (`46 4C 4B 4F 4C 4F 47 00`) |
//! | 8 | 2 | format version, u16 = 1 |
//! | 10 | 2 | reserved, u16 = 0 |
//! | 12 | 8 | first seq, u64 (equals the file name) |
//! | 20 | 4 | crc32c (Castagnoli) of bytes 0..20, u32 |
//!
//! Then records back to back, each framed as:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | `len`: payload length, u32, at most [`MAX_PAYLOAD_LEN`] (16 MiB) |
//! | 4 | 4 | crc32c of `seq (8 bytes LE) ++ payload`, u32 |
//! | 8 | 8 | `seq`, u64 |
//! | 16 | `len` | payload |
//!
//! A segment is closed when the next batch would grow it past `segment_max_bytes` (a batch is
//! never split across segments); the new segment file is created, its header written and
//! fsync'd, and the directory fsync'd, before the batch is written into it.
//!
//! # Recovery (`open`)
//!
//! `open` lists the segments (names, seq 1 first), checks every header, and by default
//! ([`OpenCheck::AllSegments`]) every record of every segment: framing, CRC and seq continuity
//! within and across segments. With [`OpenCheck::LastSegment`] it only checks the headers of the
//! older segments. The last segment's records are always checked. Then:
//!
//! * damage at the end of the last segment is a *torn tail*, the batch that was being written
//!   when the process died (never acknowledged): the segment is truncated to the end of its last
//!   intact record and the event returned in [`RecoveryReport::torn_tail`]. Damage is a tail
//!   when no intact record with a plausible seq starts anywhere after it;
//! * a last segment that is no longer than its header and has an invalid header is a segment
//!   creation that never completed: it is rewritten empty;
//! * anything else (damage followed by intact records, damage in an older segment, a wrong seq
//!   with a valid CRC, a gap between segments, a bad header on a segment with records) is
//!   [`LogError::Corrupt`] with the segment file and byte offset, and nothing is changed.
//!   Acknowledged data is never dropped silently.
//!
//! One consequence: after a power loss (not a process crash), a file system that persisted the
//! pages of the interrupted batch out of order can leave a hole followed by intact records of
//! that same unacknowledged batch. `open` then refuses with `Corrupt` rather than guess; an
//! operator inspects it with [`verify_dir`].
//!
//! # Failure injection (tests)
//!
//! With the cargo feature `fault-injection` (enable it from `[dev-dependencies]` only),
//! `OutcomeLog::inject_faults(Fault, count)` makes the writer's next `count` writes, fsyncs or
//! rollbacks fail, so a caller's fail-closed path can be tested.

mod config;
mod error;
mod fault;
mod files;
mod format;
mod log;
mod observer;
mod reader;
mod recovery;
mod scan;
mod verify;
mod writer;

pub use config::{LogConfig, OpenCheck};
pub use error::{CorruptReason, LogError};
#[cfg(feature = "fault-injection")]
pub use fault::Fault;
pub use format::{
    FORMAT_VERSION, MAX_PAYLOAD_LEN, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN, SEGMENT_MAGIC,
    segment_file_name,
};
pub use log::OutcomeLog;
pub use observer::LogObserver;
pub use reader::{ReadFrom, Record, Subscription};
pub use recovery::{RecoveryReport, TornTail};
pub use verify::{VerifyReport, verify_dir};
