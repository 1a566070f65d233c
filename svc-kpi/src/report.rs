//! The KPI report of one tenant over one rolling window: [`compute_report`], a plain function
//! over the [`Store`] shared by the REST and gRPC handlers and `flk report kpi`.
//!
//! # Definitions (per tenant, per window; counts by decision time)
//!
//! * `caught = escalated + rejected - false_alarms`;
//!   `containment_rate = caught / (caught + hallucinations_reported)`; SLO `>= containment_min`.
//! * `escalation_rate = (escalated + rejected) / decisions`; SLO `<= escalation_max`.
//! * `false_alarm_rate = false_alarms / (escalated + rejected)`.
//! * Costs (USD, prices from [`Prices`]; GB = 10^9 bytes):
//!   - compute: the sum of the decisions' measured `verify_cpu_ns` / 10^8 x
//!     `compute_usd_per_100ms`;
//!   - storage: the bytes the decisions and replicated copies occupy (each one's encoded
//!     outcome-log record) / 10^9 x `storage_hot_usd_per_gb_month` x `storage_months`. Every
//!     byte is charged at
//!     the hot price because no tiering service exists yet; the warm and cold prices are
//!     configured but unused;
//!   - network: replicated bytes / 10^9 x `network_usd_per_gb`, where replicated bytes are
//!     the encoded records of the decisions replicated *into* this region from others
//!     (svc-crr), each counted once, in the region it reached (by its origin's decision time).
//!     Those copies are in `replicated_decisions` and in the storage bytes (this region keeps
//!     them), never in `decisions`, the rates, compute or latency: they were decided, and
//!     charged, at their origin;
//!   - anchoring: the anchor batches in the window (imported from svc-audit's anchor journal,
//!     [`Store::import_anchors`], or recorded with [`Store::record_anchor_batches`]) x their
//!     strategy's price, shared among tenants in
//!     proportion to their decisions in the window;
//!   - `cost_per_trusted_task_usd = total / accepted`.
//! * `verify_latency_p95_ms`: the 95th percentile (nearest rank) of the decisions'
//!   `verify_cpu_ns`, which svc-verify measures per decision with a monotonic clock around the
//!   CPU-bound steps that never yield: parsing, canonicalization, signature check and policy
//!   evaluation (not the dedup lookup, the log append or the network). Reported as the upper
//!   edge of its histogram bin (at most ~3.1 % high, see [`crate::model`]).
//! * `audit_coverage = (decisions - not yet in the audit log) / decisions`: svc-audit logs
//!   decisions in feed order, so with its tree at size `n` the decisions received after the
//!   first `n` are the ones missing. `audit_lag_decisions = decisions received - n` (all
//!   tenants; replicated copies included on both sides, since svc-audit logs them too). Null when no audit upstream is configured or it has not answered. svc-audit
//!   skips records it cannot map (malformed ones), which this count cannot see.
//!
//! * `decisions_over_time`: the window's decisions by outcome in equal steps of
//!   [`Window::series_step_minutes`] (by decision time, like every count here), the first step
//!   starting at `window_start_unix_ms`. Decisions stamped after the window's last step (ahead
//!   of this clock) count in the last step, so each series sums to its outcome's count.
//!
//! A rate whose denominator is 0 is `None` (JSON null). The window is the current minute and
//! the ones before it, 60 / 1,440 / 10,080 minutes in all (see [`Window::start_minute`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::{Prices, SloTargets};
use crate::error::KpiError;
use crate::model::{
    CORRECT, CPU_NS, FALSE_ALARMS, HALLUCINATIONS, Outcome, REPLICATED_BYTES, Regime, STORED_BYTES,
    Signal, Window,
};
use crate::store::{Store, WindowSums};

/// What the audit upstream reported: the number of entries in its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditView {
    pub logged: u64,
}

/// Most not-yet-logged decisions scanned for coverage (beyond it coverage is null).
const COVERAGE_SCAN_LIMIT: u64 = 1_000_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostBreakdown {
    pub compute: f64,
    pub storage: f64,
    pub network: f64,
    pub anchoring: f64,
    pub total: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    pub bounds: Vec<f64>,
    pub counts: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SloStatus {
    /// `>=` or `<=`.
    pub op: String,
    pub target: f64,
    pub value: Option<f64>,
    pub ok: Option<bool>,
}

impl SloStatus {
    fn at_least(target: f64, value: Option<f64>) -> SloStatus {
        SloStatus {
            op: ">=".into(),
            target,
            value,
            ok: value.map(|v| v >= target),
        }
    }

    fn at_most(target: f64, value: Option<f64>) -> SloStatus {
        SloStatus {
            op: "<=".into(),
            target,
            value,
            ok: value.map(|v| v <= target),
        }
    }
}

/// Decisions over the window by outcome, in equal time steps (see the module docs). Each
/// vector has `window minutes / step_minutes` entries.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DecisionSeries {
    /// Width of one step in minutes.
    pub step_minutes: u64,
    /// Start of the first step (Unix ms).
    pub start_unix_ms: i64,
    pub accepted: Vec<u64>,
    pub escalated: Vec<u64>,
    pub rejected: Vec<u64>,
}

