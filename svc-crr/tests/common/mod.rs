//! Regions for the replication tests: each a real svc-verify (embedded stores, its own data
//! directory, port 0) and a real svc-crr on a listener bound before the configs are written
//! (so every region can name its peers' addresses), stopped and started again over the same
//! directories and ports.

#![allow(dead_code)] // each test binary uses a different subset

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use flk_core::{HmacMode, SigningMaterial, canonicalize, compute_pcs_id, parse_pcs};
use flk_runtime::feed::FeedWiring;
use flk_runtime::security::ServerSecurity;
use serde_json::Value;
use svc_crr::config::{CrrConfig, PeerRegion, ReconcileMode};
use svc_crr::policy::{Mode, PolicySpec};
use svc_verify::config::{DedupConfig, LogSettings};
use svc_verify::{DedupBackend, VerifyConfig};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const SECRET: &str = "testsecret";
pub const VERIFY_TOKEN: &str = "verify-token";
pub const PEER_TOKEN: &str = "shared-peer-token";
pub const TENANTS: [&str; 4] = ["sel", "mw", "full", "solo"];

/// The policies every region runs (the configuration is shared, as the tenants file is).
pub fn policies(regions: &[&str]) -> Vec<PolicySpec> {
    let spec = |tenant: &str, mode: Mode, targets: &[&str]| PolicySpec {
        tenant: Some(tenant.to_owned()),
        include: vec![],
        exclude: vec![],
        selector: Default::default(),
        mode,
        targets: targets.iter().map(|s| (*s).to_owned()).collect(),
        priority: 5,
    };
    let mut v = vec![spec("full", Mode::Full, &[]), spec("solo", Mode::None, &[])];
    if regions.len() >= 2 {
        v.push(spec("sel", Mode::Selective, &[regions[1]]));
        v.push(spec("mw", Mode::MultiWay, &regions[..2]));
    }
    v
}

struct Running {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = self.task.await;
    }
}

/// One region.
pub struct Region {
    pub name: String,
    pub dir: PathBuf,
    pub crr_addr: SocketAddr,
    pub verify_addr: SocketAddr,
    engine: Option<Arc<svc_verify::Engine>>,
    core: Option<Arc<svc_crr::Core>>,
    pub cfg: CrrConfig,
    verify: Option<Running>,
    crr: Option<Running>,
}

/// A listener bound now for a region's svc-crr (port 0), so its address can go in the
/// peers' configurations before it serves.
pub async fn bind() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

