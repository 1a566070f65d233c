//! Exhaustive checks of the replication model within stated bounds, and the injected bugs the
//! checker must catch (`formal/README.md` records the numbers these tests print).
//!
//! Bounds, in both configurations: 3 regions; 3 PCS records submitted by clients, in order but
//! interleaved with everything else: region 0 decides key 0, region 1 decides key 1, then
//! region 1 receives a record with key 0 and other content (a conflicting duplicate that races
//! with region 0's record being replicated to it); full-mesh replication; one record in
//! flight per (source, target) beyond the acknowledged watermark; any message in flight may
//! be delivered next (reordering). Faults over a whole run:
//! - `restarts`: up to 2 region restarts and 1 lost message;
//! - `network`: 1 lost message, 1 duplicated message and 1 partition (isolating any region).
//!
//! The two configurations split the faults because their product (about 3.6 million states)
//! is too slow for CI in a debug build; each one is explored completely.

use std::collections::BTreeSet;

use flk_formal_model::crr::{Action, Bug, CrrModel, Msg, Submission};
use flk_formal_model::liveness;
use stateright::{Checker, HasDiscoveries, Model};

const SAFETY: [&str; 4] = [
    "Idempotency",
    "FirstWriteWins",
    "LogDurability",
    "WatermarkMonotonic",
];

fn workload() -> Vec<Submission> {
    let sub = |region, key, value| Submission { region, key, value };
    vec![sub(0, 0, 0), sub(1, 1, 0), sub(1, 0, 1)]
}

fn restarts(bug: Bug) -> CrrModel {
    CrrModel {
        regions: 3,
        keys: 2,
        workload: workload(),
        ordered_workload: true,
        window: 1,
        max_restarts: 2,
        max_losses: 1,
        max_duplicates: 0,
        max_partitions: 0,
        bug,
    }
}

fn network(bug: Bug) -> CrrModel {
    CrrModel {
        max_restarts: 0,
        max_losses: 1,
        max_duplicates: 1,
        max_partitions: 1,
        ..restarts(bug)
    }
}

fn check_safety(name: &str, model: CrrModel) {
    let checker = model.checker().spawn_bfs().join();
    println!(
        "{name}: safety: {} distinct states explored ({} generated), max depth {}",
        checker.unique_state_count(),
        checker.state_count(),
        checker.max_depth()
    );
    for property in SAFETY {
        checker.assert_no_discovery(property);
    }
    // The whole space was explored, not a prefix of it.
    assert!(checker.unique_state_count() > 50_000);
}

fn check_liveness(name: &str, model: &CrrModel) {
    let report = liveness::check(model);
    println!(
        "{name}: liveness: {} distinct states explored, {} where progress ends",
        report.states, report.quiescent
    );
    if let Some(v) = &report.violation {
        panic!(
            "{} violated: {:?}\nstate: {:?}",
            v.property, v.trace, v.state
        );
    }
    assert!(report.quiescent > 0);
}

#[test]
fn safety_with_restarts() {
    check_safety("restarts", restarts(Bug::None));
}

#[test]
fn safety_with_network_faults() {
    check_safety("network", network(Bug::None));
}

#[test]
fn every_fair_run_delivers_and_converges_with_restarts() {
    check_liveness("restarts", &restarts(Bug::None));
}

#[test]
fn every_fair_run_delivers_and_converges_with_network_faults() {
    check_liveness("network", &network(Bug::None));
}

/// Runs the safety check of a bug variant until `property` is violated; returns the trace up
/// to the first state that violates it.
fn counterexample(model: CrrModel, property: &'static str) -> Vec<Action> {
    let bug = model.bug;
    let condition = model
        .properties()
        .into_iter()
        .find(|p| p.name == property)
        .map(|p| p.condition)
        .expect("a property of the model");
    let checker = model
        .clone()
        .checker()
        .finish_when(HasDiscoveries::AnyOf(BTreeSet::from([property])))
        .spawn_bfs()
        .join();
    let path = checker
        .discovery(property)
        .unwrap_or_else(|| panic!("{bug:?}: no counterexample to {property}"));
    // The path stateright reports may run on past the violation; cut it at the first state
    // that violates the property.
    let mut actions = Vec::new();
    for (state, action) in path.into_vec() {
        if !condition(&model, &state) {
            break;
        }
        actions.extend(action);
    }
    println!("{bug:?} violates {property} after {} steps:", actions.len());
    for a in &actions {
        println!("  {a:?}");
    }
    actions
}

#[test]
fn acknowledging_before_the_durable_write_is_caught() {
    let trace = counterexample(restarts(Bug::AckBeforeDurable), "LogDurability");
    assert!(trace.iter().any(|a| matches!(a, Action::Deliver(_))));

    // And a record acknowledged, then lost in a restart, is never delivered.
    let report = liveness::check(&restarts(Bug::AckBeforeDurable));
    let v = report.violation.expect("a run that never delivers");
    println!(
        "AckBeforeDurable violates {} after {} steps:",
        v.property,
        v.trace.len()
    );
    for a in &v.trace {
        println!("  {a:?}");
    }
    assert_eq!(v.property, "EventualDelivery");
    assert!(v.trace.iter().any(|a| matches!(a, Action::Restart(_))));
}

#[test]
fn last_write_wins_is_caught() {
    let trace = counterexample(restarts(Bug::LastWriteWins), "FirstWriteWins");
    // The conflicting duplicate has to be decided and shipped over.
    assert!(trace.contains(&Action::Submit(2)));
}

#[test]
fn a_stale_acknowledgement_moving_the_watermark_back_is_caught() {
    let trace = counterexample(network(Bug::AckOverwrite), "WatermarkMonotonic");
    // Two acknowledgements of one pair delivered out of order: the later one is stale.
    let acks = trace
        .iter()
        .filter(|a| {
            matches!(
                a,
                Action::Deliver(Msg::Ack { .. }) | Action::Duplicate(Msg::Ack { .. })
            )
        })
        .count();
    assert!(acks >= 2, "{trace:?}");
}
