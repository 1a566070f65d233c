//! The `flk.v1.KpiService` gRPC handlers: thin conversions around [`Kpi`], run on blocking
//! threads (redb).

use std::sync::Arc;

use flk_proto::v1::kpi_service_server::KpiService;
use flk_proto::v1::{self};
use flk_proto::{ApiError, DEFAULT_TENANT, TENANT_METADATA};
use tonic::{Request, Response, Status};

use crate::error::KpiError;
use crate::model::Window;
use crate::report::KpiReport;
use crate::{Kpi, blocking};

pub struct KpiGrpc {
    kpi: Arc<Kpi>,
}

impl KpiGrpc {
    pub fn new(kpi: Arc<Kpi>) -> KpiGrpc {
        KpiGrpc { kpi }
    }
}

/// Tenant from the request field, else the `x-tenant-id` metadata, else `default`.
fn tenant_of(field: &str, metadata: &tonic::metadata::MetadataMap) -> String {
    if !field.is_empty() {
        return field.to_owned();
    }
    metadata
        .get(TENANT_METADATA)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .unwrap_or(DEFAULT_TENANT)
        .to_owned()
}

fn status(e: KpiError) -> Status {
    Status::from(ApiError::from(e))
}

impl From<&KpiReport> for v1::KpiReport {
    fn from(r: &KpiReport) -> v1::KpiReport {
        let c = &r.cost_breakdown_usd;
        v1::KpiReport {
            tenant_id: r.tenant_id.clone(),
            window: r.window.as_str().to_owned(),
            generated_at_unix_ms: r.generated_at_unix_ms,
            window_start_unix_ms: r.window_start_unix_ms,
            decisions: r.decisions,
            accepted: r.accepted,
            escalated: r.escalated,
            rejected: r.rejected,
            hallucinations_reported: r.hallucinations_reported,
            false_alarms: r.false_alarms,
            correct_reported: r.correct_reported,
            containment_rate: r.containment_rate,
            escalation_rate: r.escalation_rate,
            false_alarm_rate: r.false_alarm_rate,
            cost_per_trusted_task_usd: r.cost_per_trusted_task_usd,
            cost_breakdown_usd: Some(v1::KpiCostBreakdown {
                compute: c.compute,
                storage: c.storage,
                network: c.network,
                anchoring: c.anchoring,
                total: c.total,
            }),
            audit_coverage: r.audit_coverage,
            audit_lag_decisions: r.audit_lag_decisions,
            verify_latency_p95_ms: r.verify_latency_p95_ms,
            regimes: r
                .regimes
                .iter()
                .map(|(regime, n)| v1::KpiRegimeCount {
                    regime: regime.clone(),
                    decisions: *n,
                })
                .collect(),
            signals: r
                .signals
                .iter()
                .map(|(name, h)| v1::KpiSignalHistogram {
                    signal: name.clone(),
                    bounds: h.bounds.clone(),
                    counts: h.counts.clone(),
                })
                .collect(),
            slos: r
                .slo
                .iter()
                .map(|(name, s)| v1::KpiSlo {
                    slo: name.clone(),
                    op: s.op.clone(),
                    target: s.target,
                    value: s.value,
                    ok: s.ok,
                })
                .collect(),
            verify_cpu_ns_total: r.cost_inputs.verify_cpu_ns,
            stored_bytes: r.cost_inputs.stored_bytes,
            replicated_bytes: r.cost_inputs.replicated_bytes,
            anchor_batches: r
                .cost_inputs
                .anchor_batches
                .iter()
                .map(|(strategy, n)| v1::KpiAnchorBatches {
                    strategy: strategy.clone(),
                    batches: *n,
                })
                .collect(),
        }
    }
}

#[tonic::async_trait]
impl KpiService for KpiGrpc {
    async fn feedback(
        &self,
        request: Request<v1::FeedbackRequest>,
    ) -> Result<Response<v1::FeedbackResponse>, Status> {
        let (metadata, _, req) = request.into_parts();
        let tenant = tenant_of(&req.tenant_id, &metadata);
        let t = tenant.clone();
        let (pcs_id, verdict) = (req.pcs_id.clone(), req.verdict);
        let r = blocking(&self.kpi, move |k| k.feedback(&t, &pcs_id, &verdict))
            .await
            .map_err(status)?;
        Ok(Response::new(v1::FeedbackResponse {
            tenant_id: tenant,
            pcs_id: req.pcs_id,
            outcome: r.outcome.as_str().to_owned(),
            verdict: r.verdict.as_str().to_owned(),
            previous_verdict: r.previous.map(|v| v.as_str().to_owned()),
            decided_at_unix_ms: r.decided_at_unix_ms,
        }))
    }

    async fn report(
        &self,
        request: Request<v1::KpiReportRequest>,
    ) -> Result<Response<v1::KpiReport>, Status> {
        let (metadata, _, req) = request.into_parts();
        let tenant = tenant_of(&req.tenant_id, &metadata);
        let window = if req.window.is_empty() {
            Window::Day
        } else {
            Window::parse(&req.window).ok_or_else(|| status(KpiError::InvalidWindow))?
        };
        let r = blocking(&self.kpi, move |k| k.report(&tenant, window))
            .await
            .map_err(status)?;
        Ok(Response::new(v1::KpiReport::from(&r)))
    }

    async fn record_anchor_batches(
        &self,
        request: Request<v1::RecordAnchorBatchesRequest>,
    ) -> Result<Response<v1::RecordAnchorBatchesResponse>, Status> {
        let req = request.into_inner();
        let at = (req.at_unix_ms != 0).then_some(req.at_unix_ms);
        blocking(&self.kpi, move |k| {
            k.record_anchor_batches(&req.strategy, req.batches, at)
        })
        .await
        .map_err(status)?;
        Ok(Response::new(v1::RecordAnchorBatchesResponse {}))
    }
}
