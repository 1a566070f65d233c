//! Delivering PCS to FLK (feature `client`): one [`Client`] over REST and gRPC
//! (`flk.v1.VerifyService`, unary and streaming), retries with exponential backoff and full
//! jitter that honour `Retry-After` ([`RetryPolicy`]), reads with the tenant's API token, and
//! the fsync'd [`Outbox`] for at-least-once delivery across crashes.
//!
//! Every answer, whatever the transport, is an [`Answer`]: the HTTP status the REST route gives
//! (gRPC codes mapped back), the outcome, and whether it was a stored (duplicate) outcome.

mod answer;
mod backoff;
mod grpc;
mod outbox;
mod rest;

pub use answer::{Answer, AnswerClass};
pub use backoff::RetryPolicy;
pub use outbox::{DeliveryReport, Outbox, OutboxEntry};

use std::string::{String, ToString};
use std::time::Duration;
use std::vec::Vec;

use bytes::Bytes;

use crate::audit::InclusionBundle;
use crate::pcs::Pcs;

/// The generated `flk.v1` messages and VerifyService client (from `proto/`).
#[allow(missing_docs, clippy::all)]
pub mod proto {
    tonic::include_proto!("flk.v1");
}

/// How submissions travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    /// `POST /v1/pcs/submit`.
    #[default]
    Rest,
    /// `flk.v1.VerifyService/Submit`.
    Grpc,
}

/// Why a call produced no answer (the answers themselves, refusals included, are [`Answer`]s).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid url {0:?}")]
    BadUrl(String),
    #[error("http transport: {0}")]
    Http(#[from] reqwest::Error),
    #[error("grpc transport: {0}")]
    Grpc(String),
    #[error("answer is not the documented json: {0}")]
    BadAnswer(String),
    #[error("gave up after {attempts} attempts, last: {last}")]
    GaveUp { attempts: u32, last: String },
    #[error("reads need the tenant's api token")]
    NoToken,
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    #[error("outbox: {0}")]
    Io(#[from] std::io::Error),
}

impl ClientError {
    /// Transport failures worth another attempt (connection refused or reset, timeouts).
    pub fn is_transient(&self) -> bool {
        matches!(self, ClientError::Http(_) | ClientError::Grpc(_))
    }
}

/// Where and as whom to connect.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The gateway, e.g. `http://127.0.0.1:8080` (REST and gRPC share the port).
    pub base_url: String,
    /// Sent as `X-Tenant-Id` / `x-tenant-id`.
    pub tenant_id: String,
    /// The tenant's API token, for reads (outcomes, audit proofs).
    pub api_token: Option<String>,
    pub transport: Transport,
    pub retry: RetryPolicy,
    /// Per-request timeout.
    pub timeout: Duration,
}

impl ClientConfig {
    /// REST to `base_url` as `tenant_id`, default retries, 10 s timeout.
    pub fn new(base_url: impl Into<String>, tenant_id: impl Into<String>) -> ClientConfig {
        ClientConfig {
            base_url: base_url.into().trim_end_matches('/').to_string(),
            tenant_id: tenant_id.into(),
            api_token: None,
            transport: Transport::Rest,
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(10),
        }
    }

    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.api_token = Some(token.into());
        self
    }

    pub fn with_transport(mut self, t: Transport) -> Self {
        self.transport = t;
        self
    }

    pub fn with_retry(mut self, r: RetryPolicy) -> Self {
        self.retry = r;
        self
    }
}

/// A connection to one FLK gateway. Cheap to clone (shares its HTTP pool and gRPC channel).
#[derive(Debug, Clone)]
pub struct Client {
    cfg: ClientConfig,
    rest: rest::Rest,
    grpc: grpc::Grpc,
}

impl Client {
    /// A client; connections are made on first use.
    pub fn new(cfg: ClientConfig) -> Result<Client, ClientError> {
        let rest = rest::Rest::new(&cfg)?;
        let grpc = grpc::Grpc::new(&cfg)?;
        Ok(Client { cfg, rest, grpc })
    }

    pub fn config(&self) -> &ClientConfig {
        &self.cfg
    }

    /// One attempt to submit a PCS's JSON bytes over the configured transport.
    pub async fn submit_once(&self, body: Bytes) -> Result<Answer, ClientError> {
        match self.cfg.transport {
            Transport::Rest => self.rest.submit(body).await,
            Transport::Grpc => self.grpc.submit(body).await,
        }
    }

