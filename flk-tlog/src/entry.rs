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
//!
//! # Log events, version 2
//!
//! Besides decisions the log records a few events of the log operator itself, so that they are
//! as tamper-evident as the decisions: svc-audit's choice of anchoring strategy and every change
//! of it, conflicting duplicates, and bursts of signature failures. An event entry starts with the version byte `0x02`, so a version-1
//! decoder refuses it with [`EntryError::UnknownVersion`]`(2)` and the version-1 encoding is
//! unchanged byte for byte. [`LogEntry::decode`] reads both versions.
//!
//! | # | field                 | encoding | notes                                          |
//! |---|-----------------------|----------|------------------------------------------------|
//! | 0 | version               | `u8`     | `0x02`                                         |
//! | 1 | `kind`                | `u8`     | `1` anchor strategy, `2` conflicting duplicate, `3` signature failure burst, `4` replication ([`EventKind`]) |
//! | 2 | `recorded_at_unix_ms` | `u64`    | milliseconds since the Unix epoch              |
//! | 3 | `body`                | `bytes32`| the event, UTF-8 JSON (shape owned by the kind)|
//!
//! The body of kind `1` is the JSON svc-audit documents in its `anchoring` module: the
//! optimizer's decision and the strategy it replaces; kinds `2` and `3` are documented in
//! svc-audit's `mapping` module. The minimum size is 1+1+8+4 = 14 bytes;
//! the whole encoding must not exceed [`MAX_ENTRY_SIZE`]. Decoding is as strict as for
//! version 1 (unknown kind, truncation, invalid UTF-8 in the body, trailing bytes are errors),
//! so the encoding stays canonical.

/// The largest entry the log accepts: entry bundles prefix each entry with a `u16` length.
pub const MAX_ENTRY_SIZE: usize = u16::MAX as usize;

/// The encoding version of decisions ([`AuditEntry`]).
pub const ENTRY_VERSION: u8 = 1;

/// The encoding version of log events ([`EventEntry`]).
pub const EVENT_VERSION: u8 = 2;

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
    /// The kind byte of an event entry is not a defined [`EventKind`].
    #[error("unknown event kind {code} at offset {offset}")]
    UnknownEventKind {
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

/// The kind of a log event (version-2 entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// Wire code 1: the anchoring strategy svc-audit uses (its first choice and every change).
    AnchorStrategy,
    /// Wire code 2: a resubmission of a decided `pcs_id` with different signed content (first
    /// write wins; the conflict is recorded).
    ConflictingDuplicate,
    /// Wire code 3: a burst of signature failures from one tenant.
    SignatureFailureBurst,
    /// Wire code 4: cross-region replication (svc-crr): a repair proposal, its approval or
    /// rejection, an action applied.
    Replication,
}

impl EventKind {
    /// The one-byte wire code.
    pub fn code(self) -> u8 {
        match self {
            EventKind::AnchorStrategy => 1,
            EventKind::ConflictingDuplicate => 2,
            EventKind::SignatureFailureBurst => 3,
            EventKind::Replication => 4,
        }
    }

    /// The kind of a wire code, if it is defined.
    pub fn from_code(code: u8) -> Option<EventKind> {
        match code {
            1 => Some(EventKind::AnchorStrategy),
            2 => Some(EventKind::ConflictingDuplicate),
            3 => Some(EventKind::SignatureFailureBurst),
            4 => Some(EventKind::Replication),
            _ => None,
        }
    }
}

/// An event of the log operator, recorded in the log (version-2 encoding, see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventEntry {
    /// What happened.
    pub kind: EventKind,
    /// When, milliseconds since the Unix epoch (the operator's clock).
    pub recorded_at_unix_ms: u64,
    /// The event, UTF-8 JSON whose shape the kind defines.
    pub body: String,
}

impl EventEntry {
    /// The version-2 encoding, or [`EntryError::TooLarge`] above [`MAX_ENTRY_SIZE`].
    pub fn encode(&self) -> Result<Vec<u8>, EntryError> {
        let mut out = Vec::with_capacity(14 + self.body.len());
        out.push(EVENT_VERSION);
        out.push(self.kind.code());
        out.extend_from_slice(&self.recorded_at_unix_ms.to_be_bytes());
        let len = u32::try_from(self.body.len()).map_err(|_| EntryError::TooLarge {
            what: "body",
            len: self.body.len(),
            max: u32::MAX as usize,
        })?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(self.body.as_bytes());
        if out.len() > MAX_ENTRY_SIZE {
            return Err(EntryError::TooLarge {
                what: "entry",
                len: out.len(),
                max: MAX_ENTRY_SIZE,
            });
        }
        Ok(out)
    }

    /// Decodes a version-2 encoding strictly (see the module docs). Never panics.
    pub fn decode(bytes: &[u8]) -> Result<EventEntry, EntryError> {
        if bytes.len() > MAX_ENTRY_SIZE {
            return Err(EntryError::TooLarge {
                what: "entry",
                len: bytes.len(),
                max: MAX_ENTRY_SIZE,
            });
        }
        let mut r = Reader { bytes, pos: 0 };
        let version = r.take("version", 1)?[0];
        if version != EVENT_VERSION {
            return Err(EntryError::UnknownVersion(version));
        }
        let kind_at = r.pos;
        let code = r.take("kind", 1)?[0];
        let kind = EventKind::from_code(code).ok_or(EntryError::UnknownEventKind {
            code,
            offset: kind_at,
        })?;
        let mut ms = [0u8; 8];
        ms.copy_from_slice(r.take("recorded_at_unix_ms", 8)?);
        let len_at = r.pos;
        let len = u32::from_be_bytes(r.take("body", 4)?.try_into().unwrap_or([0; 4]));
        let offset = r.pos;
        let raw = r.take_at("body", len_at, len as usize)?;
        let body = std::str::from_utf8(raw)
            .map_err(|_| EntryError::BadUtf8 {
                field: "body",
                offset,
            })?
            .to_owned();
        if r.pos != bytes.len() {
            return Err(EntryError::TrailingBytes {
                offset: r.pos,
                count: bytes.len() - r.pos,
            });
        }
        Ok(EventEntry {
            kind,
            recorded_at_unix_ms: u64::from_be_bytes(ms),
            body,
        })
    }
}

