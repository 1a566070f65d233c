//! `POST /v1/feedback` and `GET /v1/kpi/report`: forwarded to svc-kpi's own REST routes
//! ([`crate::GatewayConfig::kpi_upstream`]), which render the KPI report; the gateway passes
//! the tenant (`X-Tenant-Id`), the query and the body through and answers with svc-kpi's
//! status, `Retry-After` and JSON body unchanged, so the two can never disagree on the shape.
//!
//! svc-kpi not answering, or a gateway without a KPI upstream, is 503 `kpi_unavailable`.
//! Bodies above 64 KiB are refused with 413 before they are forwarded (a feedback body is a
//! few dozen bytes).
//!
//! The tenant is the caller's API token's ([`crate::auth`]); svc-kpi is called with the
//! gateway's peer credentials ([`crate::GatewayConfig::peer`]): plain HTTP, or HTTPS trusting
//! the peer CA with the client certificate (the server-name override applies to the gRPC
//! upstreams only), and the peer bearer token.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use flk_proto::{ApiError, ErrorKind};
use flk_runtime::client::Peer;

use crate::auth::Credentials;
use crate::{Gateway, error_response};

/// Largest feedback body forwarded.
const MAX_FEEDBACK_BYTES: usize = 64 * 1024;

/// svc-kpi's REST base URL and the client that reaches it.
#[derive(Debug, Clone)]
pub(crate) struct KpiUpstream {
    base: String,
    client: reqwest::Client,
}

impl KpiUpstream {
    /// A client for `base` (`http://host:port`, upgraded to `https://` when `peer` has a CA).
    pub(crate) fn new(base: &str, peer: &Peer, timeout: Duration) -> anyhow::Result<Self> {
        let base = peer.url(base.trim_end_matches('/'))?;
        let url = reqwest::Url::parse(&base)
            .map_err(|e| anyhow::anyhow!("kpi upstream {base:?} is not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            anyhow::bail!("kpi upstream {base:?} must be http:// or https://");
        }
        let mut builder = reqwest::Client::builder().timeout(timeout);
        if let Some(auth) = peer.authorization() {
            let mut headers = reqwest::header::HeaderMap::new();
            headers.insert(header::AUTHORIZATION, auth);
            builder = builder.default_headers(headers);
        }
        if let Some(tls) = peer.settings().tls() {
            let read = |p: &std::path::Path| {
                std::fs::read(p).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", p.display()))
            };
            builder = builder
                .tls_built_in_root_certs(false)
                .add_root_certificate(reqwest::Certificate::from_pem(&read(&tls.ca)?)?);
            if let (Some(cert), Some(key)) = (&tls.client_cert, &tls.client_key) {
                let mut pem = read(cert)?;
                pem.extend_from_slice(&read(key)?);
                builder = builder.identity(reqwest::Identity::from_pem(&pem)?);
            }
        }
        Ok(Self {
            base,
            client: builder.build()?,
        })
    }
}

fn unavailable(message: &str) -> ApiError {
    ApiError::new(ErrorKind::Unavailable, "kpi_unavailable", message)
        .with_retry_after(Duration::from_secs(1))
}

/// Forwards one request and relays the answer; counts the response.
async fn forward(
    gw: &Gateway,
    route: &'static str,
    request: impl FnOnce(&KpiUpstream) -> reqwest::RequestBuilder,
) -> Response {
    let resp = match &gw.kpi {
        None => error_response(&unavailable(
            "this gateway has no KPI upstream (--kpi-upstream)",
        )),
        Some(up) => match relay(request(up).send().await).await {
            Ok(resp) => resp,
            Err(e) => {
                tracing::warn!(error = %e, "svc-kpi unreachable");
                error_response(&unavailable("svc-kpi is not reachable"))
            }
        },
    };
    gw.responses
        .with_label_values(&[route, resp.status().as_str()])
        .inc();
    resp
}

/// A request refused before it is forwarded; counted like the others.
fn refused(gw: &Gateway, route: &'static str, e: &ApiError) -> Response {
    let resp = error_response(e);
    gw.responses
        .with_label_values(&[route, resp.status().as_str()])
        .inc();
    resp
}

async fn relay(answer: reqwest::Result<reqwest::Response>) -> reqwest::Result<Response> {
    let answer = answer?;
    let status =
        StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let retry_after = answer.headers().get(header::RETRY_AFTER).cloned();
    let body = answer.bytes().await?;
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(v) = retry_after {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    Ok(resp)
}

/// `POST /v1/feedback`.
pub(crate) async fn feedback(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if body.len() > MAX_FEEDBACK_BYTES {
        return error_response(&ApiError::new(
            ErrorKind::PayloadTooLarge,
            "payload_too_large",
            format!(
                "body is {} bytes, the limit is {MAX_FEEDBACK_BYTES}",
                body.len()
            ),
        ));
    }
    let tenant = match gw.read_tenant(Credentials::of_headers(&headers)) {
        Ok(t) => t,
        Err(e) => return refused(&gw, "feedback", &e),
    };
    forward(&gw, "feedback", |up| {
        up.client
            .post(format!("{}/v1/feedback", up.base))
            .header("x-tenant-id", tenant)
            .header(header::CONTENT_TYPE.as_str(), "application/json")
            .body(body)
    })
    .await
}

/// `GET /v1/kpi/report?window=...`.
pub(crate) async fn report(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let tenant = match gw.read_tenant(Credentials::of_headers(&headers)) {
        Ok(t) => t,
        Err(e) => return refused(&gw, "kpi_report", &e),
    };
    forward(&gw, "kpi_report", |up| {
        let url = match &query {
            Some(q) => format!("{}/v1/kpi/report?{q}", up.base),
            None => format!("{}/v1/kpi/report", up.base),
        };
        up.client.get(url).header("x-tenant-id", tenant)
    })
    .await
}
