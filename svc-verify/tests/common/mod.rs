//! Test harness shared by the svc-verify integration tests: a service served over real gRPC
//! on 127.0.0.1:0 with a private data directory and tenants file, its dedup backend (embedded,
//! or a private Redis / PostgreSQL server from `flk-testkit`), signed PCS built from the
//! golden vectors, and readers for the outcome log and `/metrics`.
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use flk_core::{HmacMode, SigningMaterial, canonicalize, compute_pcs_id, parse_pcs};
use flk_proto::error::{ERROR_CODE_METADATA, RETRY_AFTER_METADATA};
use flk_proto::v1::{self, submit_request};
pub use flk_runtime::client::VerifyClient;
use flk_testkit::{PgServer, RedisServer};
use prost::Message;
use serde_json::Value;
use svc_verify::config::{DedupConfig, LogSettings};
use svc_verify::{DedupBackend, Engine, Service, VerifyConfig};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::{Code, Status};

/// HMAC key (digest mode) of the golden vectors, shared by every test tenant.
pub const SECRET: &str = "testsecret";
/// The default tenant.
pub const TENANT: &str = "default";
/// A second tenant with the same key and policy as [`TENANT`].
pub const TWIN: &str = "twin";
/// A tenant whose dedup entries live one second.
pub const SHORT_TTL: &str = "short-ttl";
/// Upper bound on waiting for something outside the test's control (a restarted server, an
/// expiry on the server's clock).
pub const DEADLINE: Duration = Duration::from_secs(20);

const TENANTS_TOML: &str = r#"
[[tenant]]
id = "default"
[[tenant.keys]]
id = "k1"
algorithm = "hmac"
secret = "testsecret"

[[tenant]]
id = "twin"
[[tenant.keys]]
id = "k1"
algorithm = "hmac"
secret = "testsecret"

[[tenant]]
id = "short-ttl"
policy = { dedup_ttl_secs = 1 }
[[tenant.keys]]
id = "k1"
algorithm = "hmac"
secret = "testsecret"
"#;

// ---------------------------------------------------------------------------------------------
// Dedup backends

/// Which dedup index the service uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    Redis,
    Postgres,
}

/// The dedup backend's server, if it has one.
pub enum Store {
    Embedded,
    Redis(RedisServer),
    Postgres(PgServer),
}

impl Store {
    pub async fn start(backend: Backend) -> Store {
        match backend {
            Backend::Embedded => Store::Embedded,
            Backend::Redis => Store::Redis(RedisServer::start().await.expect("start redis")),
            Backend::Postgres => Store::Postgres(PgServer::start().await.expect("start postgres")),
        }
    }

    pub fn config(&self) -> DedupConfig {
        match self {
            Store::Embedded => DedupConfig {
                backend: DedupBackend::Embedded,
                url: None,
            },
            Store::Redis(s) => DedupConfig {
                backend: DedupBackend::Redis,
                url: Some(s.url()),
            },
            Store::Postgres(s) => DedupConfig {
                backend: DedupBackend::Postgres,
                url: Some(s.url()),
            },
        }
    }

    /// Crashes the server (SIGKILL).
    pub fn kill(&mut self) {
        match self {
            Store::Embedded => panic!("the embedded store has no server to kill"),
            Store::Redis(s) => s.kill().expect("kill redis"),
            Store::Postgres(s) => s.kill().expect("kill postgres"),
        }
    }

