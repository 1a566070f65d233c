//! The REST driver: `POST /v1/pcs/submit` with `X-Tenant-Id`, one HTTP/1.1 keep-alive
//! connection per worker, each sending its next item when the previous answer is read.

use std::sync::Arc;
use std::time::Instant;

use serde::Deserialize;

use crate::Error;
use crate::driver::{RunConfig, Shared, Worker};
use crate::expect::Observed;
use crate::report::Stats;

pub(crate) struct RestWorker {
    client: reqwest::Client,
    submit_url: String,
    tenant: String,
}

/// The parts of an answer body the report needs.
#[derive(Deserialize)]
struct Answer {
    outcome: Option<String>,
    reason_code: Option<String>,
    duplicate: Option<bool>,
    error: Option<ErrorBody>,
}

#[derive(Deserialize)]
struct ErrorBody {
    code: String,
    #[serde(default)]
    message: String,
}

/// One client (one connection) per worker, after checking `GET /health` answers.
pub(crate) async fn connect(url: &str, cfg: &RunConfig) -> Result<Vec<Worker>, Error> {
    let build = || {
        reqwest::Client::builder()
            .http1_only()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(1)
            .timeout(cfg.timeout)
            .build()
            .map_err(|e| Error::Config(format!("cannot build the http client: {e}")))
    };
    let probe = build()?;
    let health = format!("{url}/health");
    let unreachable = |reason: String| Error::Unreachable {
        url: url.to_owned(),
        reason,
    };
    match probe.get(&health).send().await {
        Ok(r) if r.status().is_success() => {}
        Ok(r) => return Err(unreachable(format!("GET /health answered {}", r.status()))),
        Err(e) => return Err(unreachable(error_chain(&e))),
    }
    let mut workers = Vec::with_capacity(cfg.connections);
    for _ in 0..cfg.connections {
        workers.push(Worker::Rest(RestWorker {
            client: build()?,
            submit_url: format!("{url}/v1/pcs/submit"),
            tenant: cfg.tenant.clone(),
        }));
    }
    Ok(workers)
}

impl RestWorker {
    pub(crate) async fn run(self, shared: Arc<Shared>) -> Stats {
        let mut stats = Stats::new();
        while let Some(job) = shared.next_job(&mut stats).await {
            let sent = Instant::now();
            let res = self
                .client
                .post(&self.submit_url)
                .header("content-type", "application/json")
                .header("x-tenant-id", &self.tenant)
                .body(job.item.body.clone())
                .send()
                .await;
            let (got, detail, example) = match res {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    // Reading the whole body also frees the connection for the next request.
                    match resp.bytes().await {
                        Ok(body) => {
                            let (got, detail) = observe(status, &body);
                            let example = stats
                                .wants_example(job.item.kind)
                                .then(|| serde_json::from_slice(&body).unwrap_or_default());
                            (got, detail, example)
                        }
                        Err(e) => failed(&e),
                    }
                }
                Err(e) => failed(&e),
            };
            shared.finish(&mut stats, &job, sent, &got, detail, example);
        }
        stats
    }
}

type Seen = (Observed, Option<String>, Option<serde_json::Value>);

fn failed(e: &reqwest::Error) -> Seen {
    let what = if e.is_timeout() {
        "timeout"
    } else {
        "transport"
    };
    (Observed::Failed { what }, Some(error_chain(e)), None)
}

/// The answer as the report sees it, and the error message if it is an error.
fn observe(status: u16, body: &[u8]) -> (Observed, Option<String>) {
    let bad = || (Observed::Failed { what: "bad_answer" }, Some(snippet(body)));
    let Ok(a) = serde_json::from_slice::<Answer>(body) else {
        return bad();
    };
    match (a.outcome, a.reason_code, a.error) {
        (Some(outcome), Some(reason_code), None) if status == 200 || status == 202 => (
            Observed::Decision {
                status,
                outcome,
                reason_code,
                duplicate: a.duplicate.unwrap_or(false),
            },
            None,
        ),
        (None, None, Some(e)) if status >= 400 => (
            Observed::Refused {
                status,
                code: e.code,
            },
            Some(e.message),
        ),
        _ => bad(),
    }
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut s: String = text.chars().take(200).collect();
    if text.chars().count() > 200 {
        s.push_str("...");
    }
    format!("unexpected answer body: {s}")
}

/// The error with its causes (`error sending request: connection refused`).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_answers() {
        let (got, _) = observe(
            202,
            br#"{"outcome":"rejected","reason_code":"r_out_of_bounds","duplicate":true}"#,
        );
        assert_eq!(got.to_string(), "202 rejected r_out_of_bounds duplicate");
        let (got, detail) = observe(
            401,
            br#"{"error":{"code":"signature_invalid","message":"nope"}}"#,
        );
        assert_eq!(got.to_string(), "401 signature_invalid");
        assert_eq!(detail.as_deref(), Some("nope"));
        let (got, _) = observe(200, b"OK");
        assert_eq!(got, Observed::Failed { what: "bad_answer" });
    }
}
