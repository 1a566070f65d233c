//! The audit entry: one verification decision, and its deterministic byte encoding.
//!
//! The log itself stores opaque entries; svc-audit logs [`AuditEntry::encode`] bytes so that an
//! auditor holding only the log can decode every decision. The encoding is canonical:
//! [`AuditEntry::decode`] accepts exactly the byte strings [`AuditEntry::encode`] produces, so
//! `decode(b) == Ok(e)` implies `encode(&e) == b` and a leaf hash identifies one decision.
//!
//! # Encoding, version 1
//!
//! All integers are unsigned big-endian. `str16` is a `u16` byte length followed by that many
//! bytes of UTF-8; `bytes32` is a `u32` byte length followed by that many bytes; `[32]` is
//! exactly 32 raw bytes. Fields appear in this fixed order, with no padding:
//!
//! | # | field                | encoding | notes                                          |
//! |---|----------------------|----------|------------------------------------------------|
//! | 0 | version              | `u8`     | `0x01`                                         |
//! | 1 | `tenant_id`          | `str16`  |                                                |
//! | 2 | `pcs_id`             | `[32]`   |                                                |
//! | 3 | `signed_fields`      | `bytes32`| canonical signed payload, opaque here          |
//! | 4 | `outcome`            | `u8`     | `1` accepted, `2` escalated, `3` rejected      |
//! | 5 | `reason_code`        | `str16`  |                                                |
//! | 6 | `policy_version`     | `str16`  |                                                |
//! | 7 | `policy_hash`        | `[32]`   |                                                |
//! | 8 | `region`             | `str16`  |                                                |
//! | 9 | `decided_at_unix_ms` | `u64`    | milliseconds since the Unix epoch              |
//! |10 | `request_digest`     | `[32]`   |                                                |
//!
//! The whole encoding must not exceed [`MAX_ENTRY_SIZE`] (65,535) bytes, the largest entry a
//! C2SP entry bundle can hold (each entry there has a `u16` length prefix). The minimum size
//! (all strings and `signed_fields` empty) is 1+2+32+4+1+2+2+32+2+8+32 = 118 bytes.
//!
//! Decoding fails, never panics, with an [`EntryError`] naming the field and offset for: an
//! unknown version, a truncated field, a length running past the end, invalid UTF-8, an
//! unknown outcome code, trailing bytes, or an input above [`MAX_ENTRY_SIZE`].

/// The largest entry the log accepts: entry bundles prefix each entry with a `u16` length.
pub const MAX_ENTRY_SIZE: usize = u16::MAX as usize;

/// The only encoding version defined.
pub const ENTRY_VERSION: u8 = 1;

/// The decision recorded by an entry (the three outcomes of svc-verify).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditOutcome {
    /// Wire code 1.
    Accepted,
    /// Wire code 2.
    Escalated,
    /// Wire code 3.
    Rejected,
}

impl AuditOutcome {
    /// The one-byte wire code.
    pub fn code(self) -> u8 {
        match self {
            AuditOutcome::Accepted => 1,
            AuditOutcome::Escalated => 2,
            AuditOutcome::Rejected => 3,
        }
    }

    /// The outcome of a wire code, if it is defined.
    pub fn from_code(code: u8) -> Option<AuditOutcome> {
        match code {
            1 => Some(AuditOutcome::Accepted),
            2 => Some(AuditOutcome::Escalated),
            3 => Some(AuditOutcome::Rejected),
            _ => None,
        }
    }
}

/// One verification decision as logged by svc-audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// The tenant the PCS belongs to.
    pub tenant_id: String,
    /// The PCS identifier (digest of its canonical form).
    pub pcs_id: [u8; 32],
    /// The canonical signed payload bytes, opaque to the log.
    pub signed_fields: Vec<u8>,
    /// The decision.
    pub outcome: AuditOutcome,
    /// Why the decision was taken (a closed set upstream, free text here).
    pub reason_code: String,
    /// Version label of the policy that decided.
    pub policy_version: String,
    /// Hash of the policy's canonical form.
    pub policy_hash: [u8; 32],
    /// Region that decided.
    pub region: String,
    /// Decision time, milliseconds since the Unix epoch.
    pub decided_at_unix_ms: u64,
    /// Digest of the request that carried the PCS.
    pub request_digest: [u8; 32],
}

