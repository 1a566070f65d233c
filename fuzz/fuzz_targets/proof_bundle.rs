//! Fuzz target: a proof bundle (the JSON of `GET /v1/audit/proof/{pcs_id}`) as
//! `flk audit verify --bundle` reads it: `flk_proto::audit::inclusion_from_json`, the proof
//! hashes, `verify_inclusion_bundle` against the fixture log's key, the entry decoded; and the
//! same proof read as a consistency proof between two sizes of the fixture log. Nothing may
//! panic; a bundle that verifies proves an entry of the fixture log.
#![no_main]

use flk_fuzz::{log_verifier, tlog_fixture};
use flk_tlog::{AuditEntry, Hash, LogEntry, verify_consistency, verify_inclusion_bundle};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let _ = flk_proto::audit::checkpoint_from_json(&json);
    let Ok(bundle) = flk_proto::audit::inclusion_from_json(&json) else {
        return;
    };
    let Ok(proof) = bundle
        .proof
        .iter()
        .map(|h| Hash::try_from(h.as_slice()))
        .collect::<Result<Vec<Hash>, _>>()
    else {
        return;
    };
    let (log, _) = tlog_fixture();
    if let Some(cp) = &bundle.checkpoint
        && let Ok(checked) = verify_inclusion_bundle(
            &bundle.entry,
            bundle.leaf_index,
            bundle.tree_size,
            &proof,
            &cp.note,
            log_verifier(),
        )
    {
        // Only the fixture log's key signs, so what verifies is one of its entries.
        assert!(bundle.leaf_index < checked.size);
        let stored = log.entry(bundle.leaf_index).expect("fixture entry");
        assert_eq!(
            stored, bundle.entry,
            "a proof verified for an entry not in the log"
        );
        let _ = AuditEntry::decode(&bundle.entry);
    }
    let _ = LogEntry::decode(&bundle.entry);
    let first_root = log.root_at(bundle.leaf_index);
    let second_root = log.root_at(bundle.tree_size);
    if let (Ok(a), Ok(b)) = (first_root, second_root) {
        let _ = verify_consistency(bundle.leaf_index, bundle.tree_size, &proof, &a, &b);
    }
});
