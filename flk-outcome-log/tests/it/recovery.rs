//! Recovery on open: torn tails are cut exactly, damage anywhere else is reported with segment and offset.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use flk_outcome_log::{
    CorruptReason, LogConfig, LogError, OpenCheck, OutcomeLog, RECORD_HEADER_LEN,
    SEGMENT_HEADER_LEN, segment_file_name, verify_dir,
};

use crate::common::{append_range, config, frame_offsets, payload, read_all, segments};

/// A closed log of `records` records spread over several small segments.
async fn closed_log(dir: &Path, records: u64) -> LogConfig {
    let mut cfg = config(dir);
    cfg.segment_max_bytes = 600;
    let (log, _) = OutcomeLog::open(cfg.clone()).expect("open");
    append_range(&log, 1..=records).await;
    cfg
}

fn last_segment(cfg: &LogConfig) -> PathBuf {
    segments(&cfg.dir).pop().expect("a segment")
}

fn set_len(path: &Path, len: u64) {
    OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| f.set_len(len))
        .expect("set_len");
}

fn flip_byte(path: &Path, offset: u64) {
    let mut data = std::fs::read(path).expect("read");
    data[offset as usize] ^= 0x5a;
    std::fs::write(path, data).expect("write");
}

/// Number of records in a segment file.
fn records_in(path: &Path) -> u64 {
    frame_offsets(path).len() as u64 - 1
}

/// Opens the damaged log and checks that exactly the records before `kept_up_to` survive, the
/// torn tail starts at `tail_offset`, and appends continue right after.
async fn assert_recovers_to(cfg: &LogConfig, kept_up_to: u64, tail_offset: u64) {
    let segment = last_segment(cfg);
    let len_before = std::fs::metadata(&segment).expect("metadata").len();
    let (log, report) = OutcomeLog::open(cfg.clone()).expect("open");
    let tail = report.torn_tail.expect("a torn tail");
    assert_eq!(tail.segment, segment);
    assert_eq!(tail.offset, tail_offset);
    assert_eq!(tail.bytes_removed, len_before - tail_offset);
    assert_eq!(
        std::fs::metadata(&segment).expect("metadata").len(),
        tail_offset
    );
    assert_eq!(report.last_seq, kept_up_to);
    assert_eq!(log.last_seq(), kept_up_to);
    assert_eq!(
        read_all(&log, 1),
        (1..=kept_up_to)
            .map(|i| (i, payload(i)))
            .collect::<Vec<_>>()
    );
    append_range(&log, kept_up_to + 1..=kept_up_to + 3).await;
    drop(log);
    assert_eq!(
        verify_dir(&cfg.dir).expect("verify").last_seq,
        kept_up_to + 3
    );
}

#[tokio::test]
async fn record_cut_in_the_middle_is_truncated() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = closed_log(tmp.path(), 40).await;
    let offsets = frame_offsets(&last_segment(&cfg));
    let last_frame = offsets[offsets.len() - 2];
    set_len(
        &last_segment(&cfg),
        last_frame + RECORD_HEADER_LEN as u64 + 2,
    );
    assert!(matches!(
        verify_dir(&cfg.dir),
        Err(LogError::Corrupt { reason: CorruptReason::TruncatedRecord, offset, .. }) if offset == last_frame
    ));
    assert_recovers_to(&cfg, 39, last_frame).await;
}

#[tokio::test]
async fn record_header_cut_short_is_truncated() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = closed_log(tmp.path(), 40).await;
    let offsets = frame_offsets(&last_segment(&cfg));
    let last_frame = offsets[offsets.len() - 2];
    set_len(&last_segment(&cfg), last_frame + 5);
    assert_recovers_to(&cfg, 39, last_frame).await;
}

#[tokio::test]
async fn garbage_after_the_last_record_is_truncated() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = closed_log(tmp.path(), 40).await;
    let segment = last_segment(&cfg);
    let end = std::fs::metadata(&segment).expect("metadata").len();
    let mut file = OpenOptions::new()
        .append(true)
        .open(&segment)
        .expect("open");
    file.write_all(b"\x07\x00\x00\x00garbage that is not a record at all")
        .expect("write");
    drop(file);
    assert_recovers_to(&cfg, 40, end).await;
}

#[tokio::test]
async fn flipped_byte_in_the_last_record_drops_only_that_record() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = closed_log(tmp.path(), 40).await;
    let offsets = frame_offsets(&last_segment(&cfg));
    let last_frame = offsets[offsets.len() - 2];
    flip_byte(
        &last_segment(&cfg),
        last_frame + RECORD_HEADER_LEN as u64 + 1,
    );
    assert_recovers_to(&cfg, 39, last_frame).await;
}