fn tenants_file(dir: &Path) -> PathBuf {
    let mut text = String::new();
    for t in TENANTS {
        text.push_str(&format!(
            "[[tenant]]\nid = \"{t}\"\n[[tenant.keys]]\nid = \"k1\"\nalgorithm = \"hmac\"\nsecret = \"{SECRET}\"\n\n"
        ));
    }
    let path = dir.join("tenants.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The svc-crr configuration of a region.
pub fn crr_config(
    name: &str,
    dir: &Path,
    listener_addr: SocketAddr,
    peers: &[(&str, SocketAddr)],
    regions: &[&str],
    mode: ReconcileMode,
) -> CrrConfig {
    let token_file = dir.join("verify.token");
    std::fs::write(&token_file, VERIFY_TOKEN).unwrap();
    CrrConfig {
        region: name.to_owned(),
        listen: listener_addr,
        data_dir: dir.join("crr"),
        reconcile_mode: mode,
        anti_entropy_interval: "200ms".to_owned(),
        peer_token: Some(PEER_TOKEN.to_owned()),
        batch_interval_ms: 5,
        reconnect_initial_ms: 20,
        reconnect_max_ms: 200,
        peers: peers
            .iter()
            .map(|(r, a)| PeerRegion {
                region: (*r).to_owned(),
                url: format!("http://{a}"),
            })
            .collect(),
        policies: policies(regions),
        peer: flk_runtime::security::PeerSettings {
            token_file: Some(token_file),
            ..Default::default()
        },
        ..CrrConfig::default()
    }
}

impl Region {
    /// Starts svc-verify and svc-crr over `dir` (svc-crr on `listener`).
    pub async fn start(name: &str, dir: &Path, listener: TcpListener, cfg: CrrConfig) -> Region {
        std::fs::create_dir_all(dir).unwrap();
        let (verify, verify_addr, engine) = start_verify(name, dir, None).await;
        let mut cfg = cfg;
        cfg.verify_url = format!("http://{verify_addr}");
        let crr_addr = listener.local_addr().unwrap();
        let (crr, core) = start_crr(&cfg, listener).await;
        Region {
            name: name.to_owned(),
            dir: dir.to_owned(),
            crr_addr,
            verify_addr,
            engine: Some(engine),
            core: Some(core),
            cfg,
            verify: Some(verify),
            crr: Some(crr),
        }
    }

    /// This region's svc-verify engine (while it runs).
    pub fn engine(&self) -> &Arc<svc_verify::Engine> {
        self.engine.as_ref().expect("the region is running")
    }

    /// This region's svc-crr (while it runs).
    pub fn core(&self) -> &Arc<svc_crr::Core> {
        self.core.as_ref().expect("the region is running")
    }

    /// Stops both services (graceful: what was acknowledged is durable either way) and lets
    /// go of their stores.
    pub async fn stop(&mut self) {
        self.core = None;
        self.engine = None;
        if let Some(c) = self.crr.take() {
            c.stop().await;
        }
        if let Some(v) = self.verify.take() {
            v.stop().await;
        }
    }

    /// Starts both again over the same directories and ports.
    pub async fn restart(&mut self) {
        self.stop().await;
        let (verify, verify_addr, engine) =
            start_verify(&self.name, &self.dir, Some(self.verify_addr)).await;
        self.verify_addr = verify_addr;
        self.engine = Some(engine);
        self.cfg.verify_url = format!("http://{verify_addr}");
        let listener = rebind(self.crr_addr).await;
        let (crr, core) = start_crr(&self.cfg, listener).await;
        self.core = Some(core);
        self.verify = Some(verify);
        self.crr = Some(crr);
    }

    /// Submits `pcs` as `tenant` here; the outcome's kind.
    pub async fn submit(&self, tenant: &str, pcs: &Value) -> String {
        let body = svc_verify::Body::Json(serde_json::to_vec(pcs).unwrap().into());
        let rec = self
            .engine()
            .submit(tenant, body)
            .await
            .unwrap_or_else(|e| panic!("submit to {}: {e:?}", self.name));
        rec.outcome.as_str().to_owned()
    }

    /// The stored outcome body of a key here, if any.
    pub async fn outcome(&self, tenant: &str, pcs_id: &str) -> Option<Value> {
        match self.engine().get_outcome(tenant, pcs_id).await {
            Ok(r) => Some(r.to_json_body()),
            Err(e) if e.kind == flk_proto::ErrorKind::NotFound => None,
            Err(e) => panic!("get_outcome at {}: {e:?}", self.name),
        }
    }

    /// Decision records of a key in this region's outcome log (a replicated copy counts).
    pub fn decisions_of(&self, tenant: &str, pcs_id: &str) -> usize {
        use prost::Message as _;
        self.engine()
            .log()
            .read_from(1)
            .filter_map(Result::ok)
            .filter_map(|(_, b)| flk_proto::v1::FeedRecord::decode(b.as_ref()).ok())
            .filter(|r| {
                r.kind == flk_proto::v1::RecordKind::Decision as i32
                    && r.tenant_id == tenant
                    && r.pcs_id == pcs_id
            })
            .count()
    }

    /// A client of this region's svc-crr REST routes with the peer token.
    pub fn rest(&self) -> (reqwest::Client, String) {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {PEER_TOKEN}").parse().unwrap(),
        );
        (
            reqwest::Client::builder()
                .default_headers(headers)
                .build()
                .unwrap(),
            format!("http://{}", self.crr_addr),
        )
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let (c, base) = self.rest();
        let r = c.get(format!("{base}{path}")).send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn post_json(&self, path: &str, body: Value) -> (u16, Value) {
        let (c, base) = self.rest();
        let r = c
            .post(format!("{base}{path}"))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        for r in [self.crr.take(), self.verify.take()].into_iter().flatten() {
            r.task.abort();
        }
    }
}

async fn rebind(addr: SocketAddr) -> TcpListener {
    // The port was ours a moment ago; the OS may hold it briefly after the close.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match TcpListener::bind(addr).await {
            Ok(l) => return l,
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => panic!("cannot bind {addr} again: {e}"),
        }
    }
}

