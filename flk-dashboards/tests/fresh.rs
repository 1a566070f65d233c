//! The dashboards committed under `observability/grafana/` are exactly the generator's output
//! (and no other file is there).

use std::collections::BTreeSet;
use std::path::PathBuf;

#[test]
fn committed_dashboards_match_the_generator() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../observability/grafana");
    let mut problems = Vec::new();
    let expected = flk_dashboards::render_all();
    for (name, contents) in &expected {
        match std::fs::read_to_string(dir.join(name)) {
            Ok(committed) if &committed == contents => {}
            Ok(_) => problems.push(format!("{name} differs from the generator's output")),
            Err(e) => problems.push(format!("{name}: {e}")),
        }
    }
    let names: BTreeSet<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if !names.contains(n.as_str()) {
                problems.push(format!("{n} is not generated (remove it)"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "observability/grafana is stale:\n  {}\nregenerate from the workspace root with: {}",
        problems.join("\n  "),
        flk_dashboards::REGENERATE
    );
}
