//! KPI tests on known event streams: exact rates and costs, late and replaced feedback,
//! restarts, redelivery, rolling windows (manual clock), retention, latency p95, audit
//! coverage and the exported gauges.

mod common;

use common::*;
use flk_proto::v1::OutcomeKind::{Accepted, Escalated, Rejected};
use svc_kpi::{KpiError, ManualClock, Window};

/// acme: 10 accepted (1 ms each), 3 escalated and 2 rejected (3 ms each); other: 5 accepted
/// (1 ms); one conflict event. Keys: acme 1..=15, other 101..=105.
fn stream(at: i64) -> Vec<flk_proto::v1::FeedRecord> {
    let mut out = Vec::new();
    let mut seq = 0;
    let mut next = || {
        seq += 1;
        seq
    };
    for n in 1..=10 {
        out.push(decision(next(), "acme", n, Accepted, at, 1_000_000));
    }
    for n in 11..=13 {
        out.push(decision(next(), "acme", n, Escalated, at, 3_000_000));
    }
    for n in 14..=15 {
        out.push(decision(next(), "acme", n, Rejected, at, 3_000_000));
    }
    for n in 101..=105 {
        out.push(decision(next(), "other", n, Accepted, at, 1_000_000));
    }
    out.push(conflict(next(), "acme", 1, at));
    out
}

#[test]
fn known_stream_gives_exact_rates_and_costs() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let kpi = open(dir.path(), &clock);
    let records = stream(T0 - 5 * MINUTE);
    let applied = kpi.apply(&records).unwrap();
    assert_eq!(
        (
            applied.decisions,
            applied.redelivered,
            applied.skipped,
            applied.cursor
        ),
        (20, 0, 1, 21)
    );
    for n in [1, 2] {
        kpi.feedback("acme", &pcs_id(n), "hallucination").unwrap();
    }
    kpi.feedback("acme", &pcs_id(11), "false_alarm").unwrap();
    kpi.feedback("acme", &pcs_id(14), "correct").unwrap();
    kpi.record_anchor_batches("rfc3161", 4, Some(T0 - MINUTE))
        .unwrap();

    let r = kpi.report("acme", Window::Hour).unwrap();
    assert_eq!(
        (r.decisions, r.accepted, r.escalated, r.rejected),
        (15, 10, 3, 2)
    );
    assert_eq!(
        (
            r.hallucinations_reported,
            r.false_alarms,
            r.correct_reported
        ),
        (2, 1, 1)
    );
    // caught = 3 + 2 - 1 = 4; containment = 4 / (4 + 2).
    assert_eq!(r.containment_rate, Some(4.0 / 6.0));
    assert_eq!(r.escalation_rate, Some(5.0 / 15.0));
    assert_eq!(r.false_alarm_rate, Some(1.0 / 5.0));

    // compute: 25 ms of verification at 0.0001 USD per 100 ms.
    let acme: Vec<_> = records[..15].to_vec();
    assert_eq!(r.cost_inputs.verify_cpu_ns, 25_000_000);
    assert_close(r.cost_breakdown_usd.compute, 0.25 * 0.0001);
    // storage: the records' bytes, hot, one month.
    assert_eq!(r.cost_inputs.stored_bytes, bytes_of(&acme));
    assert_close(
        r.cost_breakdown_usd.storage,
        bytes_of(&acme) as f64 / 1e9 * 0.023,
    );
    // network: nothing replicated.
    assert_eq!(r.cost_inputs.replicated_bytes, 0);
    assert_eq!(r.cost_breakdown_usd.network, 0.0);
    // anchoring: 4 batches x 0.5 USD, acme's share 15 of 20 decisions.
    assert_close(r.cost_breakdown_usd.anchoring, 2.0 * 15.0 / 20.0);
    let total = 0.25 * 0.0001 + bytes_of(&acme) as f64 / 1e9 * 0.023 + 1.5;
    assert_close(r.cost_breakdown_usd.total, total);
    assert_close(r.cost_per_trusted_task_usd.unwrap(), total / 10.0);

    // Regimes and signals.
    assert_eq!(r.regimes["mixed"], 10);
    assert_eq!(r.regimes["sticky"], 3);
    assert_eq!(r.regimes["non_sticky"], 2);
    assert_eq!(r.regimes["other"], 0);
    let rh = &r.signals["r"];
    assert_eq!(rh.counts.iter().sum::<u64>(), 15);
    assert_eq!(rh.counts[11], 15, "r = 0.52 is in [0.50, 0.55)");
    let d = &r.signals["D_hat"];
    assert_eq!(d.counts[7], 15, "D_hat = 1.6 is in [1.5, 1.75)");

    // SLOs: containment 0.667 < 0.98, escalation 0.333 > 0.02, latency p95 3 ms <= 5 ms.
    assert_eq!(r.slo["containment"].ok, Some(false));
    assert_eq!(r.slo["escalation"].ok, Some(false));
    assert_eq!(r.slo["latency"].ok, Some(true));
    assert_eq!(r.audit_coverage, None, "no audit upstream configured");

    // The other tenant is separate; an unknown tenant has no decisions and no rates.
    let o = kpi.report("other", Window::Hour).unwrap();
    assert_eq!((o.decisions, o.accepted), (5, 5));
    assert_eq!(o.containment_rate, None, "0/0");
    assert_eq!(o.escalation_rate, Some(0.0));
    assert_eq!(o.false_alarm_rate, None);
    assert_close(o.cost_breakdown_usd.anchoring, 2.0 * 5.0 / 20.0);
    let none = kpi.report("nobody", Window::Week).unwrap();
    assert_eq!(none.decisions, 0);
    assert_eq!(none.cost_per_trusted_task_usd, None);
    assert_eq!(none.verify_latency_p95_ms, None);
    assert_eq!(none.slo["latency"].ok, None);
    assert!(
        none.cost_breakdown_usd.anchoring.is_sign_positive(),
        "0.0, not -0.0"
    );
    let json = serde_json::to_value(&none).unwrap();
    assert!(json["containment_rate"].is_null());
    assert_eq!(json["window"], "7d");
}

