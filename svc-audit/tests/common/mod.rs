//! Test harness of the svc-audit integration tests: a real svc-verify (library, embedded
//! dedup store, fsync off) and a real svc-audit subscribed to it, each served in-process on
//! 127.0.0.1:0 with a private data directory; signed PCS built from the golden vectors; a
//! plain HTTP/1.1 client; the reference log built from scratch from the feed.
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use flk_core::{HmacMode, SigningMaterial, canonicalize, compute_pcs_id, parse_pcs};
use flk_proto::v1::{self, submit_request};
use flk_runtime::client::{Peer, VerifyClient};
use flk_runtime::security::ServerSecurity;
use flk_tlog::{AuditEntry, AuditOutcome, EventEntry, EventKind, Hash, Log, LogSigner, MemStore};
use serde_json::Value;
use svc_audit::{AuditClient, AuditConfig, Ledger};
use svc_verify::config::{DedupConfig, LogSettings};
use svc_verify::{DedupBackend, Engine, VerifyConfig};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// HMAC key (digest mode) of the golden vectors.
pub const SECRET: &str = "testsecret";
pub const TENANT: &str = "default";
/// A second tenant with the same key: the same PCS is a separate decision there.
pub const TWIN: &str = "twin";
/// The admin/peer token of every service of a test (the ports run in token mode).
pub const TOKEN: &str = "audit-test-token";
/// Upper bound on waiting for the system under test.
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
"#;

/// Polls `probe` until it returns `Some`, failing after [`DEADLINE`]. Only for waiting on
/// the system under test (a feed being consumed, a service releasing its files).
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
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// svc-verify

pub struct Verify {
    pub addr: SocketAddr,
    pub engine: Arc<Engine>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    _dir: TempDir,
}

