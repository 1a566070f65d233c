//! Local stand-ins for the four SIEM products, each implementing the part of its documented
//! behaviour that a sender must get right: endpoint, auth header, body format, limits and
//! status codes. Tests and benches point svc-audit's sinks at them.
//!
//! | kind | endpoint | checks | faults it can inject |
//! |---|---|---|---|
//! | Splunk HEC | `POST /services/collector/event` | `Authorization: Splunk <token>`; concatenated event objects with `time`, `host`, `source`, `sourcetype`, `event` | `503` "Server is busy" (code 9) for the first N requests; `403` invalid token (code 4) when the token differs |
//! | Datadog | `POST /api/v2/logs` | `DD-API-KEY`; gzip; JSON array of entries with `ddsource`, `service`, `hostname`, `ddtags`, `message` | `413` above 1,000 entries or 5 MB (uncompressed); `429` with `Retry-After` for the first N requests |
//! | Elasticsearch | `POST /_bulk` | NDJSON with a trailing newline; `create` actions with `_index` and `_id` | HTTP 200 with per-item `429` the first time chosen ids are seen; `409` for an id already indexed |
//! | Sumo Logic | `POST /receiver/v1/http/<token>` | gzip; one event per line | refuses connections (listener closed) while paused |
//!
//! Any product can also refuse requests of more than `max_entries` events with `413`, take in
//! a request and never answer it (`hold_after`: what a sender that dies mid-request leaves
//! behind), and count events without keeping them (`count_only`, for benchmarks, which also
//! records Splunk events' delivery lag).
//!
//! Every receiver records the envelopes it accepted, in arrival order, and every attempt to
//! index an id (to prove that nothing that succeeded was sent again).

use std::collections::{HashMap, HashSet};
use std::io::Read as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::de::IgnoredAny;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{Notify, oneshot};

/// Which product to imitate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Product {
    Splunk,
    Datadog,
    Elasticsearch,
    Sumo,
}

/// Faults to inject.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// The first this many requests get the product's busy / rate-limit answer (Splunk 503,
    /// Datadog 429 with `Retry-After: 1`... see the module table).
    pub busy_requests: usize,
    /// Elasticsearch: ids whose first `create` gets an item-level 429 (one in `n` by hash).
    pub item_429_one_in: u64,
    /// A request with more entries than this is refused with `413` (a product whose limit is
    /// lower than the sender assumed), whatever the product.
    pub max_entries: Option<usize>,
    /// The request accepted after this many is recorded as accepted but never answered (its
    /// answer is lost when the sender dies): what a crash mid-request leaves behind. Later
    /// requests are answered as usual.
    pub hold_after: Option<usize>,
    /// Benchmarks: count events without keeping them (`Seen::events` stays empty; ids are
    /// still kept for Elasticsearch's 409s), and record each event's delivery lag.
    pub count_only: bool,
}

/// What a receiver saw.
#[derive(Debug, Default)]
pub struct Seen {
    /// Accepted envelopes, in arrival order (Elasticsearch: newly created documents only).
    pub events: Vec<Value>,
    /// Requests by answered status.
    pub statuses: HashMap<u16, usize>,
    /// Elasticsearch: the documents by `_id`.
    pub docs: HashMap<String, Value>,
    /// Elasticsearch: `create` attempts per `_id` after it was indexed.
    pub resent_after_success: HashMap<String, usize>,
    /// Elasticsearch: ids already refused once with an item-level 429.
    item_429: HashSet<String>,
    /// Requests seen, whatever the answer.
    pub requests: usize,
    /// Largest request body (uncompressed) and largest entry count.
    pub max_body: usize,
    pub max_entries: usize,
    /// Headers of the last request.
    pub last_headers: HashMap<String, String>,
    /// Events accepted (with `count_only`, the only record of them).
    pub count: usize,
    /// Requests accepted.
    pub accepted_requests: usize,
    /// With `count_only`: arrival time minus the event's `time`, in milliseconds, per event
    /// (Splunk HEC and Elasticsearch).
    pub lags_ms: Vec<f64>,
}

struct Inner {
    product: Product,
    token: String,
    faults: Faults,
    seen: Mutex<Seen>,
    changed: Notify,
}

/// A running receiver.
pub struct Receiver {
    inner: Arc<Inner>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

impl Receiver {
    /// Starts on 127.0.0.1:0. `token` is what the auth header (or Sumo URL) must carry.
    pub async fn start(product: Product, token: &str, faults: Faults) -> std::io::Result<Receiver> {
        Receiver::start_on(
            product,
            SocketAddr::from(([127, 0, 0, 1], 0)),
            token,
            faults,
        )
        .await
    }