#[test]
fn late_feedback_counts_in_the_window_of_its_decision_and_replaces_earlier_verdicts() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let kpi = open(dir.path(), &clock);
    // Two hours ago: outside 1h, inside 24h.
    kpi.apply(&[
        decision(1, "acme", 1, Accepted, T0 - 2 * HOUR, 10),
        decision(2, "acme", 2, Rejected, T0 - 2 * HOUR, 10),
        decision(3, "acme", 3, Accepted, T0 - 3 * MINUTE, 10),
    ])
    .unwrap();
    // Feedback now, long after the decisions' minutes.
    clock.advance_ms(10 * MINUTE);
    let f = kpi.feedback("acme", &pcs_id(1), "hallucination").unwrap();
    assert_eq!(f.previous, None);
    assert_eq!(f.decided_at_unix_ms, T0 - 2 * HOUR);
    let hour = kpi.report("acme", Window::Hour).unwrap();
    assert_eq!((hour.decisions, hour.hallucinations_reported), (1, 0));
    let day = kpi.report("acme", Window::Day).unwrap();
    assert_eq!((day.decisions, day.hallucinations_reported), (3, 1));
    // caught = 1 (rejected), missed = 1: containment 1/2.
    assert_eq!(day.containment_rate, Some(0.5));

    // A later verdict replaces the earlier one; repeating it changes nothing.
    let f = kpi.feedback("acme", &pcs_id(1), "correct").unwrap();
    assert_eq!(f.previous, Some(svc_kpi::Verdict::Hallucination));
    kpi.feedback("acme", &pcs_id(1), "correct").unwrap();
    let day = kpi.report("acme", Window::Day).unwrap();
    assert_eq!((day.hallucinations_reported, day.correct_reported), (0, 1));
    assert_eq!(day.containment_rate, Some(1.0));

    kpi.feedback("acme", &pcs_id(2), "false_alarm").unwrap();
    let day = kpi.report("acme", Window::Day).unwrap();
    assert_eq!(day.false_alarm_rate, Some(1.0));
    assert_eq!(day.containment_rate, None, "caught 0 + missed 0");
    kpi.feedback("acme", &pcs_id(2), "correct").unwrap();
    let day = kpi.report("acme", Window::Day).unwrap();
    assert_eq!((day.false_alarms, day.correct_reported), (0, 2));
    assert_eq!(day.false_alarm_rate, Some(0.0));

    // Verdicts that do not apply, unknown decisions, bad verdicts.
    assert!(matches!(
        kpi.feedback("acme", &pcs_id(2), "hallucination"),
        Err(KpiError::VerdictNotApplicable { .. })
    ));
    assert!(matches!(
        kpi.feedback("acme", &pcs_id(3), "false_alarm"),
        Err(KpiError::VerdictNotApplicable { .. })
    ));
    assert!(matches!(
        kpi.feedback("other", &pcs_id(1), "correct"),
        Err(KpiError::UnknownDecision { .. })
    ));
    assert!(matches!(
        kpi.feedback("acme", &pcs_id(1), "wrong"),
        Err(KpiError::InvalidVerdict)
    ));
    // A refused verdict changed nothing.
    let day = kpi.report("acme", Window::Day).unwrap();
    assert_eq!(
        (
            day.hallucinations_reported,
            day.false_alarms,
            day.correct_reported
        ),
        (0, 0, 2)
    );
}

