//! svc-crr's metrics, registered in the registry the service is given (label values from
//! closed sets: region names come from the configuration, reasons from svc-verify's fixed
//! refusal codes).

use prometheus::{GaugeVec, Histogram, HistogramOpts, IntCounterVec, IntGaugeVec, Opts, Registry};

#[derive(Clone)]
pub struct Metrics {
    /// Now minus the decision time of the oldest record not yet acknowledged by `target`.
    pub lag_seconds: GaugeVec,
    /// Records of this region's feed `target` has not acknowledged.
    pub backlog: IntGaugeVec,
    pub shipped: IntCounterVec,
    pub ship_errors: IntCounterVec,
    pub applied: IntCounterVec,
    pub duplicates: IntCounterVec,
    pub conflicts: IntCounterVec,
    pub rejected: IntCounterVec,
    /// Per record applied from a peer: now minus its decision time at the origin (the
    /// replication delay, RPO in the steady state).
    pub apply_delay: Histogram,
    /// Keys the last anti-entropy round found differing with `peer`.
    pub divergence: IntGaugeVec,
    /// 1 while a health gate is breached.
    pub alert: IntGaugeVec,
    pub proposals: IntCounterVec,
    pub repaired: IntCounterVec,
}

impl Metrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Metrics> {
        fn reg<T: prometheus::core::Collector + Clone + 'static>(
            registry: &Registry,
            c: T,
        ) -> prometheus::Result<T> {
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        }
        Ok(Metrics {
            lag_seconds: reg(
                registry,
                GaugeVec::new(
                    Opts::new(
                        "flk_crr_lag_seconds",
                        "now minus the decision time of the oldest record the target has not acknowledged",
                    ),
                    &["target"],
                )?,
            )?,
            backlog: reg(
                registry,
                IntGaugeVec::new(
                    Opts::new("flk_crr_backlog", "feed records the target has not acknowledged"),
                    &["target"],
                )?,
            )?,
            shipped: reg(
                registry,
                IntCounterVec::new(
                    Opts::new("flk_crr_shipped_total", "records shipped and acknowledged"),
                    &["target"],
                )?,
            )?,
            ship_errors: reg(
                registry,
                IntCounterVec::new(
                    Opts::new("flk_crr_ship_errors_total", "failed shipping attempts"),
                    &["target"],
                )?,
            )?,
            applied: reg(
                registry,
                IntCounterVec::new(
                    Opts::new("flk_crr_applied_total", "records from peers applied here"),
                    &["source"],
                )?,
            )?,
            duplicates: reg(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "flk_crr_duplicates_total",
                        "records from peers already held (idempotent redelivery)",
                    ),
                    &["source"],
                )?,
            )?,
            conflicts: reg(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "flk_crr_conflicts_total",
                        "records from peers whose key holds another decision here (first write wins)",
                    ),
                    &["source"],
                )?,
            )?,
            rejected: reg(
                registry,
                IntCounterVec::new(
                    Opts::new("flk_crr_rejected_total", "records from peers refused"),
                    &["reason"],
                )?,
            )?,
            apply_delay: reg(
                registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "flk_crr_apply_delay_seconds",
                        "replication delay of each applied record: apply time minus the origin's decision time",
                    )
                    .buckets(vec![
                        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                        300.0,
                    ]),
                )?,
            )?,
            divergence: reg(
                registry,
                IntGaugeVec::new(
                    Opts::new(
                        "flk_crr_divergence",
                        "keys the last anti-entropy round found differing with the peer",
                    ),
                    &["peer"],
                )?,
            )?,
            alert: reg(
                registry,
                IntGaugeVec::new(
                    Opts::new("flk_crr_alert", "1 while a health gate is breached"),
                    &["gate", "target"],
                )?,
            )?,
            proposals: reg(
                registry,
                IntCounterVec::new(
                    Opts::new("flk_crr_proposals_total", "repair proposals made"),
                    &["action"],
                )?,
            )?,
            repaired: reg(
                registry,
                IntCounterVec::new(
                    Opts::new("flk_crr_repaired_keys_total", "keys changed by repair actions"),
                    &["action"],
                )?,
            )?,
        })
    }
}

/// The closed set of refusal reasons (anything else is `other`).
pub fn reason_label(reason: &str) -> &'static str {
    match reason {
        "unknown_tenant" => "unknown_tenant",
        "signature_invalid" => "signature_invalid",
        "signature_missing" => "signature_missing",
        "signature_undecodable" => "signature_undecodable",
        "no_active_key" => "no_active_key",
        "digest_mismatch" => "digest_mismatch",
        "pcs_id_mismatch" => "pcs_id_mismatch",
        "invalid_pcs" => "invalid_pcs",
        "bad_record" => "bad_record",
        "not_a_decision" => "not_a_decision",
        "wrong_target" => "wrong_target",
        "too_large" => "too_large",
        _ => "other",
    }
}
