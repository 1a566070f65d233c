//! The gRPC side: `flk.v1.VerifyService` Submit, SubmitStream and GetOutcome over one lazily
//! connected HTTP/2 channel, answers mapped to the REST statuses.

use std::string::{String, ToString};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use std::vec::Vec;

use bytes::Bytes;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};

use super::proto::verify_service_client::VerifyServiceClient;
use super::proto::{self, OutcomeKind, SubmitRequest, submit_request, submit_stream_response};
use super::{Answer, ClientConfig, ClientError, parse_retry_after};

#[derive(Debug, Clone)]
pub(crate) struct Grpc {
    endpoint: Endpoint,
    /// Made on first use, inside the caller's runtime (a lazy channel spawns its worker).
    channel: Arc<OnceLock<Channel>>,
    tenant: String,
    token: Option<String>,
}

/// The REST status of a gRPC code (the gateway's mapping, reversed).
fn http_status(code: tonic::Code) -> u16 {
    use tonic::Code::*;
    match code {
        Ok => 200,
        InvalidArgument => 400,
        Unauthenticated => 401,
        PermissionDenied => 403,
        NotFound => 404,
        FailedPrecondition | AlreadyExists | Aborted => 409,
        OutOfRange => 413,
        ResourceExhausted => 429,
        Unavailable => 503,
        DeadlineExceeded => 504,
        Cancelled => 499,
        _ => 500,
    }
}

/// An outcome message as the REST outcome body.
pub(crate) fn outcome_answer(o: &proto::Outcome) -> Answer {
    let kind = match OutcomeKind::try_from(o.outcome) {
        Ok(OutcomeKind::Accepted) => "accepted",
        Ok(OutcomeKind::Escalated) => "escalated",
        Ok(OutcomeKind::Rejected) => "rejected",
        _ => "unspecified",
    };
    let status = if o.accepted && !o.escalated { 200 } else { 202 };
    let body = serde_json::json!({
        "pcs_id": o.pcs_id,
        "tenant_id": o.tenant_id,
        "outcome": kind,
        "accepted": o.accepted,
        "escalated": o.escalated,
        "reason_code": o.reason_code,
        "reason": o.reason,
        "D_hat": o.d_hat,
        "recomputed_budget": o.recomputed_budget,
        "regime": o.regime,
        "policy_version": o.policy_version,
        "duplicate": o.duplicate,
        "received_at": o.received_at,
    });
    Answer::from_rest(status, body, None)
}

fn status_answer(s: &tonic::Status) -> Answer {
    let md = s.metadata();
    let code = md
        .get("x-flk-error-code")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("grpc_error")
        .to_string();
    let retry_after = md
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    let body = serde_json::json!({"error": {"code": code, "message": s.message()}});
    Answer::from_rest(http_status(s.code()), body, retry_after)
}

/// Transport-level failures (no answer from FLK at all) become errors; statuses answers.
fn classify(s: tonic::Status) -> Result<Answer, ClientError> {
    let from_server = s.metadata().get("x-flk-error-code").is_some();
    if !from_server && matches!(s.code(), tonic::Code::Unavailable | tonic::Code::Unknown) {
        return Err(ClientError::Grpc(s.to_string()));
    }
    Ok(status_answer(&s))
}

/// TLS for `https://` gateways (feature `tls`: rustls, webpki roots).
#[cfg(feature = "tls")]
fn tls(endpoint: Endpoint, url: &str) -> Result<Endpoint, ClientError> {
    if !url.starts_with("https://") {
        return Ok(endpoint);
    }
    endpoint
        .tls_config(tonic::transport::ClientTlsConfig::new().with_webpki_roots())
        .map_err(|e| ClientError::Grpc(e.to_string()))
}

/// Without feature `tls`, `https://` is refused up front rather than failing at connection.
#[cfg(not(feature = "tls"))]
fn tls(endpoint: Endpoint, url: &str) -> Result<Endpoint, ClientError> {
    if url.starts_with("https://") {
        return Err(ClientError::BadUrl(std::format!(
            "{url}: https needs flk-sdk's `tls` feature"
        )));
    }
    Ok(endpoint)
}

