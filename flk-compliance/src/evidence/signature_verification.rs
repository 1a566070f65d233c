//! `signature_verification`: the period's decisions by outcome and reason code (outcome log),
//! how many were decided without a signature check (a tenant with signing disabled: no key
//! id in the record), and the submissions refused for their signature per tenant and reason
//! (svc-verify's refusal store, minutes starting in the period). Fails when any decision of
//! the period was taken without checking a signature.

use std::collections::BTreeMap;

use serde_json::json;

use super::{Inputs, evidence};
use crate::model::{Evidence, Status};

pub const KIND: &str = "signature_verification";

pub fn compute(inputs: &Inputs<'_>) -> Evidence {
    let f = &inputs.feed;
    let refusals = inputs.external.refusals.as_ref().map(|rows| {
        let mut by: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        let mut per_minute: BTreeMap<i64, u64> = BTreeMap::new();
        for r in rows.iter().filter(|r| inputs.in_period(r.minute_unix_ms)) {
            *by.entry(r.tenant_id.clone())
                .or_default()
                .entry(r.reason_code.clone())
                .or_insert(0) += r.count;
            *per_minute.entry(r.minute_unix_ms).or_insert(0) += r.count;
        }
        let total: u64 = per_minute.values().sum();
        let peak = per_minute.values().copied().max().unwrap_or(0);
        (by, total, peak)
    });
    let (refusal_total, figures) = {
        let (by, total, peak) = match &refusals {
            Some((by, total, peak)) => (json!(by), json!(total), json!(peak)),
            None => (json!(null), json!(null), json!(null)),
        };
        (
            refusals.as_ref().map_or(0, |r| r.1),
            [
                ("decisions", json!(f.decisions)),
                ("decisions_by_outcome_reason", json!(f.by_outcome_reason)),
                ("decisions_without_signature_check", json!(f.without_key)),
                ("refused_for_signature", total),
                ("refused_by_tenant_reason", by),
                ("refused_peak_per_minute", peak),
            ],
        )
    };
    let refusal_text = match &refusals {
        Some(_) => format!("{refusal_total} submissions were refused for their signature"),
        None => "svc-verify's refusal store (verify/refusals.redb) is absent, so refusals are not counted".to_owned(),
    };
    if f.decisions == 0 && refusal_total == 0 {
        return evidence(
            KIND,
            Status::NotApplicable,
            figures,
            format!("no decision in the period; {refusal_text}"),
        );
    }
    if f.without_key > 0 {
        return evidence(
            KIND,
            Status::Fail,
            figures,
            format!(
                "{} of {} decisions in the period were taken without a signature check (tenant with signing disabled); {refusal_text}",
                f.without_key, f.decisions
            ),
        );
    }
    evidence(
        KIND,
        Status::Pass,
        figures,
        format!(
            "all {} decisions in the period passed a signature check by a tenant key; {refusal_text}",
            f.decisions
        ),
    )
}
