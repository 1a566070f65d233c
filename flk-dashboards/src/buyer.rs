//! The buyer dashboard: the KPIs a buyer of AI agents asks for (svc-kpi's `flk_kpi_*` gauges
//! per tenant and window), with SLO thresholds from [`crate::slo`], plus the panels that wait
//! for services not built yet (cross-region replication, anchoring).

use crate::model::{Dashboard, Kind, Panel, Row, Thresholds, Variable};
use crate::slo;

/// `{tenant=~"$tenant",window="$window"}`.
const TW: &str = r#"{tenant=~"$tenant",window="$window"}"#;

fn tw(metric: &str) -> String {
    format!("{metric}{TW}")
}

fn containment() -> Thresholds {
    Thresholds::higher_is_better(slo::CONTAINMENT_MIN, 0.99)
}

fn escalation() -> Thresholds {
    Thresholds::lower_is_better(slo::ESCALATION_MAX * 0.75, slo::ESCALATION_MAX)
}

fn latency() -> Thresholds {
    Thresholds::lower_is_better(
        slo::VERIFY_LATENCY_P95_MAX_SECONDS / 2.0,
        slo::VERIFY_LATENCY_P95_MAX_SECONDS,
    )
}

fn coverage() -> Thresholds {
    Thresholds::higher_is_better(slo::AUDIT_COVERAGE_MIN, 1.0)
}

fn slo_row() -> Row {
    let latency_p95_from_histogram = r#"histogram_quantile(0.95, sum by (le, tenant) (rate(flk_verify_latency_seconds_bucket{tenant=~"$tenant"}[$__rate_interval])))"#;
    Row {
        title: "SLOs ($window)".into(),
        panels: vec![
            Panel::new(
                Kind::Stat,
                "Containment rate",
                "caught / (caught + hallucinations reported), where caught = escalated + rejected - false alarms (svc-kpi report definitions). SLO >= 98 %. Absent while undefined (0/0).",
            )
            .query(&tw("flk_kpi_containment_rate"), "{{tenant}}")
            .unit("percentunit")
            .thresholds(containment()),
            Panel::new(
                Kind::Stat,
                "Escalation rate",
                "(escalated + rejected) / decisions in the window. SLO <= 2 %.",
            )
            .query(&tw("flk_kpi_escalation_rate"), "{{tenant}}")
            .unit("percentunit")
            .thresholds(escalation()),
            Panel::new(
                Kind::Stat,
                "Verify latency p95",
                "p95 of the time from admission to durable answer over the window (svc-kpi). SLO <= 50 ms (alert FlkVerifyLatencyP95AboveSlo uses flk_verify_latency_seconds).",
            )
            .query(&tw("flk_kpi_verify_latency_p95_seconds"), "{{tenant}}")
            .unit("s")
            .thresholds(latency()),
            Panel::new(
                Kind::Stat,
                "Cost per trusted task",
                "Total cost (compute, storage, network, anchoring) over the decisions that were accepted and not marked hallucination.",
            )
            .query(&tw("flk_kpi_cost_per_trusted_task_usd"), "{{tenant}}")
            .unit("currencyUSD"),
            Panel::new(
                Kind::Stat,
                "Audit coverage",
                "Decisions in svc-audit's log over decisions received, in feed order. SLO >= 99.9 %.",
            )
            .query(&tw("flk_kpi_audit_coverage"), "{{tenant}}")
            .unit("percentunit")
            .thresholds(coverage()),
            Panel::new(
                Kind::Stat,
                "False-alarm rate",
                "Escalated or rejected decisions that reviewers marked false_alarm, over escalated + rejected. Absent while undefined.",
            )
            .query(&tw("flk_kpi_false_alarm_rate"), "{{tenant}}")
            .unit("percentunit"),
            Panel::new(
                Kind::Stat,
                "SLOs met",
                "1 when the SLO is met over the window (svc-kpi's own targets), 0 when not.",
            )
            .query(&tw("flk_kpi_slo_ok"), "{{tenant}} {{slo}}")
            .thresholds(Thresholds {
                base: crate::model::Color::Red,
                steps: vec![(1.0, crate::model::Color::Green)],
            })
            .size(12, 5),
            Panel::new(
                Kind::TimeSeries,
                "Verify latency p95 (live)",
                "p95 of flk_verify_latency_seconds over the rate interval, per tenant; the line is the 50 ms SLO.",
            )
            .query(latency_p95_from_histogram, "{{tenant}}")
            .unit("s")
            .thresholds(latency()),
            Panel::new(
                Kind::TimeSeries,
                "Containment and escalation rates",
                "The window's rates over time; red from the SLO bounds.",
            )
            .query(&tw("flk_kpi_containment_rate"), "containment {{tenant}}")
            .query(&tw("flk_kpi_escalation_rate"), "escalation {{tenant}}")
            .unit("percentunit")
            .range(0.0, 1.0),
        ],
    }
}