#[test]
fn restarts_keep_everything_and_redelivered_records_are_not_counted_twice() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let records = stream(T0 - MINUTE);
    let before = {
        let kpi = open(dir.path(), &clock);
        kpi.apply(&records[..12]).unwrap();
        kpi.feedback("acme", &pcs_id(3), "hallucination").unwrap();
        assert_eq!(kpi.store().cursor().unwrap(), 12);
        kpi.report("acme", Window::Day).unwrap()
    };
    // Restart: the same directory, a new process-worth of state.
    let kpi = open(dir.path(), &clock);
    assert_eq!(kpi.store().cursor().unwrap(), 12);
    assert_eq!(kpi.report("acme", Window::Day).unwrap(), before);
    // The feed redelivers from an older position: the overlap is not counted again.
    let r = kpi.apply(&records[8..]).unwrap();
    assert_eq!((r.decisions, r.redelivered, r.skipped), (8, 4, 1));
    // The same decisions under new sequence numbers (a feed re-read): keyed, not counted.
    let mut again = records[..15].to_vec();
    for (i, rec) in again.iter_mut().enumerate() {
        rec.seq = 100 + i as u64;
    }
    let r = kpi.apply(&again).unwrap();
    assert_eq!((r.decisions, r.redelivered), (0, 15));
    let after = kpi.report("acme", Window::Day).unwrap();
    assert_eq!(
        (
            after.decisions,
            after.accepted,
            after.escalated,
            after.rejected
        ),
        (15, 10, 3, 2)
    );
    assert_eq!(after.hallucinations_reported, 1, "the verdict survived");
    assert_eq!(after.cost_inputs.verify_cpu_ns, 25_000_000);
    drop(kpi);
    let kpi = open(dir.path(), &clock);
    assert_eq!(kpi.report("acme", Window::Day).unwrap(), after);
    assert_eq!(kpi.store().cursor().unwrap(), 114);
}

#[test]
fn windows_roll_with_the_clock() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let kpi = open(dir.path(), &clock);
    kpi.apply(&[
        decision(1, "acme", 1, Accepted, T0, 10),
        decision(2, "acme", 2, Escalated, T0 - 59 * MINUTE, 10),
        decision(3, "acme", 3, Rejected, T0 - 60 * MINUTE, 10),
        decision(4, "acme", 4, Accepted, T0 - 2 * DAY, 10),
    ])
    .unwrap();
    let count = |w| kpi.report("acme", w).unwrap().decisions;
    // 1h = this minute and the 59 before it.
    assert_eq!(
        (count(Window::Hour), count(Window::Day), count(Window::Week)),
        (2, 3, 4)
    );
    clock.advance_ms(MINUTE);
    assert_eq!(count(Window::Hour), 1);
    clock.advance_ms(HOUR);
    let r = kpi.report("acme", Window::Hour).unwrap();
    assert_eq!(r.decisions, 0);
    assert_eq!((r.escalation_rate, r.containment_rate), (None, None));
    assert_eq!(count(Window::Day), 3);
    clock.set(T0 + DAY);
    assert_eq!((count(Window::Day), count(Window::Week)), (0, 4));
    clock.set(T0 + 5 * DAY + 30 * 1000);
    assert_eq!(count(Window::Week), 3);
    clock.set(T0 + 7 * DAY);
    assert_eq!(count(Window::Week), 0);
}