    /// Starts the server again on the same port.
    pub async fn restart(&mut self) {
        match self {
            Store::Embedded => panic!("the embedded store has no server to restart"),
            Store::Redis(s) => s.restart().await.expect("restart redis"),
            Store::Postgres(s) => s.restart().await.expect("restart postgres"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The service under test

/// Knobs of [`Harness::start_with`].
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// fsync the outcome log (only tests about durability need it).
    pub fsync: bool,
    /// Outcome-log segment size (small values exercise rotation).
    pub segment_max_bytes: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            fsync: false,
            segment_max_bytes: LogSettings::default().segment_max_bytes,
        }
    }
}

struct Running {
    addr: SocketAddr,
    engine: Arc<Engine>,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
}

/// One svc-verify, served in-process over gRPC on 127.0.0.1:0.
pub struct Harness {
    pub store: Store,
    pub cfg: VerifyConfig,
    running: Option<Running>,
    // Last: removed after the service has stopped.
    dir: TempDir,
}

impl Harness {
    pub async fn start(backend: Backend) -> Harness {
        Harness::start_with(backend, Options::default()).await
    }

    pub async fn start_with(backend: Backend, opts: Options) -> Harness {
        let store = Store::start(backend).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let tenants = dir.path().join("tenants.toml");
        std::fs::write(&tenants, TENANTS_TOML).expect("write tenants file");
        let cfg = VerifyConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: dir.path().join("data"),
            region: "test".to_owned(),
            tenants_file: Some(tenants),
            hmac_key: None,
            max_body_bytes: VerifyConfig::default().max_body_bytes,
            dedup: store.config(),
            log: LogSettings {
                fsync: opts.fsync,
                segment_max_bytes: opts.segment_max_bytes,
            },
            ..VerifyConfig::default()
        };
        cfg.validate().expect("valid test config");
        let mut h = Harness {
            store,
            cfg,
            running: None,
            dir,
        };
        h.serve().await;
        h
    }

    async fn serve(&mut self) {
        assert!(self.running.is_none(), "already serving");
        let service = Service::open(&self.cfg).await.expect("open svc-verify");
        let engine = service.engine.clone();
        let listener = TcpListener::bind(self.cfg.listen).await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (shutdown, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(service.serve(listener, async {
            let _ = rx.await;
        }));
        self.running = Some(Running {
            addr,
            engine,
            shutdown,
            task,
        });
    }

    fn running(&self) -> &Running {
        self.running.as_ref().expect("service is running")
    }

    pub fn addr(&self) -> SocketAddr {
        self.running().addr
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.running().engine
    }

    pub fn data_dir(&self) -> &Path {
        &self.cfg.data_dir
    }

    pub fn log_dir(&self) -> PathBuf {
        self.cfg.data_dir.join("outcome-log")
    }

    /// A new client of the running service, with its bearer token.
    pub async fn client(&self) -> VerifyClient {
        client_of(self.addr(), &self.token()).await
    }

    /// The port's bearer token (generated in the data directory at first start).
    pub fn token(&self) -> String {
        token_of(&self.cfg.data_dir)
    }

    /// Graceful shutdown; returns once the service has released its data directory (clients
    /// must have ended their streams).
    pub async fn stop(&mut self) {
        let Running {
            engine,
            shutdown,
            task,
            ..
        } = self.running.take().expect("service is running");
        let _ = shutdown.send(());
        tokio::time::timeout(DEADLINE, task)
            .await
            .expect("svc-verify stops in time")
            .expect("serve task")
            .expect("serve ends cleanly");
        assert_eq!(
            Arc::strong_count(&engine),
            1,
            "a stopped service must not keep its engine (and so its stores) alive"
        );
        drop(engine);
    }

    /// Opens a stopped service again (same data directory and store, new port).
    pub async fn reopen(&mut self) {
        self.serve().await;
    }

    /// Stops and opens the service again on the same data directory and dedup store (on a
    /// new port).
    pub async fn restart(&mut self) {
        self.stop().await;
        self.serve().await;
    }

    /// Every record of the outcome log, decoded, with `seq` filled in.
    pub async fn log_records(&self) -> Vec<v1::FeedRecord> {
        let log = self.engine().log().clone();
        tokio::task::spawn_blocking(move || {
            log.read_from(1)
                .map(|r| {
                    let (seq, payload) = r.expect("read outcome log");
                    decode_feed(seq, &payload)
                })
                .collect()
        })
        .await
        .expect("log reader")
    }

    /// `GET /metrics` over HTTP/1.1 on the service port.
    pub async fn metrics(&self) -> String {
        scrape_metrics(self.addr(), &self.token()).await
    }

    /// `GET /ready`: its HTTP status (probes need no credentials).
    pub async fn ready_status(&self) -> u16 {
        http_get(self.addr(), "/ready", None).await.0
    }
}

/// A record of the outcome log, as `Subscribe` would deliver it.
pub fn decode_feed(seq: u64, payload: &[u8]) -> v1::FeedRecord {
    let mut rec = v1::FeedRecord::decode(payload).expect("feed record decodes");
    rec.seq = seq;
    if let Some(o) = rec.outcome.as_mut() {
        o.seq = seq;
    }
    rec
}

/// The DECISION records of `(tenant, pcs_id)`.
pub fn decisions<'a>(
    records: &'a [v1::FeedRecord],
    tenant: &str,
    pcs_id: &str,
) -> Vec<&'a v1::FeedRecord> {
    records
        .iter()
        .filter(|r| {
            r.kind() == v1::RecordKind::Decision && r.tenant_id == tenant && r.pcs_id == pcs_id
        })
        .collect()
}

