//! OSCAL `assessment-results` (OSCAL 1.1 JSON model).
//!
//! One result over the report period; `reviewed-controls` includes every control of the
//! framework; one observation per evidence kind the controls use (`methods: ["AUTOMATED"]`,
//! its figures in the relevant evidence); one finding per control whose target is the control
//! (`objective-id`) with `satisfied` or `not-satisfied`, linked to the observations of its
//! evidence. UUIDs are v5 (name-based) from the report's content, so the same report gives
//! the same bytes.

use serde_json::{Value, json};
use uuid::Uuid;

use crate::framework::Source;
use crate::model::{Evidence, Report, Status};

/// The OSCAL version the document is written against.
pub const OSCAL_VERSION: &str = "1.1.3";

/// This crate's UUID namespace: v5 of the URL namespace and a name of our own.
fn namespace() -> Uuid {
    Uuid::new_v5(&Uuid::NAMESPACE_URL, b"urn:flk:compliance:oscal")
}

/// An OSCAL `token` from a control id such as `164.312(a)(1)` or `Art. 5(1)(e)`: ASCII
/// letters and digits in lower case, `.`, `-` and `_` kept, any other character becomes `-`
/// (runs collapsed, none at the end), and a leading `_` when the id does not start with a
/// letter. ASCII only: the metaschema's token is `^[a-zA-Z_][a-zA-Z0-9.\-_]*$`, narrower
/// than the JSON schema's Unicode one.
pub fn token(id: &str) -> String {
    let mut out = String::with_capacity(id.len() + 1);
    for ch in id.chars().map(|c| c.to_ascii_lowercase()) {
        if ch.is_ascii_alphanumeric() || ch == '.' || ch == '_' || ch == '-' {
            out.push(ch);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    if !out.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        out.insert(0, '_');
    }
    out
}

fn figures_text(e: &Evidence) -> String {
    if e.figures.is_empty() {
        return "no figures".to_string();
    }
    e.figures
        .iter()
        .map(|(k, v)| match v {
            Value::String(s) => format!("{k}={s}"),
            other => format!("{k}={other}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `title` fields must be one line.
fn one_line(s: &str) -> String {
    s.split(['\n', '\r'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The OSCAL document as a JSON value.
pub fn document(report: &Report) -> Value {
    let content = super::json(report);
    let doc_uuid = Uuid::new_v5(&namespace(), &content);
    let sub = |name: &str| Uuid::new_v5(&doc_uuid, name.as_bytes()).to_string();
    // control id -> token, made unique: ids that differ only in characters a token cannot
    // hold (`A 1`, `A(1)`) get `-2`, `-3`, ... in catalog order
    let mut tokens: std::collections::BTreeMap<&str, String> = Default::default();
    let mut used = std::collections::BTreeSet::new();
    for c in &report.controls {
        let base = token(&c.id);
        let mut t = base.clone();
        let mut n = 1;
        while !used.insert(t.clone()) {
            n += 1;
            t = format!("{base}-{n}");
        }
        tokens.insert(&c.id, t);
    }
    let from = report.period.from_rfc3339();
    let to = report.period.to_rfc3339();

    // one observation per evidence kind, in first-use order
    let mut kinds: Vec<&Evidence> = Vec::new();
    for c in &report.controls {
        for e in &c.evidence {
            if !kinds.iter().any(|k| k.kind == e.kind) {
                kinds.push(e);
            }
        }
    }
    let observations: Vec<Value> = kinds
        .iter()
        .map(|e| {
            let mut relevant = vec![json!({
                "description": format!("{} Figures: {}.", e.detail, figures_text(e)),
            })];
            for s in &e.samples {
                relevant.push(json!({
                    "description": format!(
                        "Sample decision tenant {} pcs {} at leaf {}: check offline with \
                         `flk audit verify --bundle` on its proof in the report JSON.",
                        s.tenant_id, s.pcs_id, s.leaf_index
                    ),
                }));
            }
            json!({
                "uuid": sub(&format!("observation/{}", e.kind)),
                "title": format!("Evidence {}: {}", e.kind, e.status.as_str()),
                "description": one_line(&e.detail),
                "props": [{"name": "evidence-status", "ns": "urn:flk:compliance", "value": e.status.as_str()}],
                "methods": ["AUTOMATED"],
                "relevant-evidence": relevant,
                "collected": to,
            })
        })
        .collect();

    let findings: Vec<Value> = report
        .controls
        .iter()
        .map(|c| {
            let (state, reason, remarks) = match c.status {
                Status::Pass => ("satisfied", "pass", None),
                Status::Fail => ("not-satisfied", "fail", None),
                Status::NotApplicable => (
                    "satisfied",
                    "other",
                    Some("Not applicable: every piece of evidence this control rests on is not applicable in this deployment."),
                ),
                Status::Manual => (
                    "not-satisfied",
                    "other",
                    Some("Manual: a person must judge this control; it is not satisfied by automated evidence."),
                ),
            };
            let mut status = json!({"state": state, "reason": reason});
            if let Some(r) = remarks {
                status["remarks"] = json!(r);
            }
            let mut target = json!({
                "type": "objective-id",
                "target-id": tokens[c.id.as_str()],
                "title": one_line(&format!("{} {}", c.id, c.title)),
                "props": [{"name": "control-status", "ns": "urn:flk:compliance", "value": c.status.as_str()}],
                "status": status,
            });
            if c.status == Status::NotApplicable {
                target["implementation-status"] = json!({"state": "not-applicable"});
            }
            let mut finding = json!({
                "uuid": sub(&format!("finding/{}", c.id)),
                "title": one_line(&format!("{}: {}", c.id, c.title)),
                "description": if c.description.trim().is_empty() { c.title.clone() } else { c.description.clone() },
                "props": [{"name": "rule", "ns": "urn:flk:compliance", "value": c.rule.as_str()}],
                "target": target,
            });
            let related: Vec<Value> = c
                .evidence
                .iter()
                .map(|e| json!({"observation-uuid": sub(&format!("observation/{}", e.kind))}))
                .collect();
            if !related.is_empty() {
                finding["related-observations"] = Value::Array(related);
            }
            finding
        })
        .collect();

    let source = match report.framework.source {
        Source::Builtin => "builtin",
        Source::File => "file",
    };
    let mut result = json!({
        "uuid": sub("result"),
        "title": one_line(&format!("{} from {from} to {to}", report.framework.title)),
        "description": format!(
            "Automated assessment by FLK of {} controls over [{from}, {to}): {} pass, {} fail, {} not applicable, {} manual.",
            report.summary.controls, report.summary.pass, report.summary.fail,
            report.summary.not_applicable, report.summary.manual
        ),
        "start": from,
        "end": to,
        "reviewed-controls": {
            "control-selections": [{
                "include-controls": report.controls.iter()
                    .map(|c| json!({"control-id": tokens[c.id.as_str()]}))
                    .collect::<Vec<_>>(),
            }],
        },
    });
    if !observations.is_empty() {
        result["observations"] = Value::Array(observations);
    }
    if !findings.is_empty() {
        result["findings"] = Value::Array(findings);
    }
    json!({
        "assessment-results": {
            "uuid": doc_uuid.to_string(),
            "metadata": {
                "title": one_line(&format!("{} compliance report", report.framework.title)),
                "last-modified": to,
                "version": format!("flk-compliance report schema {}", report.schema_version),
                "oscal-version": OSCAL_VERSION,
            },
            "import-ap": {
                "href": format!("urn:flk:compliance:framework:{source}:{}", token(&report.framework.id)),
                "remarks": "FLK has no assessment plan document: the href names the control catalog (framework) the controls come from.",
            },
            "results": [result],
        }
    })
}

#[cfg(test)]
mod tests {
    use super::token;

    #[test]
    fn colliding_tokens_are_made_unique() {
        use crate::framework::{Control, Framework, Rule, Source};
        use crate::model::{EvidenceSet, Period, evaluate};
        let control = |id: &str| Control {
            id: id.into(),
            title: "t".into(),
            description: String::new(),
            evidence: vec![],
            rule: Rule::Manual,
        };
        let f = Framework {
            id: "x".into(),
            title: "X".into(),
            version: None,
            description: None,
            source: Source::File,
            controls: vec![control("A 1"), control("A(1)"), control("a-1")],
        };
        let period = Period::parse("2026-01-01", "2026-01-02").unwrap();
        let doc = super::document(&evaluate(&f, &EvidenceSet::default(), &period));
        let ids: Vec<&str> = doc["assessment-results"]["results"][0]["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["target"]["target-id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["a-1", "a-1-2", "a-1-3"]);
    }

    #[test]
    fn control_ids_become_ascii_tokens() {
        for (id, want) in [
            ("CC6.1", "cc6.1"),
            ("A.8.15", "a.8.15"),
            ("164.312(a)(1)", "_164.312-a-1"),
            ("164.308(a)(1)(ii)(D)", "_164.308-a-1-ii-d"),
            ("Art. 5(1)(e)", "art.-5-1-e"),
            ("Contrôle 1", "contr-le-1"),
            ("ACME-1", "acme-1"),
            ("(x)", "_-x"),
        ] {
            assert_eq!(token(id), want, "{id}");
            let t = token(id);
            assert!(t.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_'));
            assert!(
                t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-_".contains(c))
            );
        }
    }
}
