//! Reads through svc-tiering ([`crate::GatewayConfig::tiering_upstream`]): the stored record
//! from whichever tier holds it, with the tier in `X-Flk-Tier`.
//!
//! | route | gRPC call |
//! |---|---|
//! | `GET /v1/pcs/{pcs_id}` | `Get`, then svc-verify's `GetOutcome` when svc-tiering does not hold it (yet) |
//! | `GET /v1/pcs/{pcs_id}/body` | `GetBody`: the PCS bytes exactly as submitted |
//!
//! The same `flk.v1.TieringService` is served on the gateway's gRPC port: `Get` and `GetBody`
//! with a tenant API token (the token's tenant only: another tenant's record is NOT_FOUND),
//! `Stats` and `SetPolicy` with the admin token.
//!
//! svc-tiering consumes svc-verify's outcome feed, so a decision answered a moment ago may not
//! have reached it: `GET /v1/pcs/{pcs_id}` then answers from svc-verify (without
//! `X-Flk-Tier`), as it does when svc-tiering is unreachable. The body has no such fallback:
//! svc-tiering is what keeps it (404 until it arrives, 503 `tiering_unavailable` without it).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use flk_proto::v1::tiering_service_server::TieringService;
use flk_proto::v1::{self};
use flk_proto::{ApiError, ErrorKind};
use flk_runtime::client::TieringClient;
use tonic::{Request, Status};

use crate::auth::Credentials;
use crate::{Gateway, error_response, is_transport_failure, outcome_response};

/// The response header naming the tier a record was read from.
pub const TIER_HEADER: &str = "x-flk-tier";

fn unavailable(message: &str) -> ApiError {
    ApiError::new(ErrorKind::Unavailable, "tiering_unavailable", message)
        .with_retry_after(Duration::from_secs(1))
}

fn with_tier(mut resp: Response, tier: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(tier) {
        resp.headers_mut().insert(TIER_HEADER, v);
    }
    resp
}

/// The record of `(tenant, pcs_id)` from svc-tiering, when it holds it: `None` sends the
/// caller to svc-verify (not tiered yet, no svc-tiering, or svc-tiering unreachable).
pub(crate) async fn outcome(gw: &Gateway, tenant: &str, pcs_id: &str) -> Option<Response> {
    let mut client = gw.tiering.clone()?;
    let req = v1::GetRecordRequest {
        tenant_id: tenant.to_owned(),
        pcs_id: pcs_id.to_owned(),
    };
    match client.get(req).await {
        Ok(answer) => {
            let rec = answer.into_inner();
            let outcome = rec.outcome?;
            let mut resp = outcome_response(&outcome);
            *resp.status_mut() = StatusCode::OK;
            Some(with_tier(resp, &rec.tier))
        }
        Err(status) => {
            if is_transport_failure(&status) {
                tracing::warn!(error = %status.message(), "svc-tiering unreachable");
            }
            None
        }
    }
}

/// `GET /v1/pcs/{pcs_id}/body`.
pub(crate) async fn body(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    Path(pcs_id): Path<String>,
) -> Response {
    let resp = match gw.read_tenant(Credentials::of_headers(&headers)) {
        Err(e) => error_response(&e),
        Ok(tenant) => match get_body(&gw, tenant, pcs_id).await {
            Ok(b) => {
                let content_type = HeaderValue::from_str(&b.content_type)
                    .unwrap_or(HeaderValue::from_static("application/octet-stream"));
                let resp = ([(header::CONTENT_TYPE, content_type)], b.body).into_response();
                with_tier(resp, &b.tier)
            }
            Err(e) => error_response(&e),
        },
    };
    gw.responses
        .with_label_values(&["get_body", resp.status().as_str()])
        .inc();
    resp
}

async fn get_body(
    gw: &Gateway,
    tenant: String,
    pcs_id: String,
) -> Result<v1::RecordBody, ApiError> {
    let Some(mut client) = gw.tiering.clone() else {
        return Err(unavailable(
            "this gateway has no tiering upstream (tiering_upstream)",
        ));
    };
    let req = v1::GetRecordRequest {
        tenant_id: tenant,
        pcs_id,
    };
    match client.get_body(req).await {
        Ok(answer) => Ok(answer.into_inner()),
        Err(status) if is_transport_failure(&status) => {
            tracing::warn!(error = %status.message(), "svc-tiering unreachable");
            Err(unavailable("svc-tiering is not reachable"))
        }
        Err(status) => Err(ApiError::from_status(&status)),
    }
}

/// `flk.v1.TieringService` on the gateway's public port.
pub struct GatewayTiering {
    gw: Arc<Gateway>,
}

impl GatewayTiering {
    pub fn new(gw: Arc<Gateway>) -> GatewayTiering {
        GatewayTiering { gw }
    }

    fn client(&self) -> Result<TieringClient, Status> {
        self.gw.tiering.clone().ok_or_else(|| {
            unavailable("this gateway has no tiering upstream (tiering_upstream)").into()
        })
    }
}

/// svc-tiering's answer, with a transport failure turned into `tiering_unavailable`.
fn passed<T>(r: Result<tonic::Response<T>, Status>) -> Result<tonic::Response<T>, Status> {
    r.map_err(|status| {
        if is_transport_failure(&status) {
            unavailable("svc-tiering is not reachable").into()
        } else {
            status
        }
    })
}

#[tonic::async_trait]
impl TieringService for GatewayTiering {
    async fn get(
        &self,
        request: Request<v1::GetRecordRequest>,
    ) -> Result<tonic::Response<v1::TieredRecord>, Status> {
        let (metadata, _, mut req) = request.into_parts();
        req.tenant_id = self
            .gw
            .read_tenant(Credentials::of_metadata(&metadata, &req.tenant_id))?;
        passed(self.client()?.get(req).await)
    }

    async fn get_body(
        &self,
        request: Request<v1::GetRecordRequest>,
    ) -> Result<tonic::Response<v1::RecordBody>, Status> {
        let (metadata, _, mut req) = request.into_parts();
        req.tenant_id = self
            .gw
            .read_tenant(Credentials::of_metadata(&metadata, &req.tenant_id))?;
        passed(self.client()?.get_body(req).await)
    }

    async fn stats(
        &self,
        request: Request<v1::TieringStatsRequest>,
    ) -> Result<tonic::Response<v1::TieringStats>, Status> {
        let (metadata, _, req) = request.into_parts();
        self.gw
            .check_admin(Credentials::of_metadata(&metadata, ""))?;
        passed(self.client()?.stats(req).await)
    }

    async fn set_policy(
        &self,
        request: Request<v1::SetPolicyRequest>,
    ) -> Result<tonic::Response<v1::TieringPolicy>, Status> {
        let (metadata, _, req) = request.into_parts();
        self.gw
            .check_admin(Credentials::of_metadata(&metadata, ""))?;
        passed(self.client()?.set_policy(req).await)
    }
}