/// Asserts that no `(tenant, pcs_id)` has two DECISION records and seqs run 1, 2, 3...
pub fn assert_log_consistent(records: &[v1::FeedRecord]) {
    let mut seen = HashMap::new();
    for (i, r) in records.iter().enumerate() {
        assert_eq!(
            r.seq,
            i as u64 + 1,
            "outcome log seqs are contiguous from 1"
        );
        if r.kind() == v1::RecordKind::Decision
            && let Some(first) = seen.insert((r.tenant_id.clone(), r.pcs_id.clone()), r.seq)
        {
            panic!(
                "pcs_id {} of tenant {} decided twice (seqs {first} and {})",
                r.pcs_id, r.tenant_id, r.seq
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// /metrics

/// `GET /metrics` over HTTP/1.1.
pub async fn scrape_metrics(addr: SocketAddr, token: &str) -> String {
    let (status, body) = http_get(addr, "/metrics", Some(token)).await;
    assert_eq!(status, 200, "GET /metrics: {body}");
    body
}

/// The bearer token a service generated in `data_dir`.
pub fn token_of(data_dir: &Path) -> String {
    flk_runtime::security::read_token(&data_dir.join(flk_runtime::security::GENERATED_TOKEN_FILE))
        .expect("the service's generated token")
}

/// A client of the svc-verify at `addr` sending `token`.
pub async fn client_of(addr: SocketAddr, token: &str) -> VerifyClient {
    VerifyClient::new(
        flk_runtime::client::with_token(&format!("http://{addr}"), token)
            .await
            .expect("connect to svc-verify"),
    )
}

/// A plain HTTP/1.1 `GET` on a fresh TCP connection (with a bearer token when given): status
/// and body.
pub async fn http_get(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect for http");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send http request");
    let mut raw = Vec::new();
    tokio::time::timeout(DEADLINE, stream.read_to_end(&mut raw))
        .await
        .expect("http answer in time")
        .expect("read http response");
    let text = String::from_utf8(raw).expect("utf-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("http response");
    assert!(
        !head.to_ascii_lowercase().contains("chunked"),
        "expected a content-length body: {head}"
    );
    let status = head
        .strip_prefix("HTTP/1.1 ")
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head}"));
    (status, body.to_owned())
}

/// Value of the sample `series` (`name{labels}` exactly as exposed), 0 when absent (a
/// labelled counter appears on first increment).
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == series).then(|| value.parse::<f64>().expect("metric value"))
        })
        .unwrap_or(0.0)
}

// ---------------------------------------------------------------------------------------------
// PCS: golden vectors and signing

/// One verification vector: a signed PCS and its expected outcome.
#[derive(Debug, Clone)]
pub struct Vector {
    pub pcs: Value,
    pub expect: Value,
}

