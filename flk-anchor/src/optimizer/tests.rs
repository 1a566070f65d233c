//! Optimizer tests: known tables with exact scores, constraints, tie-breaks, JSON shape, and
//! properties (determinism, feasibility, optimality).

use proptest::prelude::{Just, prop_assert, prop_assert_eq, prop_oneof, proptest};
use proptest::strategy::Strategy as _;

use super::*;

fn inputs(objective: Objective, batches_per_month: u64) -> Inputs {
    Inputs {
        strategies: default_strategies(),
        objective,
        constraints: Constraints::default(),
        batches_per_month,
    }
}

fn candidate(d: &[Candidate], id: StrategyId) -> &Candidate {
    d.iter().find(|c| c.strategy.id == id).unwrap()
}

#[test]
fn default_table_exact_scores() {
    let d = choose(&inputs(Objective::Balanced, 1000)).unwrap();
    let expected = [
        (
            StrategyId::Ethereum,
            2000.0,
            [0.0, 0.929060937, 1.0, 0.801603206],
            0.682666036,
        ),
        (
            StrategyId::Polygon,
            10.0,
            [0.995, 0.972402297, 0.789473684, 0.601202405],
            0.839519597,
        ),
        (
            StrategyId::Rfc3161,
            10.0,
            [0.995, 1.0, 0.0, 0.901803607],
            0.724200902,
        ),
        (StrategyId::Opentimestamps, 0.0, [1.0, 0.0, 1.0, 0.0], 0.5),
        (StrategyId::Hybrid, 20.0, [0.99, 1.0, 1.0, 1.0], 0.9975),
    ];
    for (id, monthly, [cost, latency, durability, reliability], total) in expected {
        let c = candidate(&d.candidates, id);
        assert_eq!(c.monthly_cost_usd, monthly, "{id:?}");
        assert_eq!(
            c.scores,
            Scores {
                cost,
                latency,
                durability,
                reliability,
                total
            },
            "{id:?}"
        );
        assert!(c.excluded_by.is_empty());
    }
    assert_eq!(d.chosen, StrategyId::Hybrid);
    let hybrid = candidate(&d.candidates, StrategyId::Hybrid).strategy;
    assert_eq!(hybrid.cost_per_batch_usd, 0.02);
    assert_eq!(hybrid.latency_secs, 2.0);
}

#[test]
fn each_objective_on_the_default_table() {
    let chosen = |o| choose(&inputs(o, 1000)).unwrap().chosen;
    assert_eq!(chosen(Objective::Cost), StrategyId::Opentimestamps);
    // rfc3161 and hybrid both have the best latency: the cheaper wins.
    assert_eq!(chosen(Objective::Latency), StrategyId::Rfc3161);
    // ethereum, opentimestamps and hybrid share the best durability: the cheapest wins.
    assert_eq!(chosen(Objective::Durability), StrategyId::Opentimestamps);
}

#[test]
fn each_constraint_excludes() {
    let mut i = inputs(Objective::Cost, 1000);
    i.constraints.max_latency_secs = Some(3600.0);
    let d = choose(&i).unwrap();
    assert_eq!(
        candidate(&d.candidates, StrategyId::Opentimestamps).excluded_by,
        vec![Exclusion::MaxLatency {
            value: 10_800.0,
            limit: 3600.0
        }]
    );
    // The cheapest feasible: polygon and rfc3161 tie on cost; name breaks the tie.
    assert_eq!(d.chosen, StrategyId::Polygon);

    i.constraints.min_durability = Some(0.9);
    let d = choose(&i).unwrap();
    assert_eq!(
        candidate(&d.candidates, StrategyId::Rfc3161).excluded_by,
        vec![Exclusion::MinDurability {
            value: 0.80,
            limit: 0.9
        }]
    );
    assert_eq!(d.chosen, StrategyId::Polygon);

    i.constraints.min_reliability = Some(0.99);
    let d = choose(&i).unwrap();
    assert!(matches!(
        candidate(&d.candidates, StrategyId::Polygon).excluded_by[..],
        [Exclusion::MinReliability { limit, .. }] if limit == 0.99
    ));
    assert_eq!(d.chosen, StrategyId::Hybrid);

    i.constraints.max_cost_per_month_usd = Some(100.0);
    let d = choose(&i).unwrap();
    assert_eq!(
        candidate(&d.candidates, StrategyId::Ethereum).excluded_by,
        vec![Exclusion::MaxCostPerMonth {
            value: 2000.0,
            limit: 100.0
        }]
    );
    assert_eq!(d.chosen, StrategyId::Hybrid);
    // Every violated constraint is listed.
    assert_eq!(
        candidate(&d.candidates, StrategyId::Opentimestamps)
            .excluded_by
            .len(),
        2
    );

    i.constraints.max_cost_per_month_usd = Some(19.99);
    match choose(&i) {
        Err(NoStrategy::Infeasible { candidates }) => {
            assert_eq!(candidates.len(), 5);
            assert!(candidates.iter().all(|c| !c.excluded_by.is_empty()));
        }
        other => panic!("expected Infeasible, got {other:?}"),
    }
}

