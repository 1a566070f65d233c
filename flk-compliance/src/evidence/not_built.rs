//! `replication`: `not_applicable` until svc-crr exists. `tiering`: from svc-tiering's placement
//! catalog (read by the caller from a copy, [`super::TieringFigures`]): passes when no record
//! is held past its retention (a placement interval of grace), fails naming how many are.

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
    match &inputs.external.tiering {
        Some(Ok(f)) => return tiering_from_catalog(f),
        Some(Err(e)) => {
            return evidence(
                "tiering",
                Status::Fail,
                [],
                format!("svc-tiering's catalog cannot be read: {e}"),
            );
        }
        None => {}
    }
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

fn tiering_from_catalog(f: &super::TieringFigures) -> Evidence {
    let tiers = |v: &[u64; 3]| json!({"hot": v[0], "warm": v[1], "cold": v[2]});
    let figures = [
        ("records", tiers(&f.records)),
        ("bytes", tiers(&f.bytes)),
        ("oldest_decided_unix_ms", json!(f.oldest_decided_ms)),
        ("newest_decided_unix_ms", json!(f.newest_decided_ms)),
        ("retention_ms", json!(f.retention_ms)),
        ("demote_interval_ms", json!(f.demote_interval_ms)),
        ("past_retention", json!(f.past_retention)),
        ("pending_moves", json!(f.pending_moves)),
    ];
    let total: u64 = f.records.iter().sum();
    let (status, detail) = match f.retention_ms {
        _ if f.past_retention > 0 => (
            Status::Fail,
            format!(
                "{} of {total} records are held past their retention (decided more than retention + one placement interval before the newest record)",
                f.past_retention
            ),
        ),
        None => (
            Status::Pass,
            format!(
                "{total} records in their tiers; retention is `none`: kept forever by configuration"
            ),
        ),
        Some(_) => (
            Status::Pass,
            format!("{total} records in their tiers; none is held past its retention"),
        ),
    };
    evidence("tiering", status, figures, detail)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::TieringFigures;

    #[test]
    fn records_past_retention_fail_tiering_and_none_keeps_forever() {
        let held = TieringFigures {
            records: [3, 2, 1],
            bytes: [300, 200, 50],
            retention_ms: Some(1_000),
            demote_interval_ms: 10,
            ..Default::default()
        };
        let e = tiering_from_catalog(&held);
        assert_eq!(e.status, Status::Pass, "{e:?}");
        assert_eq!(e.figures["records"]["cold"], 1);
        let late = TieringFigures {
            past_retention: 2,
            ..held.clone()
        };
        let e = tiering_from_catalog(&late);
        assert_eq!(e.status, Status::Fail);
        assert!(e.detail.starts_with("2 of 6 records"), "{}", e.detail);
        let forever = TieringFigures {
            retention_ms: None,
            ..held
        };
        assert!(
            tiering_from_catalog(&forever)
                .detail
                .contains("kept forever")
        );
    }
}
