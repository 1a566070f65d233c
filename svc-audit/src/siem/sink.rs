//! The four products' wire formats and what their answers mean.
//!
//! | kind | request | done | retried | dead-lettered |
//! |---|---|---|---|---|
//! | `splunk_hec` | `POST {url}/services/collector/event`, `Authorization: Splunk <token>`, concatenated `{"time","host","source","sourcetype","event"}` objects, at most 1 MiB | 2xx | 429, 503 and other 5xx, 408, transport errors | 400, 401, 403 and other 4xx: the whole request (alerted) |
//! | `datadog` | `POST {url}/api/v2/logs`, `DD-API-KEY`, gzip JSON array of `{"ddsource","service","hostname","ddtags","message"}`, at most 1,000 entries and 5 MB | 2xx | 408, 429, 5xx, transport errors | other 4xx; an entry over 1 MB |
//! | `elasticsearch` | `POST {url}/_bulk`, NDJSON `{"create":{"_index","_id"}}` + envelope, trailing newline, `Authorization: ApiKey <token>` when set, at most 10 MiB | item 200/201, 409 (already indexed) | items 429 and 5xx alone; whole request on HTTP 429/5xx | other item errors; the whole request on other 4xx |
//! | `sumo` | `POST {url}` (the HTTP source URL), gzip, one envelope per line, `X-Sumo-Category/Name/Host`, at most 1 MiB | 2xx | 429, 5xx, 408, transport errors | other 4xx |
//!
//! Everywhere a 413 splits the request in two and sends the halves; a single event that is
//! still too large is dead-lettered. A sink splits batches to these limits whatever the
//! configured batch size.

use std::io::Write as _;
use std::time::Duration;

use flate2::Compression;
use flate2::write::GzEncoder;
use reqwest::StatusCode;
use serde_json::json;

use super::config::{ResolvedSink, SinkKind};
use super::spool::Item;

/// What happened to one event of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Done,
    Retry,
    Dead(String),
}

/// The verdicts of a send, in item order, and the longest `Retry-After` asked for.
#[derive(Debug, Default)]
pub struct Reply {
    pub verdicts: Vec<Verdict>,
    pub retry_after: Option<Duration>,
    /// A fatal refusal of a whole request (auth, bad request): alerted by the caller.
    pub fatal: Option<String>,
}

/// Per-request limits of a product.
struct Limits {
    events: usize,
    bytes: usize,
    /// The largest single entry; larger ones are dead letters without a try.
    entry: usize,
}

impl SinkKind {
    fn limits(self) -> Limits {
        match self {
            SinkKind::SplunkHec => Limits {
                events: usize::MAX,
                bytes: 1 << 20,
                entry: 1 << 20,
            },
            SinkKind::Datadog => Limits {
                events: 1000,
                bytes: 5_000_000,
                entry: 1_000_000,
            },
            SinkKind::Elasticsearch => Limits {
                events: usize::MAX,
                bytes: 10 << 20,
                entry: 10 << 20,
            },
            SinkKind::Sumo => Limits {
                events: usize::MAX,
                bytes: 1 << 20,
                entry: 1 << 20,
            },
        }
    }
}

/// One sink's HTTP side.
pub struct Sender {
    sink: ResolvedSink,
    host: String,
    http: reqwest::Client,
    /// Splunk HEC: `,"host":..,"source":..,"sourcetype":..[,"index":..],"event":`.
    splunk_fields: String,
    /// Elasticsearch: `{"create":{"_index":"<index>","_id":"` (the id and `"}}` follow).
    es_action: String,
}

enum Answer {
    Status(StatusCode, Option<Duration>, bytes::Bytes),
    Transport(String),
}