#[tokio::test]
async fn torn_header_of_a_new_segment_is_rewritten() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = closed_log(tmp.path(), 40).await;
    // A crash while creating segment 41: the file exists, its header is incomplete.
    let path = cfg.dir.join(segment_file_name(41));
    std::fs::write(&path, b"FLKO").expect("write");
    let (log, report) = OutcomeLog::open(cfg.clone()).expect("open");
    let tail = report.torn_tail.expect("torn header");
    assert_eq!(
        (tail.segment, tail.offset, tail.bytes_removed),
        (path.clone(), 0, 4)
    );
    assert_eq!(report.last_seq, 40);
    assert_eq!(
        std::fs::metadata(&path).expect("metadata").len(),
        SEGMENT_HEADER_LEN
    );
    append_range(&log, 41..=42).await;
    drop(log);
    assert_eq!(verify_dir(&cfg.dir).expect("verify").last_seq, 42);
}

/// Damage in the middle of acknowledged data: open and verify_dir both refuse with the segment
/// and offset, and the directory is left as it was.
fn assert_refused(cfg: &LogConfig, segment: &Path, offset: u64, reason: CorruptReason) {
    let before: Vec<_> = segments(&cfg.dir)
        .iter()
        .map(|s| std::fs::read(s).expect("read"))
        .collect();
    for result in [
        OutcomeLog::open(cfg.clone()).map(|_| ()),
        verify_dir(&cfg.dir).map(|_| ()),
    ] {
        match result {
            Err(LogError::Corrupt {
                segment: s,
                offset: o,
                reason: r,
            }) => {
                assert_eq!((s.as_path(), o, &r), (segment, offset, &reason));
            }
            other => panic!("expected corruption, got {other:?}"),
        }
    }
    let after: Vec<_> = segments(&cfg.dir)
        .iter()
        .map(|s| std::fs::read(s).expect("read"))
        .collect();
    assert!(before == after, "a refused open changed the log");
}

#[tokio::test]
async fn flipped_payload_byte_in_an_older_segment_is_reported() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = closed_log(tmp.path(), 40).await;
    let segment = segments(&cfg.dir)[1].clone();
    let offsets = frame_offsets(&segment);
    let damaged = offsets[2];
    flip_byte(&segment, damaged + RECORD_HEADER_LEN as u64);
    assert_refused(&cfg, &segment, damaged, CorruptReason::Checksum);
}

#[tokio::test]
async fn damaged_length_in_an_older_segment_is_reported() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = closed_log(tmp.path(), 40).await;
    let segment = segments(&cfg.dir)[0].clone();
    let damaged = frame_offsets(&segment)[1];
    flip_byte(&segment, damaged + 3);
    assert_refused(
        &cfg,
        &segment,
        damaged,
        CorruptReason::BadLength(u32::from_le_bytes(
            std::fs::read(&segment).expect("read")[damaged as usize..damaged as usize + 4]
                .try_into()
                .expect("len"),
        )),
    );
}

#[tokio::test]
async fn damage_followed_by_intact_records_in_the_last_segment_is_reported() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // One segment: the last one.
    let cfg = config(tmp.path());
    let (log, _) = OutcomeLog::open(cfg.clone()).expect("open");
    append_range(&log, 1..=10).await;
    drop(log);
    let segment = last_segment(&cfg);
    assert_eq!(records_in(&segment), 10);
    let damaged = frame_offsets(&segment)[0];
    flip_byte(&segment, damaged + RECORD_HEADER_LEN as u64);
    assert_refused(&cfg, &segment, damaged, CorruptReason::Checksum);
}

#[tokio::test]
async fn missing_middle_segment_is_a_gap() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = closed_log(tmp.path(), 40).await;
    let files = segments(&cfg.dir);
    std::fs::remove_file(&files[1]).expect("remove");
    let previous_last = records_in(&files[0]);
    let found = {
        let name = files[2].file_name().and_then(|n| n.to_str()).expect("name");
        name[..20].parse::<u64>().expect("seq")
    };
    assert_refused(
        &cfg,
        &files[2],
        0,
        CorruptReason::SegmentGap {
            previous_last,
            found,
        },
    );
}

#[tokio::test]
async fn malformed_segment_name_is_refused_and_other_files_ignored() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = closed_log(tmp.path(), 5).await;
    std::fs::write(cfg.dir.join("README.txt"), b"not part of the log").expect("write");
    verify_dir(&cfg.dir).expect("other files are ignored");
    let bad = cfg.dir.join("7.seg");
    std::fs::write(&bad, b"").expect("write");
    assert_refused(&cfg, &bad, 0, CorruptReason::BadFileName);
}

#[tokio::test]
async fn last_segment_check_leaves_older_damage_to_readers() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut cfg = closed_log(tmp.path(), 40).await;
    let segment = segments(&cfg.dir)[0].clone();
    let damaged = frame_offsets(&segment)[1];
    flip_byte(&segment, damaged + RECORD_HEADER_LEN as u64);
    cfg.open_check = OpenCheck::LastSegment;
    let (log, report) = OutcomeLog::open(cfg).expect("cheap open accepts the log");
    assert_eq!(report.last_seq, 40);
    let read: Vec<_> = log.read_from(1).collect();
    assert_eq!(read.len(), 2, "one good record, then the error");
    assert!(matches!(
        &read[1],
        Err(LogError::Corrupt { segment: s, offset, reason: CorruptReason::Checksum }) if *s == segment && *offset == damaged
    ));
}
