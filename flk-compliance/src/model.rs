//! The contract between the evidence computation and the report: evidence, periods, the
//! report and [`evaluate`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::framework::{Framework, Rule, Source};

/// The verdict of a control or the status of one piece of evidence.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pass,
    Fail,
    NotApplicable,
    /// Needs a person (controls only).
    Manual,
}

impl Status {
    /// The JSON spelling (`pass`, `fail`, `not_applicable`, `manual`).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::NotApplicable => "not_applicable",
            Status::Manual => "manual",
        }
    }
}

/// One piece of evidence as computed from the stores.
#[derive(Serialize, Deserialize, Clone, PartialEq, Debug)]
pub struct Evidence {
    /// One of [`EVIDENCE_KINDS`].
    pub kind: String,
    /// `Pass`, `Fail` or `NotApplicable`.
    pub status: Status,
    /// The counts it rests on.
    pub figures: BTreeMap<String, serde_json::Value>,
    /// One or two sentences; names the entry or tile on failure.
    pub detail: String,
    /// Decision-level evidence only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<Sample>,
}

/// A decision an auditor can check offline with `flk audit verify`.
#[derive(Serialize, Deserialize, Clone, PartialEq, Debug)]
pub struct Sample {
    pub tenant_id: String,
    pub pcs_id: String,
    pub leaf_index: u64,
    /// The proof bundle exactly as `flk audit verify --bundle` reads it (JSON value).
    pub proof: serde_json::Value,
    /// Anchors of the checkpoint the proof is against (flk_anchor AnchorRecord JSON values).
    pub anchors: Vec<serde_json::Value>,
}

/// Decisions per UTC day in the period, for the charts.
#[derive(Serialize, Deserialize, Clone, PartialEq, Debug)]
pub struct DayCount {
    /// `YYYY-MM-DD`.
    pub day: String,
    pub accept: u64,
    pub escalate: u64,
    pub reject: u64,
}

/// Everything the evidence side hands the report side.
#[derive(Serialize, Deserialize, Clone, PartialEq, Debug, Default)]
pub struct EvidenceSet {
    /// Every kind in [`EVIDENCE_KINDS`] present.
    pub by_kind: BTreeMap<String, Evidence>,
    pub timeline: Vec<DayCount>,
}

/// The evidence kinds a control may name.
pub const EVIDENCE_KINDS: [&str; 10] = [
    "audit_log_integrity",
    "decision_coverage",
    "signature_verification",
    "checkpoint_anchoring",
    "retention",
    "key_management",
    "access_control",
    "availability",
    "replication",
    "tiering",
];

/// A report period `[from, to)`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Period {
    pub from: OffsetDateTime,
    pub to: OffsetDateTime,
}

/// A period bound or a period that does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PeriodError {
    #[error(
        "invalid {field} {value:?}: expected an RFC 3339 datetime (2026-01-31T12:00:00Z) or a date YYYY-MM-DD (00:00 UTC)"
    )]
    Invalid { field: &'static str, value: String },
    #[error("empty period: from {from} is not before to {to}")]
    Empty { from: String, to: String },
}

impl Period {
    /// Parses the CLI's and the route's `from` and `to`: each an RFC 3339 datetime or a date
    /// `YYYY-MM-DD` meaning 00:00 UTC. `from` must be before `to`.
    pub fn parse(from: &str, to: &str) -> Result<Period, PeriodError> {
        let from_t = parse_instant(from).ok_or_else(|| PeriodError::Invalid {
            field: "from",
            value: from.to_string(),
        })?;
        let to_t = parse_instant(to).ok_or_else(|| PeriodError::Invalid {
            field: "to",
            value: to.to_string(),
        })?;
        if from_t >= to_t {
            return Err(PeriodError::Empty {
                from: format_instant(from_t),
                to: format_instant(to_t),
            });
        }
        Ok(Period {
            from: from_t,
            to: to_t,
        })
    }

    /// `from` as RFC 3339 in UTC (`...Z`).
    pub fn from_rfc3339(&self) -> String {
        format_instant(self.from)
    }

    /// `to` as RFC 3339 in UTC (`...Z`).
    pub fn to_rfc3339(&self) -> String {
        format_instant(self.to)
    }
}

/// One bound: an RFC 3339 datetime (converted to UTC) or `YYYY-MM-DD` at 00:00 UTC.
pub fn parse_instant(s: &str) -> Option<OffsetDateTime> {
    let s = s.trim();
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Some(t.to_offset(time::UtcOffset::UTC));
    }
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(s, fmt)
        .ok()
        .map(|d| d.midnight().assume_utc())
}

/// RFC 3339 in UTC with a `Z` suffix.
pub fn format_instant(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

impl Serialize for Period {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Period", 2)?;
        st.serialize_field("from", &self.from_rfc3339())?;
        st.serialize_field("to", &self.to_rfc3339())?;
        st.end()
    }
}

