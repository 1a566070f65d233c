//! svc-kpi's Prometheus metrics (`flk_kpi_*`), registered on a registry passed in (never a
//! global). Labels come from closed sets: `tenant` from the configured tenant list, `window`
//! in {1h, 24h, 7d}, `outcome`, `regime`, `component`, `slo` and `kind` from fixed lists.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `flk_kpi_containment_rate` | gauge | tenant, window |
//! | `flk_kpi_escalation_rate` | gauge | tenant, window |
//! | `flk_kpi_false_alarm_rate` | gauge | tenant, window |
//! | `flk_kpi_cost_per_trusted_task_usd` | gauge | tenant, window |
//! | `flk_kpi_cost_usd` | gauge | tenant, window, component (compute, storage, network, anchoring) |
//! | `flk_kpi_decisions` | gauge | tenant, window, outcome (accepted, escalated, rejected) |
//! | `flk_kpi_replicated_decisions` | gauge | tenant, window: decisions replicated into this region from others (not in `flk_kpi_decisions`) |
//! | `flk_kpi_audit_coverage` | gauge | tenant, window |
//! | `flk_kpi_verify_latency_p95_seconds` | gauge | tenant, window |
//! | `flk_kpi_slo_ok` | gauge (1/0) | tenant, window, slo (containment, escalation, latency) |
//! | `flk_kpi_regime_decisions` | gauge | tenant, window, regime (sticky, mixed, non_sticky, other) |
//! | `flk_kpi_signal_d_hat`, `flk_kpi_signal_coh_star`, `flk_kpi_signal_r` | histogram | tenant |
//! | `flk_kpi_events_total` | counter | kind (decision, replicated, feedback, redelivered, skipped) |
//! | `flk_kpi_feed_seq` | gauge | |
//! | `flk_kpi_consumer_lag_records` | gauge | |
//!
//! A series whose value is undefined (a 0/0 rate, a missing audit upstream, an SLO without a
//! value) is removed, not set to 0. The signal histograms count decisions received since the
//! process started (Prometheus counters); the windowed distributions are in the report.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus::{GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};

use crate::model::{Outcome, Signal, Signals};
use crate::report::KpiReport;

#[derive(Clone)]
pub struct KpiMetrics {
    containment: GaugeVec,
    escalation: GaugeVec,
    false_alarm: GaugeVec,
    cost_per_task: GaugeVec,
    cost: GaugeVec,
    decisions: GaugeVec,
    replicated: GaugeVec,
    audit_coverage: GaugeVec,
    latency_p95: GaugeVec,
    slo_ok: GaugeVec,
    regimes: GaugeVec,
    signal_d_hat: HistogramVec,
    signal_coh_star: HistogramVec,
    signal_r: HistogramVec,
    events: IntCounterVec,
    feed_seq: IntGauge,
    consumer_lag: IntGauge,
    /// The last cursor applied (for the lag).
    cursor: Arc<AtomicU64>,
    tenants: Arc<Vec<String>>,
}

/// Kinds of `flk_kpi_events_total`.
#[derive(Debug, Clone, Copy)]
pub enum Event {
    Decision,
    /// A decision replicated here from another region.
    Replicated,
    Feedback,
    Redelivered,
    Skipped,
}

impl Event {
    fn label(self) -> &'static str {
        match self {
            Event::Decision => "decision",
            Event::Replicated => "replicated",
            Event::Feedback => "feedback",
            Event::Redelivered => "redelivered",
            Event::Skipped => "skipped",
        }
    }
}

fn gauge(name: &str, help: &str, labels: &[&str]) -> prometheus::Result<GaugeVec> {
    GaugeVec::new(Opts::new(name, help), labels)
}

fn set_or_remove(g: &GaugeVec, labels: &[&str], v: Option<f64>) {
    match v {
        Some(v) => g.with_label_values(labels).set(v),
        None => {
            let _ = g.remove_label_values(labels);
        }
    }
}