#[test]
fn decisions_over_time_puts_each_decision_in_the_step_of_its_minute() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let kpi = open(dir.path(), &clock);
    kpi.apply(&[
        decision(1, "acme", 1, Accepted, T0, 10),
        decision(2, "acme", 2, Escalated, T0 - 59 * MINUTE, 10),
        decision(3, "acme", 3, Rejected, T0 - 60 * MINUTE, 10),
        // Ahead of this clock: counts in the last step.
        decision(4, "acme", 4, Accepted, T0 + 5 * MINUTE, 10),
        decision(5, "acme", 5, Accepted, T0 - 2 * DAY, 10),
        decision(6, "other", 6, Rejected, T0, 10),
    ])
    .unwrap();
    let nonzero = |v: &[u64]| -> Vec<(usize, u64)> {
        v.iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(i, n)| (i, *n))
            .collect()
    };
    let hour = kpi.report("acme", Window::Hour).unwrap();
    let s = &hour.decisions_over_time;
    assert_eq!((s.step_minutes, s.len()), (1, 60));
    assert_eq!(s.start_unix_ms, hour.window_start_unix_ms);
    assert_eq!(nonzero(&s.accepted), [(59, 2)]);
    assert_eq!(nonzero(&s.escalated), [(0, 1)]);
    assert!(
        nonzero(&s.rejected).is_empty(),
        "60 minutes ago is outside 1h"
    );

    // 24h: steps of 30 minutes; T0 is in the last, T0 - 59 min and T0 - 60 min in the two
    // before it (T0 is on a step boundary).
    let day = kpi.report("acme", Window::Day).unwrap();
    let s = &day.decisions_over_time;
    assert_eq!((s.step_minutes, s.len()), (30, 48));
    assert_eq!(nonzero(&s.accepted), [(47, 2)]);
    assert_eq!(nonzero(&s.escalated), [(46, 1)]);
    assert_eq!(nonzero(&s.rejected), [(45, 1)]);

    // 7d: steps of 3 hours; each series sums to its outcome's count.
    let week = kpi.report("acme", Window::Week).unwrap();
    let s = &week.decisions_over_time;
    assert_eq!((s.step_minutes, s.len()), (180, 56));
    assert_eq!(s.start_unix_ms, week.window_start_unix_ms);
    assert_eq!(nonzero(&s.accepted), [(39, 1), (55, 2)]);
    let sum = |v: &[u64]| v.iter().sum::<u64>();
    assert_eq!(
        (sum(&s.accepted), sum(&s.escalated), sum(&s.rejected)),
        (week.accepted, week.escalated, week.rejected)
    );

    // Other tenants' decisions are not in it; a tenant without decisions has zeros.
    let none = kpi.report("nobody", Window::Hour).unwrap();
    assert_eq!(none.decisions_over_time.len(), 60);
    assert_eq!(sum(&none.decisions_over_time.rejected), 0);

    // Reports from servers that predate the series still parse.
    let mut json = serde_json::to_value(&hour).unwrap();
    json.as_object_mut().unwrap().remove("decisions_over_time");
    let old: svc_kpi::KpiReport = serde_json::from_value(json).unwrap();
    assert!(old.decisions_over_time.is_empty());
}

#[test]
fn retention_removes_old_decisions_but_keeps_seven_days() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let kpi = open(dir.path(), &clock); // retention 8 days (default)
    kpi.apply(&[
        decision(1, "acme", 1, Accepted, T0 - 9 * DAY, 10),
        decision(2, "acme", 2, Accepted, T0 - 6 * DAY, 10),
    ])
    .unwrap();
    // The apply itself purged the 9-day-old decision.
    assert!(kpi.store().decision("acme", &pcs_id(1)).unwrap().is_none());
    assert!(matches!(
        kpi.feedback("acme", &pcs_id(1), "correct"),
        Err(KpiError::UnknownDecision { .. })
    ));
    kpi.feedback("acme", &pcs_id(2), "correct").unwrap();
    assert_eq!(kpi.report("acme", Window::Week).unwrap().decisions, 1);
}

