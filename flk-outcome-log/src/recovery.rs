//! Opening a log directory: checks what is on disk, cuts a torn tail off the last segment, and finds where the writer resumes.

use std::fs::File;
use std::io::Read;
use std::path::PathBuf;

use crate::config::{LogConfig, OpenCheck};
use crate::error::{CorruptReason, LogError};
use crate::files::{create_segment, open_segment_rw, read_all, truncate};
use crate::format::{SEGMENT_HEADER_LEN, decode_segment_header};
use crate::scan::{SegmentFile, intact_record_after, list_segments, walk_records};

/// What `open` found and repaired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The directory held no segment: a new log was started.
    pub created: bool,
    /// Segment files in the log after recovery.
    pub segments: usize,
    /// Records whose framing and checksum `open` checked.
    pub records_checked: u64,
    /// Highest seq in the log, 0 if empty.
    pub last_seq: u64,
    /// The unfinished write cut off the end of the last segment, if any.
    pub torn_tail: Option<TornTail>,
}

/// A torn (never acknowledged) tail removed from the last segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    pub segment: PathBuf,
    /// Where the segment now ends (0 when its header itself was torn and has been rewritten).
    pub offset: u64,
    pub bytes_removed: u64,
    /// What was wrong with the first removed byte.
    pub reason: CorruptReason,
}

/// Where the writer resumes.
#[derive(Debug)]
pub(crate) struct WriterStart {
    pub file: File,
    pub path: PathBuf,
    pub segment_first_seq: u64,
    /// Bytes of the segment that hold complete records (the header included).
    pub len: u64,
    pub next_seq: u64,
}

pub(crate) fn recover(cfg: &LogConfig) -> Result<(WriterStart, RecoveryReport), LogError> {
    std::fs::create_dir_all(&cfg.dir).map_err(|e| LogError::io("create", &cfg.dir, e))?;
    let segments = list_segments(&cfg.dir)?;
    let Some((last, sealed)) = segments.split_last() else {
        let (file, path) = create_segment(&cfg.dir, 1, cfg.fsync)?;
        let start = WriterStart {
            file,
            path,
            segment_first_seq: 1,
            len: SEGMENT_HEADER_LEN,
            next_seq: 1,
        };
        let report = RecoveryReport {
            created: true,
            segments: 1,
            records_checked: 0,
            last_seq: 0,
            torn_tail: None,
        };
        return Ok((start, report));
    };
    let first = segments.first().unwrap_or(last);
    if first.first_seq != 1 {
        return Err(LogError::corrupt(
            &first.path,
            0,
            CorruptReason::MissingStart(first.first_seq),
        ));
    }

    let mut records_checked = 0;
    // Seq the next segment must start with; unknown when older segments are not walked.
    let mut expected_first = Some(1);
    for segment in sealed {
        check_segment_start(segment, expected_first)?;
        let mut file = File::open(&segment.path)
            .map_err(|e| LogError::io("open segment", &segment.path, e))?;
        expected_first = match cfg.open_check {
            OpenCheck::AllSegments => {
                let data = read_all(&mut file, &segment.path)?;
                check_header(segment, &data)?;
                let walk = walk_records(&data, segment.first_seq);
                if let Some(damage) = walk.damage {
                    return Err(LogError::corrupt(
                        &segment.path,
                        damage.offset,
                        damage.reason,
                    ));
                }
                records_checked += walk.records;
                Some(walk.next_seq)
            }
            OpenCheck::LastSegment => {
                let mut header = Vec::new();
                file.take(SEGMENT_HEADER_LEN)
                    .read_to_end(&mut header)
                    .map_err(|e| LogError::io("read segment", &segment.path, e))?;
                check_header(segment, &header)?;
                None
            }
        };
    }

    check_segment_start(last, expected_first)?;
    let mut file = open_segment_rw(&last.path)?;
    let data = read_all(&mut file, &last.path)?;
    if let Err(reason) = decode_segment_header(&data) {
        // The header is written and synced before any record: a bad header with no bytes after
        // it is a segment creation that never completed, anything more is damage.
        if data.len() as u64 > SEGMENT_HEADER_LEN {
            return Err(LogError::corrupt(&last.path, 0, reason));
        }
        let (file, path) = create_segment(&cfg.dir, last.first_seq, cfg.fsync)?;
        tracing::warn!(segment = %path.display(), %reason, "outcome log: rewrote a torn segment header");
        let start = WriterStart {
            file,
            path: path.clone(),
            segment_first_seq: last.first_seq,
            len: SEGMENT_HEADER_LEN,
            next_seq: last.first_seq,
        };
        let report = RecoveryReport {
            created: false,
            segments: segments.len(),
            records_checked,
            last_seq: last.first_seq - 1,
            torn_tail: Some(TornTail {
                segment: path,
                offset: 0,
                bytes_removed: data.len() as u64,
                reason,
            }),
        };
        return Ok((start, report));
    }
    check_header(last, &data)?;

    let walk = walk_records(&data, last.first_seq);
    records_checked += walk.records;
    let mut torn_tail = None;
    if let Some(damage) = walk.damage {
        if damage.frame_intact || intact_record_after(&data, damage.offset, walk.next_seq) {
            return Err(LogError::corrupt(&last.path, damage.offset, damage.reason));
        }
        truncate(&file, &last.path, walk.valid_end, cfg.fsync)?;
        let tail = TornTail {
            segment: last.path.clone(),
            offset: walk.valid_end,
            bytes_removed: data.len() as u64 - walk.valid_end,
            reason: damage.reason,
        };
        tracing::warn!(
            segment = %tail.segment.display(),
            offset = tail.offset,
            bytes_removed = tail.bytes_removed,
            reason = %tail.reason,
            "outcome log: truncated a torn tail"
        );
        torn_tail = Some(tail);
    }
    let start = WriterStart {
        file,
        path: last.path.clone(),
        segment_first_seq: last.first_seq,
        len: walk.valid_end,
        next_seq: walk.next_seq,
    };
    let report = RecoveryReport {
        created: false,
        segments: segments.len(),
        records_checked,
        last_seq: walk.next_seq - 1,
        torn_tail,
    };
    Ok((start, report))
}

/// The segment's header is valid and agrees with its file name.
pub(crate) fn check_header(segment: &SegmentFile, data: &[u8]) -> Result<(), LogError> {
    let header_seq =
        decode_segment_header(data).map_err(|r| LogError::corrupt(&segment.path, 0, r))?;
    if header_seq != segment.first_seq {
        return Err(LogError::corrupt(
            &segment.path,
            0,
            CorruptReason::FirstSeqMismatch {
                name: segment.first_seq,
                header: header_seq,
            },
        ));
    }
    Ok(())
}

/// The segment starts right after the previous one ended (when that end is known).
pub(crate) fn check_segment_start(
    segment: &SegmentFile,
    expected_first: Option<u64>,
) -> Result<(), LogError> {
    match expected_first {
        Some(expected) if expected != segment.first_seq => Err(LogError::corrupt(
            &segment.path,
            0,
            CorruptReason::SegmentGap {
                previous_last: expected - 1,
                found: segment.first_seq,
            },
        )),
        _ => Ok(()),
    }
}
