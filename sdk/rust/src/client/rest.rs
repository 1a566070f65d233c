//! The REST side: `POST /v1/pcs/submit` and the token-authenticated reads.

use std::string::{String, ToString};
use std::time::Duration;

use bytes::Bytes;

use super::{Answer, ClientConfig, ClientError, parse_retry_after};

#[derive(Debug, Clone)]
pub(crate) struct Rest {
    http: reqwest::Client,
    base: String,
    tenant: String,
    token: Option<String>,
}

impl Rest {
    pub(crate) fn new(cfg: &ClientConfig) -> Result<Rest, ClientError> {
        let https_ok = cfg!(feature = "tls") && cfg.base_url.starts_with("https://");
        if !(cfg.base_url.starts_with("http://") || https_ok) {
            return Err(ClientError::BadUrl(cfg.base_url.clone()));
        }
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()?;
        Ok(Rest {
            http,
            base: cfg.base_url.clone(),
            tenant: cfg.tenant_id.clone(),
            token: cfg.api_token.clone(),
        })
    }

    pub(crate) async fn submit(&self, body: Bytes) -> Result<Answer, ClientError> {
        let resp = self
            .http
            .post(std::format!("{}/v1/pcs/submit", self.base))
            .header("content-type", "application/json")
            .header("x-tenant-id", &self.tenant)
            .body(body)
            .send()
            .await?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let bytes = resp.bytes().await?;
        let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            serde_json::json!({"error": {"code": "not_json", "message": String::from_utf8_lossy(&bytes).to_string()}})
        });
        Ok(Answer::from_rest(status, body, retry_after))
    }

    /// A GET read with the API token: the JSON on 200, `None` on 404.
    pub(crate) async fn get_json(
        &self,
        path: &str,
    ) -> Result<Option<serde_json::Value>, ClientError> {
        let token = self.token.as_ref().ok_or(ClientError::NoToken)?;
        let resp = self
            .http
            .get(std::format!("{}{path}", self.base))
            .bearer_auth(token)
            .header("x-tenant-id", &self.tenant)
            .send()
            .await?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await?;
        match status {
            200 => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| ClientError::BadAnswer(e.to_string())),
            404 => Ok(None),
            s => Err(ClientError::BadAnswer(std::format!(
                "GET {path}: status {s}: {}",
                String::from_utf8_lossy(&bytes)
            ))),
        }
    }
}