#[test]
fn latency_p95_comes_from_the_measured_verification_times() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let kpi = open(dir.path(), &clock);
    // 19 decisions of 2^20 ns (1.048576 ms) and one of 80 ms: p95 (rank 19 of 20) is 2^20 ns.
    let mut recs: Vec<_> = (1..=19)
        .map(|n| decision(n, "acme", n, Accepted, T0, 1 << 20))
        .collect();
    recs.push(decision(20, "acme", 20, Accepted, T0, 80_000_000));
    kpi.apply(&recs).unwrap();
    let r = kpi.report("acme", Window::Hour).unwrap();
    let p95 = r.verify_latency_p95_ms.unwrap();
    // Reported as the upper edge of its bin: [2^20, 2^20 + 2^15).
    assert_eq!(p95, ((1u64 << 20) + (1 << 15) - 1) as f64 / 1e6);
    assert!((1.048576..=1.048576 * (1.0 + 1.0 / 32.0)).contains(&p95));
    assert_eq!(r.slo["latency"].ok, Some(true));
    // Two more slow ones: now rank 21 of 22 is 80 ms, capped at the maximum seen, above the
    // default objective (flk_core::slo, 50 ms).
    kpi.apply(&[
        decision(21, "acme", 21, Accepted, T0, 80_000_000),
        decision(22, "acme", 22, Accepted, T0, 80_000_000),
    ])
    .unwrap();
    let r = kpi.report("acme", Window::Hour).unwrap();
    assert_eq!(r.verify_latency_p95_ms, Some(80.0));
    const { assert!(80.0 > flk_core::slo::VERIFY_LATENCY_P95_MAX_SECONDS * 1000.0) };
    assert_eq!(r.slo["latency"].ok, Some(false));
}

#[test]
fn audit_coverage_counts_decisions_beyond_the_audit_log_as_missing() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let kpi = open(dir.path(), &clock);
    kpi.apply(&stream(T0)).unwrap(); // ordinals: acme 1..=15, other 16..=20
    kpi.set_audit_logged(Some(10));
    let r = kpi.report("acme", Window::Hour).unwrap();
    assert_eq!(r.audit_coverage, Some(10.0 / 15.0));
    assert_eq!(r.audit_lag_decisions, Some(10));
    let o = kpi.report("other", Window::Hour).unwrap();
    assert_eq!(o.audit_coverage, Some(0.0));
    kpi.set_audit_logged(Some(20));
    assert_eq!(
        kpi.report("other", Window::Hour).unwrap().audit_coverage,
        Some(1.0)
    );
    assert_eq!(
        kpi.report("acme", Window::Hour)
            .unwrap()
            .audit_lag_decisions,
        Some(0)
    );
    assert_eq!(
        kpi.report("nobody", Window::Hour).unwrap().audit_coverage,
        None
    );
}

#[test]
fn every_window_together_gives_each_windows_report_and_coverage() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let kpi = open(dir.path(), &clock);
    const HOUR: i64 = 3_600_000;
    // Ordinals in pairs (acme, other), newest decisions first: now (every window), three
    // hours ago (day and week), two days ago (the week only); "other" interleaved so the
    // scan tells tenants apart.
    let mut records = Vec::new();
    for (i, at) in [T0, T0 - 3 * HOUR, T0 - 48 * HOUR].into_iter().enumerate() {
        for j in 0..4u64 {
            let n = i as u64 * 4 + j + 1;
            records.push(decision(n * 2 - 1, "acme", n, Accepted, at, 1_000_000));
            records.push(decision(n * 2, "other", 100 + n, Rejected, at, 1_000_000));
        }
    }
    kpi.apply(&records).unwrap();
    for logged in [0, 3, 9, 14, 24] {
        kpi.set_audit_logged(Some(logged));
        let together = kpi.reports("acme").unwrap();
        let one_by_one: Vec<_> = Window::ALL
            .iter()
            .map(|w| kpi.report("acme", *w).unwrap())
            .collect();
        assert_eq!(together, one_by_one, "audit log holding {logged}");
    }
    // A log holding the first 14 decisions (acme 1-7, other 1-7) misses acme's 8-12: one of
    // the 4 three hours ago and the 4 of two days ago; none of the hour's.
    kpi.set_audit_logged(Some(14));
    let coverage: Vec<_> = kpi
        .reports("acme")
        .unwrap()
        .iter()
        .map(|r| r.audit_coverage)
        .collect();
    assert_eq!(
        coverage,
        [Some(1.0), Some(7.0 / 8.0), Some(7.0 / 12.0)],
        "hour, day, week"
    );
}

