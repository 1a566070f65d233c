//! The evidence kinds, computed from the real stores of a data directory, never typed in
//! (`docs/compliance.md`, `## Evidence kinds`, documents each computation). One module per
//! kind; [`stores`] reads the files without taking any lock a running stack holds.
//!
//! [`from_data_dir`] reads each store once: svc-audit's tile log (entries indexed, then
//! `flk_tlog::verify_log`), svc-verify's outcome log (one pass, decisions checked against the
//! audit index as they are read), the anchor journal and the effective configuration. What
//! only a service's own crate can read (svc-verify's refusal store, svc-kpi's report) is
//! handed in by the caller as [`External`].
//!
//! Deterministic: the same stores and period give the same [`EvidenceSet`]: every list is
//! sorted, maps are `BTreeMap`s, and nothing reads the clock.

pub mod access_control;
pub mod audit_log_integrity;
pub mod availability;
pub mod checkpoint_anchoring;
pub mod decision_coverage;
pub mod key_management;
pub mod not_built;
pub mod retention;
pub mod signature_verification;
pub mod stores;

use std::collections::BTreeMap;
use std::path::Path;

use flk_tlog::{Checkpoint, LogVerifier};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::model::{Evidence, EvidenceSet, Period, Status};
use stores::{AuditIndex, DirStore, JournalAnchor, Layout};

/// Why evidence could not be computed at all (a store that cannot be read). Evidence that
/// merely fails is an [`Evidence`] with status `fail`, not an error.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    #[error("{0}")]
    Store(String),
}

/// Signature refusals of one tenant for one reason in one minute (svc-verify's refusal store).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RefusalRow {
    pub minute_unix_ms: i64,
    pub tenant_id: String,
    pub reason_code: String,
    pub count: u64,
}

/// One SLO of svc-kpi's report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SloFigure {
    /// `<tenant>/<window>/<slo>`.
    pub name: String,
    pub met: Option<bool>,
}

/// svc-kpi's SLOs as of a Unix-ms instant, or why they cannot be read.
pub type SloReader = dyn Fn(i64) -> Result<Vec<SloFigure>, String>;

/// svc-tiering's placement catalog as read (from a copy): what the `tiering` evidence rests on.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TieringFigures {
    /// Records and their stored bytes per tier: hot, warm, cold.
    pub records: [u64; 3],
    pub bytes: [u64; 3],
    /// Decision times (Unix ms) of the oldest and newest record held; 0 without records.
    pub oldest_decided_ms: i64,
    pub newest_decided_ms: i64,
    /// Configured retention (`None`: kept forever) and placement interval, in ms.
    pub retention_ms: Option<u64>,
    pub demote_interval_ms: u64,
    /// Records decided before `newest_decided_ms - retention - demote_interval` still held:
    /// what retention should have removed (computed by the caller against the same instant).
    pub past_retention: u64,
    /// Moves a crash interrupted, finished or undone when svc-tiering next starts.
    pub pending_moves: u64,
}

/// What the caller reads with the owning service's crate.
#[derive(Default)]
pub struct External {
    /// svc-tiering's catalog; `None` when the stack has no svc-tiering data, `Err` when it
    /// cannot be read.
    pub tiering: Option<Result<TieringFigures, String>>,
    /// svc-verify's signature refusals in the period; `None` when there is no refusal store.
    pub refusals: Option<Vec<RefusalRow>>,
    /// svc-kpi's SLOs as of an instant (called with the time of the period's last decision,
    /// or the period's end if earlier: derived from the stores, so deterministic).
    pub slos: Option<Box<SloReader>>,
}

/// The audit log as read: store, verifier, checkpoint, entries.
pub struct AuditLog {
    pub store: DirStore,
    pub verifier: LogVerifier,
    pub note: String,
    pub checkpoint: Checkpoint,
    pub index: AuditIndex,
    /// `flk_tlog::verify_log` of the whole log against `note`: its report, or the failure in
    /// words naming the entry, bundle or tile.
    pub verified: Result<flk_tlog::VerifyReport, String>,
}

/// Everything the kinds are computed from.
pub struct Inputs<'a> {
    pub period: &'a Period,
    pub from_ms: i64,
    pub to_ms: i64,
    pub layout: Layout,
    /// `Err` names why there is no readable, signed audit log.
    pub audit: Result<AuditLog, String>,
    pub feed: decision_coverage::FeedFigures,
    pub anchors: Vec<JournalAnchor>,
    pub external: &'a External,
    /// svc-kpi's SLOs at the period's last decision, or why not.
    pub slos: Result<Vec<SloFigure>, String>,
}

impl Inputs<'_> {
    /// Whether a Unix-ms instant is in the period.
    pub fn in_period(&self, ms: i64) -> bool {
        ms >= self.from_ms && ms < self.to_ms
    }
}

