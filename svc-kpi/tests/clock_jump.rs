//! The wall clock jumping backwards under svc-kpi (and under svc-verify, which stamps
//! `decided_at` with it): no decision is lost, counted twice or dropped from the current
//! windows, and no latency or rate comes out negative. Latency is never computed from wall
//! clocks: it is svc-verify's `verify_cpu_ns`, measured on the monotonic clock.

mod common;

use common::*;
use flk_proto::v1::OutcomeKind::Accepted;
use svc_kpi::{ManualClock, Window};

/// Every number in the report's JSON, with its path.
fn numbers(v: &serde_json::Value, path: &str, out: &mut Vec<(String, f64)>) {
    match v {
        serde_json::Value::Number(n) => out.push((path.to_owned(), n.as_f64().unwrap_or(0.0))),
        serde_json::Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                numbers(x, &format!("{path}[{i}]"), out);
            }
        }
        serde_json::Value::Object(o) => {
            for (k, x) in o {
                numbers(x, &format!("{path}.{k}"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn a_backward_clock_jump_loses_nothing_and_gives_no_negative_figure() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let kpi = open(dir.path(), &clock);
    // 10 decisions at T0 (1 ms each).
    let first: Vec<_> = (1..=10)
        .map(|n| decision(n, "acme", n, Accepted, T0, 1_000_000))
        .collect();
    assert_eq!(kpi.apply(&first).unwrap().decisions, 10);

    // The clock steps back an hour: the next 10 decisions are stamped before the first ones.
    clock.set(T0 - HOUR);
    let second: Vec<_> = (11..=20)
        .map(|n| decision(n, "acme", n, Accepted, T0 - HOUR + n as i64, 2_000_000))
        .collect();
    assert_eq!(kpi.apply(&second).unwrap().decisions, 10);
    // Redelivery of everything after the jump is recognised by position, not by time.
    let all: Vec<_> = first.iter().chain(&second).cloned().collect();
    let again = kpi.apply(&all).unwrap();
    assert_eq!((again.decisions, again.redelivered), (0, 20));

    let check = |what: &str, window: Window| {
        let r = kpi.report("acme", window).unwrap();
        assert_eq!((r.decisions, r.accepted), (20, 20), "{what}");
        let p95 = r.verify_latency_p95_ms.expect("latency");
        assert!((1.0..=2.5).contains(&p95), "{what}: p95 {p95} ms");
        let mut nums = Vec::new();
        numbers(&serde_json::to_value(&r).unwrap(), "report", &mut nums);
        // Timestamps may move with the clock; no count, rate, cost or latency is negative.
        let negative: Vec<_> = nums
            .iter()
            .filter(|(p, v)| *v < 0.0 && !p.ends_with("_unix_ms"))
            .collect();
        assert!(negative.is_empty(), "{what}: {negative:?}");
        assert_eq!(r.cost_inputs.verify_cpu_ns, 30_000_000, "{what}");
    };
    // While the clock is behind, the decisions stamped "in the future" count in the
    // current window; once it is right again, all of them are in the last day.
    check("clock an hour behind", Window::Hour);
    clock.set(T0 + 5 * MINUTE);
    check("clock corrected", Window::Day);
}