impl Verify {
    /// svc-verify on 127.0.0.1:0.
    pub async fn start() -> Verify {
        Verify::start_on(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// svc-verify on `addr` (a port freed by the test, to start it after its consumer).
    pub async fn start_on(addr: SocketAddr) -> Verify {
        let dir = tempfile::tempdir().expect("tempdir");
        let tenants = dir.path().join("tenants.toml");
        std::fs::write(&tenants, TENANTS_TOML).expect("tenants file");
        let cfg = VerifyConfig {
            listen: addr,
            data_dir: dir.path().join("verify"),
            region: "test".to_owned(),
            tenants_file: Some(tenants),
            dedup: DedupConfig {
                backend: DedupBackend::Embedded,
                url: None,
            },
            log: LogSettings {
                fsync: false,
                ..LogSettings::default()
            },
            ..VerifyConfig::default()
        };
        let mut service = svc_verify::Service::open(&cfg)
            .await
            .expect("open svc-verify");
        service.set_security(ServerSecurity::token(TOKEN));
        let engine = service.engine.clone();
        let listener = TcpListener::bind(addr).await.expect("bind svc-verify");
        let addr = listener.local_addr().expect("addr");
        let (shutdown, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(service.serve(listener, async {
            let _ = rx.await;
        }));
        Verify {
            addr,
            engine,
            shutdown: Some(shutdown),
            task: Some(task),
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn client(&self) -> VerifyClient {
        VerifyClient::new(
            flk_runtime::client::with_token(&self.url(), TOKEN)
                .await
                .expect("connect to svc-verify"),
        )
    }

    /// Records in the outcome log.
    pub fn last_seq(&self) -> u64 {
        self.engine.log().last_seq()
    }

    /// Every record of the feed, read with `Subscribe(from_seq = 1)` up to the current end.
    pub async fn feed(&self) -> Vec<v1::FeedRecord> {
        let last = self.last_seq();
        let mut client = self.client().await;
        let mut stream = client
            .subscribe(v1::SubscribeRequest { from_seq: 1 })
            .await
            .expect("subscribe")
            .into_inner();
        let mut out = Vec::new();
        while (out.len() as u64) < last {
            let rec = tokio::time::timeout(DEADLINE, stream.message())
                .await
                .expect("feed record in time")
                .expect("feed healthy")
                .expect("feed open");
            out.push(rec);
        }
        out
    }

    /// Graceful stop (consumers must have ended their streams).
    pub async fn stop(mut self) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(DEADLINE, task)
                .await
                .expect("svc-verify stops in time")
                .expect("serve task")
                .expect("serve ends cleanly");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// svc-audit

/// The audit config of a test: fast batching, fast reconnection.
pub fn audit_config(data_dir: &Path, verify_url: &str) -> AuditConfig {
    AuditConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: data_dir.to_path_buf(),
        verify_url: verify_url.to_owned(),
        origin: "test.flk/audit".to_owned(),
        checkpoint_interval_ms: 20,
        reconnect_initial_ms: 10,
        reconnect_max_ms: 100,
        ..AuditConfig::default()
    }
}

struct Running {
    addr: SocketAddr,
    ledger: Arc<Ledger>,
    registry: prometheus::Registry,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
}

/// One svc-audit served in-process on 127.0.0.1:0.
pub struct Audit {
    pub cfg: AuditConfig,
    running: Option<Running>,
    dir: TempDir,
}

impl Audit {
    pub async fn start(verify_url: &str) -> Audit {
        Audit::start_with(verify_url, |_| {}).await
    }

    pub async fn start_with(verify_url: &str, tune: impl FnOnce(&mut AuditConfig)) -> Audit {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = audit_config(&dir.path().join("audit"), verify_url);
        tune(&mut cfg);
        cfg.validate().expect("valid audit config");
        let mut a = Audit {
            cfg,
            running: None,
            dir,
        };
        a.serve().await;
        a
    }

    async fn serve(&mut self) {
        assert!(self.running.is_none(), "already serving");
        let mut service = svc_audit::Service::open(&self.cfg)
            .await
            .expect("open svc-audit");
        service.set_security(ServerSecurity::token(TOKEN));
        service.set_peer(Peer::with_token(TOKEN).expect("peer token"));
        let ledger = service.ledger().clone();
        let registry = service.registry().clone();
        let listener = TcpListener::bind(self.cfg.listen).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (shutdown, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(service.serve(listener, async {
            let _ = rx.await;
        }));
        self.running = Some(Running {
            addr,
            ledger,
            registry,
            shutdown,
            task,
        });
    }

    fn running(&self) -> &Running {
        self.running.as_ref().expect("svc-audit is running")
    }

    pub fn addr(&self) -> SocketAddr {
        self.running().addr
    }

    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.running().ledger
    }

    pub fn data_dir(&self) -> &Path {
        &self.cfg.data_dir
    }

    pub fn tlog_dir(&self) -> PathBuf {
        self.cfg.data_dir.join(svc_audit::ledger::TLOG_DIR)
    }

    pub async fn client(&self) -> AuditClient {
        AuditClient::new(
            flk_runtime::client::with_token(&format!("http://{}", self.addr()), TOKEN)
                .await
                .expect("connect to svc-audit"),
        )
    }

    /// Prometheus text of the running service.
    pub fn metrics(&self) -> String {
        svc_audit::metrics::render(&self.running().registry)
    }

    /// Waits until every record of the feed up to `last_seq` is integrated.
    pub async fn wait_caught_up(&self, last_seq: u64) {
        let ledger = self.ledger().clone();
        poll_until("svc-audit integrates the feed", || {
            let ledger = ledger.clone();
            async move { (ledger.cursor() >= last_seq).then_some(()) }
        })
        .await;
    }

    /// Graceful stop: the service releases its files.
    pub async fn stop(&mut self) {
        let Running {
            ledger,
            shutdown,
            task,
            ..
        } = self.running.take().expect("svc-audit is running");
        let _ = shutdown.send(());
        tokio::time::timeout(DEADLINE, task)
            .await
            .expect("svc-audit stops in time")
            .expect("serve task")
            .expect("serve ends cleanly");
        wait_released(ledger).await;
    }

    /// Abrupt stop: the serving task is dropped mid-flight, as a crash would end it. Returns
    /// once the tasks it ran have let go of the data directory.
    pub async fn kill(&mut self) {
        let Running { ledger, task, .. } = self.running.take().expect("svc-audit is running");
        task.abort();
        let _ = task.await;
        wait_released(ledger).await;
    }

    /// Opens the same data directory again (on a new port).
    pub async fn reopen(&mut self) {
        self.serve().await;
    }
}

/// Waits until nothing but the test holds the ledger (a blocking append that was running
/// when the service stopped finishes first), then drops it: its files are free.
async fn wait_released(ledger: Arc<Ledger>) {
    poll_until("the stopped svc-audit releases its ledger", || {
        let n = Arc::strong_count(&ledger);
        async move { (n == 1).then_some(()) }
    })
    .await;
    drop(ledger);
}

// ---------------------------------------------------------------------------------------------
// HTTP

/// A plain HTTP/1.1 `GET` with extra headers: status and body.
pub async fn http_get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect for http");
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
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
    let status = head
        .strip_prefix("HTTP/1.1 ")
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head}"));
    (status, body.to_owned())
}

/// `GET` with the test token, expecting a JSON body.
pub async fn get_json(addr: SocketAddr, path: &str, tenant: Option<&str>) -> (u16, Value) {
    let auth = format!("Bearer {TOKEN}");
    let mut headers: Vec<(&str, &str)> = vec![("Authorization", &auth)];
    headers.extend(tenant.map(|t| ("X-Tenant-Id", t)));
    let (status, body) = http_get(addr, path, &headers).await;
    let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
    (status, json)
}

/// The sorted keys of a JSON object.
pub fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .map(String::as_str)
        .collect();
    k.sort_unstable();
    k
}

/// Value of the sample `series` (exactly as exposed), 0 when absent.
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
// PCS

/// The shared verification vectors' PCS (HMAC key [`SECRET`]).
pub fn vectors() -> &'static [Value] {
    static VECTORS: OnceLock<Vec<Value>> = OnceLock::new();
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
            .expect("vectors")
            .iter()
            .map(|v| v["pcs"].clone())
            .collect()
    })
}