impl<'de> Deserialize<'de> for Period {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Period, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            from: String,
            to: String,
        }
        let raw = Raw::deserialize(d)?;
        Period::parse(&raw.from, &raw.to).map_err(serde::de::Error::custom)
    }
}

/// The framework as the report names it.
#[derive(Serialize, Deserialize, Clone, PartialEq, Debug)]
pub struct FrameworkRef {
    pub id: String,
    pub title: String,
    pub source: Source,
}

/// Counts of control verdicts.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Summary {
    pub controls: u64,
    pub pass: u64,
    pub fail: u64,
    pub not_applicable: u64,
    pub manual: u64,
}

/// One control's verdict with the evidence it rests on.
#[derive(Serialize, Deserialize, Clone, PartialEq, Debug)]
pub struct ControlResult {
    pub id: String,
    pub title: String,
    pub description: String,
    pub rule: Rule,
    pub status: Status,
    pub evidence: Vec<Evidence>,
}

/// The report; JSON field order as declared; no wall-clock time in it.
#[derive(Serialize, Deserialize, Clone, PartialEq, Debug)]
pub struct Report {
    pub schema_version: u32,
    pub framework: FrameworkRef,
    pub period: Period,
    pub summary: Summary,
    pub controls: Vec<ControlResult>,
    pub timeline: Vec<DayCount>,
}

/// The report's JSON schema version.
pub const SCHEMA_VERSION: u32 = 1;

/// Applies each control's rule to its evidence.
///
/// * `all_pass`: `fail` if any evidence fails, `not_applicable` if all are, else `pass`;
/// * `any_pass`: `pass` if any evidence passes, `not_applicable` if all are, else `fail`;
/// * `manual`: `manual`, whatever the evidence (which is still listed for the person).
///
/// An evidence kind the set lacks is listed as failing evidence saying it was not computed:
/// a report never passes a control on evidence it does not have.
pub fn evaluate(framework: &Framework, evidence: &EvidenceSet, period: &Period) -> Report {
    let mut summary = Summary::default();
    let controls: Vec<ControlResult> = framework
        .controls
        .iter()
        .map(|c| {
            let ev: Vec<Evidence> = c
                .evidence
                .iter()
                .map(|kind| {
                    evidence
                        .by_kind
                        .get(kind)
                        .cloned()
                        .unwrap_or_else(|| missing(kind))
                })
                .collect();
            let status = verdict(c.rule, ev.iter().map(|e| e.status));
            summary.controls += 1;
            match status {
                Status::Pass => summary.pass += 1,
                Status::Fail => summary.fail += 1,
                Status::NotApplicable => summary.not_applicable += 1,
                Status::Manual => summary.manual += 1,
            }
            ControlResult {
                id: c.id.clone(),
                title: c.title.clone(),
                description: c.description.clone(),
                rule: c.rule,
                status,
                evidence: ev,
            }
        })
        .collect();
    let mut timeline = evidence.timeline.clone();
    timeline.sort_by(|a, b| a.day.cmp(&b.day));
    Report {
        schema_version: SCHEMA_VERSION,
        framework: FrameworkRef {
            id: framework.id.clone(),
            title: framework.title.clone(),
            source: framework.source,
        },
        period: *period,
        summary,
        controls,
        timeline,
    }
}

fn missing(kind: &str) -> Evidence {
    Evidence {
        kind: kind.to_string(),
        status: Status::Fail,
        figures: BTreeMap::new(),
        detail: format!("Evidence {kind} was not computed for this report."),
        samples: Vec::new(),
    }
}

