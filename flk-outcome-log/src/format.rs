//! The on-disk format, byte for byte: segment names, the segment header and record frames (pure code, no I/O).

use crate::error::CorruptReason;

/// First 8 bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"FLKOLOG\0";
/// Format version written in the segment header.
pub const FORMAT_VERSION: u16 = 1;
/// Segment header: magic (8) | version u16 LE (2) | reserved u16 = 0 (2) | first seq u64 LE (8) |
/// crc32c u32 LE of the previous 20 bytes (4).
pub const SEGMENT_HEADER_LEN: u64 = 24;
/// Record frame header: payload len u32 LE | crc32c u32 LE of (seq LE ++ payload) | seq u64 LE.
pub const RECORD_HEADER_LEN: usize = 16;
/// Largest payload the log accepts. Readers reject bigger lengths as corruption, so a damaged
/// length field never turns into a huge allocation.
pub const MAX_PAYLOAD_LEN: usize = 16 * 1024 * 1024;
// The record length field is a u32.
const _: () = assert!(MAX_PAYLOAD_LEN <= u32::MAX as usize);
/// Segment files end with this suffix.
pub const SEGMENT_SUFFIX: &str = ".seg";
const SEGMENT_NAME_DIGITS: usize = 20;

/// `00000000000000000001.seg` for the segment whose first record is seq 1.
pub fn segment_file_name(first_seq: u64) -> String {
    format!(
        "{first_seq:0width$}{SEGMENT_SUFFIX}",
        width = SEGMENT_NAME_DIGITS
    )
}

/// What a directory entry's name says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SegmentName {
    /// Not a `.seg` file: not part of the log.
    Other,
    /// Ends with `.seg` but is not 20 decimal digits: an error, the log owns that suffix.
    Malformed,
    Segment(u64),
}

pub(crate) fn parse_segment_file_name(name: &str) -> SegmentName {
    let Some(stem) = name.strip_suffix(SEGMENT_SUFFIX) else {
        return SegmentName::Other;
    };
    if stem.len() != SEGMENT_NAME_DIGITS || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return SegmentName::Malformed;
    }
    match stem.parse::<u64>() {
        Ok(seq) if seq >= 1 => SegmentName::Segment(seq),
        _ => SegmentName::Malformed,
    }
}

pub(crate) fn encode_segment_header(first_seq: u64) -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut header = [0u8; SEGMENT_HEADER_LEN as usize];
    header[0..8].copy_from_slice(&SEGMENT_MAGIC);
    header[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    // bytes 10..12 stay zero (reserved)
    header[12..20].copy_from_slice(&first_seq.to_le_bytes());
    let crc = crc32c::crc32c(&header[0..20]);
    header[20..24].copy_from_slice(&crc.to_le_bytes());
    header
}

/// Checks a segment header and returns the first seq it declares.
pub(crate) fn decode_segment_header(bytes: &[u8]) -> Result<u64, CorruptReason> {
    let Some(header) = bytes.get(..SEGMENT_HEADER_LEN as usize) else {
        return Err(CorruptReason::ShortHeader {
            expected: SEGMENT_HEADER_LEN,
        });
    };
    if header[0..8] != SEGMENT_MAGIC {
        return Err(CorruptReason::BadMagic);
    }
    let stored_crc = u32::from_le_bytes(le_array(&header[20..24]));
    if crc32c::crc32c(&header[0..20]) != stored_crc {
        return Err(CorruptReason::HeaderChecksum);
    }
    let version = u16::from_le_bytes(le_array(&header[8..10]));
    if version != FORMAT_VERSION || header[10..12] != [0, 0] {
        return Err(CorruptReason::UnsupportedVersion(version));
    }
    Ok(u64::from_le_bytes(le_array(&header[12..20])))
}

/// Bytes one record takes on disk.
pub(crate) fn frame_len(payload_len: usize) -> usize {
    RECORD_HEADER_LEN + payload_len
}

pub(crate) fn record_crc(seq: u64, payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&seq.to_le_bytes()), payload)
}

/// Appends one framed record to `buf`. The caller has checked `payload.len() <= MAX_PAYLOAD_LEN`.
pub(crate) fn encode_record(buf: &mut Vec<u8>, seq: u64, payload: &[u8]) {
    debug_assert!(payload.len() <= MAX_PAYLOAD_LEN);
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&record_crc(seq, payload).to_le_bytes());
    buf.extend_from_slice(&seq.to_le_bytes());
    buf.extend_from_slice(payload);
}