impl Sender {
    pub fn new(sink: ResolvedSink, host: &str) -> Result<Sender, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(sink.cfg.request_timeout_ms))
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        let cfg = &sink.cfg;
        let quoted = |s: &str| serde_json::Value::from(s).to_string();
        let mut splunk_fields = format!(
            ",\"host\":{},\"source\":{},\"sourcetype\":{}",
            quoted(host),
            quoted(cfg.source.as_deref().unwrap_or("flk-audit")),
            quoted(cfg.sourcetype.as_deref().unwrap_or("flk:event")),
        );
        if let Some(index) = &cfg.index {
            splunk_fields.push_str(&format!(",\"index\":{}", quoted(index)));
        }
        splunk_fields.push_str(",\"event\":");
        let es_action = format!(
            "{{\"create\":{{\"_index\":{},\"_id\":\"",
            quoted(cfg.index.as_deref().unwrap_or("flk-events"))
        );
        Ok(Sender {
            sink,
            host: host.to_owned(),
            http,
            splunk_fields,
            es_action,
        })
    }

    pub fn kind(&self) -> SinkKind {
        self.sink.kind
    }

    /// Sends `items`, split to the product's limits, and returns a verdict per item.
    pub async fn send(&self, items: &[&Item]) -> Reply {
        let limits = self.sink.kind.limits();
        let mut reply = Reply {
            verdicts: vec![Verdict::Retry; items.len()],
            ..Reply::default()
        };
        // Chunks by the product's limits; oversize entries are refused here.
        let mut chunks: Vec<Vec<usize>> = Vec::new();
        let mut current: Vec<usize> = Vec::new();
        let mut bytes = 0;
        for (i, item) in items.iter().enumerate() {
            let size = self.entry_size(item);
            if size > limits.entry {
                reply.verdicts[i] = Verdict::Dead(format!(
                    "event of {size} bytes exceeds the {} limit of {} bytes",
                    self.sink.kind.label(),
                    limits.entry
                ));
                continue;
            }
            if !current.is_empty()
                && (current.len() >= limits.events || bytes + size > limits.bytes)
            {
                chunks.push(std::mem::take(&mut current));
                bytes = 0;
            }
            bytes += size;
            current.push(i);
        }
        if !current.is_empty() {
            chunks.push(current);
        }
        // A stack: the next chunk to send is on top.
        chunks.reverse();
        while let Some(chunk) = chunks.pop() {
            let batch: Vec<&Item> = chunk.iter().map(|&i| items[i]).collect();
            let answer = self.post(&batch).await;
            let verdicts = match answer {
                Answer::Status(StatusCode::PAYLOAD_TOO_LARGE, ..) if chunk.len() > 1 => {
                    let (a, b) = chunk.split_at(chunk.len() / 2);
                    chunks.push(b.to_vec());
                    chunks.push(a.to_vec());
                    continue;
                }
                Answer::Status(status, retry_after, body) => {
                    if let Some(d) = retry_after {
                        reply.retry_after = Some(reply.retry_after.map_or(d, |r| r.max(d)));
                    }
                    self.classify(status, &body, batch.len(), &mut reply)
                }
                Answer::Transport(e) => {
                    tracing::debug!(sink = %self.sink.cfg.name, error = %e, "SIEM request failed");
                    vec![Verdict::Retry; batch.len()]
                }
            };
            let whole_retry = verdicts.iter().all(|v| *v == Verdict::Retry);
            for (i, v) in chunk.into_iter().zip(verdicts) {
                reply.verdicts[i] = v;
            }
            // The product is busy or unreachable: the later chunks wait with this one (they
            // stay `Retry`), so that nothing overtakes it.
            if whole_retry {
                break;
            }
        }
        reply
    }

    /// An entry's bytes as the product counts them.
    fn entry_size(&self, item: &Item) -> usize {
        match self.sink.kind {
            // The envelope as a JSON string in `message`, plus the other fields.
            SinkKind::Datadog => item.json.len() + item.json.len() / 8 + 128,
            SinkKind::SplunkHec => item.json.len() + 128,
            SinkKind::Elasticsearch => item.json.len() + 96,
            SinkKind::Sumo => item.json.len() + 1,
        }
    }

    fn body(&self, items: &[&Item]) -> Vec<u8> {
        let cfg = &self.sink.cfg;
        let mut out = Vec::with_capacity(items.iter().map(|i| i.json.len() + 160).sum());
        match self.sink.kind {
            SinkKind::SplunkHec => {
                for item in items {
                    // The envelope is spliced in as it is: it is JSON already.
                    let time = format!(
                        "{{\"time\":{}.{:03}",
                        item.time_ms / 1000,
                        item.time_ms % 1000
                    );
                    out.extend_from_slice(time.as_bytes());
                    out.extend_from_slice(self.splunk_fields.as_bytes());
                    out.extend_from_slice(item.json.as_bytes());
                    out.push(b'}');
                }
            }
            SinkKind::Datadog => {
                let service = cfg.service.as_deref().unwrap_or("flk");
                let ddsource = cfg.ddsource.as_deref().unwrap_or("flk");
                let entries: Vec<serde_json::Value> = items
                    .iter()
                    .map(|item| {
                        json!({
                            "ddsource": ddsource,
                            "service": service,
                            "hostname": self.host,
                            "ddtags": cfg.tags.join(","),
                            "message": item.json,
                        })
                    })
                    .collect();
                out = gzip(&serde_json::to_vec(&entries).unwrap_or_default());
            }
            SinkKind::Elasticsearch => {
                for item in items {
                    // `{"create":{"_index":<quoted index>,"_id":"<event id: hex>"}}`
                    out.extend_from_slice(self.es_action.as_bytes());
                    out.extend_from_slice(item.id.as_bytes());
                    out.extend_from_slice(b"\"}}\n");
                    out.extend_from_slice(item.json.as_bytes());
                    out.push(b'\n');
                }
            }
            SinkKind::Sumo => {
                let mut plain = Vec::with_capacity(out.capacity());
                for item in items {
                    plain.extend_from_slice(item.json.as_bytes());
                    plain.push(b'\n');
                }
                out = gzip(&plain);
            }
        }
        out
    }

    async fn post(&self, items: &[&Item]) -> Answer {
        let body = self.body(items);
        let url = &self.sink.url;
        let token = self.sink.token.as_deref().unwrap_or_default();
        let req = match self.sink.kind {
            SinkKind::SplunkHec => self
                .http
                .post(format!("{url}/services/collector/event"))
                .header("authorization", format!("Splunk {token}"))
                .header("content-type", "application/json"),
            SinkKind::Datadog => self
                .http
                .post(format!("{url}/api/v2/logs"))
                .header("dd-api-key", token)
                .header("content-type", "application/json")
                .header("content-encoding", "gzip"),
            SinkKind::Elasticsearch => {
                let r = self
                    .http
                    .post(format!("{url}/_bulk"))
                    .header("content-type", "application/x-ndjson");
                match &self.sink.token {
                    Some(t) => r.header("authorization", format!("ApiKey {t}")),
                    None => r,
                }
            }
            SinkKind::Sumo => {
                let cfg = &self.sink.cfg;
                let mut r = self
                    .http
                    .post(url.as_str())
                    .header("content-encoding", "gzip")
                    .header("x-sumo-host", &self.host);
                if let Some(c) = &cfg.category {
                    r = r.header("x-sumo-category", c);
                }
                if let Some(n) = &cfg.source_name {
                    r = r.header("x-sumo-name", n);
                }
                r
            }
        };
        match req.body(body).send().await {
            Ok(resp) => {
                let status = resp.status();
                let retry_after = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_retry_after);
                match resp.bytes().await {
                    Ok(b) => Answer::Status(status, retry_after, b),
                    Err(e) => Answer::Transport(format!("reading the answer: {e}")),
                }
            }
            // Without the URL: for Sumo it is the credential.
            Err(e) => Answer::Transport(e.without_url().to_string()),
        }
    }

    fn classify(
        &self,
        status: StatusCode,
        body: &[u8],
        n: usize,
        reply: &mut Reply,
    ) -> Vec<Verdict> {
        let retryable = status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::REQUEST_TIMEOUT
            || status.is_server_error();
        if retryable {
            return vec![Verdict::Retry; n];
        }
        if status.is_success() {
            if self.sink.kind == SinkKind::Elasticsearch {
                return bulk_items(body, n);
            }
            return vec![Verdict::Done; n];
        }
        let text = String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
        let why = format!("HTTP {status}: {text}");
        reply.fatal = Some(why.clone());
        vec![Verdict::Dead(why); n]
    }
}