    /// Starts on `addr`.
    pub async fn start_on(
        product: Product,
        addr: SocketAddr,
        token: &str,
        faults: Faults,
    ) -> std::io::Result<Receiver> {
        let inner = Arc::new(Inner {
            product,
            token: token.to_owned(),
            faults,
            seen: Mutex::new(Seen::default()),
            changed: Notify::new(),
        });
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let mut r = Receiver {
            inner,
            addr,
            stop: None,
        };
        r.serve(listener);
        Ok(r)
    }

    fn serve(&mut self, listener: TcpListener) {
        let app = Router::new()
            .route("/services/collector/event", post(splunk))
            .route("/api/v2/logs", post(datadog))
            .route("/_bulk", post(bulk))
            .route("/receiver/v1/http/{token}", post(sumo))
            .with_state(self.inner.clone());
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        self.stop = Some(tx);
    }

    /// The base URL (for Sumo, the HTTP source URL with its token).
    pub fn url(&self) -> String {
        match self.inner.product {
            Product::Sumo => format!("http://{}/receiver/v1/http/{}", self.addr, self.inner.token),
            _ => format!("http://{}", self.addr),
        }
    }

    /// Closes the listener: connections are refused until [`Receiver::resume`].
    pub async fn pause(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // Wait until the port refuses connections.
        while tokio::net::TcpStream::connect(self.addr).await.is_ok() {
            tokio::task::yield_now().await;
        }
    }

    /// Listens again on the same port.
    pub async fn resume(&mut self) -> std::io::Result<()> {
        let listener = TcpListener::bind(self.addr).await?;
        self.serve(listener);
        Ok(())
    }

