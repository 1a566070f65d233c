//! `availability`: svc-kpi's SLOs (per tenant and window: 1h, 24h, 7d ending at the period's
//! last decision) as its report computes them from its store; the caller computes the report with svc-kpi's crate from a copy of the store
//! (svc-kpi holds its file's lock while it runs). Passes when every SLO that has a value is
//! met; not applicable when none has one or the store could not be read.

use serde_json::json;

use super::{Inputs, evidence};
use crate::model::{Evidence, Status};

pub const KIND: &str = "availability";

pub fn compute(inputs: &Inputs<'_>) -> Evidence {
    let slos = match &inputs.slos {
        Ok(s) => s,
        Err(why) => {
            return evidence(
                KIND,
                Status::NotApplicable,
                [("slos", json!(null))],
                format!("svc-kpi's SLOs are not available: {why}"),
            );
        }
    };
    let mut sorted = slos.clone();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let with_value: Vec<_> = sorted.iter().filter(|s| s.met.is_some()).collect();
    let missed: Vec<&str> = with_value
        .iter()
        .filter(|s| s.met == Some(false))
        .map(|s| s.name.as_str())
        .collect();
    let met = with_value.len() - missed.len();
    let figures = [
        ("slos", json!(sorted.len())),
        ("slos_with_value", json!(with_value.len())),
        ("slos_met", json!(met)),
        ("slos_missed", json!(missed)),
    ];
    if with_value.is_empty() {
        return evidence(
            KIND,
            Status::NotApplicable,
            figures,
            "no SLO has a value (no decisions in svc-kpi's windows)",
        );
    }
    if missed.is_empty() {
        evidence(
            KIND,
            Status::Pass,
            figures,
            format!("all {met} SLOs with a value are met"),
        )
    } else {
        evidence(
            KIND,
            Status::Fail,
            figures,
            format!(
                "{} of {} SLOs are missed: {}",
                missed.len(),
                with_value.len(),
                missed.join(", ")
            ),
        )
    }
}