impl Vector {
    pub fn pcs_id(&self) -> &str {
        self.pcs["pcs_id"].as_str().expect("pcs_id")
    }
}

/// The shared verification vectors (HMAC key [`SECRET`], default policy).
pub fn vectors() -> &'static [Vector] {
    static VECTORS: OnceLock<Vec<Vector>> = OnceLock::new();
    VECTORS.get_or_init(|| {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../flk-core/tests/data/verify_vectors.json"
        );
        let text = std::fs::read_to_string(path).expect("read verify vectors");
        let doc: Value = serde_json::from_str(&text).expect("vectors are json");
        assert_eq!(doc["hmac_key_utf8"], SECRET);
        doc["vectors"]
            .as_array()
            .expect("vectors array")
            .iter()
            .map(|v| Vector {
                pcs: v["pcs"].clone(),
                expect: v["expect"].clone(),
            })
            .collect()
    })
}

/// The first vector with this reason code.
pub fn vector(reason_code: &str) -> &'static Vector {
    vectors()
        .iter()
        .find(|v| v.expect["reason_code"] == reason_code)
        .unwrap_or_else(|| panic!("no vector with reason_code {reason_code}"))
}

/// Signs `pcs` in place (HMAC digest mode, [`SECRET`]).
pub fn sign(pcs: &mut Value) {
    let parsed = parse_pcs(&serde_json::to_vec(pcs).expect("json")).expect("signable pcs");
    let signer = SigningMaterial::hmac(SECRET.as_bytes(), HmacMode::Digest).expect("hmac key");
    pcs["sig"] = Value::String(signer.sign_b64(&canonicalize(&parsed)));
}

/// A copy of `pcs` with another `shard_id`, hence a new (matching) `pcs_id`, signed.
pub fn with_shard(pcs: &Value, shard_id: &str) -> Value {
    let mut p = pcs.clone();
    p["shard_id"] = Value::String(shard_id.to_owned());
    let root = p["merkle_root"].as_str().expect("merkle_root");
    let epoch = p["epoch"].as_u64().expect("epoch");
    p["pcs_id"] = Value::String(compute_pcs_id(root, epoch, shard_id));
    sign(&mut p);
    p
}

/// A fresh accepted PCS, distinct for each `name`.
pub fn fresh_accepted(name: &str) -> Value {
    with_shard(&vector("ok").pcs, name)
}

pub fn pcs_id_of(pcs: &Value) -> String {
    pcs["pcs_id"].as_str().expect("pcs_id").to_owned()
}

pub fn json_request(tenant: &str, pcs: &Value) -> v1::SubmitRequest {
    raw_request(tenant, serde_json::to_vec(pcs).expect("json"))
}

pub fn raw_request(tenant: &str, body: Vec<u8>) -> v1::SubmitRequest {
    v1::SubmitRequest {
        tenant_id: tenant.to_owned(),
        body: Some(submit_request::Body::PcsJson(body.into())),
    }
}

/// The same PCS as the structured `Pcs` message.
pub fn structured_request(tenant: &str, pcs: &Value) -> v1::SubmitRequest {
    let parsed = parse_pcs(&serde_json::to_vec(pcs).expect("json")).expect("valid pcs");
    v1::SubmitRequest {
        tenant_id: tenant.to_owned(),
        body: Some(submit_request::Body::Pcs(v1::Pcs::from(&parsed))),
    }
}