/// Why an entry could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// The first byte is not a known encoding version.
    #[error("unknown entry encoding version {0}")]
    UnknownVersion(u8),
    /// Input ended inside a field.
    #[error(
        "entry truncated in field {field} at offset {offset}: need {needed} bytes, have {available}"
    )]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Offset of the field (or of its length prefix).
        offset: usize,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes left in the input.
        available: usize,
    },
    /// A string field is not valid UTF-8.
    #[error("field {field} at offset {offset} is not valid UTF-8")]
    BadUtf8 {
        /// The string field.
        field: &'static str,
        /// Offset of the string's bytes.
        offset: usize,
    },
    /// The outcome byte is not 1, 2 or 3.
    #[error("unknown outcome code {code} at offset {offset}")]
    UnknownOutcome {
        /// The byte found.
        code: u8,
        /// Its offset.
        offset: usize,
    },
    /// Bytes remain after the last field.
    #[error("{count} trailing bytes after the entry at offset {offset}")]
    TrailingBytes {
        /// Offset of the first extra byte.
        offset: usize,
        /// How many bytes remain.
        count: usize,
    },
    /// A field or the whole entry exceeds its length limit.
    #[error("{what} is {len} bytes, above the limit of {max}")]
    TooLarge {
        /// The field, or `entry` for the whole encoding.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

impl AuditEntry {
    /// The version-1 encoding (see the module docs), or [`EntryError::TooLarge`] if a string is
    /// longer than 65,535 bytes or the whole encoding exceeds [`MAX_ENTRY_SIZE`].
    pub fn encode(&self) -> Result<Vec<u8>, EntryError> {
        let mut out = Vec::with_capacity(118 + self.signed_fields.len() + 64);
        out.push(ENTRY_VERSION);
        put_str16(&mut out, "tenant_id", &self.tenant_id)?;
        out.extend_from_slice(&self.pcs_id);
        let len = u32::try_from(self.signed_fields.len()).map_err(|_| EntryError::TooLarge {
            what: "signed_fields",
            len: self.signed_fields.len(),
            max: u32::MAX as usize,
        })?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&self.signed_fields);
        out.push(self.outcome.code());
        put_str16(&mut out, "reason_code", &self.reason_code)?;
        put_str16(&mut out, "policy_version", &self.policy_version)?;
        out.extend_from_slice(&self.policy_hash);
        put_str16(&mut out, "region", &self.region)?;
        out.extend_from_slice(&self.decided_at_unix_ms.to_be_bytes());
        out.extend_from_slice(&self.request_digest);
        if out.len() > MAX_ENTRY_SIZE {
            return Err(EntryError::TooLarge {
                what: "entry",
                len: out.len(),
                max: MAX_ENTRY_SIZE,
            });
        }
        Ok(out)
    }

    /// Decodes a version-1 encoding strictly (see the module docs). Never panics.
    pub fn decode(bytes: &[u8]) -> Result<AuditEntry, EntryError> {
        if bytes.len() > MAX_ENTRY_SIZE {
            return Err(EntryError::TooLarge {
                what: "entry",
                len: bytes.len(),
                max: MAX_ENTRY_SIZE,
            });
        }
        let mut r = Reader { bytes, pos: 0 };
        let version = r.take("version", 1)?[0];
        if version != ENTRY_VERSION {
            return Err(EntryError::UnknownVersion(version));
        }
        let tenant_id = r.str16("tenant_id")?;
        let pcs_id = r.array32("pcs_id")?;
        let len_at = r.pos;
        let len = u32::from_be_bytes(r.take("signed_fields", 4)?.try_into().unwrap_or([0; 4]));
        let signed_fields = r.take_at("signed_fields", len_at, len as usize)?.to_vec();
        let outcome_at = r.pos;
        let code = r.take("outcome", 1)?[0];
        let outcome = AuditOutcome::from_code(code).ok_or(EntryError::UnknownOutcome {
            code,
            offset: outcome_at,
        })?;
        let reason_code = r.str16("reason_code")?;
        let policy_version = r.str16("policy_version")?;
        let policy_hash = r.array32("policy_hash")?;
        let region = r.str16("region")?;
        let mut ms = [0u8; 8];
        ms.copy_from_slice(r.take("decided_at_unix_ms", 8)?);
        let request_digest = r.array32("request_digest")?;
        if r.pos != bytes.len() {
            return Err(EntryError::TrailingBytes {
                offset: r.pos,
                count: bytes.len() - r.pos,
            });
        }
        Ok(AuditEntry {
            tenant_id,
            pcs_id,
            signed_fields,
            outcome,
            reason_code,
            policy_version,
            policy_hash,
            region,
            decided_at_unix_ms: u64::from_be_bytes(ms),
            request_digest,
        })
    }
}

