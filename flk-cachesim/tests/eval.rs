//! The replay's semantics (which requests count, what the figures are) and the predictive
//! models on generated traces.

use flk_cachesim::cost::{CostModel, MONTH_SECS};
use flk_cachesim::eval::{EvalConfig, EvalError, evaluate, evaluated_from, p95};
use flk_cachesim::generator::{GenConfig, TenantKind, generate};
use flk_cachesim::policy::{HotTier, Lru, PredictiveConfig};
use flk_cachesim::predict::{
    Candidate, LogReg, LogRegParams, Model, RetrainSchedule, Ses, SesParams, labelled_examples,
    select_promotions, should_promote,
};
use flk_cachesim::trace::Trace;

fn costs() -> CostModel {
    CostModel {
        hot_read_ms: 1.0,
        hot_mb_per_s: 1000.0,
        warm_read_ms: 20.0,
        warm_mb_per_s: 100.0,
        hot_usd_per_gb_month: 0.023,
        warm_read_usd: 1e-6,
        warm_read_usd_per_gb: 0.01,
        promotion_usd: 0.0,
        usd_per_saved_ms: 0.0,
    }
}

fn config(cap: u64, policies: &[&str]) -> EvalConfig {
    EvalConfig {
        hot_capacity_bytes: cap,
        holdout: 0.3,
        costs: costs(),
        predictive: PredictiveConfig::default(),
        horizon_secs: 3600.0,
        policies: policies.iter().map(|s| s.to_string()).collect(),
    }
}

fn trace(kinds: Vec<TenantKind>, requests: usize) -> Trace {
    generate(&GenConfig {
        seed: 11,
        requests,
        tenants: 3,
        kinds,
        days: 6.0,
        objects_per_tenant: 3_000,
        zipf_s: 0.9,
    })
    .unwrap()
}

#[test]
fn counted_requests_start_at_n_minus_round_n_holdout() {
    assert_eq!(evaluated_from(10, 0.3), 7);
    assert_eq!(evaluated_from(10, 0.25), 7); // round(2.5) = 3
    assert_eq!(evaluated_from(10, 0.0), 10);
    assert_eq!(evaluated_from(3, 0.5), 1); // round(1.5) = 2
}

#[test]
fn lru_figures_match_a_hand_replay() {
    let t = trace(vec![TenantKind::Diurnal], 5_000);
    let cap = 2_000_000;
    let c = costs();
    let report = evaluate(&t, &config(cap, &["lru"]), &|_| {}).unwrap();
    let p = &report.policies[0];
    // The same replay by hand: everything served, only the last 30 % counted.
    let from = t.requests.len() - (t.requests.len() as f64 * 0.3).round() as usize;
    let mut lru = Lru::new(cap);
    let (mut hits, mut hit_bytes, mut bytes, mut warm, mut lat) = (0u64, 0u64, 0u64, 0.0, vec![]);
    for (i, r) in t.requests.iter().enumerate() {
        let hit = lru.get(r.object, r.size);
        if !hit {
            lru.insert(r.object, r.size);
        }
        if i >= from {
            bytes += r.size;
            if hit {
                hits += 1;
                hit_bytes += r.size;
            } else {
                warm += c.warm_read_cost(r.size);
            }
            lat.push(c.read_ms(hit, r.size));
        }
    }
    let n = (t.requests.len() - from) as f64;
    assert_eq!(p.requests as f64, n);
    assert_eq!(p.hits, hits);
    assert!((p.hit_ratio - hits as f64 / n).abs() < 1e-12);
    assert!((p.byte_hit_ratio - hit_bytes as f64 / bytes as f64).abs() < 1e-12);
    assert_eq!(p.p95_read_ms, p95(&mut lat));
    let secs = t.requests.last().unwrap().timestamp - t.requests[from].timestamp;
    assert!((p.warm_reads_usd - warm * MONTH_SECS / secs).abs() < 1e-9);
    assert!(p.mean_hot_bytes > 0.0 && p.mean_hot_bytes <= cap as f64);
    assert!(
        (p.monthly_cost_usd - (p.hot_storage_usd + p.warm_reads_usd + p.promotions_usd)).abs()
            < 1e-12
    );
}

#[test]
fn p95_is_nearest_rank() {
    let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
    assert_eq!(p95(&mut v), 95.0);
    let mut v: Vec<f64> = (1..=10).rev().map(f64::from).collect();
    assert_eq!(p95(&mut v), 10.0);
}

#[test]
fn bad_configurations_are_refused() {
    let t = trace(vec![TenantKind::Diurnal], 1_000);
    let mut c = config(1000, &["lru"]);
    c.holdout = 1.0;
    assert!(matches!(
        evaluate(&t, &c, &|_| {}),
        Err(EvalError::Holdout(_))
    ));
    c.holdout = -0.1;
    assert!(matches!(
        evaluate(&t, &c, &|_| {}),
        Err(EvalError::Holdout(_))
    ));
    let c = config(0, &["lru"]);
    assert!(matches!(
        evaluate(&t, &c, &|_| {}),
        Err(EvalError::Capacity)
    ));
    let c = config(10, &["fifo"]);
    assert!(matches!(
        evaluate(&t, &c, &|_| {}),
        Err(EvalError::UnknownPolicy(_))
    ));
}

