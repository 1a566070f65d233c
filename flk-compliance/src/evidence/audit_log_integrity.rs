//! `audit_log_integrity`: svc-audit's tile log re-derived from its entries verifies against its
//! latest signed checkpoint (`flk_tlog::verify_log`: every entry rehashed, every tile
//! recomputed, the root compared; a failure names the entry, bundle or tile), and every
//! earlier checkpoint dated in the period that the store still knows (the notes of the anchor
//! journal: the log keeps only its latest) is signed by the log key and consistent with it:
//! its root is the root of the first `size` entries of the verified tree.
//!
//! Also the decision-level samples: up to 3 decisions of the period (the first, middle and
//! last by leaf index) with inclusion proof bundles against the latest checkpoint, in the
//! format `flk audit verify --bundle` reads, and that checkpoint's anchors.

use flk_proto::v1;
use flk_tlog::VerifyError;
use serde_json::json;

use super::stores::TileNodes;
use super::{AuditLog, Inputs, evidence};
use crate::model::{Evidence, Sample, Status};

pub const KIND: &str = "audit_log_integrity";

/// A failure of `verify_log` in words, naming the place.
pub fn explain(e: &VerifyError) -> String {
    match e {
        VerifyError::EntryTampered { index, bundle_path } => format!(
            "entry {index} in {bundle_path} was altered (its hash is not the one the signed tree commits to)"
        ),
        VerifyError::TileMismatch { level, index, path } => format!(
            "hash tile {path} (level {level}, index {index}) was altered (it differs from the hashes recomputed from the entries)"
        ),
        VerifyError::BundleMalformed { path, offset, .. } => {
            format!("entry bundle {path} was altered: its framing is broken at byte {offset}")
        }
        other => other.to_string(),
    }
}

/// The time a checkpoint of `size` is dated by: the time of its last entry.
pub fn checkpoint_time(audit: &AuditLog, size: u64) -> Option<i64> {
    let t = *audit
        .index
        .times
        .get(usize::try_from(size.checked_sub(1)?).ok()?)?;
    i64::try_from(t).ok()
}

pub fn compute(inputs: &Inputs<'_>) -> Evidence {
    let audit = match &inputs.audit {
        Ok(a) => a,
        Err(why) => {
            return evidence(
                KIND,
                Status::Fail,
                [("checkpoint_size", json!(null))],
                format!("the audit log cannot be verified: {why}"),
            );
        }
    };
    let size = audit.checkpoint.size;
    let report = &audit.verified;
    // Earlier checkpoints dated in the period, by size (distinct notes).
    let mut earlier: Vec<(u64, String)> = inputs
        .anchors
        .iter()
        .filter(|a| a.checkpoint_size < size)
        .filter(|a| checkpoint_time(audit, a.checkpoint_size).is_some_and(|t| inputs.in_period(t)))
        .map(|a| (a.checkpoint_size, a.note.clone()))
        .collect();
    earlier.sort();
    earlier.dedup();
    let nodes = TileNodes::new(&audit.store, size);
    let mut inconsistent: Option<String> = None;
    for (old_size, note) in &earlier {
        let why = match flk_tlog::open_checkpoint(note, &audit.verifier) {
            Err(e) => Some(format!(
                "the checkpoint of size {old_size} in the anchor journal does not verify: {e}"
            )),
            Ok(cp) => match flk_tlog::proof::tree_root(&nodes, cp.size) {
                Ok(root) if root == cp.root_hash => None,
                Ok(_) => Some(format!(
                    "the checkpoint of size {old_size} is not consistent with the log: the first {old_size} entries hash to another root"
                )),
                Err(e) => Some(format!(
                    "the root at size {old_size} cannot be computed: {e}"
                )),
            },
        };
        if inconsistent.is_none() {
            inconsistent = why;
        }
    }
    let in_period = usize::from(checkpoint_time(audit, size).is_some_and(|t| inputs.in_period(t)))
        + earlier.len();
    let mut figures = vec![
        ("checkpoint_size", json!(size)),
        (
            "checkpoint_root",
            json!(hex::encode(audit.checkpoint.root_hash)),
        ),
        ("checkpoints_in_period", json!(in_period)),
        ("consistency_checked", json!(earlier.len())),
    ];
    match report {
        Ok(r) => {
            figures.push(("entries_checked", json!(r.entries_checked)));
            figures.push(("tiles_checked", json!(r.tiles_checked)));
            match inconsistent {
                None => evidence(
                    KIND,
                    Status::Pass,
                    figures,
                    format!(
                        "all {} entries and {} tiles re-derived from the entries match the signed checkpoint of size {size}; {} earlier checkpoint(s) in the period are consistent with it",
                        r.entries_checked,
                        r.tiles_checked,
                        earlier.len()
                    ),
                ),
                Some(why) => evidence(KIND, Status::Fail, figures, why),
            }
        }
        Err(why) => evidence(
            KIND,
            Status::Fail,
            figures,
            format!("the audit log does not verify against its checkpoint of size {size}: {why}"),
        ),
    }
}

/// Up to 3 decisions of the period with their proof bundles (see the module docs).
pub fn samples(inputs: &Inputs<'_>) -> Vec<Sample> {
    let Ok(audit) = &inputs.audit else {
        return Vec::new();
    };
    let in_period: Vec<u64> = audit
        .index
        .decisions
        .iter()
        .filter(|d| i64::try_from(d.decided_at_unix_ms).is_ok_and(|t| inputs.in_period(t)))
        .map(|d| d.leaf_index)
        .collect();
    let Some(&last) = in_period.last() else {
        return Vec::new();
    };
    let mut picks = vec![in_period[0], in_period[in_period.len() / 2], last];
    picks.dedup();
    let size = audit.checkpoint.size;
    let nodes = TileNodes::new(&audit.store, size);
    let anchors: Vec<serde_json::Value> = inputs
        .anchors
        .iter()
        .filter(|a| a.checkpoint_size == size && a.note == audit.note)
        .map(|a| a.record.clone())
        .collect();
    let checkpoint = v1::AuditCheckpoint {
        note: audit.note.clone(),
        size,
        root_hash: audit.checkpoint.root_hash.to_vec(),
        verifier_key: audit.verifier.key_string(),
        origin: audit.checkpoint.origin.clone(),
        decisions: None,
    };
    picks
        .into_iter()
        .filter_map(|leaf| {
            let entry = super::stores::entry_at(&audit.store, size, leaf)?;
            let flk_tlog::LogEntry::Decision(d) = flk_tlog::LogEntry::decode(&entry).ok()? else {
                return None;
            };
            let proof = flk_tlog::proof::inclusion_proof(&nodes, leaf, size).ok()?;
            let bundle = v1::InclusionProof {
                leaf_index: leaf,
                tree_size: size,
                entry,
                proof: proof.iter().map(|h| h.to_vec()).collect(),
                checkpoint: Some(checkpoint.clone()),
            };
            Some(Sample {
                tenant_id: d.tenant_id,
                pcs_id: hex::encode(d.pcs_id),
                leaf_index: leaf,
                proof: flk_proto::audit::inclusion_json(&bundle),
                anchors: anchors.clone(),
            })
        })
        .collect()
}
