//! FLK's Grafana dashboards, built from code: the panel model ([`model`]), the buyer and
//! operations dashboards, the SLO numbers they share with the alert rules ([`slo`]), and
//! [`write_all`], which the `flk-dashboards` binary calls to regenerate
//! `observability/grafana/`. A test fails when the committed files differ from [`render_all`].

pub mod buyer;
pub mod model;
pub mod operations;
pub use flk_core::slo;

use std::path::Path;

pub use model::{Dashboard, Kind, Panel, Requires, Target};

/// The command that regenerates the committed dashboards (from the workspace root).
pub const REGENERATE: &str = "cargo run -p flk-dashboards -- --out observability/grafana";

/// Every dashboard.
pub fn all() -> Vec<Dashboard> {
    vec![buyer::dashboard(), operations::dashboard()]
}

/// `(file name, contents)` of every dashboard.
pub fn render_all() -> Vec<(String, String)> {
    all().iter().map(|d| (d.file_name(), d.render())).collect()
}

/// Writes every dashboard into `dir` (created when missing); returns the files written.
pub fn write_all(dir: &Path) -> std::io::Result<Vec<String>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    for (name, contents) in render_all() {
        std::fs::write(dir.join(&name), contents)?;
        written.push(name);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn titles_uids_and_panel_titles_are_unique() {
        let dashboards = all();
        let uids: BTreeSet<_> = dashboards.iter().map(|d| d.uid).collect();
        assert_eq!(uids.len(), dashboards.len());
        for d in &dashboards {
            let mut titles = BTreeSet::new();
            for p in d.panels() {
                assert!(
                    titles.insert(p.title.as_str()),
                    "{}: panel title {:?} twice",
                    d.uid,
                    p.title
                );
                assert!(
                    !p.targets.is_empty(),
                    "{}: {:?} has no query",
                    d.uid,
                    p.title
                );
            }
        }
    }

    #[test]
    fn every_query_names_an_flk_metric_and_only_known_variables() {
        for d in all() {
            let vars: Vec<String> = d
                .variables
                .iter()
                .map(|v| format!("${}", v.name))
                .chain(["$__rate_interval".to_owned()])
                .collect();
            for p in d.panels() {
                for t in &p.targets {
                    assert!(t.expr.contains("flk_"), "{}: {}", p.title, t.expr);
                    let mut rest = t.expr.as_str();
                    while let Some(i) = rest.find('$') {
                        rest = &rest[i..];
                        let known = vars.iter().find(|v| rest.starts_with(v.as_str()));
                        assert!(
                            known.is_some(),
                            "{}: unknown variable in {}",
                            p.title,
                            t.expr
                        );
                        rest = &rest[1..];
                    }
                }
            }
        }
    }

    #[test]
    fn the_buyer_dashboard_has_the_promised_panels() {
        let d = buyer::dashboard();
        let titles: BTreeSet<_> = d.panels().map(|p| p.title.as_str()).collect();
        for t in [
            "Containment rate",
            "Cost per trusted task",
            "Escalation rate",
            "Verify latency p95",
            "Cost breakdown",
            "Top tenants by escalations",
            "Volume per tenant",
            "CRR lag",
            "Audit coverage",
            "Anchoring success",
            "D_hat",
            "coh_star",
            "r",
        ] {
            assert!(titles.contains(t), "missing {t}");
        }
        let requiring: Vec<_> = d
            .panels()
            .filter_map(|p| p.requires.map(|r| (p.title.as_str(), r.service)))
            .collect();
        assert_eq!(requiring, vec![("CRR lag", "svc-crr")]);
    }

    #[test]
    fn the_output_is_grafana_import_json() {
        for d in all() {
            let j = d.to_json();
            assert_eq!(j["schemaVersion"], model::SCHEMA_VERSION);
            assert_eq!(j["__inputs"][0]["name"], "DS_PROMETHEUS");
            for p in j["panels"].as_array().unwrap() {
                if p["type"] != "row" {
                    assert_eq!(p["datasource"]["uid"], model::DATASOURCE_INPUT);
                    assert!(
                        p["gridPos"]["x"].as_u64().unwrap() + p["gridPos"]["w"].as_u64().unwrap()
                            <= 24
                    );
                }
            }
        }
    }
}
