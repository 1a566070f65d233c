//! The operations dashboard: svc-verify's ingest, outcomes, refusals, dedup index and outcome
//! log; the gateway's responses; svc-audit's tree and feed; svc-kpi's feed.

use crate::model::{Color, Dashboard, Kind, Panel, Row, Thresholds, Variable};
use crate::slo;

fn rate(selector: &str) -> String {
    format!("rate({selector}[$__rate_interval])")
}

fn quantile(q: f64, bucket_selector: &str) -> String {
    format!(
        "histogram_quantile({q}, sum by (le) ({}))",
        rate(bucket_selector)
    )
}

fn verify_row() -> Row {
    Row {
        title: "svc-verify".into(),
        panels: vec![
            Panel::new(
                Kind::TimeSeries,
                "Ingest rate",
                "Submissions admitted past admission control per second, all tenants (flk_ingest_total).",
            )
            .query(&format!("sum({})", rate("flk_ingest_total")), "admitted")
            .unit("reqps"),
            Panel::new(
                Kind::TimeSeries,
                "Outcomes by reason",
                "Fresh decisions per second by outcome and reason code.",
            )
            .query(
                &format!(
                    "sum by (outcome, reason_code) ({})",
                    rate(r#"flk_verify_outcomes_total{tenant=~"$tenant"}"#)
                ),
                "{{outcome}} {{reason_code}}",
            )
            .unit("reqps"),
            Panel::new(
                Kind::TimeSeries,
                "Refusals by reason",
                "Submissions refused before a decision: by svc-verify (code) and by the gateway's admission control. dedup_unavailable means the dedup index cannot be reached (FailClosed).",
            )
            .query(
                &format!("sum by (code) ({})", rate("flk_verify_refused_total")),
                "svc-verify {{code}}",
            )
            .query(
                &format!("sum by (code) ({})", rate("flk_gateway_refused_total")),
                "gateway {{code}}",
            )
            .unit("reqps"),
            Panel::new(
                Kind::TimeSeries,
                "Signature failures",
                "Submissions refused with 401, by reason.",
            )
            .query(
                &format!(
                    "sum by (reason) ({})",
                    rate(r#"flk_verify_signature_failures_total{tenant=~"$tenant"}"#)
                ),
                "{{reason}}",
            )
            .unit("reqps"),
            Panel::new(
                Kind::TimeSeries,
                "Dedup hits and conflicts",
                "Duplicates answered from the dedup index, and duplicates whose canonical digest differs from the first submission (conflicts).",
            )
            .query(
                &format!(
                    "sum({})",
                    rate(r#"flk_verify_dedup_hits_total{tenant=~"$tenant"}"#)
                ),
                "hits",
            )
            .query(
                &format!(
                    "sum({})",
                    rate(r#"flk_verify_dedup_conflicts_total{tenant=~"$tenant"}"#)
                ),
                "conflicts",
            )
            .unit("reqps"),
            Panel::new(
                Kind::TimeSeries,
                "Owed dedup writes",
                "Decisions in the log whose dedup index write is still owed (IndexCoversLog); backpressure at 65,536. Repairs: entries written late from the log.",
            )
            .query("sum(flk_verify_dedup_owed_writes)", "owed")
            .query(
                &format!("sum({})", rate("flk_verify_dedup_repairs_total")),
                "repairs/s",
            )
            .thresholds(Thresholds::lower_is_better(
                slo::OWED_WRITES_MAX / 2.0,
                slo::OWED_WRITES_MAX,
            )),
        ],
    }
}

fn log_row() -> Row {
    Row {
        title: "Outcome log".into(),
        panels: vec![
            Panel::new(
                Kind::TimeSeries,
                "Fsync latency",
                "Write + fdatasync time of one group-commit batch; the line is the 20 ms p99 alert bound.",
            )
            .query(&quantile(0.5, "flk_outcome_log_fsync_seconds_bucket"), "p50")
            .query(&quantile(0.99, "flk_outcome_log_fsync_seconds_bucket"), "p99")
            .unit("s")
            .thresholds(Thresholds::lower_is_better(
                slo::FSYNC_P99_MAX_SECONDS / 2.0,
                slo::FSYNC_P99_MAX_SECONDS,
            )),
            Panel::new(
                Kind::TimeSeries,
                "Batch size",
                "Records per fsync (group commit): mean and p99.",
            )
            .query(
                &format!(
                    "sum({}) / sum({})",
                    rate("flk_outcome_log_batch_records_sum"),
                    rate("flk_outcome_log_batch_records_count")
                ),
                "mean",
            )
            .query(&quantile(0.99, "flk_outcome_log_batch_records_bucket"), "p99"),
        ],
    }
}

fn gateway_row() -> Row {
    Row {
        title: "Gateway".into(),
        panels: vec![
            Panel::new(
                Kind::TimeSeries,
                "Responses by status",
                "REST responses per second by route and HTTP status.",
            )
            .query(
                &format!(
                    "sum by (route, status) ({})",
                    rate("flk_gateway_responses_total")
                ),
                "{{route}} {{status}}",
            )
            .unit("reqps")
            .size(24, 8),
        ],
    }
}

fn audit_row() -> Row {
    Row {
        title: "svc-audit".into(),
        panels: vec![
            Panel::new(
                Kind::Stat,
                "Feed connected",
                "1 while svc-audit is subscribed to the outcome feed.",
            )
            .query("min(flk_audit_feed_connected)", "connected")
            .thresholds(Thresholds {
                base: Color::Red,
                steps: vec![(1.0, Color::Green)],
            }),
            Panel::new(
                Kind::Stat,
                "Tree size",
                "Entries in the audit log (size of the latest checkpoint).",
            )
            .query("max(flk_audit_tree_size)", "entries"),
            Panel::new(
                Kind::Stat,
                "Consumer lag",
                "Feed records received but not yet integrated.",
            )
            .query("max(flk_audit_consumer_lag_records)", "records")
            .thresholds(Thresholds::lower_is_better(
                slo::CONSUMER_LAG_MAX_RECORDS / 10.0,
                slo::CONSUMER_LAG_MAX_RECORDS,
            )),
            Panel::new(
                Kind::Stat,
                "Feed reconnects",
                "Feed subscriptions that failed or ended, over the last hour.",
            )
            .query(
                "sum(increase(flk_audit_feed_reconnects_total[1h]))",
                "reconnects",
            ),
            Panel::new(
                Kind::TimeSeries,
                "Integrate latency",
                "Time to integrate one batch (append, checkpoint, index, cursor).",
            )
            .query(&quantile(0.5, "flk_audit_integrate_seconds_bucket"), "p50")
            .query(&quantile(0.99, "flk_audit_integrate_seconds_bucket"), "p99")
            .unit("s"),
            Panel::new(
                Kind::TimeSeries,
                "Feed position and lag",
                "Highest feed sequence received and integrated, and the lag between them.",
            )
            .query("max(flk_audit_feed_seq)", "received")
            .query("max(flk_audit_cursor_seq)", "integrated")
            .query("max(flk_audit_consumer_lag_records)", "lag"),
        ],
    }
}

fn kpi_row() -> Row {
    Row {
        title: "svc-kpi".into(),
        panels: vec![
            Panel::new(
                Kind::TimeSeries,
                "KPI feed lag",
                "Feed records svc-kpi received but has not committed; its feed position next to svc-audit's.",
            )
            .query("max(flk_kpi_consumer_lag_records)", "kpi lag")
            .query("max(flk_kpi_feed_seq)", "kpi feed seq")
            .thresholds(Thresholds::lower_is_better(
                slo::CONSUMER_LAG_MAX_RECORDS / 10.0,
                slo::CONSUMER_LAG_MAX_RECORDS,
            )),
            Panel::new(
                Kind::TimeSeries,
                "KPI events",
                "Events applied per second by kind (decision, feedback, redelivered, skipped).",
            )
            .query(
                &format!("sum by (kind) ({})", rate("flk_kpi_events_total")),
                "{{kind}}",
            )
            .unit("reqps"),
        ],
    }
}

/// The operations dashboard.
pub fn dashboard() -> Dashboard {
    Dashboard {
        uid: "flk-operations",
        title: "FLK / Operations",
        description: "Ingest, outcomes, refusals, dedup index, outcome log, gateway, svc-audit and svc-kpi feeds. Generated by flk-dashboards: do not edit by hand.",
        tags: vec!["flk", "operations"],
        variables: vec![Variable {
            name: "tenant",
            label: "Tenant",
            metric: "flk_verify_outcomes_total",
            multi: true,
            default: None,
        }],
        rows: vec![
            verify_row(),
            log_row(),
            gateway_row(),
            audit_row(),
            kpi_row(),
        ],
    }
}