impl Grpc {
    pub(crate) fn new(cfg: &ClientConfig) -> Result<Grpc, ClientError> {
        let endpoint = Endpoint::from_shared(cfg.base_url.clone())
            .map_err(|_| ClientError::BadUrl(cfg.base_url.clone()))?
            .timeout(cfg.timeout)
            .connect_timeout(Duration::from_secs(5));
        let endpoint = tls(endpoint, &cfg.base_url)?;
        Ok(Grpc {
            endpoint,
            channel: Arc::new(OnceLock::new()),
            tenant: cfg.tenant_id.clone(),
            token: cfg.api_token.clone(),
        })
    }

    fn channel(&self) -> Channel {
        self.channel
            .get_or_init(|| self.endpoint.connect_lazy())
            .clone()
    }

    fn request<T>(&self, msg: T, with_token: bool) -> Result<tonic::Request<T>, ClientError> {
        let mut req = tonic::Request::new(msg);
        let tenant = MetadataValue::try_from(self.tenant.as_str())
            .map_err(|_| ClientError::BadUrl("tenant id is not a valid header value".into()))?;
        req.metadata_mut().insert("x-tenant-id", tenant);
        if with_token {
            let token = self.token.as_ref().ok_or(ClientError::NoToken)?;
            let v = MetadataValue::try_from(std::format!("Bearer {token}"))
                .map_err(|_| ClientError::NoToken)?;
            req.metadata_mut().insert("authorization", v);
        }
        Ok(req)
    }

    fn submit_request(&self, body: Bytes) -> SubmitRequest {
        SubmitRequest {
            tenant_id: self.tenant.clone(),
            body: Some(submit_request::Body::PcsJson(body)),
        }
    }

    pub(crate) async fn submit(&self, body: Bytes) -> Result<Answer, ClientError> {
        let mut c = VerifyServiceClient::new(self.channel());
        let req = self.request(self.submit_request(body), false)?;
        match c.submit(req).await {
            Ok(resp) => match resp.into_inner().outcome {
                Some(o) => Ok(outcome_answer(&o)),
                None => Err(ClientError::BadAnswer(
                    "submit answer without outcome".into(),
                )),
            },
            Err(s) => classify(s),
        }
    }

    /// One `SubmitStream` carrying every body; answers matched by `index`.
    pub(crate) async fn submit_stream(
        &self,
        bodies: Vec<Bytes>,
    ) -> Result<Vec<Answer>, ClientError> {
        let n = bodies.len();
        let mut c = VerifyServiceClient::new(self.channel());
        let reqs: Vec<SubmitRequest> = bodies.into_iter().map(|b| self.submit_request(b)).collect();
        let req = self.request(tokio_stream::iter(reqs), false)?;
        let mut stream = match c.submit_stream(req).await {
            Ok(r) => r.into_inner(),
            Err(s) => return Err(ClientError::Grpc(s.to_string())),
        };
        let mut answers: Vec<Option<Answer>> = (0..n).map(|_| None).collect();
        loop {
            match stream.message().await {
                Ok(Some(item)) => {
                    let i = item.index as usize;
                    let a = match item.result {
                        Some(submit_stream_response::Result::Outcome(o)) => outcome_answer(&o),
                        Some(submit_stream_response::Result::Error(e)) => {
                            let body = serde_json::json!({"error": {"code": e.code, "message": e.message}});
                            let ra = (e.retry_after_secs > 0)
                                .then(|| Duration::from_secs(u64::from(e.retry_after_secs)));
                            Answer::from_rest(e.http_status as u16, body, ra)
                        }
                        None => {
                            return Err(ClientError::BadAnswer(
                                "stream item without result".into(),
                            ));
                        }
                    };
                    if let Some(slot) = answers.get_mut(i) {
                        *slot = Some(a);
                    }
                }
                Ok(None) => break,
                Err(s) => return Err(ClientError::Grpc(s.to_string())),
            }
        }
        answers
            .into_iter()
            .map(|a| a.ok_or_else(|| ClientError::Grpc("stream ended before every answer".into())))
            .collect()
    }

    pub(crate) async fn get_outcome(
        &self,
        pcs_id: &str,
    ) -> Result<Option<proto::Outcome>, ClientError> {
        let mut c = VerifyServiceClient::new(self.channel());
        let req = self.request(
            proto::GetOutcomeRequest {
                tenant_id: self.tenant.clone(),
                pcs_id: pcs_id.to_string(),
            },
            true,
        )?;
        match c.get_outcome(req).await {
            Ok(o) => Ok(Some(o.into_inner())),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
            Err(s) => Err(ClientError::Grpc(s.to_string())),
        }
    }
}
