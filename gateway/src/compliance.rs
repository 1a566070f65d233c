//! Compliance reports on the gateway's public port, for the admin token only:
//! `GET /v1/compliance/report?framework=&from=&to=&format=` and `flk.v1.ComplianceService`
//! over gRPC. The gateway computes nothing itself: whoever runs it hands it a
//! [`ComplianceReports`] (`flk up` gives it one that reads the stack's data directory, as
//! `flk report compliance --data-dir` does); without one both answer 503
//! `compliance_unavailable`.
//!
//! Only built-in frameworks can be asked for here (a request never names a file on the
//! server); the REST answer carries the number of failed controls in `X-Flk-Failed-Controls`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use flk_proto::v1::compliance_service_server::ComplianceService;
use flk_proto::v1::{self};
use flk_proto::{ApiError, ErrorKind};
use tonic::{Request, Status};

use crate::auth::Credentials;
use crate::{Gateway, error_response};

/// The response header with the number of failed controls.
pub const FAILED_CONTROLS_HEADER: &str = "x-flk-failed-controls";

/// Produces a report (blocking: it reads stores). Errors are answered as they are: a bad
/// parameter `INVALID_ARGUMENT`, a store that cannot be read `UNAVAILABLE`.
pub trait ComplianceReports: Send + Sync + std::fmt::Debug + 'static {
    fn report(&self, req: &v1::ComplianceReportRequest) -> Result<v1::ComplianceReport, ApiError>;
}

fn unavailable() -> ApiError {
    ApiError::new(
        ErrorKind::Unavailable,
        "compliance_unavailable",
        "this gateway has no compliance reports (run it with flk up)",
    )
    .with_retry_after(Duration::from_secs(1))
}

/// The admin check, then the report on a blocking thread.
async fn produce(
    gw: &Gateway,
    credentials: Credentials<'_>,
    req: v1::ComplianceReportRequest,
) -> Result<v1::ComplianceReport, ApiError> {
    gw.check_admin(credentials)?;
    let Some(reports) = gw.cfg.compliance.clone() else {
        return Err(unavailable());
    };
    tokio::task::spawn_blocking(move || reports.report(&req))
        .await
        .map_err(|e| ApiError::new(ErrorKind::Internal, "internal", e.to_string()))?
}

/// `GET /v1/compliance/report`.
pub(crate) async fn report(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let param = |k: &str| q.get(k).cloned().unwrap_or_default();
    let req = v1::ComplianceReportRequest {
        framework: param("framework"),
        from: param("from"),
        to: param("to"),
        format: param("format"),
    };
    let resp = match produce(&gw, Credentials::of_headers(&headers), req).await {
        Ok(r) => {
            let content_type = HeaderValue::from_str(&r.content_type)
                .unwrap_or(HeaderValue::from_static("application/octet-stream"));
            let mut resp = ([(header::CONTENT_TYPE, content_type)], r.body).into_response();
            resp.headers_mut()
                .insert(FAILED_CONTROLS_HEADER, HeaderValue::from(r.failed_controls));
            resp
        }
        Err(e) => error_response(&e),
    };
    gw.responses
        .with_label_values(&["compliance_report", resp.status().as_str()])
        .inc();
    resp
}

/// `flk.v1.ComplianceService` on the gateway's public port.
pub struct GatewayCompliance {
    gw: Arc<Gateway>,
}

impl GatewayCompliance {
    pub fn new(gw: Arc<Gateway>) -> GatewayCompliance {
        GatewayCompliance { gw }
    }
}

#[tonic::async_trait]
impl ComplianceService for GatewayCompliance {
    async fn report(
        &self,
        request: Request<v1::ComplianceReportRequest>,
    ) -> Result<tonic::Response<v1::ComplianceReport>, Status> {
        let (metadata, _, req) = request.into_parts();
        let r = produce(&self.gw, Credentials::of_metadata(&metadata, ""), req).await?;
        Ok(tonic::Response::new(r))
    }
}