/// One intact record frame found at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Frame {
    pub seq: u64,
    pub payload_len: usize,
}

impl Frame {
    pub fn len(&self) -> usize {
        frame_len(self.payload_len)
    }

    /// Where the payload sits relative to the frame start.
    pub fn payload_range(&self) -> std::ops::Range<usize> {
        RECORD_HEADER_LEN..RECORD_HEADER_LEN + self.payload_len
    }
}

/// Decodes the frame at the start of `buf` (which runs to the end of the readable bytes).
/// Checks length and checksum; the caller checks the seq.
pub(crate) fn decode_record(buf: &[u8]) -> Result<Frame, CorruptReason> {
    let Some(header) = buf.get(..RECORD_HEADER_LEN) else {
        return Err(CorruptReason::TruncatedRecord);
    };
    let len_field = u32::from_le_bytes(le_array(&header[0..4]));
    let stored_crc = u32::from_le_bytes(le_array(&header[4..8]));
    let seq = u64::from_le_bytes(le_array(&header[8..16]));
    let payload_len = usize::try_from(len_field).unwrap_or(usize::MAX);
    if payload_len > MAX_PAYLOAD_LEN {
        return Err(CorruptReason::BadLength(len_field));
    }
    let Some(payload) = buf.get(RECORD_HEADER_LEN..RECORD_HEADER_LEN + payload_len) else {
        return Err(CorruptReason::TruncatedRecord);
    };
    if record_crc(seq, payload) != stored_crc {
        return Err(CorruptReason::Checksum);
    }
    Ok(Frame { seq, payload_len })
}

/// Copies a slice whose length the caller sliced to `N` into an array.
fn le_array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(bytes);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_are_zero_padded_and_round_trip() {
        assert_eq!(segment_file_name(1), "00000000000000000001.seg");
        assert_eq!(
            parse_segment_file_name("00000000000000000042.seg"),
            SegmentName::Segment(42)
        );
        assert_eq!(parse_segment_file_name("42.seg"), SegmentName::Malformed);
        assert_eq!(
            parse_segment_file_name("00000000000000000000.seg"),
            SegmentName::Malformed
        );
        assert_eq!(
            parse_segment_file_name("0000000000000000004x.seg"),
            SegmentName::Malformed
        );
        assert_eq!(parse_segment_file_name("notes.txt"), SegmentName::Other);
    }

    #[test]
    fn header_round_trips_and_rejects_damage() {
        let header = encode_segment_header(7);
        assert_eq!(decode_segment_header(&header), Ok(7));
        assert_eq!(
            decode_segment_header(&header[..10]),
            Err(CorruptReason::ShortHeader {
                expected: SEGMENT_HEADER_LEN
            })
        );
        let mut bad = header;
        bad[0] ^= 1;
        assert_eq!(decode_segment_header(&bad), Err(CorruptReason::BadMagic));
        let mut bad = header;
        bad[13] ^= 1;
        assert_eq!(
            decode_segment_header(&bad),
            Err(CorruptReason::HeaderChecksum)
        );
    }

    #[test]
    fn record_layout_is_len_crc_seq_payload() {
        let mut buf = Vec::new();
        encode_record(&mut buf, 5, b"abc");
        assert_eq!(buf.len(), frame_len(3));
        assert_eq!(&buf[0..4], &3u32.to_le_bytes());
        assert_eq!(&buf[4..8], &record_crc(5, b"abc").to_le_bytes());
        assert_eq!(&buf[8..16], &5u64.to_le_bytes());
        assert_eq!(&buf[16..], b"abc");
        assert_eq!(
            decode_record(&buf),
            Ok(Frame {
                seq: 5,
                payload_len: 3
            })
        );
    }

    #[test]
    fn damaged_records_are_rejected_not_panicked_on() {
        let mut buf = Vec::new();
        encode_record(&mut buf, 9, b"payload");
        for cut in 0..buf.len() {
            assert_eq!(
                decode_record(&buf[..cut]),
                Err(CorruptReason::TruncatedRecord)
            );
        }
        for i in 4..buf.len() {
            let mut flipped = buf.clone();
            flipped[i] ^= 0x10;
            assert_eq!(decode_record(&flipped), Err(CorruptReason::Checksum));
        }
        let mut huge = buf.clone();
        huge[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            decode_record(&huge),
            Err(CorruptReason::BadLength(u32::MAX))
        );
    }
}