#[test]
fn ties_go_to_lower_cost_then_name() {
    let s = |id, cost| Strategy {
        id,
        cost_per_batch_usd: cost,
        latency_secs: 10.0 * cost,
        durability: 0.25 + 0.25 * cost,
        reliability: 0.25 + 0.25 * cost,
    };
    // Scores (cost, latency, durability, reliability): (1,1,0,0), (0,0,1,1), (.5,.5,.5,.5):
    // all balanced totals are 0.5, so the cheapest wins.
    let mut i = Inputs {
        strategies: vec![
            s(StrategyId::Polygon, 3.0),
            s(StrategyId::Rfc3161, 2.0),
            s(StrategyId::Ethereum, 1.0),
        ],
        objective: Objective::Balanced,
        constraints: Constraints::default(),
        batches_per_month: 1,
    };
    let d = choose(&i).unwrap();
    assert!(d.candidates.iter().all(|c| c.scores.total == 0.5));
    assert_eq!(d.chosen, StrategyId::Ethereum);

    // Identical figures: the smaller name wins, whatever the input order.
    i.strategies = vec![s(StrategyId::Polygon, 1.0), s(StrategyId::Ethereum, 1.0)];
    assert_eq!(choose(&i).unwrap().chosen, StrategyId::Ethereum);
    i.strategies.reverse();
    assert_eq!(choose(&i).unwrap().chosen, StrategyId::Ethereum);
    // All equal in every dimension: every score is 1.
    assert!(
        choose(&i)
            .unwrap()
            .candidates
            .iter()
            .all(|c| c.scores.total == 1.0 && c.scores.cost == 1.0)
    );
}

#[test]
fn invalid_inputs_are_refused() {
    let mut i = inputs(Objective::Cost, 10);
    i.strategies.clear();
    assert!(matches!(choose(&i), Err(NoStrategy::InvalidInputs { .. })));
    let mut i = inputs(Objective::Cost, 10);
    i.strategies.push(i.strategies[0]);
    assert!(matches!(choose(&i), Err(NoStrategy::InvalidInputs { .. })));
    let mut i = inputs(Objective::Cost, 10);
    i.strategies[1].durability = 1.5;
    assert!(matches!(choose(&i), Err(NoStrategy::InvalidInputs { .. })));
    let mut i = inputs(Objective::Cost, 10);
    i.strategies[2].cost_per_batch_usd = f64::NAN;
    assert!(matches!(choose(&i), Err(NoStrategy::InvalidInputs { .. })));
    let mut i = inputs(Objective::Cost, 10);
    i.constraints.min_reliability = Some(f64::NAN);
    assert!(matches!(choose(&i), Err(NoStrategy::InvalidInputs { .. })));
}

