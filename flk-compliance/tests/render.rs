//! The renderers over reports evaluated from known evidence: JSON determinism, a custom
//! framework, HTML escaping, the PDF's extracted text against the JSON, and the OSCAL
//! document against the OSCAL schema (compliance-trestle).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use flk_compliance::framework::{self, Source};
use flk_compliance::model::{
    DayCount, EVIDENCE_KINDS, Evidence, EvidenceSet, Period, Report, Sample, Status,
};
use flk_compliance::{evaluate, render};
use serde_json::json;

const HOSTILE_TENANT: &str = "<script>alert(1)</script>";
const HOSTILE_REASON: &str = "\"><img src=x onerror=alert('x')>";

/// Every evidence kind: `audit_log_integrity` fails (naming a tile), replication and tiering
/// are not applicable, the rest pass; `decision_coverage` carries two samples.
fn evidence_set(hostile: bool) -> EvidenceSet {
    let mut by_kind = BTreeMap::new();
    for kind in EVIDENCE_KINDS {
        let status = match kind {
            "audit_log_integrity" => Status::Fail,
            "replication" | "tiering" => Status::NotApplicable,
            _ => Status::Pass,
        };
        let mut figures = BTreeMap::new();
        figures.insert("checked".to_string(), json!(1_000_000u64));
        figures.insert("ratio".to_string(), json!(0.999));
        let mut detail = match status {
            Status::Fail => format!("{kind}: entry 4711 in tile/0/x001/234 was altered."),
            Status::NotApplicable => format!("{kind}: the service is not deployed."),
            _ => format!("{kind}: all checks held over the period."),
        };
        let mut samples = Vec::new();
        if kind == "signature_verification" && hostile {
            figures.insert(
                format!("refused.{HOSTILE_TENANT}.{HOSTILE_REASON}"),
                json!(3),
            );
            detail = format!("Refusals for reason {HOSTILE_REASON} from tenant {HOSTILE_TENANT}.");
        }
        if kind == "decision_coverage" {
            for (i, tenant) in ["acme", if hostile { HOSTILE_TENANT } else { "globex" }]
                .into_iter()
                .enumerate()
            {
                samples.push(Sample {
                    tenant_id: tenant.to_string(),
                    pcs_id: format!("pcs-{i}"),
                    leaf_index: 10 + i as u64,
                    proof: json!({"leaf_index": 10 + i, "tenant_id": tenant, "hashes": ["ab", "cd"]}),
                    anchors: vec![json!({"provider": "rfc3161", "reason": HOSTILE_REASON})],
                });
            }
        }
        by_kind.insert(
            kind.to_string(),
            Evidence {
                kind: kind.to_string(),
                status,
                figures,
                detail,
                samples,
            },
        );
    }
    let timeline = (1..=31)
        .map(|d| DayCount {
            day: format!("2026-01-{d:02}"),
            accept: 100 + d,
            escalate: d % 7,
            reject: d % 3,
        })
        .collect();
    EvidenceSet { by_kind, timeline }
}

fn period() -> Period {
    Period::parse("2026-01-01", "2026-02-01").unwrap()
}

fn soc2_report(hostile: bool) -> Report {
    let f = framework::builtin("soc2").unwrap();
    evaluate(&f, &evidence_set(hostile), &period())
}