    /// Runs `f` over what was seen.
    pub fn seen<T>(&self, f: impl FnOnce(&Seen) -> T) -> T {
        f(&self.inner.seen.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Runs `f` over what was seen, mutably (to take the lags measured so far).
    pub fn seen_mut<T>(&self, f: impl FnOnce(&mut Seen) -> T) -> T {
        f(&mut self.inner.seen.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Waits until `done` holds of what was seen (woken by each request).
    pub async fn wait_for(&self, done: impl Fn(&Seen) -> bool) {
        loop {
            let notified = self.inner.changed.notified();
            if self.seen(&done) {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Inner {
    fn record(&self, status: StatusCode, headers: &HeaderMap, f: impl FnOnce(&mut Seen)) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.requests += 1;
        *seen.statuses.entry(status.as_u16()).or_default() += 1;
        seen.last_headers = headers
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect();
        f(&mut seen);
        drop(seen);
        self.changed.notify_waiters();
    }

    /// Whether this request is one of the first `busy_requests`.
    fn busy(&self) -> bool {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.requests < self.faults.busy_requests
    }

    /// Whether a request of `entries` entries is over the injected limit.
    fn too_large(&self, entries: usize) -> bool {
        self.faults.max_entries.is_some_and(|max| entries > max)
    }

    /// Records an accepted request; `true` when its answer must be held back
    /// ([`Faults::hold_after`]).
    fn accept(
        &self,
        headers: &HeaderMap,
        status: StatusCode,
        body_len: usize,
        entries: usize,
        events: Vec<Value>,
        lags_ms: Vec<f64>,
    ) -> bool {
        let mut hold = false;
        self.record(status, headers, |seen| {
            hold = self
                .faults
                .hold_after
                .is_some_and(|n| seen.accepted_requests == n);
            seen.accepted_requests += 1;
            seen.max_body = seen.max_body.max(body_len);
            seen.max_entries = seen.max_entries.max(entries);
            seen.count += entries;
            seen.events.extend(events);
            seen.lags_ms.extend(lags_ms);
        });
        hold
    }
}

fn answer(status: StatusCode, body: Value) -> Response {
    (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Never answers: the request was taken, the answer is lost with the connection.
async fn held() -> Response {
    std::future::pending::<()>().await;
    StatusCode::OK.into_response()
}

fn gunzip(body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .read_to_end(&mut out)
        .ok()?;
    Some(out)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

fn now_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// One HEC event object; `E` is `Value` (kept) or `IgnoredAny` (counted).
#[derive(serde::Deserialize)]
struct HecEvent<E> {
    time: f64,
    #[allow(dead_code)]
    host: String,
    #[allow(dead_code)]
    source: String,
    #[allow(dead_code)]
    sourcetype: String,
    event: E,
}

async fn splunk(State(s): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    let refuse = |status: StatusCode, reply: Value| {
        s.record(status, &headers, |_| {});
        answer(status, reply)
    };
    if header(&headers, "authorization") != format!("Splunk {}", s.token) {
        return refuse(
            StatusCode::FORBIDDEN,
            json!({"text": "Invalid token", "code": 4}),
        );
    }
    if s.busy() {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"text": "Server is busy", "code": 9}),
        );
    }
    let invalid = json!({"text": "Invalid data format", "code": 6});
    let now = now_ms();
    let (mut events, mut lags, mut n) = (Vec::new(), Vec::new(), 0usize);
    if s.faults.count_only {
        for v in serde_json::Deserializer::from_slice(&body).into_iter::<HecEvent<IgnoredAny>>() {
            let Ok(v) = v else {
                return refuse(StatusCode::BAD_REQUEST, invalid);
            };
            let _ = v.event;
            lags.push(now - v.time * 1000.0);
            n += 1;
        }
    } else {
        for v in serde_json::Deserializer::from_slice(&body).into_iter::<HecEvent<Value>>() {
            match v {
                Ok(v) if v.event.is_object() && v.time > 0.0 => events.push(v.event),
                _ => return refuse(StatusCode::BAD_REQUEST, invalid),
            }
        }
        n = events.len();
    }
    if n == 0 {
        return refuse(
            StatusCode::BAD_REQUEST,
            json!({"text": "No data", "code": 5}),
        );
    }
    if s.too_large(n) {
        return refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            json!({"text": "Content too large", "code": 27}),
        );
    }
    if s.accept(&headers, StatusCode::OK, body.len(), n, events, lags) {
        return held().await;
    }
    answer(StatusCode::OK, json!({"text": "Success", "code": 0}))
}

async fn datadog(State(s): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    let refuse = |status: StatusCode, title: &str| {
        s.record(status, &headers, |_| {});
        answer(
            status,
            json!({"errors": [{"status": status.as_str(), "title": title}]}),
        )
    };
    if header(&headers, "dd-api-key") != s.token {
        return refuse(StatusCode::FORBIDDEN, "Forbidden");
    }
    if s.busy() {
        s.record(StatusCode::TOO_MANY_REQUESTS, &headers, |_| {});
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "1")],
            json!({"errors": [{"status": "429", "title": "Too many requests"}]}).to_string(),
        )
            .into_response();
    }
    let plain = if header(&headers, "content-encoding") == "gzip" {
        gunzip(&body)
    } else {
        Some(body.to_vec())
    };
    let entries: Option<Vec<HashMap<String, Value>>> = plain
        .as_deref()
        .and_then(|p| serde_json::from_slice(p).ok());
    let (Some(plain), Some(entries)) = (plain, entries) else {
        return refuse(StatusCode::BAD_REQUEST, "Bad Request");
    };
    // The documented limits: 1,000 entries and 5 MB uncompressed per request.
    if entries.len() > 1000 || plain.len() > 5_000_000 || s.too_large(entries.len()) {
        return refuse(StatusCode::PAYLOAD_TOO_LARGE, "Payload too large");
    }
    let fields = ["ddsource", "service", "hostname", "ddtags", "message"];
    let mut events = Vec::new();
    for e in &entries {
        let Some(message) = e.get("message").and_then(Value::as_str).filter(|_| {
            fields
                .iter()
                .all(|f| e.get(*f).is_some_and(Value::is_string))
        }) else {
            return refuse(StatusCode::BAD_REQUEST, "Bad Request");
        };
        if !s.faults.count_only {
            events.push(serde_json::from_str(message).unwrap_or(Value::Null));
        }
    }
    if s.accept(
        &headers,
        StatusCode::ACCEPTED,
        plain.len(),
        entries.len(),
        events,
        Vec::new(),
    ) {
        return held().await;
    }
    answer(StatusCode::ACCEPTED, json!({}))
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// The part of a bulk action line the receiver reads.
#[derive(serde::Deserialize)]
struct Action {
    create: Option<Target>,
}

#[derive(serde::Deserialize)]
struct Target {
    #[serde(rename = "_id")]
    id: Option<String>,
    #[serde(rename = "_index")]
    index: Option<String>,
}

impl Inner {
    /// Indexes the `create` pairs of a bulk body: the per-item answers, whether any failed,
    /// how many documents were created and (unless counting) those documents.
    fn index(&self, lines: &[&[u8]]) -> (Vec<String>, bool, usize, Vec<Value>) {
        let s = self;
        let mut items = Vec::with_capacity(lines.len() / 2);
        let mut errors = false;
        let (mut created, mut events) = (0usize, Vec::new());
        let mut seen = s.seen.lock().unwrap_or_else(|p| p.into_inner());
        for pair in lines.chunks(2) {
            let target = serde_json::from_slice::<Action>(pair[0])
                .ok()
                .and_then(|a| a.create);
            let (Some(id), Some(index)) = target.map_or((None, None), |t| (t.id, t.index)) else {
                errors = true;
                items.push(r#"{"create":{"status":400,"error":{"type":"action_request_validation_exception"}}}"#.to_owned());
                continue;
            };
            let doc: Value = if s.faults.count_only {
                if pair[1].first() == Some(&b'{') {
                    Value::Object(Default::default())
                } else {
                    Value::Bool(false)
                }
            } else {
                serde_json::from_slice(pair[1]).unwrap_or(Value::Bool(false))
            };
            let item = if seen.docs.contains_key(&id) {
                *seen.resent_after_success.entry(id.clone()).or_default() += 1;
                errors = true;
                item(
                    &index,
                    &id,
                    409,
                    Some((
                        "version_conflict_engine_exception",
                        &format!("[{id}]: version conflict, document already exists"),
                    )),
                )
            } else if s.faults.item_429_one_in > 0
                && fnv(&id).is_multiple_of(s.faults.item_429_one_in)
                && seen.item_429.insert(id.clone())
            {
                // Refused once, accepted when sent again.
                errors = true;
                item(
                    &index,
                    &id,
                    429,
                    Some(("es_rejected_execution_exception", "rejected execution")),
                )
            } else if !doc.is_object() {
                errors = true;
                item(
                    &index,
                    &id,
                    400,
                    Some(("document_parsing_exception", "failed to parse")),
                )
            } else {
                if !s.faults.count_only {
                    events.push(doc.clone());
                }
                seen.docs.insert(id.clone(), doc);
                created += 1;
                item(&index, &id, 201, None)
            };
            items.push(item);
        }
        (items, errors, created, events)
    }
}

async fn bulk(State(s): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    let refuse = |status: StatusCode, reply: Value| {
        s.record(status, &headers, |_| {});
        answer(status, reply)
    };
    if !s.token.is_empty() && header(&headers, "authorization") != format!("ApiKey {}", s.token) {
        return refuse(
            StatusCode::UNAUTHORIZED,
            json!({"error": {"type": "security_exception"}, "status": 401}),
        );
    }
    if !body.ends_with(b"\n") {
        return refuse(
            StatusCode::BAD_REQUEST,
            json!({"error": {"type": "illegal_argument_exception", "reason": "The bulk request must be terminated by a newline [\\n]"}, "status": 400}),
        );
    }
    let lines: Vec<&[u8]> = body
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    if !lines.len().is_multiple_of(2) {
        return refuse(
            StatusCode::BAD_REQUEST,
            json!({"error": {"type": "illegal_argument_exception"}, "status": 400}),
        );
    }
    if s.too_large(lines.len() / 2) {
        return refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            json!({"error": {"type": "content_too_long"}, "status": 413}),
        );
    }
    let (items, errors, created, events) = s.index(&lines);
    let reply = format!(
        "{{\"took\":1,\"errors\":{errors},\"items\":[{}]}}",
        items.join(",")
    );
    if s.accept(
        &headers,
        StatusCode::OK,
        body.len(),
        created,
        events,
        Vec::new(),
    ) {
        return held().await;
    }
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        reply,
    )
        .into_response()
}

/// One item of a bulk answer, as Elasticsearch writes it (built as text: the receiver must not
/// be what a benchmark measures).
fn item(index: &str, id: &str, status: u16, error: Option<(&str, &str)>) -> String {
    let q = |s: &str| Value::from(s).to_string();
    match error {
        None => format!(
            "{{\"create\":{{\"_index\":{},\"_id\":{},\"_version\":1,\"result\":\"created\",\"status\":{status}}}}}",
            q(index),
            q(id)
        ),
        Some((kind, reason)) => format!(
            "{{\"create\":{{\"_index\":{},\"_id\":{},\"status\":{status},\"error\":{{\"type\":{},\"reason\":{}}}}}}}",
            q(index),
            q(id),
            q(kind),
            q(reason)
        ),
    }
}

async fn sumo(
    State(s): State<Arc<Inner>>,
    axum::extract::Path(token): axum::extract::Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if token != s.token {
        s.record(StatusCode::UNAUTHORIZED, &headers, |_| {});
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let Some(plain) = gunzip(&body) else {
        s.record(StatusCode::BAD_REQUEST, &headers, |_| {});
        return StatusCode::BAD_REQUEST.into_response();
    };
    let lines: Vec<&[u8]> = plain
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    if s.too_large(lines.len()) {
        s.record(StatusCode::PAYLOAD_TOO_LARGE, &headers, |_| {});
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    }
    let events: Vec<Value> = if s.faults.count_only {
        Vec::new()
    } else {
        lines
            .iter()
            .map(|l| serde_json::from_slice(l).unwrap_or(Value::Null))
            .collect()
    };
    if s.accept(
        &headers,
        StatusCode::OK,
        plain.len(),
        lines.len(),
        events,
        Vec::new(),
    ) {
        return held().await;
    }
    StatusCode::OK.into_response()
}