impl DecisionSeries {
    /// The series of `window` starting at `start_minute` from per-minute outcome counts.
    fn of(window: Window, start_minute: u64, by_minute: &[(u64, [u64; 3])]) -> DecisionSeries {
        let step = window.series_step_minutes();
        let steps = usize::try_from(window.minutes() / step).unwrap_or(1);
        let mut series = DecisionSeries {
            step_minutes: step,
            start_unix_ms: i64::try_from(start_minute.saturating_mul(60_000)).unwrap_or(i64::MAX),
            accepted: vec![0; steps],
            escalated: vec![0; steps],
            rejected: vec![0; steps],
        };
        for (minute, [a, e, r]) in by_minute {
            let i = usize::try_from(minute.saturating_sub(start_minute) / step)
                .unwrap_or(usize::MAX)
                .min(steps - 1);
            series.accepted[i] += a;
            series.escalated[i] += e;
            series.rejected[i] += r;
        }
        series
    }

    /// Number of steps.
    pub fn len(&self) -> usize {
        self.accepted.len()
    }

    pub fn is_empty(&self) -> bool {
        self.accepted.is_empty()
    }
}

/// The cost inputs measured in the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostInputs {
    pub verify_cpu_ns: u64,
    pub stored_bytes: u64,
    pub replicated_bytes: u64,
    pub anchor_batches: BTreeMap<String, u64>,
}

/// The KPI report (also the REST body of `GET /v1/kpi/report`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KpiReport {
    pub tenant_id: String,
    pub window: Window,
    pub generated_at_unix_ms: i64,
    pub window_start_unix_ms: i64,
    pub decisions: u64,
    pub accepted: u64,
    pub escalated: u64,
    pub rejected: u64,
    /// Decisions replicated into this region from other regions in the window (svc-crr):
    /// counted here for their network and storage bytes only, not in `decisions` (module
    /// docs). 0 from servers that predate it.
    #[serde(default)]
    pub replicated_decisions: u64,
    pub hallucinations_reported: u64,
    pub false_alarms: u64,
    pub correct_reported: u64,
    pub containment_rate: Option<f64>,
    pub escalation_rate: Option<f64>,
    pub false_alarm_rate: Option<f64>,
    pub cost_per_trusted_task_usd: Option<f64>,
    pub cost_breakdown_usd: CostBreakdown,
    pub audit_coverage: Option<f64>,
    pub audit_lag_decisions: Option<u64>,
    pub verify_latency_p95_ms: Option<f64>,
    /// Decisions per regime (the server's classification): sticky, mixed, non_sticky, other.
    pub regimes: BTreeMap<String, u64>,
    /// Histograms of the claimed D_hat, coh_star and r: `counts[i]` in
    /// `[bounds[i-1], bounds[i])`, open-ended at both ends.
    pub signals: BTreeMap<String, Histogram>,
    /// `containment`, `escalation`, `latency`.
    pub slo: BTreeMap<String, SloStatus>,
    pub cost_inputs: CostInputs,
    /// Decisions by outcome over the window (empty from servers that predate it).
    #[serde(default)]
    pub decisions_over_time: DecisionSeries,
}

fn ratio(n: u64, d: u64) -> Option<f64> {
    (d > 0).then(|| n as f64 / d as f64)
}

/// Prices and objectives a report is computed with.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReportSettings {
    pub prices: Prices,
    pub slo: SloTargets,
}

/// Computes the report of `tenant` over `window` at `now_ms` (see the module docs).
pub fn compute_report(
    store: &Store,
    tenant: &str,
    window: Window,
    now_ms: i64,
    settings: &ReportSettings,
    audit: Option<AuditView>,
) -> Result<KpiReport, KpiError> {
    let mut reports = compute_reports(store, tenant, &[window], now_ms, settings, audit)?;
    reports
        .pop()
        .ok_or_else(|| KpiError::Task("no report computed for the window".into()))
}

/// [`compute_report`] of `tenant` over each of `windows`, in order. The audit coverage of
/// every window comes from one scan of the decisions the audit log does not hold yet (the
/// gauges refresh every window a few times a second under load, and each window scanned the
/// same newest decisions).
pub fn compute_reports(
    store: &Store,
    tenant: &str,
    windows: &[Window],
    now_ms: i64,
    settings: &ReportSettings,
    audit: Option<AuditView>,
) -> Result<Vec<KpiReport>, KpiError> {
    let sums = windows
        .iter()
        .map(|w| {
            let start = w.start_minute(now_ms);
            Ok((*w, start, store.window(tenant, start)?))
        })
        .collect::<Result<Vec<_>, KpiError>>()?;
    let coverage = match audit {
        Some(a) if !sums.is_empty() => {
            let received = store.decisions_received()?;
            // A copy that lands between the windows' sums and this scan is counted as not
            // logged until the next report: a momentary undercount of coverage, never more.
            let starts: Vec<u64> = sums.iter().map(|(_, start, _)| *start).collect();
            let may_hold_replicated = sums
                .iter()
                .any(|(_, _, s)| s.bucket.counts[crate::model::REPLICATED] > 0);
            let missing = store.not_logged(
                tenant,
                &starts,
                a.logged,
                COVERAGE_SCAN_LIMIT,
                may_hold_replicated,
            )?;
            Some((missing, received.saturating_sub(a.logged)))
        }
        _ => None,
    };
    Ok(sums
        .into_iter()
        .enumerate()
        .map(|(i, (window, start, sums))| {
            let audit = coverage
                .as_ref()
                .map(|(missing, lag)| (missing.as_ref().and_then(|m| m.get(i).copied()), *lag));
            report_of(tenant, window, start, now_ms, settings, &sums, audit)
        })
        .collect())
}