pub fn get_request(tenant: &str, pcs_id: &str) -> v1::GetOutcomeRequest {
    v1::GetOutcomeRequest {
        tenant_id: tenant.to_owned(),
        pcs_id: pcs_id.to_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// Calls and assertions

/// Submit and expect an outcome.
pub async fn submit_ok(client: &mut VerifyClient, req: v1::SubmitRequest) -> v1::Outcome {
    client
        .submit(req)
        .await
        .expect("submit succeeds")
        .into_inner()
        .outcome
        .expect("response carries an outcome")
}

/// Asserts a gRPC error with this code and `x-flk-error-code`.
pub fn assert_status<T: std::fmt::Debug>(
    result: Result<T, Status>,
    code: Code,
    error_code: &str,
) -> Status {
    let status = result.expect_err("expected an error status");
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(
        status
            .metadata()
            .get(ERROR_CODE_METADATA)
            .and_then(|v| v.to_str().ok()),
        Some(error_code),
        "{status:?}"
    );
    status
}

/// Asserts UNAVAILABLE with a positive `retry-after` hint.
pub fn assert_unavailable<T: std::fmt::Debug>(result: Result<T, Status>) -> Status {
    let status = result.expect_err("expected UNAVAILABLE");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let retry: u64 = status
        .metadata()
        .get(RETRY_AFTER_METADATA)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("UNAVAILABLE without retry-after: {status:?}"));
    assert!(retry >= 1, "{status:?}");
    status
}

/// The outcome's decision fields: everything except `duplicate`.
pub fn without_duplicate(o: &v1::Outcome) -> v1::Outcome {
    v1::Outcome {
        duplicate: false,
        ..o.clone()
    }
}

/// The decision itself, without who submitted it, when, where it sits in the log, or whether
/// it was a duplicate: what must be identical for the same PCS across tenants and wire formats.
pub fn verdict(o: &v1::Outcome) -> v1::Outcome {
    v1::Outcome {
        tenant_id: String::new(),
        received_at: String::new(),
        seq: 0,
        duplicate: false,
        ..o.clone()
    }
}

/// Asserts that `o` is the decision the vector expects.
pub fn assert_matches_vector(o: &v1::Outcome, v: &Vector) {
    let e = &v.expect;
    let ctx = format!("pcs {} ({})", v.pcs_id(), e["reason_code"]);
    assert_eq!(o.pcs_id, v.pcs_id(), "{ctx}");
    let kind = match e["outcome"].as_str().expect("outcome") {
        "accepted" => v1::OutcomeKind::Accepted,
        "escalated" => v1::OutcomeKind::Escalated,
        "rejected" => v1::OutcomeKind::Rejected,
        other => panic!("unknown outcome {other}"),
    };
    assert_eq!(o.outcome(), kind, "{ctx}");
    assert_eq!(o.accepted, e["accepted"].as_bool().unwrap(), "{ctx}");
    assert_eq!(o.escalated, e["escalated"].as_bool().unwrap(), "{ctx}");
    assert_eq!(o.reason_code, e["reason_code"].as_str().unwrap(), "{ctx}");
    assert_eq!(o.d_hat, e["recomputed_D_hat"].as_f64(), "{ctx}: D_hat");
    assert_eq!(
        o.recomputed_budget,
        e["recomputed_budget"].as_f64().unwrap(),
        "{ctx}: budget"
    );
    assert!(!o.reason.is_empty(), "{ctx}: reason");
    assert!(o.seq > 0, "{ctx}: seq");
}

/// Polls `probe` until it returns `Some`, failing after [`DEADLINE`]. Only for waiting on
/// something outside the test's control.
pub async fn poll_until<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {DEADLINE:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Opens the outcome feed at `from_seq`.
pub async fn subscribe(
    client: &mut VerifyClient,
    from_seq: u64,
) -> tonic::Streaming<v1::FeedRecord> {
    client
        .subscribe(v1::SubscribeRequest { from_seq })
        .await
        .expect("subscribe")
        .into_inner()
}

/// The next record of a feed (bounded wait: a missing record fails the test, never hangs it).
pub async fn next_feed(feed: &mut tonic::Streaming<v1::FeedRecord>) -> v1::FeedRecord {
    tokio::time::timeout(DEADLINE, feed.message())
        .await
        .expect("a feed record within the deadline")
        .expect("feed healthy")
        .expect("feed still open")
}