#[test]
fn gauges_follow_the_reports_and_undefined_rates_are_absent() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let kpi = open(dir.path(), &clock);
    kpi.apply(&stream(T0)).unwrap();
    kpi.feedback("acme", &pcs_id(1), "hallucination").unwrap();
    kpi.refresh_metrics().unwrap();
    let text = svc_kpi::metrics::render(kpi.registry());
    let m = |s: &str| metric(&text, s);
    assert_eq!(
        m(r#"flk_kpi_containment_rate{tenant="acme",window="1h"}"#),
        Some(5.0 / 6.0)
    );
    assert_eq!(
        m(r#"flk_kpi_escalation_rate{tenant="acme",window="7d"}"#),
        Some(5.0 / 15.0)
    );
    assert_eq!(
        m(r#"flk_kpi_decisions{outcome="accepted",tenant="acme",window="24h"}"#),
        Some(10.0)
    );
    assert_eq!(
        m(r#"flk_kpi_regime_decisions{regime="sticky",tenant="acme",window="1h"}"#),
        Some(3.0)
    );
    assert_eq!(
        m(r#"flk_kpi_slo_ok{slo="containment",tenant="acme",window="1h"}"#),
        Some(0.0)
    );
    assert_eq!(
        m(r#"flk_kpi_verify_latency_p95_seconds{tenant="acme",window="1h"}"#)
            .map(|s| (s * 1e3).round()),
        Some(3.0)
    );
    assert!(m(r#"flk_kpi_cost_usd{component="compute",tenant="acme",window="1h"}"#).unwrap() > 0.0);
    assert!(m(r#"flk_kpi_cost_per_trusted_task_usd{tenant="acme",window="1h"}"#).is_some());
    // other: no escalations, no verdicts: containment and false-alarm rate are 0/0, absent.
    assert_eq!(
        m(r#"flk_kpi_containment_rate{tenant="other",window="1h"}"#),
        None
    );
    assert_eq!(
        m(r#"flk_kpi_false_alarm_rate{tenant="other",window="1h"}"#),
        None
    );
    assert_eq!(
        m(r#"flk_kpi_slo_ok{slo="containment",tenant="other",window="1h"}"#),
        None
    );
    assert_eq!(
        m(r#"flk_kpi_audit_coverage{tenant="acme",window="1h"}"#),
        None
    );
    assert_eq!(m(r#"flk_kpi_events_total{kind="decision"}"#), Some(20.0));
    assert_eq!(m(r#"flk_kpi_events_total{kind="skipped"}"#), Some(1.0));
    assert_eq!(m(r#"flk_kpi_events_total{kind="feedback"}"#), Some(1.0));
    assert_eq!(m(r#"flk_kpi_signal_r_count{tenant="acme"}"#), Some(15.0));
    // Windows roll: an hour later the 1h rates are undefined and disappear.
    clock.advance_ms(HOUR);
    kpi.refresh_metrics().unwrap();
    let text = svc_kpi::metrics::render(kpi.registry());
    assert_eq!(
        metric(
            &text,
            r#"flk_kpi_escalation_rate{tenant="acme",window="1h"}"#
        ),
        None
    );
    assert_eq!(
        metric(
            &text,
            r#"flk_kpi_escalation_rate{tenant="acme",window="24h"}"#
        ),
        Some(5.0 / 15.0)
    );
}

#[test]
fn reports_render_as_json_and_self_contained_html() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let kpi = open(dir.path(), &clock);
    kpi.apply(&stream(T0)).unwrap();
    let reports: Vec<_> = Window::ALL
        .iter()
        .map(|w| kpi.report("acme", *w).unwrap())
        .collect();
    let json: serde_json::Value =
        serde_json::from_str(&svc_kpi::render::render_json(&reports)).unwrap();
    assert_eq!(json["reports"].as_array().unwrap().len(), 3);
    let back: svc_kpi::KpiReport = serde_json::from_value(json["reports"][0].clone()).unwrap();
    assert_eq!(back, reports[0]);
    let html = svc_kpi::render::render_html(&reports, "KPIs <test>");
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("KPIs &lt;test&gt;"));
    assert!(html.contains("<svg"));
    assert!(html.contains("Tenant acme"));
    assert!(html.contains("missed"), "containment SLO missed");
    assert!(!html.contains("<script"));
    assert!(!html.contains("src="));
}

#[test]
fn imported_anchors_count_one_batch_per_checkpoint_and_strategy_once() {
    use svc_kpi::store::AnchorSeen;
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let anchor = |id, strategy: &str, size, at| AnchorSeen {
        id,
        strategy: strategy.to_owned(),
        checkpoint_size: size,
        created_at_unix_ms: at,
    };
    let journal = [
        anchor(0, "rfc3161", 10, T0 - 3 * MINUTE),
        // A hybrid batch: its RFC 3161 anchor now, its Polygon anchor in a later round.
        anchor(1, "hybrid", 20, T0 - 2 * MINUTE),
        anchor(2, "hybrid", 20, T0 - MINUTE),
        // Then the strategy changed to polygon.
        anchor(3, "polygon", 30, T0 - MINUTE),
    ];
    {
        let kpi = open(dir.path(), &clock);
        kpi.apply(&[decision(1, "acme", 1, Accepted, T0 - MINUTE, 1_000_000)])
            .unwrap();
        assert_eq!(kpi.import_anchors(&journal[..2]).unwrap(), 2);
        // svc-kpi lists from the newest imported checkpoint's size: id 1 comes again; id 2
        // is the same hybrid batch.
        assert_eq!(kpi.import_anchors(&journal[1..]).unwrap(), 1);
        let c = kpi.store().anchor_import_cursor().unwrap();
        assert_eq!((c.next_id, c.min_checkpoint_size), (4, 30));
    }
    // After a restart the same listing counts nothing.
    let kpi = open(dir.path(), &clock);
    assert_eq!(kpi.import_anchors(&journal).unwrap(), 0);
    let r = kpi.report("acme", Window::Hour).unwrap();
    let batches: Vec<(&str, u64)> = r
        .cost_inputs
        .anchor_batches
        .iter()
        .map(|(s, n)| (s.as_str(), *n))
        .collect();
    assert_eq!(batches, [("hybrid", 1), ("polygon", 1), ("rfc3161", 1)]);
    // Prices: rfc3161 at the test table's 0.5, the others at the optimizer's defaults.
    assert_close(r.cost_breakdown_usd.anchoring, 0.5 + 0.02 + 0.01);
}

#[test]
fn signals_recorded_by_svc_verify_take_precedence_over_the_request_json() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let kpi = open(dir.path(), &clock);
    let mut rec = decision(1, "acme", 1, Accepted, T0 - MINUTE, 1_000_000);
    // The JSON says D_hat = 1.6; svc-verify recorded 1.1.
    rec.signals = Some(flk_proto::v1::ClaimedSignals {
        d_hat: 1.1,
        coh_star: 0.73,
        r: 0.52,
    });
    let legacy = decision(2, "acme", 2, Accepted, T0 - MINUTE, 1_000_000);
    kpi.apply(&[rec, legacy]).unwrap();
    let r = kpi.report("acme", Window::Hour).unwrap();
    let d = &r.signals["D_hat"];
    assert_eq!(d.counts.iter().sum::<u64>(), 2);
    assert_eq!(d.counts[7], 1, "the legacy record's 1.6 is in [1.5, 1.75)");
    assert_eq!(d.counts[5], 1, "the recorded 1.1 is in [1.0, 1.25)");
}
