//! Walks the records of one segment held in memory, and lists a directory's segments (shared by recovery and `verify_dir`).

use std::path::{Path, PathBuf};

use crate::error::{CorruptReason, LogError};
use crate::format::{
    RECORD_HEADER_LEN, SEGMENT_HEADER_LEN, SegmentName, decode_record, parse_segment_file_name,
};

/// A segment file found in the log directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentFile {
    pub first_seq: u64,
    pub path: PathBuf,
}

/// The log's segments sorted by first seq. A `.seg` file with a malformed name is an error.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<SegmentFile>, LogError> {
    let entries = std::fs::read_dir(dir).map_err(|e| LogError::io("list", dir, e))?;
    let mut segments = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| LogError::io("list", dir, e))?;
        let name = entry.file_name();
        let parsed = match name.to_str() {
            Some(name) => parse_segment_file_name(name),
            // A non-UTF-8 name cannot be ours unless it pretends to be.
            None if name.as_encoded_bytes().ends_with(b".seg") => SegmentName::Malformed,
            None => SegmentName::Other,
        };
        match parsed {
            SegmentName::Other => {}
            SegmentName::Malformed => {
                return Err(LogError::corrupt(
                    entry.path(),
                    0,
                    CorruptReason::BadFileName,
                ));
            }
            SegmentName::Segment(first_seq) => segments.push(SegmentFile {
                first_seq,
                path: entry.path(),
            }),
        }
    }
    segments.sort_by_key(|s| s.first_seq);
    Ok(segments)
}

/// Where a walk over a segment's records stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RecordWalk {
    /// Seq the next record would carry.
    pub next_seq: u64,
    /// Records that passed every check.
    pub records: u64,
    /// Byte offset just past the last good record.
    pub valid_end: u64,
    pub damage: Option<Damage>,
}

/// The first bad frame of a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Damage {
    pub offset: u64,
    pub reason: CorruptReason,
    /// The frame's length and checksum are fine but its seq is wrong: a torn write cannot
    /// produce that, so it is never repaired.
    pub frame_intact: bool,
}

/// Checks every record after the segment header: framing, checksum, and seqs counting up from
/// `first_seq`. Stops at the first bad frame.
pub(crate) fn walk_records(data: &[u8], first_seq: u64) -> RecordWalk {
    let mut walk = RecordWalk {
        next_seq: first_seq,
        records: 0,
        valid_end: SEGMENT_HEADER_LEN,
        damage: None,
    };
    let mut pos = SEGMENT_HEADER_LEN as usize;
    while pos < data.len() {
        match decode_record(&data[pos..]) {
            Ok(frame) if frame.seq == walk.next_seq => {
                pos += frame.len();
                walk.next_seq = walk.next_seq.saturating_add(1);
                walk.records += 1;
                walk.valid_end = pos as u64;
            }
            Ok(frame) => {
                walk.damage = Some(Damage {
                    offset: pos as u64,
                    reason: CorruptReason::UnexpectedSeq {
                        expected: walk.next_seq,
                        found: frame.seq,
                    },
                    frame_intact: true,
                });
                break;
            }
            Err(reason) => {
                walk.damage = Some(Damage {
                    offset: pos as u64,
                    reason,
                    frame_intact: false,
                });
                break;
            }
        }
    }
    walk
}

/// Does an intact record with a plausible seq (`>= next_seq`) start anywhere after `damage_offset`?
///
/// This separates a torn tail (the last, partly written batch: nothing intact follows it) from
/// damage in the middle of acknowledged data, which recovery must not cut away.
pub(crate) fn intact_record_after(data: &[u8], damage_offset: u64, next_seq: u64) -> bool {
    let start = usize::try_from(damage_offset)
        .unwrap_or(usize::MAX)
        .saturating_add(1);
    let end = data.len().saturating_sub(RECORD_HEADER_LEN);
    // Every record takes at least a frame header, which bounds the seqs that could still follow.
    let max_seq = next_seq.saturating_add((data.len() / RECORD_HEADER_LEN) as u64);
    (start..=end).any(|pos| {
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&data[pos + 8..pos + 16]);
        let seq = u64::from_le_bytes(seq);
        (next_seq..=max_seq).contains(&seq) && decode_record(&data[pos..]).is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{encode_record, encode_segment_header, frame_len};

    fn segment(first_seq: u64, payloads: &[&[u8]]) -> Vec<u8> {
        let mut data = encode_segment_header(first_seq).to_vec();
        for (i, p) in payloads.iter().enumerate() {
            encode_record(&mut data, first_seq + i as u64, p);
        }
        data
    }

    #[test]
    fn clean_segment_walks_to_the_end() {
        let data = segment(3, &[b"a", b"bb", b""]);
        let walk = walk_records(&data, 3);
        assert_eq!(walk.next_seq, 6);
        assert_eq!(walk.records, 3);
        assert_eq!(walk.valid_end, data.len() as u64);
        assert_eq!(walk.damage, None);
    }

    #[test]
    fn torn_last_record_is_damage_with_nothing_intact_after() {
        let data = segment(1, &[b"first", b"second"]);
        let torn = &data[..data.len() - 2];
        let walk = walk_records(torn, 1);
        let damage = walk.damage.expect("damage");
        let second_at = SEGMENT_HEADER_LEN + frame_len(5) as u64;
        assert_eq!(damage.offset, second_at);
        assert_eq!(damage.reason, CorruptReason::TruncatedRecord);
        assert!(!intact_record_after(torn, damage.offset, walk.next_seq));
    }

    #[test]
    fn damage_followed_by_an_intact_record_is_detected() {
        let mut data = segment(1, &[b"first", b"second", b"third"]);
        let second_at = SEGMENT_HEADER_LEN as usize + frame_len(5);
        data[second_at + RECORD_HEADER_LEN] ^= 0xff;
        let walk = walk_records(&data, 1);
        let damage = walk.damage.expect("damage");
        assert_eq!(damage.offset, second_at as u64);
        assert_eq!(damage.reason, CorruptReason::Checksum);
        assert!(intact_record_after(&data, damage.offset, walk.next_seq));
    }

    #[test]
    fn wrong_seq_is_intact_damage() {
        let mut data = encode_segment_header(1).to_vec();
        encode_record(&mut data, 1, b"x");
        encode_record(&mut data, 3, b"y");
        let damage = walk_records(&data, 1).damage.expect("damage");
        assert!(damage.frame_intact);
        assert_eq!(
            damage.reason,
            CorruptReason::UnexpectedSeq {
                expected: 2,
                found: 3
            }
        );
    }
}
