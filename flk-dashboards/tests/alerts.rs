//! The alert rules on a real promtool: `promtool check rules`, `promtool check config` of the
//! example scrape configuration and `promtool test rules` pass; a rule with a broken threshold
//! makes the unit tests fail (so they can fail); every alert has a unit test, a runbook and a
//! line in the runbook index; the thresholds are the ones in `flk_dashboards::slo`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use flk_dashboards::slo;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn prometheus_dir() -> PathBuf {
    root().join("observability/prometheus")
}

fn promtool(dir: &Path, args: &[&str]) -> Output {
    Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run promtool ({e}): install it with `bash .ci/deps/prometheus.sh`")
        })
}

fn describe(out: &Output) -> String {
    format!(
        "exit {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The values of `key: value` lines (a YAML mapping entry, possibly a list item), unquoted.
fn values_of(yaml: &str, key: &str) -> Vec<String> {
    yaml.lines()
        .filter_map(|l| {
            let l = l.trim_start().trim_start_matches("- ");
            l.strip_prefix(key)
                .and_then(|r| r.strip_prefix(':'))
                .map(|v| v.trim().trim_matches('"').to_owned())
        })
        .collect()
}

fn alerts() -> Vec<String> {
    values_of(&read(&prometheus_dir().join("alerts.yml")), "alert")
}

#[test]
fn promtool_checks_the_rules_and_the_example_config() {
    let dir = prometheus_dir();
    let out = promtool(&dir, &["check", "rules", "alerts.yml"]);
    assert!(
        out.status.success(),
        "promtool check rules: {}",
        describe(&out)
    );
    let out = promtool(&dir, &["check", "config", "prometheus.yml"]);
    assert!(
        out.status.success(),
        "promtool check config: {}",
        describe(&out)
    );
}

#[test]
fn promtool_unit_tests_pass() {
    let out = promtool(&prometheus_dir(), &["test", "rules", "alerts_test.yml"]);
    assert!(
        out.status.success(),
        "promtool test rules: {}",
        describe(&out)
    );
}

#[test]
fn promtool_unit_tests_catch_a_wrong_threshold() {
    let tmp = tempfile::tempdir().unwrap();
    let rules = read(&prometheus_dir().join("alerts.yml"));
    let broken = rules.replace(
        "flk_kpi_containment_rate{window=\"1h\"}) < 0.98",
        "flk_kpi_containment_rate{window=\"1h\"}) < 0.90",
    );
    assert_ne!(
        broken, rules,
        "the containment rule changed: update this test"
    );
    std::fs::write(tmp.path().join("alerts.yml"), broken).unwrap();
    std::fs::copy(
        prometheus_dir().join("alerts_test.yml"),
        tmp.path().join("alerts_test.yml"),
    )
    .unwrap();
    let out = promtool(tmp.path(), &["test", "rules", "alerts_test.yml"]);
    assert!(
        !out.status.success(),
        "the unit tests did not notice a containment threshold of 90 %: {}",
        describe(&out)
    );
    let text = describe(&out);
    assert!(text.contains("FlkContainmentRateBelowSlo"), "{text}");
}

#[test]
fn every_alert_has_tests_a_runbook_and_an_index_entry() {
    let alerts = alerts();
    assert!(alerts.len() >= 10, "{alerts:?}");
    let unique: BTreeSet<_> = alerts.iter().collect();
    assert_eq!(
        unique.len(),
        alerts.len(),
        "an alert name twice: {alerts:?}"
    );

    let tests = read(&prometheus_dir().join("alerts_test.yml"));
    let tested = values_of(&tests, "alertname");
    let rules = read(&prometheus_dir().join("alerts.yml"));
    let runbook_urls = values_of(&rules, "runbook_url");
    let index = read(&root().join("docs/runbooks/README.md"));
    let mut problems = Vec::new();
    for a in &alerts {
        // Fires in some test (an expected alert right after its alertname) ...
        let fires = tests.split("alertname: ").skip(1).any(|chunk| {
            chunk.starts_with(&format!("{a}\n"))
                && chunk
                    .lines()
                    .nth(1)
                    .is_some_and(|l| l.trim() == "exp_alerts:")
        });
        // ... and is expected silent in another.
        let silent = tests.split("alertname: ").skip(1).any(|chunk| {
            chunk.starts_with(&format!("{a}\n"))
                && chunk
                    .lines()
                    .nth(1)
                    .is_some_and(|l| l.trim() == "exp_alerts: []")
        });
        if !tested.contains(a) || !fires || !silent {
            problems.push(format!(
                "{a}: needs a promtool test where it fires and one where it does not"
            ));
        }
        let url = format!("docs/runbooks/{a}.md");
        if !runbook_urls.contains(&url) {
            problems.push(format!("{a}: runbook_url is not {url}"));
        }
        let runbook = root().join(&url);
        match std::fs::read_to_string(&runbook) {
            Ok(text) => {
                for section in ["## Meaning", "## Impact", "## Diagnosis", "## Mitigation"] {
                    if !text.contains(section) {
                        problems.push(format!("{url}: no {section:?} section"));
                    }
                }
            }
            Err(e) => problems.push(format!("{url}: {e}")),
        }
        if !index.contains(&format!("({a}.md)")) {
            problems.push(format!("docs/runbooks/README.md does not link {a}.md"));
        }
    }
    assert_eq!(
        runbook_urls.len(),
        alerts.len(),
        "every alert has one runbook_url"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn thresholds_match_the_dashboards() {
    let rules = read(&prometheus_dir().join("alerts.yml"));
    let expr_of = |alert: &str| -> String {
        let start = rules
            .find(&format!("alert: {alert}\n"))
            .unwrap_or_else(|| panic!("no alert {alert}"));
        let rest = &rules[start..];
        let expr = rest.find("expr:").unwrap();
        let end = rest[expr..].find("\n        for:").unwrap();
        rest[expr..expr + end].to_owned()
    };
    let cases = [
        ("FlkContainmentRateBelowSlo", "< ", slo::CONTAINMENT_MIN),
        ("FlkEscalationRateAboveSlo", "> ", slo::ESCALATION_MAX),
        (
            "FlkVerifyLatencyP95AboveSlo",
            "> ",
            slo::VERIFY_LATENCY_P95_MAX_SECONDS,
        ),
        ("FlkAuditCoverageBelowSlo", "< ", slo::AUDIT_COVERAGE_MIN),
        (
            "FlkAuditConsumerLagHigh",
            "> ",
            slo::CONSUMER_LAG_MAX_RECORDS,
        ),
        ("FlkKpiConsumerLagHigh", "> ", slo::CONSUMER_LAG_MAX_RECORDS),
        ("FlkRefusalRateHigh", "> ", slo::REFUSAL_RATIO_MAX),
        ("FlkDedupOwedWritesHigh", "> ", slo::OWED_WRITES_MAX),
        ("FlkOutcomeLogFsyncSlow", "> ", slo::FSYNC_P99_MAX_SECONDS),
    ];
    let mut problems = Vec::new();
    for (alert, op, value) in cases {
        let expr = expr_of(alert);
        let wanted = format!("{op}{value}");
        if !expr.trim_end().ends_with(&wanted) {
            problems.push(format!(
                "{alert}: expected `{wanted}` at the end of {expr:?}"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