fn put_str16(out: &mut Vec<u8>, field: &'static str, s: &str) -> Result<(), EntryError> {
    let len = u16::try_from(s.len()).map_err(|_| EntryError::TooLarge {
        what: field,
        len: s.len(),
        max: u16::MAX as usize,
    })?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

/// A bounds-checked cursor over the input.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// The next `n` bytes of `field`, whose encoding started at `at` (for error offsets).
    fn take_at(
        &mut self,
        field: &'static str,
        at: usize,
        n: usize,
    ) -> Result<&'a [u8], EntryError> {
        let available = self.bytes.len() - self.pos;
        if n > available {
            return Err(EntryError::Truncated {
                field,
                offset: at,
                needed: n,
                available,
            });
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn take(&mut self, field: &'static str, n: usize) -> Result<&'a [u8], EntryError> {
        self.take_at(field, self.pos, n)
    }

    fn array32(&mut self, field: &'static str) -> Result<[u8; 32], EntryError> {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.take(field, 32)?);
        Ok(out)
    }

    fn str16(&mut self, field: &'static str) -> Result<String, EntryError> {
        let at = self.pos;
        let len_bytes = self.take(field, 2)?;
        let len = u16::from_be_bytes([len_bytes[0], len_bytes[1]]) as usize;
        let offset = self.pos;
        let raw = self.take_at(field, at, len)?;
        let s = std::str::from_utf8(raw).map_err(|_| EntryError::BadUtf8 { field, offset })?;
        Ok(s.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> AuditEntry {
        AuditEntry {
            tenant_id: "acme".into(),
            pcs_id: [7; 32],
            signed_fields: b"{\"a\":1}".to_vec(),
            outcome: AuditOutcome::Escalated,
            reason_code: "COH_STAR_OUT_OF_BOUNDS".into(),
            policy_version: "v3".into(),
            policy_hash: [9; 32],
            region: "eu-west-1".into(),
            decided_at_unix_ms: 1_700_000_000_123,
            request_digest: [1; 32],
        }
    }

    #[test]
    fn minimal_entry_is_118_bytes() {
        let e = AuditEntry {
            tenant_id: String::new(),
            signed_fields: vec![],
            reason_code: String::new(),
            policy_version: String::new(),
            region: String::new(),
            ..sample()
        };
        assert_eq!(e.encode().unwrap().len(), 118);
    }

    #[test]
    fn layout_is_as_documented() {
        let b = sample().encode().unwrap();
        assert_eq!(b[0], 1);
        assert_eq!(&b[1..3], &[0, 4]);
        assert_eq!(&b[3..7], b"acme");
        assert_eq!(&b[7..39], &[7; 32]);
        assert_eq!(&b[39..43], &[0, 0, 0, 7]);
        assert_eq!(&b[43..50], b"{\"a\":1}");
        assert_eq!(b[50], 2);
        assert_eq!(
            &b[b.len() - 40..b.len() - 32],
            &1_700_000_000_123u64.to_be_bytes()
        );
        assert_eq!(AuditEntry::decode(&b).unwrap(), sample());
    }

    #[test]
    fn errors_name_the_field() {
        let b = sample().encode().unwrap();
        let mut bad = b.clone();
        bad[3] = 0xff;
        assert_eq!(
            AuditEntry::decode(&bad),
            Err(EntryError::BadUtf8 {
                field: "tenant_id",
                offset: 3
            })
        );
        let mut bad = b.clone();
        bad[50] = 9;
        assert_eq!(
            AuditEntry::decode(&bad),
            Err(EntryError::UnknownOutcome {
                code: 9,
                offset: 50
            })
        );
        let mut bad = b.clone();
        bad.push(0);
        assert_eq!(
            AuditEntry::decode(&bad),
            Err(EntryError::TrailingBytes {
                offset: b.len(),
                count: 1
            })
        );
        assert!(matches!(
            AuditEntry::decode(&b[..b.len() - 1]),
            Err(EntryError::Truncated {
                field: "request_digest",
                ..
            })
        ));
        let mut bad = b.clone();
        bad[42] = 200; // signed_fields length past the end
        assert!(matches!(
            AuditEntry::decode(&bad),
            Err(EntryError::Truncated {
                field: "signed_fields",
                offset: 39,
                ..
            })
        ));
        assert_eq!(AuditEntry::decode(&[2]), Err(EntryError::UnknownVersion(2)));
    }

    #[test]
    fn oversized_entries_are_refused() {
        let e = AuditEntry {
            signed_fields: vec![0; MAX_ENTRY_SIZE],
            ..sample()
        };
        assert!(matches!(
            e.encode(),
            Err(EntryError::TooLarge { what: "entry", .. })
        ));
        let e = AuditEntry {
            region: "x".repeat(70_000),
            ..sample()
        };
        assert!(matches!(
            e.encode(),
            Err(EntryError::TooLarge { what: "region", .. })
        ));
    }
}
