//! The dedup key, the stored entry, and the validation rules every backend applies.

use std::time::Duration;

use bytes::Bytes;

use crate::DedupError;

/// Longest accepted tenant id, in UTF-8 bytes.
pub const MAX_TENANT_ID_BYTES: usize = 256;
/// Length of a `pcs_id`: lowercase hex SHA-256.
pub const PCS_ID_LEN: usize = 64;
/// Largest accepted serialized outcome (an outcome body is well under 1 KiB).
pub const MAX_OUTCOME_BYTES: usize = 64 * 1024;
/// Default entry lifetime (PROTOCOL.md section 4: duplicates are recognised for 14 days).
pub const DEFAULT_TTL: Duration = Duration::from_secs(14 * 24 * 60 * 60);
/// Longest accepted TTL (ten years): keeps every backend's arithmetic far from overflow.
pub const MAX_TTL: Duration = Duration::from_secs(10 * 366 * 24 * 60 * 60);

/// The identity of a submission for deduplication: `(tenant_id, pcs_id)`.
///
/// Fields are public for convenience; every store calls [`DedupKey::validate`] first, and
/// [`DedupKey::new`] validates up front.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DedupKey {
    /// 1..=256 bytes of UTF-8, no control characters; any other character (`:`, `{`, spaces,
    /// non-ASCII) is fine: backends escape it.
    pub tenant_id: String,
    /// 64 lowercase hex characters.
    pub pcs_id: String,
}

impl DedupKey {
    /// A validated key.
    pub fn new(
        tenant_id: impl Into<String>,
        pcs_id: impl Into<String>,
    ) -> Result<Self, DedupError> {
        let key = Self {
            tenant_id: tenant_id.into(),
            pcs_id: pcs_id.into(),
        };
        key.validate()?;
        Ok(key)
    }

    /// Checks the tenant id (1..=256 bytes, no control characters: NUL cannot be stored in
    /// PostgreSQL text and control characters have no business in logs) and the `pcs_id`
    /// (64 lowercase hex characters).
    pub fn validate(&self) -> Result<(), DedupError> {
        let invalid = |reason: String| Err(DedupError::InvalidKey { reason });
        if self.tenant_id.is_empty() {
            return invalid("tenant_id is empty".to_owned());
        }
        if self.tenant_id.len() > MAX_TENANT_ID_BYTES {
            return invalid(format!(
                "tenant_id is {} bytes, the limit is {MAX_TENANT_ID_BYTES}",
                self.tenant_id.len()
            ));
        }
        if self.tenant_id.chars().any(char::is_control) {
            return invalid("tenant_id contains a control character".to_owned());
        }
        let hex = |b: &u8| b.is_ascii_digit() || (b'a'..=b'f').contains(b);
        if self.pcs_id.len() != PCS_ID_LEN || !self.pcs_id.as_bytes().iter().all(hex) {
            let shown: String = self.pcs_id.chars().take(PCS_ID_LEN + 8).collect();
            return invalid(format!(
                "pcs_id must be {PCS_ID_LEN} lowercase hex characters, got {} bytes: {shown:?}",
                self.pcs_id.len()
            ));
        }
        Ok(())
    }
}

/// What the dedup index remembers about the first submission of a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DedupEntry {
    /// Outcome-log sequence number of the decision (at most `i64::MAX`).
    pub seq: u64,
    /// Canonical SHA-256 digest of the first submission (to spot conflicting duplicates).
    pub digest: [u8; 32],
    /// The serialized stored outcome, opaque to this crate (at most 64 KiB).
    pub outcome: Bytes,
}

impl DedupEntry {
    /// Checks the limits: `seq <= i64::MAX` (PostgreSQL `bigint`), outcome at most 64 KiB.
    pub fn validate(&self) -> Result<(), DedupError> {
        if i64::try_from(self.seq).is_err() {
            return Err(DedupError::InvalidInput {
                reason: format!("seq {} exceeds {}", self.seq, i64::MAX),
            });
        }
        if self.outcome.len() > MAX_OUTCOME_BYTES {
            return Err(DedupError::InvalidInput {
                reason: format!(
                    "outcome is {} bytes, the limit is {MAX_OUTCOME_BYTES}",
                    self.outcome.len()
                ),
            });
        }
        Ok(())
    }
}

/// The result of [`crate::DedupStore::put_if_absent`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PutOutcome {
    /// This call stored its entry: it is the first (live) submission of the key.
    Inserted,
    /// A live entry already existed (possibly written by a concurrent caller a moment ago);
    /// it is returned unchanged and was not overwritten.
    Existing(DedupEntry),
}

/// The TTL in whole milliseconds (sub-millisecond remainders round up), within 1 ms..=[`MAX_TTL`].
pub(crate) fn ttl_millis(ttl: Duration) -> Result<u64, DedupError> {
    if ttl.is_zero() || ttl > MAX_TTL {
        return Err(DedupError::InvalidInput {
            reason: format!("ttl must be between 1ms and {MAX_TTL:?}, got {ttl:?}"),
        });
    }
    let millis = ttl.as_nanos().div_ceil(1_000_000);
    u64::try_from(millis).map_err(|_| DedupError::InvalidInput {
        reason: format!("ttl {ttl:?} is out of range"),
    })
}

/// Validates a put's arguments and returns the TTL in milliseconds.
pub(crate) fn validate_put(
    key: &DedupKey,
    entry: &DedupEntry,
    ttl: Duration,
) -> Result<u64, DedupError> {
    key.validate()?;
    entry.validate()?;
    ttl_millis(ttl)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PCS: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    #[test]
    fn keys_are_validated() {
        assert!(DedupKey::new("default", PCS).is_ok());
        assert!(DedupKey::new("ü {x}: y", PCS).is_ok());
        assert!(DedupKey::new("x".repeat(MAX_TENANT_ID_BYTES), PCS).is_ok());
        for (tenant, pcs) in [
            ("", PCS),
            ("a\0b", PCS),
            ("a\nb", PCS),
            ("ok", &PCS[1..]),
            ("ok", &PCS.to_uppercase()),
            ("ok", &format!("{}g", &PCS[1..])),
        ] {
            let err = DedupKey::new(tenant, pcs).expect_err(tenant);
            assert!(matches!(err, DedupError::InvalidKey { .. }), "{err}");
        }
        let long = "é".repeat(MAX_TENANT_ID_BYTES / 2 + 1);
        assert!(DedupKey::new(long, PCS).is_err());
    }

    #[test]
    fn ttl_rounds_up_and_is_bounded() {
        assert_eq!(ttl_millis(Duration::from_micros(1)).ok(), Some(1));
        assert_eq!(ttl_millis(Duration::from_micros(1500)).ok(), Some(2));
        assert_eq!(ttl_millis(DEFAULT_TTL).ok(), Some(14 * 24 * 3_600_000));
        assert!(ttl_millis(Duration::ZERO).is_err());
        assert!(ttl_millis(MAX_TTL + Duration::from_secs(1)).is_err());
    }

    #[test]
    fn entries_are_validated() {
        let mut entry = DedupEntry {
            seq: i64::MAX as u64,
            digest: [0; 32],
            outcome: Bytes::from_static(b"{}"),
        };
        assert!(entry.validate().is_ok());
        entry.seq += 1;
        assert!(entry.validate().is_err());
        entry.seq = 0;
        entry.outcome = Bytes::from(vec![0; MAX_OUTCOME_BYTES + 1]);
        assert!(entry.validate().is_err());
    }
}