/// The first vector whose expected reason code is `reason`.
pub fn vector(reason: &str) -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../flk-core/tests/data/verify_vectors.json"
    );
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("vectors"))
        .expect("vectors are json");
    doc["vectors"]
        .as_array()
        .expect("vectors")
        .iter()
        .find(|v| v["expect"]["reason_code"] == reason)
        .unwrap_or_else(|| panic!("no vector {reason}"))["pcs"]
        .clone()
}

/// Signs `pcs` in place (HMAC digest mode, [`SECRET`]).
pub fn sign(pcs: &mut Value) {
    let parsed = parse_pcs(&serde_json::to_vec(pcs).expect("json")).expect("signable pcs");
    let signer = SigningMaterial::hmac(SECRET.as_bytes(), HmacMode::Digest).expect("hmac key");
    pcs["sig"] = Value::String(signer.sign_b64(&canonicalize(&parsed)));
}

/// A copy of `pcs` with another `shard_id` (so a new, matching `pcs_id`), signed.
pub fn with_shard(pcs: &Value, shard_id: &str) -> Value {
    let mut p = pcs.clone();
    p["shard_id"] = Value::String(shard_id.to_owned());
    let root = p["merkle_root"].as_str().expect("merkle_root");
    let epoch = p["epoch"].as_u64().expect("epoch");
    p["pcs_id"] = Value::String(compute_pcs_id(root, epoch, shard_id));
    sign(&mut p);
    p
}

/// `n` fresh PCS cycling through accepted, escalated and rejected vectors.
pub fn mixed(prefix: &str, n: usize) -> Vec<Value> {
    let bases = [
        vector("ok"),
        vector("budget_deviation"),
        vector("r_out_of_bounds"),
        vector("regime_mismatch"),
        vector("d_hat_out_of_tolerance"),
    ];
    (0..n)
        .map(|i| with_shard(&bases[i % bases.len()], &format!("{prefix}-{i}")))
        .collect()
}

pub fn pcs_id_of(pcs: &Value) -> String {
    pcs["pcs_id"].as_str().expect("pcs_id").to_owned()
}

