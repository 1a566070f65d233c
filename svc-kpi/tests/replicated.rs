//! Decisions replicated into this region (svc-crr) in the KPI report and metrics: counted in
//! `replicated_decisions` with their bytes as the network cost, stored bytes included, and
//! kept out of the decisions, rates, compute, latency and anchoring share of this region;
//! audit coverage still counts this region's decisions only, and the audit lag all records.

mod common;

use common::*;
use flk_proto::v1;
use flk_proto::v1::OutcomeKind::{Accepted, Rejected};
use svc_kpi::{KpiError, ManualClock, Window};

/// A copy of a decision made in region `us`, as svc-verify records it when svc-crr applies it.
fn copy(seq: u64, tenant: &str, n: u64, at: i64) -> v1::FeedRecord {
    let mut r = decision(seq, tenant, n, Rejected, at, 9_000_000);
    r.region = "us".to_owned();
    r.replicated = true;
    if let Some(o) = r.outcome.as_mut() {
        o.origin_region = "us".to_owned();
        o.replicated = true;
    }
    r
}

#[test]
fn replicated_decisions_cost_network_bytes_and_count_apart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let kpi = open(dir.path(), &clock);
    let at = T0 - 5 * MINUTE;
    // acme: 4 decisions here (1 ms each), then 3 copies from us interleaved with them.
    let records = vec![
        decision(1, "acme", 1, Accepted, at, 1_000_000),
        copy(2, "acme", 2, at),
        decision(3, "acme", 3, Accepted, at, 1_000_000),
        copy(4, "acme", 4, at),
        decision(5, "acme", 5, Accepted, at, 1_000_000),
        copy(6, "acme", 6, at),
        decision(7, "acme", 7, Rejected, at, 1_000_000),
        decision(8, "other", 8, Accepted, at, 1_000_000),
    ];
    let applied = kpi.apply(&records).unwrap();
    assert_eq!((applied.decisions, applied.replicated), (5, 3));

    let copies: Vec<_> = records.iter().filter(|r| r.replicated).cloned().collect();
    let acme: Vec<_> = records
        .iter()
        .filter(|r| r.tenant_id == "acme")
        .cloned()
        .collect();
    let kpi_report = kpi.report("acme", Window::Hour).unwrap();
    let r = &kpi_report;
    assert_eq!(r.replicated_decisions, 3);
    // This region's decisions only: the copies' rejections do not move its rates.
    assert_eq!(
        (r.decisions, r.accepted, r.escalated, r.rejected),
        (4, 3, 0, 1)
    );
    assert_eq!(r.escalation_rate, Some(1.0 / 4.0));
    assert_eq!(r.regimes.values().sum::<u64>(), 4);
    assert_eq!(r.signals["r"].counts.iter().sum::<u64>(), 4);
    // Compute and latency: the 4 local milliseconds, not the copies' 9 ms each.
    assert_eq!(r.cost_inputs.verify_cpu_ns, 4_000_000);
    assert!(r.verify_latency_p95_ms.unwrap() < 1.1);
    // Network: the copies' bytes at 0.09 USD per GB; storage: every record kept here.
    assert_eq!(r.cost_inputs.replicated_bytes, bytes_of(&copies));
    assert!(r.cost_inputs.replicated_bytes > 0);
    assert_close(
        r.cost_breakdown_usd.network,
        bytes_of(&copies) as f64 / 1e9 * 0.09,
    );
    assert_eq!(r.cost_inputs.stored_bytes, bytes_of(&acme));
    // The per-task cost includes the network line.
    let c = &r.cost_breakdown_usd;
    assert_close(c.total, c.compute + c.storage + c.network + c.anchoring);
    assert_close(r.cost_per_trusted_task_usd.unwrap(), c.total / 3.0);

    // In the REST body, under that name.
    let json = serde_json::to_value(r).unwrap();
    assert_eq!(json["replicated_decisions"], 3);
    assert_eq!(json["decisions"], 4);

    // Audit: svc-audit logs the copies too, so the lag counts them; coverage is over this
    // region's decisions (a log of the first 3 records holds acme's decisions 1 and 3).
    kpi.set_audit_logged(Some(3));
    let r = kpi.report("acme", Window::Hour).unwrap();
    assert_eq!(r.audit_lag_decisions, Some(5));
    assert_eq!(r.audit_coverage, Some(2.0 / 4.0));
    kpi.set_audit_logged(Some(8));
    let r = kpi.report("acme", Window::Hour).unwrap();
    assert_eq!(
        (r.audit_lag_decisions, r.audit_coverage),
        (Some(0), Some(1.0))
    );

    // Feedback on a copy is refused (its verdicts count where it was decided).
    let e = kpi.feedback("acme", &pcs_id(2), "false_alarm").unwrap_err();
    assert!(matches!(e, KpiError::ReplicatedDecision { .. }), "{e}");

    // The other tenant sees none of it.
    let o = kpi.report("other", Window::Hour).unwrap();
    assert_eq!((o.decisions, o.replicated_decisions), (1, 0));
    assert_eq!(o.cost_inputs.replicated_bytes, 0);

    // Metrics: the gauge per tenant and window, and the event counter.
    kpi.refresh_metrics().unwrap();
    let text = svc_kpi::metrics::render(kpi.registry());
    let m = |s: &str| metric(&text, s);
    assert_eq!(
        m(r#"flk_kpi_replicated_decisions{tenant="acme",window="1h"}"#),
        Some(3.0)
    );
    assert_eq!(
        m(r#"flk_kpi_replicated_decisions{tenant="other",window="1h"}"#),
        Some(0.0)
    );
    assert_eq!(
        m(r#"flk_kpi_decisions{outcome="rejected",tenant="acme",window="1h"}"#),
        Some(1.0)
    );
    assert_eq!(m(r#"flk_kpi_events_total{kind="replicated"}"#), Some(3.0));
    assert_eq!(m(r#"flk_kpi_events_total{kind="decision"}"#), Some(5.0));
    assert!(m(r#"flk_kpi_cost_usd{component="network",tenant="acme",window="1h"}"#).unwrap() > 0.0);
}

#[test]
fn copies_survive_a_restart_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let records = vec![copy(1, "acme", 1, T0), copy(2, "acme", 2, T0)];
    {
        let kpi = open(dir.path(), &clock);
        kpi.apply(&records).unwrap();
    }
    let kpi = open(dir.path(), &clock);
    // The feed redelivers from before the cursor: nothing is counted twice.
    let again = kpi.apply(&records).unwrap();
    assert_eq!((again.replicated, again.redelivered), (0, 2));
    let r = kpi.report("acme", Window::Hour).unwrap();
    assert_eq!((r.decisions, r.replicated_decisions), (0, 2));
    assert_eq!(r.cost_inputs.replicated_bytes, bytes_of(&records));
    assert_eq!(
        r.cost_per_trusted_task_usd, None,
        "no accepted decision here"
    );
}