/// Any entry of the log: a decision (version 1) or an event (version 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogEntry {
    /// A verification decision.
    Decision(AuditEntry),
    /// An event of the log operator.
    Event(EventEntry),
}

impl LogEntry {
    /// The entry's encoding (version 1 or 2).
    pub fn encode(&self) -> Result<Vec<u8>, EntryError> {
        match self {
            LogEntry::Decision(e) => e.encode(),
            LogEntry::Event(e) => e.encode(),
        }
    }

    /// Decodes either version strictly, by the first byte. Never panics.
    pub fn decode(bytes: &[u8]) -> Result<LogEntry, EntryError> {
        match bytes.first() {
            Some(&EVENT_VERSION) => EventEntry::decode(bytes).map(LogEntry::Event),
            _ => AuditEntry::decode(bytes).map(LogEntry::Decision),
        }
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

    fn event() -> EventEntry {
        EventEntry {
            kind: EventKind::AnchorStrategy,
            recorded_at_unix_ms: 1_700_000_000_123,
            body: r#"{"chosen":"rfc3161"}"#.into(),
        }
    }

    #[test]
    fn decision_encoding_is_unchanged_by_the_event_variant() {
        // The version-1 bytes, pinned: an event variant must never move them.
        let b = sample().encode().unwrap();
        assert_eq!(b.len(), 118 + 4 + 7 + 22 + 2 + 9);
        assert_eq!(
            hex::encode(&b[..7]),
            "010004".to_owned() + &hex::encode(b"acme")
        );
        assert_eq!(LogEntry::decode(&b), Ok(LogEntry::Decision(sample())));
        assert_eq!(LogEntry::Decision(sample()).encode().unwrap(), b);
    }

    #[test]
    fn event_layout_is_as_documented() {
        let b = event().encode().unwrap();
        assert_eq!(b[0], 2);
        assert_eq!(b[1], 1);
        assert_eq!(&b[2..10], &1_700_000_000_123u64.to_be_bytes());
        assert_eq!(&b[10..14], &[0, 0, 0, 20]);
        assert_eq!(&b[14..], br#"{"chosen":"rfc3161"}"#);
        assert_eq!(EventEntry::decode(&b).unwrap(), event());
        assert_eq!(LogEntry::decode(&b).unwrap(), LogEntry::Event(event()));
        // A version-1 decoder refuses it, naming the version.
        assert_eq!(AuditEntry::decode(&b), Err(EntryError::UnknownVersion(2)));
        assert_eq!(
            EventEntry::decode(&sample().encode().unwrap()),
            Err(EntryError::UnknownVersion(1))
        );
        let empty = EventEntry {
            body: String::new(),
            ..event()
        };
        assert_eq!(empty.encode().unwrap().len(), 14);
    }

    #[test]
    fn event_errors_name_the_field() {
        let b = event().encode().unwrap();
        let mut bad = b.clone();
        bad[1] = 7;
        assert_eq!(
            LogEntry::decode(&bad),
            Err(EntryError::UnknownEventKind { code: 7, offset: 1 })
        );
        let mut bad = b.clone();
        bad[14] = 0xff;
        assert_eq!(
            LogEntry::decode(&bad),
            Err(EntryError::BadUtf8 {
                field: "body",
                offset: 14
            })
        );
        let mut bad = b.clone();
        bad.push(b' ');
        assert_eq!(
            LogEntry::decode(&bad),
            Err(EntryError::TrailingBytes {
                offset: b.len(),
                count: 1
            })
        );
        assert!(matches!(
            LogEntry::decode(&b[..b.len() - 1]),
            Err(EntryError::Truncated {
                field: "body",
                offset: 10,
                ..
            })
        ));
        assert!(matches!(
            LogEntry::decode(&b[..5]),
            Err(EntryError::Truncated {
                field: "recorded_at_unix_ms",
                ..
            })
        ));
        assert_eq!(
            LogEntry::decode(&[]),
            Err(EntryError::Truncated {
                field: "version",
                offset: 0,
                needed: 1,
                available: 0
            })
        );
        let big = EventEntry {
            body: "x".repeat(MAX_ENTRY_SIZE),
            ..event()
        };
        assert!(matches!(
            big.encode(),
            Err(EntryError::TooLarge { what: "entry", .. })
        ));
    }

    #[test]
    fn every_prefix_and_byte_flip_of_an_event_is_refused_or_canonical() {
        let b = event().encode().unwrap();
        for len in 0..b.len() {
            assert!(LogEntry::decode(&b[..len]).is_err(), "prefix {len}");
        }
        for i in 0..b.len() {
            let mut x = b.clone();
            x[i] ^= 0x80;
            // Whatever decodes re-encodes to the same bytes (canonical).
            if let Ok(e) = LogEntry::decode(&x) {
                assert_eq!(e.encode().unwrap(), x, "byte {i}");
            }
        }
    }
}