    /// Submits JSON bytes, retrying transport failures and retryable answers (429, 503, ...)
    /// with the policy's backoff; returns the first definitive answer or permanent refusal,
    /// or the last retryable one when the attempts run out.
    pub async fn submit_json(&self, body: Bytes) -> Result<Answer, ClientError> {
        let policy = &self.cfg.retry;
        let mut attempt = 0u32;
        loop {
            let result = self.submit_once(body.clone()).await;
            attempt += 1;
            let retry_after = match &result {
                Ok(a) if a.class() == AnswerClass::Retryable => a.retry_after,
                Ok(_) => return result,
                Err(e) if e.is_transient() => None,
                Err(_) => return result,
            };
            if attempt >= policy.max_attempts {
                return match result {
                    Ok(a) => Ok(a),
                    Err(e) => Err(ClientError::GaveUp {
                        attempts: attempt,
                        last: e.to_string(),
                    }),
                };
            }
            tokio::time::sleep(policy.delay(attempt - 1, retry_after)).await;
        }
    }

    /// Signs nothing: submits an already signed PCS (see [`Pcs::sign`]).
    pub async fn submit(&self, pcs: &Pcs) -> Result<Answer, ClientError> {
        self.submit_json(Bytes::from(pcs.to_json())).await
    }

    /// Submits a batch over one gRPC `SubmitStream`; answers in input order. Items whose
    /// answer is retryable are resubmitted (in a new stream) after the policy's backoff.
    pub async fn submit_stream(&self, bodies: Vec<Bytes>) -> Result<Vec<Answer>, ClientError> {
        let policy = &self.cfg.retry;
        let mut answers: Vec<Option<Answer>> = (0..bodies.len()).map(|_| None).collect();
        let mut todo: Vec<usize> = (0..bodies.len()).collect();
        let mut attempt = 0u32;
        while !todo.is_empty() {
            let batch: Vec<Bytes> = todo.iter().map(|&i| bodies[i].clone()).collect();
            let got = self.grpc.submit_stream(batch).await;
            attempt += 1;
            let got = match got {
                Ok(g) => g,
                Err(e) if e.is_transient() && attempt < policy.max_attempts => {
                    tokio::time::sleep(policy.delay(attempt - 1, None)).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let mut again = Vec::new();
            let mut hint = None;
            for (k, a) in got.into_iter().enumerate() {
                let i = todo[k];
                if a.class() == AnswerClass::Retryable && attempt < policy.max_attempts {
                    hint = hint.max(a.retry_after);
                    again.push(i);
                }
                answers[i] = Some(a);
            }
            todo = again;
            if !todo.is_empty() {
                tokio::time::sleep(policy.delay(attempt - 1, hint)).await;
            }
        }
        answers
            .into_iter()
            .map(|a| a.ok_or_else(|| ClientError::BadAnswer("stream lost an answer".into())))
            .collect()
    }

    /// The stored outcome of a PCS (`GET /v1/pcs/{pcs_id}` with the API token); `None` if
    /// unknown (or another tenant's).
    pub async fn outcome(&self, pcs_id: &str) -> Result<Option<serde_json::Value>, ClientError> {
        self.rest.get_json(&std::format!("/v1/pcs/{pcs_id}")).await
    }

    /// The stored outcome over gRPC (`GetOutcome`, token in `authorization` metadata).
    pub async fn outcome_grpc(&self, pcs_id: &str) -> Result<Option<proto::Outcome>, ClientError> {
        self.grpc.get_outcome(pcs_id).await
    }

    /// The audit log's proof bundle for a PCS (`GET /v1/audit/proof/{pcs_id}`); `None` while
    /// the decision is not yet in a checkpoint (or unknown). Verify it with
    /// [`InclusionBundle::verify`] and the log's published verifier key.
    pub async fn audit_proof(&self, pcs_id: &str) -> Result<Option<InclusionBundle>, ClientError> {
        match self
            .rest
            .get_json(&std::format!("/v1/audit/proof/{pcs_id}"))
            .await?
        {
            Some(v) => Ok(Some(InclusionBundle::from_json(&v)?)),
            None => Ok(None),
        }
    }

    /// The latest checkpoint (`GET /v1/audit/checkpoint`).
    pub async fn audit_checkpoint(&self) -> Result<Option<serde_json::Value>, ClientError> {
        self.rest.get_json("/v1/audit/checkpoint").await
    }
}

/// Seconds or an HTTP date, as `Retry-After` carries it.
pub(crate) fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(s) = v.parse::<u64>() {
        return Some(Duration::from_secs(s));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_retry_after() {
        assert!(Client::new(ClientConfig::new("ftp://x", "t")).is_err());
        // https needs the `tls` feature; without it the client says so up front.
        assert_eq!(
            Client::new(ClientConfig::new("https://x", "t")).is_ok(),
            cfg!(feature = "tls")
        );
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