#[test]
fn decision_json_has_stable_field_names() {
    let mut i = inputs(Objective::Balanced, 1000);
    i.constraints.max_latency_secs = Some(3600.0);
    let d = choose(&i).unwrap();
    let v = serde_json::to_value(&d).unwrap();
    assert_eq!(v["chosen"], "hybrid");
    assert_eq!(v["objective"], "balanced");
    assert_eq!(v["batches_per_month"], 1000);
    assert_eq!(v["constraints"]["max_latency_secs"], 3600.0);
    assert!(v["constraints"]["min_durability"].is_null());
    let ots = &v["candidates"][3];
    assert_eq!(ots["strategy"]["id"], "opentimestamps");
    assert_eq!(ots["monthly_cost_usd"], 0.0);
    assert_eq!(ots["scores"]["total"], 0.5);
    assert_eq!(
        ots["excluded_by"][0],
        serde_json::json!({"constraint": "max_latency", "value": 10800.0, "limit": 3600.0})
    );
    let back: Decision = serde_json::from_value(v).unwrap();
    assert_eq!(back, d);
    assert!(!back.changes(&d));
    let cheap = choose(&inputs(Objective::Cost, 1000)).unwrap();
    assert!(cheap.changes(&d));
    assert_eq!(
        d.chosen_candidate().map(|c| c.strategy.id),
        Some(StrategyId::Hybrid)
    );
    let err = serde_json::to_value(NoStrategy::InvalidInputs {
        message: "x".into(),
    })
    .unwrap();
    assert_eq!(
        err,
        serde_json::json!({"reason": "invalid_inputs", "message": "x"})
    );
}

const IDS: [StrategyId; 5] = [
    StrategyId::Ethereum,
    StrategyId::Polygon,
    StrategyId::Rfc3161,
    StrategyId::Opentimestamps,
    StrategyId::Hybrid,
];

fn arb_inputs() -> impl proptest::strategy::Strategy<Value = Inputs> {
    let figures = (0u32..400, 0u32..20_000, 0u32..=100, 0u32..=100);
    (
        proptest::collection::vec(figures, 1..=5),
        prop_oneof![
            Just(Objective::Cost),
            Just(Objective::Latency),
            Just(Objective::Durability),
            Just(Objective::Balanced)
        ],
        proptest::option::of(0u32..100_000),
        proptest::option::of(0u32..20_000),
        proptest::option::of(0u32..=100),
        proptest::option::of(0u32..=100),
        0u64..100_000,
    )
        .prop_map(|(figs, objective, cost, lat, dur, rel, batches)| Inputs {
            strategies: figs
                .into_iter()
                .zip(IDS)
                .map(|((c, l, d, r), id)| Strategy {
                    id,
                    cost_per_batch_usd: f64::from(c) / 100.0,
                    latency_secs: f64::from(l),
                    durability: f64::from(d) / 100.0,
                    reliability: f64::from(r) / 100.0,
                })
                .collect(),
            objective,
            constraints: Constraints {
                max_cost_per_month_usd: cost.map(f64::from),
                max_latency_secs: lat.map(f64::from),
                min_durability: dur.map(|d| f64::from(d) / 100.0),
                min_reliability: rel.map(|r| f64::from(r) / 100.0),
            },
            batches_per_month: batches,
        })
}

proptest! {
    #[test]
    fn choice_is_deterministic_feasible_and_optimal(i in arb_inputs()) {
        let first = choose(&i);
        prop_assert_eq!(&first, &choose(&i));
        let mut reversed = i.clone();
        reversed.strategies.reverse();
        let second = choose(&reversed);
        match (&first, &second) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a.chosen, b.chosen),
            (Err(NoStrategy::Infeasible { .. }), Err(NoStrategy::Infeasible { .. })) => {}
            _ => prop_assert!(false, "{first:?} vs {second:?}"),
        }
        match first {
            Ok(d) => {
                let chosen = d.chosen_candidate().unwrap();
                prop_assert!(chosen.excluded_by.is_empty());
                let c = &i.constraints;
                let s = chosen.strategy;
                prop_assert!(c.max_cost_per_month_usd.is_none_or(|l| chosen.monthly_cost_usd <= l));
                prop_assert!(c.max_latency_secs.is_none_or(|l| s.latency_secs <= l));
                prop_assert!(c.min_durability.is_none_or(|l| s.durability >= l));
                prop_assert!(c.min_reliability.is_none_or(|l| s.reliability >= l));
                for other in d.candidates.iter().filter(|o| o.excluded_by.is_empty()) {
                    prop_assert!(other.scores.total <= chosen.scores.total);
                    if other.scores.total == chosen.scores.total {
                        prop_assert!(other.monthly_cost_usd >= chosen.monthly_cost_usd);
                    }
                }
                for c in &d.candidates {
                    for v in [c.scores.cost, c.scores.latency, c.scores.durability, c.scores.reliability, c.scores.total] {
                        prop_assert!((0.0..=1.0).contains(&v));
                    }
                }
            }
            Err(NoStrategy::Infeasible { candidates }) => {
                prop_assert!(candidates.iter().all(|c| !c.excluded_by.is_empty()));
            }
            Err(e) => prop_assert!(false, "{e}"),
        }
    }
}