/// The per-item verdicts of an Elasticsearch `_bulk` answer (HTTP 200, possibly with
/// `errors: true`). An answer that does not name every item retries them all: nothing that
/// is unknown is counted as done.
fn bulk_items(body: &[u8], n: usize) -> Vec<Verdict> {
    #[derive(serde::Deserialize)]
    struct Bulk {
        items: Vec<std::collections::HashMap<String, BulkItem>>,
    }
    #[derive(serde::Deserialize)]
    struct BulkItem {
        status: u16,
        #[serde(default)]
        error: Option<serde_json::Value>,
    }
    let Ok(bulk) = serde_json::from_slice::<Bulk>(body) else {
        return vec![Verdict::Retry; n];
    };
    if bulk.items.len() != n {
        return vec![Verdict::Retry; n];
    }
    bulk.items
        .into_iter()
        .map(|item| match item.into_values().next() {
            Some(BulkItem {
                status: 200 | 201 | 409,
                ..
            }) => Verdict::Done,
            Some(BulkItem { status, .. }) if status == 429 || status >= 500 => Verdict::Retry,
            Some(BulkItem { status, error }) => Verdict::Dead(format!(
                "item status {status}: {}",
                error.map(|e| e.to_string()).unwrap_or_default()
            )),
            None => Verdict::Retry,
        })
        .collect()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::with_capacity(bytes.len() / 4), Compression::fast());
    // Writing to a Vec cannot fail.
    let _ = enc.write_all(bytes);
    enc.finish().unwrap_or_default()
}

/// `Retry-After` as delta-seconds or an HTTP-date.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
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
    fn bulk_answers_are_read_per_item() {
        let body = br#"{"took":3,"errors":true,"items":[
            {"create":{"_id":"a","status":201}},
            {"create":{"_id":"b","status":409,"error":{"type":"version_conflict_engine_exception"}}},
            {"create":{"_id":"c","status":429,"error":{"type":"es_rejected_execution_exception"}}},
            {"create":{"_id":"d","status":503}},
            {"create":{"_id":"e","status":400,"error":{"type":"mapper_parsing_exception"}}}]}"#;
        let v = bulk_items(body, 5);
        assert_eq!(
            v[..4],
            [Verdict::Done, Verdict::Done, Verdict::Retry, Verdict::Retry]
        );
        assert!(matches!(&v[4], Verdict::Dead(why) if why.contains("mapper_parsing_exception")));
        assert_eq!(bulk_items(body, 6), vec![Verdict::Retry; 6]);
        assert_eq!(bulk_items(b"<html>", 2), vec![Verdict::Retry; 2]);
    }

    #[test]
    fn retry_after_takes_seconds_and_dates() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
