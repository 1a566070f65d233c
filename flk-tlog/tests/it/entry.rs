//! Properties of the audit entry encoding: roundtrip, canonical form, and decoding arbitrary
//! or mutated bytes never panics.

use flk_tlog::{AuditEntry, AuditOutcome, MAX_ENTRY_SIZE};
use proptest::prelude::*;

fn outcome() -> impl Strategy<Value = AuditOutcome> {
    prop_oneof![
        Just(AuditOutcome::Accepted),
        Just(AuditOutcome::Escalated),
        Just(AuditOutcome::Rejected)
    ]
}

prop_compose! {
    fn audit_entry()(
        tenant_id in "\\PC{0,40}",
        pcs_id in any::<[u8; 32]>(),
        signed_fields in prop::collection::vec(any::<u8>(), 0..600),
        outcome in outcome(),
        reason_code in "[A-Z_]{0,30}",
        policy_version in "\\PC{0,12}",
        policy_hash in any::<[u8; 32]>(),
        region in "[a-z0-9-]{0,16}",
        decided_at_unix_ms in any::<u64>(),
        request_digest in any::<[u8; 32]>(),
    ) -> AuditEntry {
        AuditEntry { tenant_id, pcs_id, signed_fields, outcome, reason_code, policy_version,
            policy_hash, region, decided_at_unix_ms, request_digest }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn roundtrip(e in audit_entry()) {
        let bytes = e.encode().unwrap();
        prop_assert!(bytes.len() <= MAX_ENTRY_SIZE);
        prop_assert_eq!(AuditEntry::decode(&bytes).unwrap(), e);
    }

    #[test]
    fn decode_of_arbitrary_bytes_never_panics_and_is_canonical(
        bytes in prop::collection::vec(any::<u8>(), 0..400)
    ) {
        if let Ok(e) = AuditEntry::decode(&bytes) {
            prop_assert_eq!(e.encode().unwrap(), bytes);
        }
    }

    #[test]
    fn decode_of_mutated_encodings_never_panics_and_is_canonical(
        e in audit_entry(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..4),
    ) {
        let mut bytes = e.encode().unwrap();
        for (at, value, op) in edits {
            if bytes.is_empty() { break; }
            let i = at.index(bytes.len());
            match op {
                0 => bytes[i] = value,
                1 => { bytes.remove(i); }
                _ => bytes.insert(i, value),
            }
        }
        if let Ok(d) = AuditEntry::decode(&bytes) {
            prop_assert_eq!(d.encode().unwrap(), bytes);
        }
    }
}

#[test]
fn every_truncation_is_an_error() {
    let e = AuditEntry {
        tenant_id: "t".into(),
        pcs_id: [1; 32],
        signed_fields: vec![5; 10],
        outcome: AuditOutcome::Accepted,
        reason_code: "OK".into(),
        policy_version: "1".into(),
        policy_hash: [2; 32],
        region: "r".into(),
        decided_at_unix_ms: 9,
        request_digest: [3; 32],
    };
    let bytes = e.encode().unwrap();
    for n in 0..bytes.len() {
        assert!(
            AuditEntry::decode(&bytes[..n]).is_err(),
            "prefix of {n} bytes"
        );
    }
    assert!(AuditEntry::decode(&vec![1; MAX_ENTRY_SIZE + 1]).is_err());
}