fn cost_row() -> Row {
    Row {
        title: "Cost".into(),
        panels: vec![
            Panel::new(
                Kind::BarGauge,
                "Cost breakdown",
                "Cost over the window by component. Network stays 0 until replication exists, anchoring until anchor batches are recorded.",
            )
            .query(
                &format!("sum by (component) ({})", tw("flk_kpi_cost_usd")),
                "{{component}}",
            )
            .unit("currencyUSD"),
            Panel::new(
                Kind::TimeSeries,
                "Cost per trusted task over time",
                "Over time, per tenant.",
            )
            .query(&tw("flk_kpi_cost_per_trusted_task_usd"), "{{tenant}}")
            .unit("currencyUSD"),
        ],
    }
}

fn volume_row() -> Row {
    Row {
        title: "Volume".into(),
        panels: vec![
            Panel::new(
                Kind::BarGauge,
                "Top tenants by escalations",
                "The ten tenants with the most escalated decisions in the window (all tenants, not only the selected ones).",
            )
            .query(
                r#"topk(10, sum by (tenant) (flk_kpi_decisions{window="$window",outcome="escalated"}))"#,
                "{{tenant}}",
            ),
            Panel::new(
                Kind::TimeSeries,
                "Volume per tenant",
                "Fresh decisions per second, per tenant (svc-verify).",
            )
            .query(
                r#"sum by (tenant) (rate(flk_verify_outcomes_total{tenant=~"$tenant"}[$__rate_interval]))"#,
                "{{tenant}}",
            )
            .unit("reqps"),
            Panel::new(
                Kind::BarGauge,
                "Decisions by outcome",
                "Decisions in the window by outcome.",
            )
            .query(
                &format!("sum by (outcome) ({})", tw("flk_kpi_decisions")),
                "{{outcome}}",
            ),
            Panel::new(
                Kind::BarGauge,
                "Decisions by regime",
                "Decisions in the window by the regime their signals put them in.",
            )
            .query(
                &format!("sum by (regime) ({})", tw("flk_kpi_regime_decisions")),
                "{{regime}}",
            ),
        ],
    }
}

fn assurance_row() -> Row {
    Row {
        title: "Audit, replication and anchoring".into(),
        panels: vec![
            Panel::new(
                Kind::TimeSeries,
                "Audit coverage over time",
                "Decisions in svc-audit's log over decisions received; the line is the 99.9 % SLO.",
            )
            .query(&tw("flk_kpi_audit_coverage"), "{{tenant}}")
            .unit("percentunit")
            .thresholds(coverage()),
            Panel::new(
                Kind::Stat,
                "CRR lag",
                "Age of the newest decision not yet replicated to each other region.",
            )
            .query(
                "max by (region) (flk_crr_replication_lag_seconds)",
                "{{region}}",
            )
            .unit("s")
            .requires("svc-crr", "cross-region replication of the outcome log"),
            Panel::new(
                Kind::Stat,
                "Anchoring success",
                "Share of audit checkpoint anchoring attempts that stored an anchor, over the last hour, all anchor kinds.",
            )
            .query(
                "sum(rate(flk_audit_anchor_success_total[1h])) / sum(rate(flk_audit_anchor_attempts_total[1h]))",
                "anchored",
            )
            .unit("percentunit")
            .thresholds(Thresholds::higher_is_better(0.99, 0.999)),
        ],
    }
}

fn signal_row() -> Row {
    let heatmap = |metric: &str, title: &str, what: &str| {
        Panel::new(
            Kind::Heatmap,
            title,
            &format!(
                "Distribution of the {what} claimed by decisions of the selected tenants, from the histogram's buckets (decisions per bucket per rate interval)."
            ),
        )
        .query(
            &format!(
                r#"sum by (le) (increase({metric}_bucket{{tenant=~"$tenant"}}[$__rate_interval]))"#
            ),
            "{{le}}",
        )
        .size(8, 8)
    };
    Row {
        title: "Signal quality".into(),
        panels: vec![
            heatmap("flk_kpi_signal_d_hat", "D_hat", "D_hat (fractal dimension)"),
            heatmap(
                "flk_kpi_signal_coh_star",
                "coh_star",
                "coh_star (coherence)",
            ),
            heatmap("flk_kpi_signal_r", "r", "r (compressibility)"),
        ],
    }
}

/// The buyer dashboard.
pub fn dashboard() -> Dashboard {
    Dashboard {
        uid: "flk-buyer",
        title: "FLK / Buyer KPIs",
        description: "Hallucination containment, escalations, cost per trusted task, latency and audit coverage per tenant and window, against their SLOs. Generated by flk-dashboards: do not edit by hand.",
        tags: vec!["flk", "kpi"],
        variables: vec![
            Variable {
                name: "tenant",
                label: "Tenant",
                metric: "flk_kpi_decisions",
                multi: true,
                default: None,
            },
            Variable {
                name: "window",
                label: "Window",
                metric: "flk_kpi_decisions",
                multi: false,
                default: Some("24h"),
            },
        ],
        rows: vec![
            slo_row(),
            cost_row(),
            volume_row(),
            assurance_row(),
            signal_row(),
        ],
    }
}
