//! Control catalogs as data: the TOML format, the built-ins and their validation.
//!
//! ```toml
//! [framework]
//! id = "acme-internal"
//! title = "ACME agent controls"
//! version = "2026"            # optional
//! description = "..."         # optional
//! [[controls]]
//! id = "ACME-1"
//! title = "Decisions are tamper-evident"
//! description = "..."
//! evidence = ["audit_log_integrity", "decision_coverage"]
//! rule = "all_pass"           # all_pass | any_pass | manual
//! ```
//!
//! Unknown keys, unknown evidence kinds or rules, empty or duplicate control ids and a
//! control without evidence (unless its rule is `manual`) are errors naming the control and
//! the value.

use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::model::EVIDENCE_KINDS;

/// Where a framework came from.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Builtin,
    File,
}

/// How a control's evidence becomes its verdict.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// Fail if any evidence fails, not_applicable if all are, else pass.
    AllPass,
    /// Pass if any evidence passes, not_applicable if all are, else fail.
    AnyPass,
    /// A person judges: the verdict is `manual`.
    Manual,
}

/// The rules' spellings in catalogs and in the report.
pub const RULES: [&str; 3] = ["all_pass", "any_pass", "manual"];

impl Rule {
    /// The catalog and JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::AllPass => "all_pass",
            Rule::AnyPass => "any_pass",
            Rule::Manual => "manual",
        }
    }

    fn parse(s: &str) -> Option<Rule> {
        match s {
            "all_pass" => Some(Rule::AllPass),
            "any_pass" => Some(Rule::AnyPass),
            "manual" => Some(Rule::Manual),
            _ => None,
        }
    }
}

/// One control of a catalog.
#[derive(Serialize, Deserialize, Clone, PartialEq, Debug)]
pub struct Control {
    pub id: String,
    pub title: String,
    pub description: String,
    /// Evidence kinds, each one of [`EVIDENCE_KINDS`], in catalog order.
    pub evidence: Vec<String>,
    pub rule: Rule,
}

/// A control catalog.
#[derive(Clone, PartialEq, Debug)]
pub struct Framework {
    pub id: String,
    pub title: String,
    pub version: Option<String>,
    pub description: Option<String>,
    pub source: Source,
    pub controls: Vec<Control>,
}

/// A catalog that cannot be read or is invalid.
#[derive(Debug, thiserror::Error)]
pub enum FrameworkError {
    #[error("cannot read framework file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid framework {origin}: {message}")]
    Invalid { origin: String, message: String },
}

/// The built-in catalogs' ids.
pub const BUILTIN_IDS: [&str; 4] = ["soc2", "iso27001", "hipaa", "gdpr"];

const SOC2: &str = include_str!("../frameworks/soc2.toml");
const ISO27001: &str = include_str!("../frameworks/iso27001.toml");
const HIPAA: &str = include_str!("../frameworks/hipaa.toml");
const GDPR: &str = include_str!("../frameworks/gdpr.toml");

/// A built-in catalog: `soc2`, `iso27001`, `hipaa` or `gdpr`.
pub fn builtin(id: &str) -> Option<Framework> {
    let text = match id {
        "soc2" => SOC2,
        "iso27001" => ISO27001,
        "hipaa" => HIPAA,
        "gdpr" => GDPR,
        _ => return None,
    };
    // The built-ins are checked by this crate's tests (`builtins_are_valid`), so a parse
    // error here is a bug in a data file of this repository, never user input.
    parse(text, Source::Builtin, &format!("builtin {id}")).ok()
}

