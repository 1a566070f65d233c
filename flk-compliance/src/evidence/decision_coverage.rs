//! `decision_coverage`: every decision of svc-verify's outcome log decided in the period is in
//! the audit log (the same `(tenant_id, pcs_id)` among the entries its signed checkpoint
//! covers), with counts by outcome. Also gathers, in the same pass over the outcome log, what
//! `signature_verification` and the timeline need.

use std::collections::BTreeMap;
use std::path::Path;

use flk_proto::v1;
use serde_json::json;

use super::stores::{AuditIndex, scan_outcome_log};
use super::{EvidenceError, Inputs, evidence};
use crate::model::{DayCount, Evidence, Status};

pub const KIND: &str = "decision_coverage";

/// What one pass over the outcome log counted for the period.
#[derive(Debug, Default)]
pub struct FeedFigures {
    pub records: u64,
    pub conflict_events: u64,
    pub decisions_total: u64,
    pub oldest_decided_at_unix_ms: Option<i64>,
    /// Decisions decided in the period.
    pub decisions: u64,
    pub in_audit: u64,
    pub missing: u64,
    /// The first missing decision (lowest seq): `(seq, tenant, pcs_id)`.
    pub first_missing: Option<(u64, String, String)>,
    /// outcome -> reason -> count.
    pub by_outcome_reason: BTreeMap<String, BTreeMap<String, u64>>,
    /// Decisions whose signature was not checked (tenant with signing disabled: no key id).
    pub without_key: u64,
    /// Per UTC day: [accepted, escalated, rejected].
    pub days: BTreeMap<String, [u64; 3]>,
    /// Decision time of the period's newest decision.
    pub newest_in_period_ms: Option<i64>,
    /// Highest leaf index among the period's decisions found in the audit log.
    pub last_leaf: Option<u64>,
}

impl FeedFigures {
    pub fn timeline(&self) -> Vec<DayCount> {
        self.days
            .iter()
            .map(|(day, [a, e, r])| DayCount {
                day: day.clone(),
                accept: *a,
                escalate: *e,
                reject: *r,
            })
            .collect()
    }

    /// Decisions in the period with a given outcome name.
    pub fn outcome_count(&self, outcome: &str) -> u64 {
        self.by_outcome_reason
            .get(outcome)
            .map_or(0, |m| m.values().sum())
    }
}

/// The outcome's name in figures (`accepted`, `escalated`, `rejected`).
pub fn outcome_name(code: i32) -> &'static str {
    match v1::OutcomeKind::try_from(code) {
        Ok(v1::OutcomeKind::Accepted) => "accepted",
        Ok(v1::OutcomeKind::Escalated) => "escalated",
        Ok(v1::OutcomeKind::Rejected) => "rejected",
        _ => "unspecified",
    }
}

fn day_of(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let d = t.date();
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// One pass over the outcome log of `verify_dir`.
pub fn scan(
    verify_dir: &Path,
    from_ms: i64,
    to_ms: i64,
    audit: Option<&AuditIndex>,
) -> Result<FeedFigures, EvidenceError> {
    let mut f = FeedFigures::default();
    let mut key = (String::new(), [0u8; 32]);
    let scan = scan_outcome_log(verify_dir, |d| {
        f.decisions_total += 1;
        if d.decided_at_unix_ms < from_ms || d.decided_at_unix_ms >= to_ms {
            return;
        }
        f.decisions += 1;
        f.newest_in_period_ms = Some(
            f.newest_in_period_ms
                .map_or(d.decided_at_unix_ms, |n| n.max(d.decided_at_unix_ms)),
        );
        let outcome = outcome_name(d.outcome);
        *f.by_outcome_reason
            .entry(outcome.to_owned())
            .or_default()
            .entry(d.reason_code.clone())
            .or_insert(0) += 1;
        if d.key_id.is_empty() {
            f.without_key += 1;
        }
        let day = f.days.entry(day_of(d.decided_at_unix_ms)).or_insert([0; 3]);
        match outcome {
            "accepted" => day[0] += 1,
            "escalated" => day[1] += 1,
            "rejected" => day[2] += 1,
            _ => {}
        }
        key.0.clone_from(&d.tenant_id);
        let found = hex::decode_to_slice(&d.pcs_id, &mut key.1)
            .ok()
            .and(audit)
            .and_then(|a| a.by_key.get(&key).copied());
        match found {
            Some(leaf) => {
                f.in_audit += 1;
                f.last_leaf = Some(f.last_leaf.map_or(leaf, |l| l.max(leaf)));
            }
            None => {
                f.missing += 1;
                if f.first_missing.is_none() {
                    f.first_missing = Some((d.seq, d.tenant_id, d.pcs_id));
                }
            }
        }
    })?;
    f.records = scan.records;
    f.conflict_events = scan.conflict_events;
    f.oldest_decided_at_unix_ms = scan.oldest_decided_at_unix_ms;
    Ok(f)
}

pub fn compute(inputs: &Inputs<'_>) -> Evidence {
    let f = &inputs.feed;
    let audit_size = inputs.audit.as_ref().ok().map(|a| a.checkpoint.size);
    let figures = [
        ("decisions", json!(f.decisions)),
        ("in_audit_log", json!(f.in_audit)),
        ("missing", json!(f.missing)),
        ("accepted", json!(f.outcome_count("accepted"))),
        ("escalated", json!(f.outcome_count("escalated"))),
        ("rejected", json!(f.outcome_count("rejected"))),
        ("audit_checkpoint_size", json!(audit_size)),
        ("conflict_events_not_decisions", json!(f.conflict_events)),
    ];
    if let Err(why) = &inputs.audit {
        return evidence(
            KIND,
            Status::Fail,
            figures,
            format!(
                "{} decisions in the period, but there is no verifiable audit log: {why}",
                f.decisions
            ),
        );
    }
    if f.decisions == 0 {
        return evidence(
            KIND,
            Status::NotApplicable,
            figures,
            "no decision in the outcome log was decided in the period",
        );
    }
    match &f.first_missing {
        None => evidence(
            KIND,
            Status::Pass,
            figures,
            format!(
                "all {} decisions of the outcome log decided in the period are in the audit log",
                f.decisions
            ),
        ),
        Some((seq, tenant, pcs_id)) => evidence(
            KIND,
            Status::Fail,
            figures,
            format!(
                "{} of {} decisions in the period are not in the audit log (checkpoint size {}); the first is outcome-log record {seq}, tenant {tenant:?}, pcs_id {pcs_id}",
                f.missing,
                f.decisions,
                audit_size.unwrap_or(0)
            ),
        ),
    }
}
