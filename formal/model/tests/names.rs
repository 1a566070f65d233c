//! The invariants have one name each, used by the TLA+ specification, its TLC configuration
//! and the Rust model (STYLE.md, "Invariants named once").

use std::path::Path;

use flk_formal_model::crr::{Bug, CrrModel};
use stateright::Model;

const SAFETY: [&str; 4] = [
    "Idempotency",
    "FirstWriteWins",
    "LogDurability",
    "WatermarkMonotonic",
];
const LIVENESS: [&str; 2] = ["EventualDelivery", "EventualConvergence"];

fn read(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_specification_the_configuration_and_the_model_use_the_same_names() {
    let tla = read("crr_idempotency.tla");
    let cfg = read("crr_idempotency.cfg");
    let cfg_names: Vec<&str> = cfg.split_whitespace().collect();
    for name in SAFETY.iter().chain(&LIVENESS) {
        assert!(
            tla.lines().any(|l| l.starts_with(&format!("{name} =="))),
            "crr_idempotency.tla does not define {name}"
        );
        assert!(
            cfg_names.contains(name),
            "crr_idempotency.cfg does not check {name}"
        );
    }

    let model = CrrModel {
        regions: 1,
        keys: 1,
        workload: Vec::new(),
        ordered_workload: true,
        window: 1,
        max_restarts: 0,
        max_losses: 0,
        max_duplicates: 0,
        max_partitions: 0,
        bug: Bug::None,
    };
    let names: Vec<&str> = model.properties().iter().map(|p| p.name).collect();
    assert_eq!(names, SAFETY);

    let liveness = include_str!("../src/liveness.rs");
    for name in LIVENESS {
        assert!(
            liveness.contains(&format!("\"{name}\"")),
            "liveness.rs lacks {name}"
        );
    }
}