/// The report of one window from its sums and, with an audit upstream, the decisions of the
/// window the log does not hold yet (`None`: more than the scan reads) and the log's lag.
fn report_of(
    tenant: &str,
    window: Window,
    start: u64,
    now_ms: i64,
    settings: &ReportSettings,
    sums: &WindowSums,
    audit: Option<(Option<u64>, u64)>,
) -> KpiReport {
    let b = &sums.bucket;
    let decisions = b.counts[crate::model::DECISIONS];
    let replicated_decisions = b.counts[crate::model::REPLICATED];
    let (accepted, escalated, rejected) = (
        b.outcome(Outcome::Accepted),
        b.outcome(Outcome::Escalated),
        b.outcome(Outcome::Rejected),
    );
    let hallucinations = b.counts[HALLUCINATIONS];
    let false_alarms = b.counts[FALSE_ALARMS];
    let flagged = escalated + rejected;
    let caught = flagged.saturating_sub(false_alarms);

    let p = &settings.prices;
    let compute = b.counts[CPU_NS] as f64 / 1e8 * p.compute_usd_per_100ms;
    let storage =
        b.counts[STORED_BYTES] as f64 / 1e9 * p.storage_hot_usd_per_gb_month * p.storage_months;
    let network = b.counts[REPLICATED_BYTES] as f64 / 1e9 * p.network_usd_per_gb;
    let share = ratio(decisions, sums.all_decisions).unwrap_or(0.0);
    let anchoring = sums
        .anchor_batches
        .iter()
        .map(|(s, n)| *n as f64 * p.anchoring_usd_per_batch.get(s).copied().unwrap_or(0.0))
        // Not `sum`: a float sum of nothing is -0.0.
        .fold(0.0, |a, c| a + c)
        * share;
    let total = compute + storage + network + anchoring;

    let (audit_coverage, audit_lag_decisions) = match audit {
        Some((missing, lag)) => (
            missing.and_then(|m| ratio(decisions.saturating_sub(m), decisions)),
            Some(lag),
        ),
        None => (None, None),
    };
    let p95_ms = b.latency_quantile_ns(0.95).map(|ns| ns as f64 / 1e6);
    let containment = ratio(caught, caught + hallucinations);
    let escalation = ratio(flagged, decisions);

    let s = &settings.slo;
    let slo = BTreeMap::from([
        (
            "containment".to_owned(),
            SloStatus::at_least(s.containment_min, containment),
        ),
        (
            "escalation".to_owned(),
            SloStatus::at_most(s.escalation_max, escalation),
        ),
        (
            "latency".to_owned(),
            SloStatus::at_most(s.verify_latency_p95_ms_max, p95_ms),
        ),
    ]);
    KpiReport {
        tenant_id: tenant.to_owned(),
        window,
        generated_at_unix_ms: now_ms,
        window_start_unix_ms: i64::try_from(start * 60_000).unwrap_or(i64::MAX),
        decisions,
        accepted,
        escalated,
        rejected,
        replicated_decisions,
        hallucinations_reported: hallucinations,
        false_alarms,
        correct_reported: b.counts[CORRECT],
        containment_rate: containment,
        escalation_rate: escalation,
        false_alarm_rate: ratio(false_alarms, flagged),
        cost_per_trusted_task_usd: (accepted > 0).then(|| total / accepted as f64),
        cost_breakdown_usd: CostBreakdown {
            compute,
            storage,
            network,
            anchoring,
            total,
        },
        audit_coverage,
        audit_lag_decisions,
        verify_latency_p95_ms: p95_ms,
        regimes: Regime::ALL
            .iter()
            .map(|r| (r.as_str().to_owned(), b.regime(*r)))
            .collect(),
        signals: Signal::ALL
            .iter()
            .map(|s| {
                (
                    s.as_str().to_owned(),
                    Histogram {
                        bounds: s.bounds().to_vec(),
                        counts: b.signal_counts(*s),
                    },
                )
            })
            .collect(),
        slo,
        cost_inputs: CostInputs {
            verify_cpu_ns: b.counts[CPU_NS],
            stored_bytes: b.counts[STORED_BYTES],
            replicated_bytes: b.counts[REPLICATED_BYTES],
            anchor_batches: sums.anchor_batches.iter().cloned().collect(),
        },
        decisions_over_time: DecisionSeries::of(window, start, &sums.outcomes_by_minute),
    }
}
