//! `retention`: the oldest record kept by each store (outcome log, audit log) and the
//! configured retention (svc-kpi's `retention_days`; the outcome and audit logs are
//! append-only and never expire records). Passes when the audit log still holds the oldest
//! decision of the outcome log (nothing the audit trail needs was dropped). svc-kpi's
//! retention (aggregates for dashboards, at least 7 days) is reported, not judged.

use serde_json::json;

use super::{Inputs, evidence, rfc3339_ms};
use crate::model::{Evidence, Status};

pub const KIND: &str = "retention";

pub fn compute(inputs: &Inputs<'_>) -> Evidence {
    let oldest_feed = inputs.feed.oldest_decided_at_unix_ms;
    let oldest_audit = inputs
        .audit
        .as_ref()
        .ok()
        // Decision times are not monotonic in log order (concurrent decisions): the minimum.
        .and_then(|a| a.index.decisions.iter().map(|d| d.decided_at_unix_ms).min())
        .and_then(|t| i64::try_from(t).ok());
    let kpi_days = inputs
        .layout
        .setting("kpi", "retention_days")
        .and_then(|v| v.as_integer());
    let period_days = (inputs.to_ms - inputs.from_ms) as f64 / 86_400_000.0;
    let figures = [
        ("outcome_log_records", json!(inputs.feed.records)),
        (
            "oldest_outcome_log_decision",
            json!(oldest_feed.map(rfc3339_ms)),
        ),
        (
            "audit_log_entries",
            json!(inputs.audit.as_ref().ok().map(|a| a.checkpoint.size)),
        ),
        ("oldest_audit_decision", json!(oldest_audit.map(rfc3339_ms))),
        ("outcome_log_retention", json!("unlimited (append-only)")),
        ("audit_log_retention", json!("unlimited (append-only)")),
        ("kpi_retention_days", json!(kpi_days)),
        (
            "period_days",
            json!((period_days * 1000.0).round() / 1000.0),
        ),
    ];
    let (Some(feed), Some(audit)) = (oldest_feed, oldest_audit) else {
        return evidence(
            KIND,
            Status::NotApplicable,
            figures,
            "the stores hold no decision yet",
        );
    };
    if audit > feed {
        return evidence(
            KIND,
            Status::Fail,
            figures,
            format!(
                "the audit log's oldest decision ({}) is younger than the outcome log's ({}): older decisions are no longer in the audit trail",
                rfc3339_ms(audit),
                rfc3339_ms(feed)
            ),
        );
    }
    evidence(
        KIND,
        Status::Pass,
        figures,
        format!(
            "the outcome and audit logs keep every decision since {}; svc-kpi keeps {}",
            rfc3339_ms(feed),
            kpi_days.map_or_else(|| "its default".to_owned(), |d| format!("{d} days"))
        ),
    )
}
