//! [`verify_dir`]: the offline, read-only, end-to-end check of a log directory.

use std::fs::File;
use std::path::Path;

use crate::error::{CorruptReason, LogError};
use crate::files::read_all;
use crate::recovery::{check_header, check_segment_start};
use crate::scan::{list_segments, walk_records};

/// What [`verify_dir`] counted in a healthy log directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub segments: usize,
    pub records: u64,
    /// Sum of the segment file sizes, headers included.
    pub bytes: u64,
    /// Highest seq, 0 if the log is empty.
    pub last_seq: u64,
}

/// Checks a log directory without changing it: segment names, every segment header, every
/// record's framing and checksum, and seqs running 1, 2, 3... across all segments.
///
/// Returns the first problem with its segment file and byte offset. Unlike
/// [`OutcomeLog::open`](crate::OutcomeLog::open), it does not excuse a torn tail: a directory
/// left by a crash fails here until it has been opened (and so repaired) once.
pub fn verify_dir(dir: &Path) -> Result<VerifyReport, LogError> {
    let segments = list_segments(dir)?;
    let mut report = VerifyReport {
        segments: segments.len(),
        records: 0,
        bytes: 0,
        last_seq: 0,
    };
    match segments.first() {
        Some(first) if first.first_seq != 1 => {
            return Err(LogError::corrupt(
                &first.path,
                0,
                CorruptReason::MissingStart(first.first_seq),
            ));
        }
        _ => {}
    }
    let mut next_seq = 1;
    for segment in &segments {
        check_segment_start(segment, Some(next_seq))?;
        let mut file = File::open(&segment.path)
            .map_err(|e| LogError::io("open segment", &segment.path, e))?;
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
        report.records += walk.records;
        report.bytes += data.len() as u64;
        next_seq = walk.next_seq;
    }
    report.last_seq = next_seq - 1;
    Ok(report)
}
