//! Compact binary encoding of a [`DedupEntry`] (Redis values, embedded records).
//!
//! Entry, format 1: `0x01 | seq: u64 BE | digest: 32 bytes | outcome: rest`.
//! Embedded record, format 1: `0x01 | expires_at: u64 BE ms since the Unix epoch | seq | digest |
//! outcome` (the expiry travels with the entry so one read decides liveness).

use bytes::Bytes;

use crate::DedupEntry;

const FORMAT_V1: u8 = 1;
const ENTRY_HEADER: usize = 1 + 8 + 32;
const RECORD_HEADER: usize = 1 + 8 + 8 + 32;

/// Encodes an entry (format 1).
pub(crate) fn encode_entry(entry: &DedupEntry) -> Vec<u8> {
    let mut out = Vec::with_capacity(ENTRY_HEADER + entry.outcome.len());
    out.push(FORMAT_V1);
    out.extend_from_slice(&entry.seq.to_be_bytes());
    out.extend_from_slice(&entry.digest);
    out.extend_from_slice(&entry.outcome);
    out
}

/// Decodes an entry; the outcome shares `bytes`' allocation. Errors name what is wrong.
pub(crate) fn decode_entry(bytes: Bytes) -> Result<DedupEntry, String> {
    if bytes.len() < ENTRY_HEADER {
        return Err(format!(
            "value is {} bytes, shorter than the {ENTRY_HEADER}-byte header",
            bytes.len()
        ));
    }
    if bytes[0] != FORMAT_V1 {
        return Err(format!("unknown value format {}", bytes[0]));
    }
    let seq = u64_at(&bytes, 1)?;
    let digest = digest_at(&bytes, 9)?;
    Ok(DedupEntry {
        seq,
        digest,
        outcome: bytes.slice(ENTRY_HEADER..),
    })
}

/// Encodes an embedded record: entry plus absolute expiry (ms since the Unix epoch).
pub(crate) fn encode_record(expires_at_ms: u64, entry: &DedupEntry) -> Vec<u8> {
    let mut out = Vec::with_capacity(RECORD_HEADER + entry.outcome.len());
    out.push(FORMAT_V1);
    out.extend_from_slice(&expires_at_ms.to_be_bytes());
    out.extend_from_slice(&entry.seq.to_be_bytes());
    out.extend_from_slice(&entry.digest);
    out.extend_from_slice(&entry.outcome);
    out
}

/// Decodes an embedded record into `(expires_at_ms, entry)`, copying the outcome.
pub(crate) fn decode_record(bytes: &[u8]) -> Result<(u64, DedupEntry), String> {
    if bytes.len() < RECORD_HEADER {
        return Err(format!(
            "record is {} bytes, shorter than the {RECORD_HEADER}-byte header",
            bytes.len()
        ));
    }
    if bytes[0] != FORMAT_V1 {
        return Err(format!("unknown record format {}", bytes[0]));
    }
    let expires_at_ms = u64_at(bytes, 1)?;
    let seq = u64_at(bytes, 9)?;
    let digest = digest_at(bytes, 17)?;
    Ok((
        expires_at_ms,
        DedupEntry {
            seq,
            digest,
            outcome: Bytes::copy_from_slice(&bytes[RECORD_HEADER..]),
        },
    ))
}

fn u64_at(bytes: &[u8], at: usize) -> Result<u64, String> {
    bytes
        .get(at..at + 8)
        .and_then(|s| <[u8; 8]>::try_from(s).ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| format!("truncated integer at offset {at}"))
}

fn digest_at(bytes: &[u8], at: usize) -> Result<[u8; 32], String> {
    bytes
        .get(at..at + 32)
        .and_then(|s| <[u8; 32]>::try_from(s).ok())
        .ok_or_else(|| format!("truncated digest at offset {at}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> DedupEntry {
        DedupEntry {
            seq: 0x0102_0304_0506_0708,
            digest: [7; 32],
            outcome: Bytes::from_static(br#"{"outcome":"accepted"}"#),
        }
    }

    #[test]
    fn entries_round_trip() {
        let encoded = encode_entry(&entry());
        assert_eq!(encoded.len(), ENTRY_HEADER + entry().outcome.len());
        assert_eq!(decode_entry(Bytes::from(encoded)), Ok(entry()));
        let empty = DedupEntry {
            outcome: Bytes::new(),
            ..entry()
        };
        assert_eq!(decode_entry(Bytes::from(encode_entry(&empty))), Ok(empty));
    }

    #[test]
    fn records_round_trip() {
        let encoded = encode_record(u64::MAX - 1, &entry());
        assert_eq!(decode_record(&encoded), Ok((u64::MAX - 1, entry())));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for garbage in [&b""[..], b"\x01", b"\x02garbage", &[0xff; 100]] {
            assert!(decode_entry(Bytes::copy_from_slice(garbage)).is_err());
            assert!(decode_record(garbage).is_err());
        }
        let mut wrong_format = encode_entry(&entry());
        wrong_format[0] = 9;
        assert!(decode_entry(Bytes::from(wrong_format)).is_err());
        let truncated = &encode_record(1, &entry())[..RECORD_HEADER - 1];
        assert!(decode_record(truncated).is_err());
    }
}