async fn start_verify(
    name: &str,
    dir: &Path,
    addr: Option<SocketAddr>,
) -> (Running, SocketAddr, Arc<svc_verify::Engine>) {
    let cfg = VerifyConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: dir.join("verify"),
        region: name.to_owned(),
        tenants_file: Some(tenants_file(dir)),
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
    service.set_security(ServerSecurity::token(VERIFY_TOKEN));
    let engine = service.engine.clone();
    let listener = match addr {
        Some(a) => rebind(a).await,
        None => TcpListener::bind(cfg.listen).await.unwrap(),
    };
    let addr = listener.local_addr().unwrap();
    let (stop, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(service.serve(listener, async {
        let _ = rx.await;
    }));
    (
        Running {
            stop: Some(stop),
            task,
        },
        addr,
        engine,
    )
}

async fn start_crr(cfg: &CrrConfig, listener: TcpListener) -> (Running, Arc<svc_crr::Core>) {
    let service = svc_crr::Service::open(cfg, FeedWiring::default(), |_| None)
        .await
        .expect("open svc-crr");
    let core = service.core().clone();
    let (stop, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(service.serve(listener, async {
        let _ = rx.await;
    }));
    (
        Running {
            stop: Some(stop),
            task,
        },
        core,
    )
}

/// The golden vector the default policy accepts.
pub fn accepted() -> Value {
    let text = include_str!("../../../flk-core/tests/data/verify_vectors.json");
    let doc: Value = serde_json::from_str(text).unwrap();
    doc["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["expect"]["outcome"] == "accepted")
        .unwrap()["pcs"]
        .clone()
}

/// A distinct signed PCS (shard `shard`: a new pcs_id), with `budget` changed when given (same
/// pcs_id, other signed content: a conflicting version).
pub fn pcs(shard: &str, budget: Option<f64>) -> Value {
    let mut p = accepted();
    p["shard_id"] = Value::String(shard.to_owned());
    let root = p["merkle_root"].as_str().unwrap().to_owned();
    let epoch = p["epoch"].as_u64().unwrap();
    p["pcs_id"] = Value::String(compute_pcs_id(&root, epoch, shard));
    if let Some(b) = budget {
        p["budget"] = serde_json::json!(b);
    }
    sign(&mut p);
    p
}

pub fn sign(p: &mut Value) {
    let parsed = parse_pcs(&serde_json::to_vec(&p).unwrap()).unwrap();
    let signer = SigningMaterial::hmac(SECRET.as_bytes(), HmacMode::Digest).unwrap();
    p["sig"] = Value::String(signer.sign_b64(&canonicalize(&parsed)));
}

pub fn id(p: &Value) -> String {
    p["pcs_id"].as_str().unwrap().to_owned()
}

/// Polls `cond` every few milliseconds until it holds or `secs` pass (then panics with
/// `what`): waiting for replication, never a fixed sleep.
pub async fn eventually<F, Fut>(secs: u64, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if cond().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Two regions, eu and us, peers of each other; `tweak` adjusts each one's config.
pub async fn two_with(
    dir: &Path,
    mode: ReconcileMode,
    tweak: impl Fn(&mut CrrConfig),
) -> (Region, Region) {
    let names = ["eu", "us"];
    let (la, lb) = (bind().await, bind().await);
    let (a, b) = (la.local_addr().unwrap(), lb.local_addr().unwrap());
    let (da, db) = (dir.join("eu"), dir.join("us"));
    std::fs::create_dir_all(&da).unwrap();
    std::fs::create_dir_all(&db).unwrap();
    let mut ca = crr_config("eu", &da, a, &[("us", b)], &names, mode);
    let mut cb = crr_config("us", &db, b, &[("eu", a)], &names, mode);
    tweak(&mut ca);
    tweak(&mut cb);
    let eu = Region::start("eu", &da, la, ca).await;
    let us = Region::start("us", &db, lb, cb).await;
    (eu, us)
}
