//! `checkpoint_anchoring`: the signed checkpoints dated in the period (the latest one and
//! the earlier ones the anchor journal keeps; a checkpoint is dated by the time of its last
//! entry) and the share anchored outside the log, per anchor kind (complete anchors of
//! `anchors.jsonl` for exactly that note). Passes when the period has checkpoints and a
//! complete anchor covers every decision of the period (an anchored checkpoint at least as
//! large as the last such decision's leaf index + 1).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;

use super::audit_log_integrity::checkpoint_time;
use super::{Inputs, evidence};
use crate::model::{Evidence, Status};

pub const KIND: &str = "checkpoint_anchoring";

pub fn compute(inputs: &Inputs<'_>) -> Evidence {
    let audit = match &inputs.audit {
        Ok(a) => a,
        Err(why) => {
            return evidence(
                KIND,
                Status::Fail,
                [("checkpoints_in_period", json!(0))],
                format!("no signed checkpoint can be read: {why}"),
            );
        }
    };
    // Known checkpoints (size, note) dated in the period.
    let mut known: BTreeSet<(u64, String)> = inputs
        .anchors
        .iter()
        .filter(|a| flk_tlog::open_checkpoint(&a.note, &audit.verifier).is_ok())
        .map(|a| (a.checkpoint_size, a.note.clone()))
        .collect();
    known.insert((audit.checkpoint.size, audit.note.clone()));
    let in_period: Vec<&(u64, String)> = known
        .iter()
        .filter(|(size, _)| checkpoint_time(audit, *size).is_some_and(|t| inputs.in_period(t)))
        .collect();
    let mut per_kind: BTreeMap<String, u64> = BTreeMap::new();
    let mut anchored = 0u64;
    let mut largest_anchored: Option<u64> = None;
    for (size, note) in &in_period {
        let kinds: BTreeSet<&str> = inputs
            .anchors
            .iter()
            .filter(|a| a.complete && a.checkpoint_size == *size && &a.note == note)
            .map(|a| a.kind.as_str())
            .collect();
        if !kinds.is_empty() {
            anchored += 1;
            largest_anchored = Some(largest_anchored.map_or(*size, |l| l.max(*size)));
        }
        for k in kinds {
            *per_kind.entry(k.to_owned()).or_insert(0) += 1;
        }
    }
    // Anchors of any checkpoint (also later than the period) cover the period's decisions.
    let covering = inputs
        .anchors
        .iter()
        .filter(|a| a.complete && flk_tlog::open_checkpoint(&a.note, &audit.verifier).is_ok())
        .map(|a| a.checkpoint_size)
        .max();
    let pending = inputs.anchors.iter().filter(|a| !a.complete).count();
    let n = in_period.len() as u64;
    let share = if n == 0 {
        0.0
    } else {
        anchored as f64 / n as f64
    };
    let figures = [
        ("checkpoints_in_period", json!(n)),
        ("anchored_in_period", json!(anchored)),
        (
            "share_anchored",
            json!((share * 10_000.0).round() / 10_000.0),
        ),
        ("anchored_by_kind", json!(per_kind)),
        ("anchors_total", json!(inputs.anchors.len())),
        ("anchors_pending", json!(pending)),
        ("largest_anchored_size", json!(covering)),
    ];
    if n == 0 {
        return evidence(
            KIND,
            Status::Fail,
            figures,
            "no signed checkpoint is dated in the period (no audit entry was logged in it)",
        );
    }
    let needed = inputs.feed.last_leaf.map(|l| l + 1);
    match (needed, covering) {
        (Some(need), Some(have)) if have >= need => evidence(
            KIND,
            Status::Pass,
            figures,
            format!(
                "{anchored} of {n} checkpoints in the period are anchored; the anchored checkpoint of size {have} covers every decision of the period"
            ),
        ),
        (None, Some(_)) => evidence(
            KIND,
            Status::Pass,
            figures,
            format!("{anchored} of {n} checkpoints in the period are anchored"),
        ),
        (need, have) => evidence(
            KIND,
            Status::Fail,
            figures,
            format!(
                "{anchored} of {n} checkpoints in the period are anchored; the decisions of the period need an anchored checkpoint of size {} or more, the largest anchored is {}",
                need.unwrap_or(1),
                have.map_or_else(|| "none (no complete anchor)".to_owned(), |h| h.to_string())
            ),
        ),
    }
}
