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
pub fn evaluate(framework: &Framework, evidence: &EvidenceSet, period: &Period) -> Report {
    let _ = (framework, evidence, period);
    // Stub of the contract; the rules land next.
    Report {
        schema_version: SCHEMA_VERSION,
        framework: FrameworkRef {
            id: framework.id.clone(),
            title: framework.title.clone(),
            source: framework.source,
        },
        period: *period,
        summary: Summary::default(),
        controls: Vec::new(),
        timeline: evidence.timeline.clone(),
    }
}
