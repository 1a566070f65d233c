//! `replication` and `tiering`: `not_applicable` until the services exist and are configured
//! (svc-crr is not built; svc-tiering when the effective configuration has a `[tiering]`
//! section: its settings are reported, the tiers' contents are not read yet).

use serde_json::json;

use super::{Inputs, evidence};
use crate::model::{Evidence, Status};

pub fn replication(inputs: &Inputs<'_>) -> Evidence {
    match inputs
        .layout
        .config
        .as_ref()
        .and_then(|c| c.get("replication"))
    {
        Some(section) => evidence(
            "replication",
            Status::NotApplicable,
            [("settings", json!(section))],
            "a [replication] section is configured, but svc-crr's state is not read yet",
        ),
        None => evidence(
            "replication",
            Status::NotApplicable,
            [],
            "svc-crr not built yet",
        ),
    }
}

pub fn tiering(inputs: &Inputs<'_>) -> Evidence {
    let Some(section) = inputs
        .layout
        .config
        .as_ref()
        .and_then(|c| c.get("tiering"))
        .and_then(|t| t.as_table())
    else {
        return evidence(
            "tiering",
            Status::NotApplicable,
            [],
            "svc-tiering not configured",
        );
    };
    // The retention and tier settings (not prices, listeners or credentials).
    let settings: std::collections::BTreeMap<&str, &toml::Value> = section
        .iter()
        .filter(|(k, _)| {
            ["hot", "cold", "ttl", "retention", "demote"]
                .iter()
                .any(|w| k.contains(w))
        })
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    let dir = inputs.layout.root.join("tiering");
    let (files, bytes) = du(&dir);
    evidence(
        "tiering",
        Status::NotApplicable,
        [
            ("settings", json!(settings)),
            ("data_dir_files", json!(files)),
            ("data_dir_bytes", json!(bytes)),
        ],
        "svc-tiering is configured (its retention and tier settings and the size of its data directory are above); no rule judges them yet",
    )
}

/// Files and bytes under `dir` (0, 0 when it does not exist).
fn du(dir: &std::path::Path) -> (u64, u64) {
    let mut todo = vec![dir.to_owned()];
    let (mut files, mut bytes) = (0u64, 0u64);
    while let Some(d) = todo.pop() {
        let Ok(list) = std::fs::read_dir(&d) else {
            continue;
        };
        for item in list.flatten() {
            match item.metadata() {
                Ok(m) if m.is_dir() => todo.push(item.path()),
                Ok(m) => {
                    files += 1;
                    bytes += m.len();
                }
                Err(_) => {}
            }
        }
    }
    (files, bytes)
}