fn unix_ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// RFC 3339 (UTC) of a Unix-ms instant.
pub fn rfc3339_ms(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map(crate::model::format_instant)
        .unwrap_or_else(|_| ms.to_string())
}

/// An [`Evidence`] with figures from `(name, value)` pairs.
pub fn evidence(
    kind: &str,
    status: Status,
    figures: impl IntoIterator<Item = (&'static str, serde_json::Value)>,
    detail: impl Into<String>,
) -> Evidence {
    Evidence {
        kind: kind.to_owned(),
        status,
        figures: figures
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
        detail: detail.into(),
        samples: Vec::new(),
    }
}

/// Opens the audit log of `audit_dir` read-only and indexes its entries up to its checkpoint.
fn open_audit(layout: &Layout, progress: &(dyn Fn(&str) + Sync)) -> Result<AuditLog, String> {
    use flk_tlog::store::TileStore as _;
    let tlog = layout.audit_dir.join("tlog");
    let store = DirStore::open(&tlog).map_err(|e| e.to_string())?;
    let key_file = layout
        .setting("audit", "log_key_file")
        .and_then(|v| v.as_str())
        .map(std::path::PathBuf::from)
        .filter(|p| p.is_file())
        .unwrap_or_else(|| layout.audit_dir.join("log.key"));
    let text = std::fs::read_to_string(&key_file).map_err(|e| {
        format!(
            "cannot read svc-audit's log key {}: {e}",
            key_file.display()
        )
    })?;
    let verifier = flk_tlog::LogSigner::from_private_key(text.trim())
        .map_err(|e| format!("{} is not a log signer key: {e}", key_file.display()))?
        .verifier();
    let note = store
        .latest_checkpoint()
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{} has no checkpoint", tlog.display()))?;
    let checkpoint = flk_tlog::open_checkpoint(&note, &verifier).map_err(|e| {
        format!(
            "the log's checkpoint ({}/checkpoint) does not verify: {e}",
            tlog.display()
        )
    })?;
    progress(&format!(
        "verifying and reading {} audit log entries",
        checkpoint.size
    ));
    // One read of the bundles for both; a log that stops verifying early (truncated, broken
    // framing) is indexed in a second pass, as far as it can be read.
    let indexing = stores::Indexing::new(&store, &note, checkpoint.size, progress);
    let verified = flk_tlog::verify_log(
        &indexing,
        &verifier,
        &flk_tlog::VerifyOptions {
            entries: None,
            decode_entries: true,
        },
    )
    .map_err(|e| audit_log_integrity::explain(&e));
    let index = match indexing.finish() {
        Some(index) => index,
        None => stores::index_audit_log(&store, checkpoint.size, progress),
    };
    Ok(AuditLog {
        store,
        verifier,
        note,
        checkpoint,
        index,
        verified,
    })
}

/// Computes every kind of [`crate::model::EVIDENCE_KINDS`] over `period` from the stack data
/// directory `dir` (`flk up --data-dir`), read-only. `progress` gets a line now and then
/// during long reads.
pub fn from_data_dir(
    dir: &Path,
    period: &Period,
    external: &External,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<EvidenceSet, EvidenceError> {
    let layout = Layout::of(dir)?;
    let audit = open_audit(&layout, progress);
    let (from_ms, to_ms) = (unix_ms(period.from), unix_ms(period.to));
    progress("reading the outcome log");
    let feed = decision_coverage::scan(
        &layout.verify_dir,
        from_ms,
        to_ms,
        audit.as_ref().ok().map(|a| &a.index),
    )?;
    let anchors = stores::read_anchor_journal(&layout.audit_dir)?;
    let slos = match (&external.slos, feed.newest_in_period_ms) {
        (None, _) => Err("no svc-kpi store was read".to_owned()),
        (Some(_), None) => Err("no decision in the period".to_owned()),
        (Some(read), Some(newest)) => read((newest + 1).min(to_ms)),
    };
    let inputs = Inputs {
        period,
        from_ms,
        to_ms,
        layout,
        audit,
        feed,
        anchors,
        external,
        slos,
    };
    let mut by_kind = BTreeMap::new();
    let samples = audit_log_integrity::samples(&inputs);
    let mut integrity = audit_log_integrity::compute(&inputs);
    integrity.samples = samples.clone();
    let mut coverage = decision_coverage::compute(&inputs);
    coverage.samples = samples;
    for e in [
        integrity,
        coverage,
        signature_verification::compute(&inputs),
        checkpoint_anchoring::compute(&inputs),
        retention::compute(&inputs),
        key_management::compute(&inputs),
        access_control::compute(&inputs),
        availability::compute(&inputs),
        not_built::replication(&inputs),
        not_built::tiering(&inputs),
    ] {
        by_kind.insert(e.kind.clone(), e);
    }
    Ok(EvidenceSet {
        by_kind,
        timeline: inputs.feed.timeline(),
    })
}