/// Loads a custom catalog from a TOML file.
pub fn load(path: &Path) -> Result<Framework, FrameworkError> {
    let text = std::fs::read_to_string(path).map_err(|source| FrameworkError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse(&text, Source::File, &path.display().to_string())
}

/// `--framework` of the CLI and the route: a built-in id, else a file path.
pub fn resolve(name: &str) -> Result<Framework, FrameworkError> {
    match builtin(name) {
        Some(f) => Ok(f),
        None => {
            let path = Path::new(name);
            if !path.exists() && !name.contains(['/', '.']) {
                return Err(FrameworkError::Invalid {
                    origin: name.to_string(),
                    message: format!(
                        "not a built-in framework ({}) nor an existing file",
                        BUILTIN_IDS.join(", ")
                    ),
                });
            }
            load(path)
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    framework: RawHeader,
    #[serde(default)]
    controls: Vec<RawControl>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeader {
    id: String,
    title: String,
    version: Option<String>,
    description: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawControl {
    id: String,
    title: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    evidence: Vec<String>,
    rule: String,
}

/// Parses and validates a catalog; `origin` names it in errors (a path or `builtin soc2`).
pub fn parse(text: &str, source: Source, origin: &str) -> Result<Framework, FrameworkError> {
    let invalid = |message: String| FrameworkError::Invalid {
        origin: origin.to_string(),
        message,
    };
    let raw: RawFile = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
    if raw.framework.id.trim().is_empty() {
        return Err(invalid("[framework] id is empty".into()));
    }
    if raw.framework.title.trim().is_empty() {
        return Err(invalid("[framework] title is empty".into()));
    }
    if raw.controls.is_empty() {
        return Err(invalid("no [[controls]]".into()));
    }
    let mut seen = BTreeSet::new();
    let mut controls = Vec::with_capacity(raw.controls.len());
    for (i, c) in raw.controls.into_iter().enumerate() {
        if c.id.trim().is_empty() {
            return Err(invalid(format!("control #{} has an empty id", i + 1)));
        }
        if !seen.insert(c.id.clone()) {
            return Err(invalid(format!("duplicate control id {:?}", c.id)));
        }
        if c.title.trim().is_empty() {
            return Err(invalid(format!("control {:?} has an empty title", c.id)));
        }
        let rule = Rule::parse(&c.rule).ok_or_else(|| {
            invalid(format!(
                "control {:?}: unknown rule {:?} (known rules: {})",
                c.id,
                c.rule,
                RULES.join(", ")
            ))
        })?;
        let mut kinds = BTreeSet::new();
        for kind in &c.evidence {
            if !EVIDENCE_KINDS.contains(&kind.as_str()) {
                return Err(invalid(format!(
                    "control {:?}: unknown evidence kind {:?} (known kinds: {})",
                    c.id,
                    kind,
                    EVIDENCE_KINDS.join(", ")
                )));
            }
            if !kinds.insert(kind.as_str()) {
                return Err(invalid(format!(
                    "control {:?}: evidence kind {:?} listed twice",
                    c.id, kind
                )));
            }
        }
        if c.evidence.is_empty() && rule != Rule::Manual {
            return Err(invalid(format!(
                "control {:?}: rule {:?} needs at least one evidence kind (known kinds: {}); \
                 use rule = \"manual\" for a control a person judges",
                c.id,
                rule.as_str(),
                EVIDENCE_KINDS.join(", ")
            )));
        }
        controls.push(Control {
            id: c.id,
            title: c.title,
            description: c.description,
            evidence: c.evidence,
            rule,
        });
    }
    Ok(Framework {
        id: raw.framework.id,
        title: raw.framework.title,
        version: raw.framework.version,
        description: raw.framework.description,
        source,
        controls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse(text, Source::File, "t.toml").unwrap_err().to_string()
    }

    const HEAD: &str = "[framework]\nid = \"x\"\ntitle = \"X\"\n";

    #[test]
    fn builtins_are_valid_and_use_every_kind() {
        let mut used = BTreeSet::new();
        for id in BUILTIN_IDS {
            let text = match id {
                "soc2" => SOC2,
                "iso27001" => ISO27001,
                "hipaa" => HIPAA,
                _ => GDPR,
            };
            let f = parse(text, Source::Builtin, id).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(f.id, id);
            assert!(
                f.controls.len() >= 5,
                "{id} has {} controls",
                f.controls.len()
            );
            assert!(
                f.controls.iter().any(|c| c.rule == Rule::Manual),
                "{id} has no manual control"
            );
            assert!(
                f.controls.iter().any(|c| c.rule != Rule::Manual),
                "{id} has no evidence-based control"
            );
            for c in &f.controls {
                assert!(!c.description.trim().is_empty(), "{id} {}", c.id);
                used.extend(c.evidence.iter().cloned());
            }
            assert_eq!(builtin(id), Some(f));
        }
        let all: BTreeSet<String> = EVIDENCE_KINDS.iter().map(|k| k.to_string()).collect();
        assert_eq!(used, all, "evidence kinds unused by the built-ins");
        assert_eq!(builtin("pci"), None);
    }

    #[test]
    fn builtins_carry_the_frameworks_real_ids() {
        let ids = |f: &str| -> BTreeSet<String> {
            builtin(f)
                .unwrap()
                .controls
                .into_iter()
                .map(|c| c.id)
                .collect()
        };
        for (f, want) in [
            (
                "soc2",
                &["CC6.1", "CC6.6", "CC7.2", "CC7.3", "CC8.1", "A1.2", "PI1.4"][..],
            ),
            (
                "iso27001",
                &[
                    "A.5.15", "A.5.33", "A.8.5", "A.8.13", "A.8.15", "A.8.16", "A.8.24",
                ],
            ),
            (
                "hipaa",
                &[
                    "164.312(a)(1)",
                    "164.312(b)",
                    "164.312(c)(1)",
                    "164.312(d)",
                    "164.312(e)(1)",
                    "164.308(a)(1)(ii)(D)",
                    "164.316(b)(2)(i)",
                ],
            ),
            (
                "gdpr",
                &[
                    "Art. 5(1)(e)",
                    "Art. 5(1)(f)",
                    "Art. 5(2)",
                    "Art. 30",
                    "Art. 32(1)(b)",
                    "Art. 32(1)(d)",
                    "Art. 33",
                ],
            ),
        ] {
            let got = ids(f);
            for w in want {
                assert!(got.contains(*w), "{f} lacks {w}: {got:?}");
            }
        }
    }

    #[test]
    fn the_docs_table_of_builtins_matches_the_catalogs() {
        let doc = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../docs/compliance.md"
        ))
        .unwrap();
        for id in BUILTIN_IDS {
            let f = builtin(id).unwrap();
            let row = doc
                .lines()
                .find(|l| l.starts_with(&format!("| `{id}` |")))
                .unwrap_or_else(|| panic!("docs/compliance.md has no row for {id}"));
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            assert_eq!(cells[3], f.controls.len().to_string(), "{row}");
            for example in cells[4].split(", ") {
                assert!(
                    f.controls.iter().any(|c| c.id == example),
                    "{id}: {example}"
                );
            }
        }
    }

    #[test]
    fn rule_spellings_are_the_serde_ones() {
        for r in [Rule::AllPass, Rule::AnyPass, Rule::Manual] {
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
            assert_eq!(Rule::parse(r.as_str()), Some(r));
        }
    }

    #[test]
    fn a_custom_file_loads_with_its_source() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acme.toml");
        std::fs::write(
            &path,
            format!(
                "{HEAD}[[controls]]\nid = \"A-1\"\ntitle = \"t\"\ndescription = \"d\"\n\
                 evidence = [\"audit_log_integrity\", \"decision_coverage\"]\nrule = \"all_pass\"\n\
                 [[controls]]\nid = \"A-2\"\ntitle = \"t2\"\nrule = \"manual\"\n"
            ),
        )
        .unwrap();
        let f = resolve(path.to_str().unwrap()).unwrap();
        assert_eq!(f.source, Source::File);
        assert_eq!(f.controls.len(), 2);
        assert_eq!(f.controls[1].rule, Rule::Manual);
        assert!(f.controls[1].evidence.is_empty());
    }

    #[test]
    fn errors_name_what_is_wrong() {
        let e = err(&format!(
            "{HEAD}[[controls]]\nid = \"C1\"\ntitle = \"t\"\nevidence = [\"vibes\"]\nrule = \"all_pass\"\n"
        ));
        assert!(
            e.contains("\"C1\"")
                && e.contains("\"vibes\"")
                && e.contains("audit_log_integrity, decision_coverage"),
            "{e}"
        );

        let e = err(&format!(
            "{HEAD}[[controls]]\nid = \"C1\"\ntitle = \"t\"\nevidence = [\"retention\"]\nrule = \"most_pass\"\n"
        ));
        assert!(
            e.contains("\"C1\"")
                && e.contains("\"most_pass\"")
                && e.contains("all_pass, any_pass, manual"),
            "{e}"
        );

        let c = "[[controls]]\nid = \"C1\"\ntitle = \"t\"\nevidence = [\"retention\"]\nrule = \"all_pass\"\n";
        let e = err(&format!("{HEAD}{c}{c}"));
        assert!(e.contains("duplicate control id \"C1\""), "{e}");

        let e = err(&format!(
            "{HEAD}[[controls]]\nid = \" \"\ntitle = \"t\"\nrule = \"manual\"\n"
        ));
        assert!(e.contains("control #1 has an empty id"), "{e}");

        let e = err(&format!(
            "{HEAD}[[controls]]\nid = \"C9\"\ntitle = \"t\"\nrule = \"any_pass\"\n"
        ));
        assert!(
            e.contains("\"C9\"")
                && e.contains("needs at least one evidence kind")
                && e.contains("tiering"),
            "{e}"
        );

        let e = err(&format!(
            "{HEAD}[[controls]]\nid = \"C1\"\ntitle = \"t\"\nrule = \"manual\"\nweight = 3\n"
        ));
        assert!(e.contains("unknown field `weight`"), "{e}");

        let e = err("[framework]\nid = \"x\"\ntitle = \"X\"\nowner = \"me\"\n");
        assert!(e.contains("unknown field `owner`"), "{e}");

        let e = err(HEAD);
        assert!(e.contains("no [[controls]]"), "{e}");

        let e = resolve("pci").unwrap_err().to_string();
        assert!(e.contains("soc2, iso27001, hipaa, gdpr"), "{e}");
        let e = resolve("/nonexistent/f.toml").unwrap_err().to_string();
        assert!(e.contains("/nonexistent/f.toml"), "{e}");
    }
}