/// A rule over evidence statuses. Evidence is `pass`, `fail` or `not_applicable`; a `manual`
/// evidence status (which the evidence side does not produce) makes an automatic verdict
/// impossible, so the control is `manual` unless a failure (`all_pass`) or a pass
/// (`any_pass`) already decides it.
pub fn verdict(rule: Rule, statuses: impl Iterator<Item = Status> + Clone) -> Status {
    let has = |s: Status| statuses.clone().any(|x| x == s);
    let all_na = statuses.clone().all(|x| x == Status::NotApplicable);
    match rule {
        Rule::Manual => Status::Manual,
        Rule::AllPass if has(Status::Fail) => Status::Fail,
        Rule::AnyPass if has(Status::Pass) => Status::Pass,
        _ if all_na => Status::NotApplicable,
        _ if has(Status::Manual) => Status::Manual,
        Rule::AllPass => Status::Pass,
        Rule::AnyPass => Status::Fail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::{Control, Framework, Source};

    #[test]
    fn status_spellings_are_the_serde_ones() {
        for s in [
            Status::Pass,
            Status::Fail,
            Status::NotApplicable,
            Status::Manual,
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
    }

    #[test]
    fn rules() {
        use Status::*;
        let v = |r, s: &[Status]| verdict(r, s.iter().copied());
        assert_eq!(v(Rule::AllPass, &[Pass, Pass]), Pass);
        assert_eq!(v(Rule::AllPass, &[Pass, NotApplicable]), Pass);
        assert_eq!(v(Rule::AllPass, &[Pass, Fail]), Fail);
        assert_eq!(v(Rule::AllPass, &[NotApplicable, Fail]), Fail);
        assert_eq!(
            v(Rule::AllPass, &[NotApplicable, NotApplicable]),
            NotApplicable
        );
        assert_eq!(v(Rule::AnyPass, &[Fail, Pass]), Pass);
        assert_eq!(v(Rule::AnyPass, &[Fail, NotApplicable]), Fail);
        assert_eq!(v(Rule::AnyPass, &[Fail, Fail]), Fail);
        assert_eq!(
            v(Rule::AnyPass, &[NotApplicable, NotApplicable]),
            NotApplicable
        );
        assert_eq!(v(Rule::Manual, &[Pass]), Manual);
        assert_eq!(v(Rule::Manual, &[]), Manual);
        assert_eq!(v(Rule::AllPass, &[Pass, Manual]), Manual);
        assert_eq!(v(Rule::AnyPass, &[Fail, Manual]), Manual);
    }

    fn ev(kind: &str, status: Status) -> Evidence {
        Evidence {
            kind: kind.into(),
            status,
            figures: BTreeMap::from([("n".to_string(), serde_json::json!(1))]),
            detail: format!("{kind} detail"),
            samples: vec![],
        }
    }

    fn control(id: &str, evidence: &[&str], rule: Rule) -> Control {
        Control {
            id: id.into(),
            title: format!("{id} title"),
            description: String::new(),
            evidence: evidence.iter().map(|s| s.to_string()).collect(),
            rule,
        }
    }

    #[test]
    fn evaluate_counts_and_keeps_catalog_order() {
        let f = Framework {
            id: "x".into(),
            title: "X".into(),
            version: None,
            description: None,
            source: Source::File,
            controls: vec![
                control("Z", &["retention", "tiering"], Rule::AllPass),
                control("A", &["audit_log_integrity"], Rule::AllPass),
                control("M", &[], Rule::Manual),
                control("N", &["tiering"], Rule::AnyPass),
                control("Q", &["availability"], Rule::AnyPass),
            ],
        };
        let set = EvidenceSet {
            by_kind: BTreeMap::from([
                ("retention".into(), ev("retention", Status::Pass)),
                ("tiering".into(), ev("tiering", Status::NotApplicable)),
                (
                    "audit_log_integrity".into(),
                    ev("audit_log_integrity", Status::Fail),
                ),
            ]),
            timeline: vec![
                DayCount {
                    day: "2026-01-02".into(),
                    accept: 1,
                    escalate: 0,
                    reject: 0,
                },
                DayCount {
                    day: "2026-01-01".into(),
                    accept: 2,
                    escalate: 1,
                    reject: 0,
                },
            ],
        };
        let period = Period::parse("2026-01-01", "2026-01-03").unwrap();
        let r = evaluate(&f, &set, &period);
        let got: Vec<(&str, Status)> = r
            .controls
            .iter()
            .map(|c| (c.id.as_str(), c.status))
            .collect();
        assert_eq!(
            got,
            [
                ("Z", Status::Pass),
                ("A", Status::Fail),
                ("M", Status::Manual),
                ("N", Status::NotApplicable),
                ("Q", Status::Fail),
            ]
        );
        assert_eq!(
            r.summary,
            Summary {
                controls: 5,
                pass: 1,
                fail: 2,
                not_applicable: 1,
                manual: 1
            }
        );
        // availability was not in the set: failing evidence saying so
        assert!(
            r.controls[4].evidence[0]
                .detail
                .contains("availability was not computed")
        );
        assert_eq!(r.timeline[0].day, "2026-01-01");
        assert_eq!(r.framework.source, Source::File);
    }

    #[test]
    fn periods_parse_and_errors_name_the_value() {
        let p = Period::parse("2026-01-01", "2026-02-01T12:30:00+02:00").unwrap();
        assert_eq!(p.from_rfc3339(), "2026-01-01T00:00:00Z");
        assert_eq!(p.to_rfc3339(), "2026-02-01T10:30:00Z");
        let e = Period::parse("2026-13-01", "2026-02-01")
            .unwrap_err()
            .to_string();
        assert!(e.contains("from") && e.contains("\"2026-13-01\""), "{e}");
        let e = Period::parse("2026-01-01", "yesterday")
            .unwrap_err()
            .to_string();
        assert!(e.contains("to") && e.contains("\"yesterday\""), "{e}");
        let e = Period::parse("2026-02-01", "2026-01-01")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not before"), "{e}");
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(
            json,
            r#"{"from":"2026-01-01T00:00:00Z","to":"2026-02-01T10:30:00Z"}"#
        );
        assert_eq!(serde_json::from_str::<Period>(&json).unwrap(), p);
    }
}