#[test]
fn json_is_deterministic_and_round_trips() {
    let a = render::json(&soc2_report(false));
    let b = render::json(&soc2_report(false));
    assert_eq!(a, b, "two evaluations of the same input differ");
    assert!(a.ends_with(b"}\n"));
    let back: Report = serde_json::from_slice(&a).unwrap();
    assert_eq!(back, soc2_report(false));

    let v: serde_json::Value = serde_json::from_slice(&a).unwrap();
    assert_eq!(v["schema_version"], 1);
    assert_eq!(
        v["framework"],
        json!({"id": "soc2", "title": "SOC 2 (2017 Trust Services Criteria)", "source": "builtin"})
    );
    assert_eq!(
        v["period"],
        json!({"from": "2026-01-01T00:00:00Z", "to": "2026-02-01T00:00:00Z"})
    );
    // field order is the contract's
    let text = String::from_utf8(a).unwrap();
    let pos = |k: &str| {
        text.find(&format!("\n  \"{k}\""))
            .unwrap_or_else(|| panic!("{k}"))
    };
    let order = [
        "schema_version",
        "framework",
        "period",
        "summary",
        "controls",
        "timeline",
    ];
    assert!(order.windows(2).all(|w| pos(w[0]) < pos(w[1])));
    // verdicts from the rules: the failing log fails the controls resting on it, replication
    // and tiering alone are not applicable, manual controls stay manual
    let status = |id: &str| {
        v["controls"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .unwrap()["status"]
            .clone()
    };
    assert_eq!(status("CC2.1"), "fail");
    assert_eq!(status("CC6.1"), "pass");
    assert_eq!(status("A1.2"), "not_applicable");
    assert_eq!(status("CC1.4"), "manual");
    let s = &v["summary"];
    let n = v["controls"].as_array().unwrap().len() as u64;
    assert_eq!(s["controls"], n);
    let sum: u64 = ["pass", "fail", "not_applicable", "manual"]
        .iter()
        .map(|k| s[k].as_u64().unwrap())
        .sum();
    assert_eq!(sum, n);
    assert!(s["fail"].as_u64().unwrap() > 0 && s["pass"].as_u64().unwrap() > 0);
}

#[test]
fn a_custom_framework_with_two_controls_gives_exactly_those_controls() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("acme.toml");
    std::fs::write(
        &path,
        r#"[framework]
id = "acme-internal"
title = "ACME agent controls"
[[controls]]
id = "ACME-1"
title = "Decisions are tamper-evident"
description = "The log verifies and every decision is in it."
evidence = ["audit_log_integrity", "decision_coverage"]
rule = "all_pass"
[[controls]]
id = "ACME-2"
title = "Backups or anchoring"
description = "Either holds."
evidence = ["replication", "checkpoint_anchoring"]
rule = "any_pass"
"#,
    )
    .unwrap();
    let f = framework::resolve(path.to_str().unwrap()).unwrap();
    let r = evaluate(&f, &evidence_set(false), &period());
    assert_eq!(r.framework.source, Source::File);
    assert_eq!(r.framework.id, "acme-internal");
    let got: Vec<(&str, Status)> = r
        .controls
        .iter()
        .map(|c| (c.id.as_str(), c.status))
        .collect();
    assert_eq!(got, [("ACME-1", Status::Fail), ("ACME-2", Status::Pass)]);
    assert_eq!(r.summary.controls, 2);
    let kinds: Vec<&str> = r.controls[0]
        .evidence
        .iter()
        .map(|e| e.kind.as_str())
        .collect();
    assert_eq!(kinds, ["audit_log_integrity", "decision_coverage"]);
    assert_eq!(r.controls[0].evidence[1].samples.len(), 2);
}

#[test]
fn html_is_self_contained_and_escapes_hostile_values() {
    let report = soc2_report(true);
    let html = render::html(&report);
    for raw in [HOSTILE_TENANT, HOSTILE_REASON, "<img", "<script"] {
        assert!(!html.contains(raw), "raw {raw:?} in the HTML");
    }
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.contains("&quot;&gt;&lt;img src=x onerror=alert(&#39;x&#39;)&gt;"));
    // no external resource, no script
    assert!(!html.contains("http"), "external URL in the HTML");
    assert!(!html.contains(" src=\""), "a src attribute in the HTML");
    // the charts: one bar segment per non-zero day count, one status bar per status
    let segments = report
        .timeline
        .iter()
        .map(|d| {
            [d.accept, d.escalate, d.reject]
                .iter()
                .filter(|n| **n > 0)
                .count()
        })
        .sum::<usize>();
    assert_eq!(
        html.matches("<rect").count(),
        segments + 3 /* legend */ + 4 /* status bars */
    );
    assert!(html.contains(&format!("<title>fail: {}</title>", report.summary.fail)));
    assert!(!html.contains("<title>2026-01-07 escalate: 0</title>"));
    assert!(html.contains("<title>2026-01-08 escalate: 1</title>"));
    // every control with its status, and the samples with how to check them
    for c in &report.controls {
        assert!(
            html.contains(&format!("<strong>{}</strong>", c.id)),
            "{}",
            c.id
        );
    }
    assert!(html.contains("flk audit verify --bundle"));
    assert!(html.contains("<code>pcs-1</code>"));
}

