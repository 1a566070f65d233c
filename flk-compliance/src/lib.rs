//! flk-compliance: compliance reports whose evidence an auditor can check without trusting
//! FLK.
//!
//! A [`framework::Framework`] is a catalog of controls loaded from data (four built-ins in
//! `frameworks/*.toml`, or a custom file of the same format). Each control names the evidence
//! kinds it needs and the [`framework::Rule`] that turns them into a verdict. The evidence
//! side computes one [`model::Evidence`] per kind from the real stores (an
//! [`model::EvidenceSet`]); [`evaluate`] applies the rules and gives a [`model::Report`],
//! which [`render`] writes as JSON (the source of truth), HTML, PDF or OSCAL
//! `assessment-results`.
//!
//! # Invariants
//!
//! * **Deterministic** — the same framework, evidence and period give the same report and the
//!   same JSON and OSCAL bytes: no wall-clock time, no random UUIDs, ordered maps only.
//! * **DataOnly** — catalogs are data: adding a control or a framework needs no code.

pub mod evidence;
pub mod framework;
pub mod model;
pub mod render;

pub use framework::{Control, Framework, FrameworkError, Rule, Source};
pub use model::{
    DayCount, EVIDENCE_KINDS, Evidence, EvidenceSet, Period, PeriodError, Report, Sample, Status,
    evaluate,
};