impl KpiMetrics {
    /// Registers every metric; `tenants` are the only tenant label values ever used.
    pub fn register(registry: &Registry, tenants: &[String]) -> prometheus::Result<KpiMetrics> {
        let tw = ["tenant", "window"];
        let hist = |name: &str, help: &str, s: Signal| {
            HistogramVec::new(
                HistogramOpts::new(name, help).buckets(s.bounds().to_vec()),
                &["tenant"],
            )
        };
        let m = KpiMetrics {
            containment: gauge(
                "flk_kpi_containment_rate",
                "hallucination containment rate: caught / (caught + reported hallucinations)",
                &tw,
            )?,
            escalation: gauge(
                "flk_kpi_escalation_rate",
                "(escalated + rejected) / decisions",
                &tw,
            )?,
            false_alarm: gauge(
                "flk_kpi_false_alarm_rate",
                "false alarms / (escalated + rejected)",
                &tw,
            )?,
            cost_per_task: gauge(
                "flk_kpi_cost_per_trusted_task_usd",
                "total cost / accepted decisions, USD",
                &tw,
            )?,
            cost: gauge(
                "flk_kpi_cost_usd",
                "cost of the window's decisions by component, USD",
                &["tenant", "window", "component"],
            )?,
            decisions: gauge(
                "flk_kpi_decisions",
                "decisions in the window by outcome",
                &["tenant", "window", "outcome"],
            )?,
            replicated: gauge(
                "flk_kpi_replicated_decisions",
                "decisions replicated into this region from other regions in the window (not in flk_kpi_decisions)",
                &tw,
            )?,
            audit_coverage: gauge(
                "flk_kpi_audit_coverage",
                "decisions present in the audit log / decisions made",
                &tw,
            )?,
            latency_p95: gauge(
                "flk_kpi_verify_latency_p95_seconds",
                "p95 of the measured per-decision verification time (verify_cpu_ns)",
                &tw,
            )?,
            slo_ok: gauge(
                "flk_kpi_slo_ok",
                "1 when the SLO is met in the window, 0 when not",
                &["tenant", "window", "slo"],
            )?,
            regimes: gauge(
                "flk_kpi_regime_decisions",
                "decisions in the window by regime",
                &["tenant", "window", "regime"],
            )?,
            signal_d_hat: hist(
                "flk_kpi_signal_d_hat",
                "claimed D_hat of decisions",
                Signal::DHat,
            )?,
            signal_coh_star: hist(
                "flk_kpi_signal_coh_star",
                "claimed coh_star of decisions",
                Signal::CohStar,
            )?,
            signal_r: hist("flk_kpi_signal_r", "claimed r of decisions", Signal::R)?,
            events: IntCounterVec::new(
                Opts::new("flk_kpi_events_total", "events applied, by kind"),
                &["kind"],
            )?,
            feed_seq: IntGauge::new(
                "flk_kpi_feed_seq",
                "highest outcome-feed sequence number received",
            )?,
            consumer_lag: IntGauge::new(
                "flk_kpi_consumer_lag_records",
                "feed records received but not yet applied",
            )?,
            cursor: Arc::new(AtomicU64::new(0)),
            tenants: Arc::new(tenants.to_vec()),
        };
        for e in [
            Event::Decision,
            Event::Replicated,
            Event::Feedback,
            Event::Redelivered,
            Event::Skipped,
        ] {
            m.events.with_label_values(&[e.label()]);
        }
        registry.register(Box::new(m.containment.clone()))?;
        registry.register(Box::new(m.escalation.clone()))?;
        registry.register(Box::new(m.false_alarm.clone()))?;
        registry.register(Box::new(m.cost_per_task.clone()))?;
        registry.register(Box::new(m.cost.clone()))?;
        registry.register(Box::new(m.decisions.clone()))?;
        registry.register(Box::new(m.replicated.clone()))?;
        registry.register(Box::new(m.audit_coverage.clone()))?;
        registry.register(Box::new(m.latency_p95.clone()))?;
        registry.register(Box::new(m.slo_ok.clone()))?;
        registry.register(Box::new(m.regimes.clone()))?;
        registry.register(Box::new(m.signal_d_hat.clone()))?;
        registry.register(Box::new(m.signal_coh_star.clone()))?;
        registry.register(Box::new(m.signal_r.clone()))?;
        registry.register(Box::new(m.events.clone()))?;
        registry.register(Box::new(m.feed_seq.clone()))?;
        registry.register(Box::new(m.consumer_lag.clone()))?;
        Ok(m)
    }