pub fn json_request(tenant: &str, pcs: &Value) -> v1::SubmitRequest {
    v1::SubmitRequest {
        tenant_id: tenant.to_owned(),
        body: Some(submit_request::Body::PcsJson(
            serde_json::to_vec(pcs).expect("json").into(),
        )),
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

/// Submits and returns the outcome (any decision).
pub async fn submit(client: &mut VerifyClient, req: v1::SubmitRequest) -> v1::Outcome {
    client
        .submit(req)
        .await
        .expect("submit succeeds")
        .into_inner()
        .outcome
        .expect("an outcome")
}

// ---------------------------------------------------------------------------------------------
// The reference log

/// The decision records of a feed (first per key: svc-verify never records a second one).
pub fn decisions(feed: &[v1::FeedRecord]) -> Vec<&v1::FeedRecord> {
    let mut seen = HashSet::new();
    feed.iter()
        .filter(|r| r.kind() == v1::RecordKind::Decision)
        .filter(|r| seen.insert((r.tenant_id.clone(), r.pcs_id.clone())))
        .collect()
}

/// The audit entry of a decision record, written out here from the record's fields (not with
/// svc-audit's mapping), as the crate docs tabulate it.
pub fn expected_entry(r: &v1::FeedRecord) -> AuditEntry {
    let o = r.outcome.as_ref().expect("a decision has an outcome");
    let pcs = if r.request_json.is_empty() {
        flk_core::Pcs::try_from(r.request_pcs.clone().expect("structured request"))
            .expect("valid request")
    } else {
        parse_pcs(&r.request_json).expect("valid request")
    };
    let hex32 =
        |s: &str| -> [u8; 32] { hex::decode(s).expect("hex").try_into().expect("32 bytes") };
    AuditEntry {
        tenant_id: r.tenant_id.clone(),
        pcs_id: hex32(&r.pcs_id),
        signed_fields: canonicalize(&pcs).payload,
        outcome: match o.outcome() {
            v1::OutcomeKind::Accepted => AuditOutcome::Accepted,
            v1::OutcomeKind::Escalated => AuditOutcome::Escalated,
            v1::OutcomeKind::Rejected => AuditOutcome::Rejected,
            v1::OutcomeKind::Unspecified => panic!("decision without an outcome kind"),
        },
        reason_code: o.reason_code.clone(),
        policy_version: o.policy_version.clone(),
        policy_hash: hex32(&o.policy_hash),
        region: r.region.clone(),
        decided_at_unix_ms: u64::try_from(r.decided_at_unix_ms).expect("time"),
        request_digest: r.canonical_digest.as_slice().try_into().expect("digest"),
    }
}

/// The `ConflictingDuplicate` log event of a conflict record, written out here from the
/// record's fields in the body format `svc_audit::mapping` documents.
pub fn expected_conflict(r: &v1::FeedRecord) -> EventEntry {
    let first = r
        .outcome
        .as_ref()
        .expect("a conflict carries the first outcome");
    let first_outcome = match first.outcome() {
        v1::OutcomeKind::Accepted => "accepted",
        v1::OutcomeKind::Escalated => "escalated",
        v1::OutcomeKind::Rejected => "rejected",
        v1::OutcomeKind::Unspecified => "unknown",
    };
    let q = |s: &str| Value::from(s).to_string();
    let body = format!(
        "{{\"tenant_id\":{},\"pcs_id\":{},\"request_digest\":{},\"region\":{},\"at_unix_ms\":{},\"first_outcome\":{},\"first_reason_code\":{},\"policy_version\":{}}}",
        q(&r.tenant_id),
        q(&r.pcs_id),
        q(&hex::encode(&r.canonical_digest)),
        q(&r.region),
        r.decided_at_unix_ms,
        q(first_outcome),
        q(&first.reason_code),
        q(&first.policy_version),
    );
    EventEntry {
        kind: EventKind::ConflictingDuplicate,
        recorded_at_unix_ms: u64::try_from(r.decided_at_unix_ms).expect("time"),
        body,
    }
}

/// The entries the audit log must hold for a feed, in feed order: one per decision (the
/// first per key) and one event per distinct conflicting content of a decided key.
pub fn log_entries(feed: &[v1::FeedRecord]) -> Vec<Vec<u8>> {
    let first: HashSet<u64> = decisions(feed).iter().map(|r| r.seq).collect();
    let mut conflicts = HashSet::new();
    feed.iter()
        .filter_map(|r| match r.kind() {
            v1::RecordKind::Decision if first.contains(&r.seq) => {
                Some(expected_entry(r).encode().expect("entry encodes"))
            }
            v1::RecordKind::ConflictingDuplicate
                if conflicts.insert((
                    r.tenant_id.clone(),
                    r.pcs_id.clone(),
                    r.canonical_digest.clone(),
                )) =>
            {
                Some(expected_conflict(r).encode().expect("event encodes"))
            }
            _ => None,
        })
        .collect()
}

/// The log built from scratch with flk-tlog from the feed ([`log_entries`]): its size and
/// root.
pub fn reference_root(feed: &[v1::FeedRecord]) -> (u64, Hash) {
    let entries = log_entries(feed);
    let signer = LogSigner::generate("reference/log").expect("key");
    let mut log = Log::open(MemStore::new(), signer, "reference/log").expect("mem log");
    log.append_batch(&entries).expect("append");
    (log.size(), log.checkpoint().root_hash)
}