fn pdftotext(pdf: &Path, extra: &[&str]) -> String {
    let out = Command::new("pdftotext")
        .args(extra)
        .arg(pdf)
        .arg("-")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run pdftotext ({e}): .ci/deps/poppler.sh installs it (Debian poppler-utils)"
            )
        });
    assert!(
        out.status.success(),
        "pdftotext: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn pdf_text_carries_every_control_with_the_json_verdict_and_stays_on_the_page() {
    // a long report: the four built-in catalogs' controls in one framework, long details
    let mut f = framework::builtin("soc2").unwrap();
    for id in ["iso27001", "hipaa", "gdpr"] {
        f.controls.extend(framework::builtin(id).unwrap().controls);
    }
    let mut set = evidence_set(false);
    for e in set.by_kind.values_mut() {
        e.detail = format!(
            "{} {} Café 测试.",
            e.detail,
            "Long explanation of the computation. ".repeat(12)
        );
    }
    let report = evaluate(&f, &set, &period());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.pdf");
    std::fs::write(&path, render::pdf(&report).unwrap()).unwrap();

    let text = pdftotext(&path, &[]);
    assert!(text.contains("SOC 2 (2017 Trust Services Criteria) compliance report"));
    assert!(
        text.contains("from 2026-01-01T00:00:00Z (inclusive) to 2026-02-01T00:00:00Z (exclusive)")
    );
    let s = &report.summary;
    assert!(text.contains(&format!(
        "Summary: {} controls: {} pass, {} fail, {} not applicable, {} manual",
        s.controls, s.pass, s.fail, s.not_applicable, s.manual
    )));
    let json: serde_json::Value = serde_json::from_slice(&render::json(&report)).unwrap();
    let mut from_pdf = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.trim().strip_prefix("Control ")
            && let Some((id, status)) = rest.rsplit_once(": ")
        {
            from_pdf.insert(id.to_string(), status.to_string());
        }
    }
    let from_json: BTreeMap<String, String> = json["controls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_string(),
                c["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(from_pdf, from_json);
    assert!(from_json.len() > 50);
    // every evidence status and detail start is there too
    for c in &report.controls {
        for e in &c.evidence {
            assert!(text.contains(&format!("Evidence {}: {}", e.kind, e.status.as_str())));
        }
    }
    assert!(text.contains("entry 4711 in tile/0/x001/234 was altered."));
    // Latin-1 is kept, what the built-in fonts cannot show is marked
    assert!(text.contains("Café ??."), "accents or placeholders lost");

    // paginated, and no word past the right margin or below the bottom one (A4: 595 x 842 pt)
    let bbox = pdftotext(&path, &["-bbox"]);
    let pages = bbox.matches("<page ").count();
    assert!(pages > 5, "{pages} pages");
    assert!(text.contains(&format!("Page {pages}")));
    let attr = |w: &str, name: &str| -> f64 {
        let i = w.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
        w[i..].split('"').next().unwrap().parse().unwrap()
    };
    let mut words = 0;
    for w in bbox.split("<word ").skip(1) {
        words += 1;
        assert!(
            attr(w, "xMax") <= 595.0 - 40.0,
            "word past the right margin: {}",
            &w[..w.len().min(120)]
        );
        assert!(
            attr(w, "yMax") <= 842.0 - 20.0,
            "word below the page: {}",
            &w[..w.len().min(120)]
        );
        assert!(attr(w, "xMin") >= 40.0);
    }
    assert!(words > 1000);
}

#[test]
fn oscal_is_deterministic_linked_and_valid_against_the_oscal_schema() {
    let report = soc2_report(true);
    let bytes = render::oscal(&report);
    assert_eq!(
        bytes,
        render::oscal(&soc2_report(true)),
        "OSCAL bytes differ"
    );
    assert_ne!(
        bytes,
        render::oscal(&soc2_report(false)),
        "UUIDs do not depend on content"
    );
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let ar = &v["assessment-results"];
    assert_eq!(ar["metadata"]["last-modified"], "2026-02-01T00:00:00Z");
    let result = &ar["results"][0];
    let findings = result["findings"].as_array().unwrap();
    assert_eq!(findings.len(), report.controls.len());
    let observations = result["observations"].as_array().unwrap();
    for o in observations {
        assert_eq!(o["methods"], json!(["AUTOMATED"]));
    }
    let state = |id: &str| {
        findings
            .iter()
            .find(|f| f["title"].as_str().unwrap().starts_with(&format!("{id}:")))
            .unwrap()["target"]["status"]["state"]
            .clone()
    };
    assert_eq!(state("CC6.1"), "satisfied");
    assert_eq!(state("CC2.1"), "not-satisfied");
    // the figures are in the observation of their evidence
    let cov = observations
        .iter()
        .find(|o| o["title"].as_str().unwrap().contains("decision_coverage"))
        .unwrap();
    let ev = cov["relevant-evidence"][0]["description"].as_str().unwrap();
    assert!(
        ev.contains("checked=1000000") && ev.contains("ratio=0.999"),
        "{ev}"
    );

    // statuses of every kind are present
    let statuses: Vec<Status> = report.controls.iter().map(|c| c.status).collect();
    for s in [
        Status::Pass,
        Status::Fail,
        Status::NotApplicable,
        Status::Manual,
    ] {
        assert!(statuses.contains(&s), "{s:?} missing from the fixture");
    }
    // the HIPAA and GDPR ids (digits, parentheses, spaces) become valid tokens too
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for (name, r) in [
        ("soc2", report),
        (
            "hipaa",
            evaluate(
                &framework::builtin("hipaa").unwrap(),
                &evidence_set(false),
                &period(),
            ),
        ),
        (
            "gdpr",
            evaluate(
                &framework::builtin("gdpr").unwrap(),
                &evidence_set(false),
                &period(),
            ),
        ),
        (
            "iso27001",
            evaluate(
                &framework::builtin("iso27001").unwrap(),
                &evidence_set(false),
                &period(),
            ),
        ),
    ] {
        let path = dir.path().join(format!("{name}.oscal.json"));
        std::fs::write(&path, render::oscal(&r)).unwrap();
        paths.push(path);
    }
    // one validator process for all four: loading the validators takes seconds
    validate_oscal(&paths);
    // and the validator does reject an invalid document (a finding without its target)
    let mut broken = v.clone();
    broken["assessment-results"]["results"][0]["findings"][0]
        .as_object_mut()
        .unwrap()
        .remove("target");
    let path = dir.path().join("broken.json");
    std::fs::write(&path, serde_json::to_vec(&broken).unwrap()).unwrap();
    let out = run_validator(std::slice::from_ref(&path));
    assert!(
        !out.status.success(),
        "the validator accepted a finding without a target"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("target"));
}

fn run_validator(paths: &[std::path::PathBuf]) -> std::process::Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/render_oscal_validate.py");
    // The oscal package unpacks its metaschema database (about 160 MB) under
    // `./support/` of its working directory: keep it in the target directory, once.
    let cwd = Path::new(env!("CARGO_TARGET_TMPDIR")).join("oscal-validator");
    std::fs::create_dir_all(&cwd).unwrap();
    Command::new("python3")
        .current_dir(&cwd)
        .arg(&script)
        .args(paths)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run python3 ({e}): .ci/deps/oscal.sh installs the OSCAL validator")
        })
}

fn validate_oscal(paths: &[std::path::PathBuf]) {
    let out = run_validator(paths);
    assert!(
        out.status.success(),
        "not valid OSCAL:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