    /// The tenants exported.
    pub fn tenants(&self) -> &[String] {
        &self.tenants
    }

    pub fn count(&self, e: Event, n: u64) {
        self.events.with_label_values(&[e.label()]).inc_by(n);
    }

    /// Observes a new decision's signals (configured tenants only).
    pub fn observe(&self, tenant: &str, s: &Signals) {
        if !self.tenants.iter().any(|t| t == tenant) {
            return;
        }
        for (h, v) in [
            (&self.signal_d_hat, s.d_hat),
            (&self.signal_coh_star, s.coh_star),
            (&self.signal_r, s.r),
        ] {
            if v.is_finite() {
                h.with_label_values(&[tenant]).observe(v);
            }
        }
    }

    /// Records a newly received feed sequence number.
    pub fn received(&self, seq: u64) {
        let seq = i64::try_from(seq).unwrap_or(i64::MAX);
        if seq > self.feed_seq.get() {
            self.feed_seq.set(seq);
        }
        self.update_lag();
    }

    /// Records the cursor after a batch.
    pub fn applied_up_to(&self, cursor: u64) {
        self.cursor.store(cursor, Ordering::Relaxed);
        self.update_lag();
    }

    fn update_lag(&self) {
        let cursor = i64::try_from(self.cursor.load(Ordering::Relaxed)).unwrap_or(i64::MAX);
        self.consumer_lag.set((self.feed_seq.get() - cursor).max(0));
    }

    /// Sets the gauges of one report (its tenant must be configured).
    pub fn set_report(&self, r: &KpiReport) {
        let (t, w) = (r.tenant_id.as_str(), r.window.as_str());
        set_or_remove(&self.containment, &[t, w], r.containment_rate);
        set_or_remove(&self.escalation, &[t, w], r.escalation_rate);
        set_or_remove(&self.false_alarm, &[t, w], r.false_alarm_rate);
        set_or_remove(&self.cost_per_task, &[t, w], r.cost_per_trusted_task_usd);
        set_or_remove(&self.audit_coverage, &[t, w], r.audit_coverage);
        set_or_remove(
            &self.latency_p95,
            &[t, w],
            r.verify_latency_p95_ms.map(|ms| ms / 1000.0),
        );
        let c = &r.cost_breakdown_usd;
        for (component, v) in [
            ("compute", c.compute),
            ("storage", c.storage),
            ("network", c.network),
            ("anchoring", c.anchoring),
        ] {
            self.cost.with_label_values(&[t, w, component]).set(v);
        }
        for (o, n) in [
            (Outcome::Accepted, r.accepted),
            (Outcome::Escalated, r.escalated),
            (Outcome::Rejected, r.rejected),
        ] {
            self.decisions
                .with_label_values(&[t, w, o.as_str()])
                .set(n as f64);
        }
        self.replicated
            .with_label_values(&[t, w])
            .set(r.replicated_decisions as f64);
        for (regime, n) in &r.regimes {
            self.regimes
                .with_label_values(&[t, w, regime.as_str()])
                .set(*n as f64);
        }
        for (slo, s) in &r.slo {
            set_or_remove(
                &self.slo_ok,
                &[t, w, slo.as_str()],
                s.ok.map(|ok| if ok { 1.0 } else { 0.0 }),
            );
        }
    }
}

/// Prometheus text exposition of `registry`.
pub fn render(registry: &Registry) -> String {
    use prometheus::Encoder;
    let mut out = Vec::new();
    if prometheus::TextEncoder::new()
        .encode(&registry.gather(), &mut out)
        .is_err()
    {
        return String::new();
    }
    String::from_utf8(out).unwrap_or_default()
}