#[test]
fn best_baseline_and_the_verdict_follow_the_costs() {
    let t = trace(
        vec![
            TenantKind::Diurnal,
            TenantKind::Bursty,
            TenantKind::Drifting,
        ],
        12_000,
    );
    let all = [
        "lru",
        "sieve",
        "w_tinylfu",
        "predictive_ses",
        "predictive_logreg",
    ];
    let r = evaluate(&t, &config(1_500_000, &all), &|_| {}).unwrap();
    assert!(r.skipped.is_empty(), "{:?}", r.skipped);
    assert_eq!(r.policies.len(), 5);
    let baselines: Vec<_> = r.policies.iter().take(3).collect();
    let best = baselines
        .iter()
        .min_by(|a, b| a.monthly_cost_usd.total_cmp(&b.monthly_cost_usd))
        .unwrap();
    assert_eq!(r.best_baseline.as_deref(), Some(best.name.as_str()));
    let beats = r.policies[3..]
        .iter()
        .any(|p| p.monthly_cost_usd < best.monthly_cost_usd && p.p95_read_ms <= best.p95_read_ms);
    assert_eq!(r.predictive_beats_best_baseline, beats);
    for p in &r.policies {
        assert!(p.hit_ratio > 0.0 && p.hit_ratio < 1.0, "{p:?}");
        assert!(p.mean_hot_bytes <= 1_500_000.0, "{p:?}");
    }
    // The predictive tiers promote ahead of requests, and pay for it.
    for p in &r.policies[3..] {
        assert!(p.promotions > 0 && p.promotions_usd > 0.0, "{p:?}");
    }
    for p in &r.policies[..3] {
        assert_eq!((p.promotions, p.promotions_usd), (0, 0.0));
    }
    // Deterministic: the same trace and configuration give the same report, timings aside.
    let again = evaluate(&t, &config(1_500_000, &all), &|_| {}).unwrap();
    for (a, b) in r.policies.iter().zip(&again.policies) {
        assert_eq!(
            (a.hits, a.promotions, a.p95_read_ms),
            (b.hits, b.promotions, b.p95_read_ms)
        );
    }
}

#[test]
fn the_promotion_rule() {
    assert!(should_promote(0.6, 1.0, 1.0));
    assert!(!should_promote(0.5, 1.0, 1.0));
    assert!(should_promote(0.2, 5.0, 1.0)); // 1.0 > 0.8
    assert!(!should_promote(0.0, 100.0, 0.001));
    let cands: Vec<Candidate> = (0..10)
        .map(|i| Candidate {
            object: i,
            p_access: i as f64 / 10.0,
            saving: 1.0,
            promotion_cost: 1.0,
        })
        .collect();
    let chosen: Vec<u64> = select_promotions(&cands, 3)
        .iter()
        .map(|c| c.object)
        .collect();
    assert_eq!(chosen, [9, 8, 7]);
    assert_eq!(select_promotions(&cands, 100).len(), 4); // p in {0.6 .. 0.9}
}

/// Mean predicted probability of the examples that were accessed minus that of those that
/// were not, on the part of the log after the training part.
fn separation(model: &dyn Model, t: &Trace, from: usize) -> f64 {
    let rows = labelled_examples(&t.requests, 3600.0, 86_400.0, 3600.0, 50_000, 3);
    let cut = t.requests[from].timestamp;
    let (mut pos, mut neg) = (vec![], vec![]);
    for (f, label) in rows.iter().filter(|r| r.0.now >= cut) {
        if *label {
            pos.push(model.p_access(f))
        } else {
            neg.push(model.p_access(f))
        }
    }
    assert!(!pos.is_empty() && !neg.is_empty());
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    mean(&pos) - mean(&neg)
}

#[test]
fn models_rank_accessed_objects_higher_on_unseen_data() {
    let t = trace(vec![TenantKind::Diurnal, TenantKind::Drifting], 20_000);
    let from = evaluated_from(t.requests.len(), 0.3);
    let mut logreg = LogReg::new(LogRegParams::default());
    logreg.train(&t.requests[..from]).unwrap();
    assert!(separation(&logreg, &t, from) > 0.05);
    let mut ses = Ses::new(SesParams::default());
    ses.train(&t.requests[..from]).unwrap();
    assert!(separation(&ses, &t, from) > 0.05);
    // SES follows the diurnal tenant: its forecast differs across the day.
    let day: Vec<f64> = (0..24)
        .map(|h| ses.tenant_forecast_per_hour(0, t.requests[from].timestamp + h as f64 * 3600.0))
        .collect();
    let (lo, hi) = day
        .iter()
        .fold((f64::MAX, 0.0f64), |(l, h), v| (l.min(*v), h.max(*v)));
    assert!(hi > 2.0 * lo, "{day:?}");
}

#[test]
fn training_on_too_little_data_is_a_clear_error() {
    let t = trace(vec![TenantKind::Diurnal], 200);
    let mut ses = Ses::new(SesParams::default());
    let err = ses.train(&t.requests[..10]).unwrap_err().to_string();
    assert!(err.contains("two days"), "{err}");
}

#[test]
fn retraining_is_due_on_schedule() {
    let s = RetrainSchedule { every_secs: 3600.0 };
    assert!(s.due(None, 0.0));
    assert!(!s.due(Some(100.0), 3699.0));
    assert!(s.due(Some(100.0), 3700.0));
}