#[test]
fn a_configured_table_overrides_figures_and_rederives_hybrid() {
    let table: StrategyTable = parse_table(
        r#"{"ethereum": {"cost_per_batch_usd": 0.5},
            "polygon": {"latency_secs": 120.0, "reliability": 0.99},
            "hybrid": {"durability": 0.9}}"#,
    );
    table.validate().unwrap();
    let s = table.strategies();
    assert_eq!(
        s.iter().map(|s| s.id).collect::<Vec<_>>(),
        default_strategies()
            .iter()
            .map(|s| s.id)
            .collect::<Vec<_>>()
    );
    let eth = table.strategy(StrategyId::Ethereum).unwrap();
    assert_eq!(
        (
            eth.cost_per_batch_usd,
            eth.latency_secs,
            eth.durability,
            eth.reliability
        ),
        (0.5, 768.0, 0.99, 0.99)
    );
    let poly = table.strategy(StrategyId::Polygon).unwrap();
    assert_eq!((poly.latency_secs, poly.reliability), (120.0, 0.99));
    // Hybrid: derived from the configured parts, then its own override.
    let hybrid = table.strategy(StrategyId::Hybrid).unwrap();
    let rfc = table.strategy(StrategyId::Rfc3161).unwrap();
    let derived = Strategy::hybrid(StrategyId::Hybrid, &rfc, &poly);
    assert_eq!(hybrid.reliability, derived.reliability);
    assert_eq!(hybrid.durability, 0.9);
    // No configuration is the default table.
    assert_eq!(StrategyTable::default().strategies(), default_strategies());
}

#[test]
fn a_configured_table_changes_the_choice() {
    let cost = |strategies| {
        choose(&Inputs {
            strategies,
            objective: Objective::Cost,
            constraints: Constraints::default(),
            batches_per_month: 1000,
        })
        .unwrap()
        .chosen
    };
    assert_eq!(cost(default_strategies()), StrategyId::Opentimestamps);
    let table: StrategyTable = parse_table(r#"{"opentimestamps": {"cost_per_batch_usd": 3.0}}"#);
    assert_eq!(cost(table.strategies()), StrategyId::Polygon);
}

#[test]
fn bad_configured_tables_are_refused_naming_the_key() {
    for (json, key) in [
        (r#"{"solana": {}}"#, "solana"),
        (r#"{"ethereum": {"cost": 1.0}}"#, "cost"),
    ] {
        let err = serde_json::from_str::<StrategyTable>(json)
            .unwrap_err()
            .to_string();
        assert!(err.contains(key), "{err}");
    }
    let t: StrategyTable = parse_table(r#"{"rfc3161": {"durability": 1.5}}"#);
    let err = t.validate().unwrap_err();
    assert!(err.contains("rfc3161.durability"), "{err}");
    let t: StrategyTable = parse_table(r#"{"polygon": {"latency_secs": -1.0}}"#);
    assert!(t.validate().unwrap_err().contains("polygon.latency_secs"));
}

fn parse_table(json: &str) -> StrategyTable {
    serde_json::from_str(json).unwrap()
}
