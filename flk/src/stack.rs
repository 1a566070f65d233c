//! The whole system in one process, as `flk up` and `flk demo` run it: svc-verify, svc-audit,
//! svc-kpi and svc-tiering (each consuming svc-verify's outcome feed; svc-kpi also reads
//! svc-audit's checkpoints for audit coverage) on internal ports and the gateway in front of
//! them, over one data directory. The gateway reads stored records through svc-tiering. The gateway calls svc-verify in process (its gRPC service, without HTTP/2
//! or a socket); the feed consumers read svc-verify's in-process fan-out of the outcome feed
//! (`flk_runtime::feed`; `consume_feed = false` in a consumer's section leaves it out). The gateway's
//! `/metrics` also exports the services' registries, so one scrape target sees every `flk_`
//! metric.
//!
//! **Regions.** svc-crr runs too (`[crr]`): it keeps the Merkle tree of the region's decisions
//! and, with `[[crr.peers]]`, ships them to other regions' stacks and applies theirs; its
//! replication port keeps its own `[crr.tls]` or peer token, never the internal PKI, since
//! other regions dial it. `[crr] region` is the stack's region (svc-verify records it).
//!
//! **Configuration.** One TOML file with a section per service (`[verify]`, `[audit]`, `[kpi]`,
//! `[tiering]`, `[gateway]`), each in the format of that service's own config file, and an optional
//! top-level `data_dir`; every service's environment variables override its section as they
//! would override its own file ([`StackConfig::load`]). The stack fills in what it owns: each
//! service's `data_dir` (`<data_dir>/verify`, `audit`, `kpi`, `tiering`, unless the section sets one),
//! internal listen addresses (`127.0.0.1:0` unless set), and the wiring between the services
//! (feed and audit URLs), which it always replaces with the addresses it bound.
//!
//! **Security by default.** Internal ports run mTLS with the stack's private PKI
//! ([`crate::pki`], `<data_dir>/tls/`) unless a section configures its own `[tls]` / `[peer]`;
//! the admin token (`<data_dir>/admin.token`) opens the admin RPCs on the gateway; without a
//! tenants file the `default` tenant gets an API token in `<data_dir>/default.token`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use flk_runtime::security::{
    GENERATED_TOKEN_FILE, PeerSettings, TlsSettings, TokenHash, ensure_token_file,
};
use gateway::config::GatewaySettings;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use toml::{Table, Value};

use crate::pki::MeshPki;

/// The sections of a stack file.
const SECTIONS: [&str; 6] = ["verify", "audit", "kpi", "tiering", "crr", "gateway"];

/// The sections whose service consumes the outcome feed (`consume_feed = false` turns one off).
const FEED_CONSUMERS: [&str; 4] = ["audit", "kpi", "tiering", "crr"];

/// The `default` tenant's API token, when the stack made one.
pub const DEFAULT_TOKEN_FILE: &str = "default.token";

/// The services' data directories inside the stack's (unless a section sets its own).
pub const VERIFY_DIR: &str = "verify";
pub const AUDIT_DIR: &str = "audit";
pub const KPI_DIR: &str = "kpi";
pub const TIERING_DIR: &str = "tiering";
pub const CRR_DIR: &str = "crr";

/// What to start: each service's configuration, as loaded.
#[derive(Debug, Clone)]
pub struct StackConfig {
    /// The stack's data directory (`tls/`, the tokens, and the services' defaults).
    pub data_dir: PathBuf,
    pub verify: svc_verify::VerifyConfig,
    pub audit: svc_audit::AuditConfig,
    pub kpi: svc_kpi::KpiConfig,
    pub tiering: svc_tiering::TieringConfig,
    /// Cross-region replication; its `region` is the stack's (svc-verify records it in every
    /// decision).
    pub crr: svc_crr::CrrConfig,
    pub gateway: GatewaySettings,
    /// Consumer sections with `consume_feed = false`: the service runs but reads no feed
    /// (measuring what each consumer costs, `flk bench --stack-metrics`).
    pub feed_off: Vec<String>,
    /// Consumer sections with `consume_feed = "grpc"`: the consumer subscribes over svc-verify's
    /// port as out of process, instead of the in-process fan-out (for comparison).
    pub feed_grpc: Vec<String>,
}

impl StackConfig {
    /// Reads the stack file (if any) and applies the environment (`vars`; `flk up`'s flags are
    /// passed as the variables they stand for, so they win). `data_dir` is the `--data-dir`
    /// flag, which wins over the file's; without either it is `flk-data`.
    pub fn load(
        file: Option<&Path>,
        data_dir: Option<&Path>,
        vars: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<StackConfig> {
        let (doc, origin) = read_doc(file)?;
        StackConfig::from_doc(doc, &origin, data_dir, vars)
    }

    /// [`StackConfig::load`] of a parsed stack document; `origin` names it in errors.
    pub fn from_doc(
        mut doc: Table,
        origin: &str,
        data_dir: Option<&Path>,
        vars: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<StackConfig> {
        let file_dir = match doc.remove("data_dir") {
            Some(Value::String(s)) => Some(PathBuf::from(s)),
            Some(_) => anyhow::bail!("invalid config {origin}: `data_dir` must be a string"),
            None => None,
        };
        if let Some(key) = doc.keys().find(|k| !SECTIONS.contains(&k.as_str())) {
            anyhow::bail!(
                "invalid config {origin}: unknown key `{key}` (expected `data_dir` or the sections {})",
                SECTIONS.map(|s| format!("[{s}]")).join(", ")
            );
        }
        let data_dir = data_dir
            .map(Path::to_path_buf)
            .or(file_dir)
            .unwrap_or_else(|| PathBuf::from("flk-data"));
        let (mut feed_off, mut feed_grpc) = (Vec::new(), Vec::new());
        let mut section = |name: &str, dir: Option<&str>| -> anyhow::Result<Table> {
            let mut t = match doc.remove(name) {
                Some(Value::Table(t)) => t,
                Some(_) => anyhow::bail!("invalid config {origin}: `{name}` must be a section"),
                None => Table::new(),
            };
            match t.remove("consume_feed") {
                None | Some(Value::Boolean(true)) => {}
                Some(Value::Boolean(false)) if FEED_CONSUMERS.contains(&name) => {
                    feed_off.push(name.to_owned());
                }
                Some(Value::String(m)) if m == "grpc" && FEED_CONSUMERS.contains(&name) => {
                    feed_grpc.push(name.to_owned());
                }
                Some(_) => anyhow::bail!(
                    "invalid config {origin}: `consume_feed` is true, false or \"grpc\", in [{}]",
                    FEED_CONSUMERS.join("], [")
                ),
            }
            if let Some(dir) = dir {
                t.entry("data_dir")
                    .or_insert_with(|| Value::String(data_dir.join(dir).display().to_string()));
                t.entry("listen")
                    .or_insert_with(|| Value::String("127.0.0.1:0".into()));
            }
            Ok(t)
        };
        let (v, a, k, t, c, g) = (
            section("verify", Some(VERIFY_DIR))?,
            section("audit", Some(AUDIT_DIR))?,
            section("kpi", Some(KPI_DIR))?,
            section("tiering", Some(TIERING_DIR))?,
            section("crr", Some(CRR_DIR))?,
            section("gateway", None)?,
        );
        let crr_region_set = c.contains_key("region");
        let at = |s: &str| format!("{origin} [{s}]");
        // One storage price table for the stack: svc-kpi's, unless [tiering.prices] is set.
        let tiering_prices_set = t.contains_key("prices");
        let kpi = svc_kpi::KpiConfig::from_table(k, &at("kpi"), &vars)?;
        let mut tiering = svc_tiering::TieringConfig::from_table(t, &at("tiering"), &vars)?;
        if !tiering_prices_set {
            tiering.prices = kpi.prices.storage();
        }
        let mut verify: svc_verify::VerifyConfig =
            flk_runtime::config::from_table(v, &at("verify"), &vars)?;
        let mut crr: svc_crr::CrrConfig = flk_runtime::config::from_table(c, &at("crr"), &vars)?;
        // One region per stack: [crr] region names it (and svc-verify records it), else
        // [verify] region does.
        if crr_region_set || vars(svc_crr::config::env::REGION).is_some() {
            verify.region.clone_from(&crr.region);
        } else if svc_crr::config::valid_region(&verify.region) {
            crr.region.clone_from(&verify.region);
        }
        Ok(StackConfig {
            verify,
            crr,
            audit: svc_audit::AuditConfig::from_table(a, &at("audit"), &vars)?,
            kpi,
            tiering,
            gateway: GatewaySettings::from_table(g, &at("gateway"), &vars)?,
            data_dir,
            feed_off,
            feed_grpc,
        })
    }

    /// The effective configuration as one stack file, secrets redacted.
    pub fn redacted(&self) -> String {
        format!(
            "data_dir = {:?}\n\n[verify]\n{}\n[audit]\n{}\n[kpi]\n{}\n[tiering]\n{}\n[crr]\n{}\n[gateway]\n{}",
            self.data_dir.display().to_string(),
            nest(&self.verify.redacted(), "verify"),
            nest(&self.audit.redacted(), "audit"),
            nest(&self.kpi.redacted(), "kpi"),
            nest(&self.tiering.redacted(), "tiering"),
            nest(&flk_runtime::config::to_toml(&self.crr), "crr"),
            nest(&self.gateway.redacted(), "gateway"),
        )
    }
}

/// A TOML file as a table (an empty one without a file) and how errors name it.
pub fn read_doc(file: Option<&Path>) -> anyhow::Result<(Table, String)> {
    Ok(match file {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read config file {}", p.display()))?;
            let doc: Table = text
                .parse()
                .with_context(|| format!("invalid config file {}", p.display()))?;
            (doc, format!("file {}", p.display()))
        }
        None => (Table::new(), "(defaults)".to_owned()),
    })
}

/// A service's TOML printed under `[section]`: its own tables become `[section.x]`.
fn nest(toml_text: &str, section: &str) -> String {
    toml_text
        .lines()
        .map(|l| match l.strip_prefix('[') {
            Some(rest) if rest.starts_with('[') => format!("[[{section}.{}", &rest[1..]),
            Some(rest) => format!("[{section}.{rest}"),
            None => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// A running stack.
pub struct Stack {
    /// The gateway's address (REST and gRPC).
    pub addr: SocketAddr,
    /// svc-verify's internal gRPC address.
    pub verify_addr: SocketAddr,
    /// svc-audit's internal address (gRPC `AuditService`, REST `/v1/audit/*`).
    pub audit_addr: SocketAddr,
    /// svc-kpi's internal address (gRPC `KpiService`, REST `/v1/feedback`, `/v1/kpi/report`).
    pub kpi_addr: SocketAddr,
    /// svc-tiering's internal address (gRPC `TieringService`, REST `/v1/tiering/*`).
    pub tiering_addr: SocketAddr,
    /// svc-crr's replication port (gRPC `ReplicationService`, REST `/v1/crr/*`), which peer
    /// regions dial.
    pub crr_addr: SocketAddr,
    /// The file holding svc-crr's port token when the stack generated it (no peer token and
    /// no mTLS configured).
    pub crr_token: Option<PathBuf>,
    /// svc-audit's data directory.
    pub audit_dir: PathBuf,
    /// The audit log's verifier key (`<name>+<key id>+<base64 key>`).
    pub audit_verifier_key: String,
    /// Ids of the configured tenants.
    pub tenants: Vec<String>,
    /// Where the `default` tenant's secret was written, when it was generated.
    pub generated_secret: Option<PathBuf>,
    /// The admin token's file.
    pub admin_token: Option<PathBuf>,
    /// The `default` tenant's API token file, when the stack made one.
    pub default_token: Option<PathBuf>,
    /// The mesh PKI, when the internal ports run the stack's mTLS.
    pub pki: Option<MeshPki>,
    running: Running,
}

/// The services started so far, in start order, and the signal that stops them all.
struct Running {
    stop: watch::Sender<bool>,
    rx: watch::Receiver<bool>,
    tasks: Vec<JoinHandle<anyhow::Result<()>>>,
}

impl Running {
    fn new() -> Running {
        let (stop, rx) = watch::channel(false);
        Running {
            stop,
            rx,
            tasks: Vec::new(),
        }
    }

    /// Resolves when the stack stops: a service's shutdown signal.
    fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.rx.clone();
        async move {
            let _ = rx.changed().await;
        }
    }

    fn spawn(&mut self, task: impl Future<Output = anyhow::Result<()>> + Send + 'static) {
        self.tasks.push(tokio::spawn(task));
    }

    /// Stops every service, the last started first, and reports the first error.
    async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        let mut first = Ok(());
        for task in self.tasks.into_iter().rev() {
            let result = task.await.map_err(anyhow::Error::from).and_then(|r| r);
            if first.is_ok() {
                first = result;
            }
        }
        first
    }

    /// A later service failed to start: stops those already running and returns `e`.
    async fn abandon(self, e: anyhow::Error) -> anyhow::Error {
        let _ = self.stop().await;
        e
    }
}

/// Where `flk up` keeps the configuration it runs with (every section as loaded, secrets
/// redacted), for readers of the data directory such as `flk report compliance`.
pub const EFFECTIVE_CONFIG_FILE: &str = "effective-config.toml";

/// Writes [`StackConfig::redacted`] to `<data_dir>/effective-config.toml`, atomically (a
/// temporary file, fsync'd, then renamed over the old one).
fn write_effective_config(cfg: &StackConfig) -> anyhow::Result<()> {
    use std::io::Write as _;
    let path = cfg.data_dir.join(EFFECTIVE_CONFIG_FILE);
    let tmp = path.with_extension("toml.tmp");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(cfg.redacted().as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    };
    write().with_context(|| format!("cannot write {}", path.display()))
}

/// The stack's mTLS for a service that configures none of its own.
fn mesh_tls(pki: &MeshPki, tls: &mut TlsSettings, peer: Option<&mut PeerSettings>) {
    if *tls == TlsSettings::default() {
        *tls = pki.server();
    }
    if let Some(peer) = peer
        && *peer == PeerSettings::default()
    {
        *peer = pki.client();
    }
}

impl Stack {
    /// Opens the stores, binds the listeners and starts serving.
    pub async fn start(cfg: &StackConfig) -> anyhow::Result<Stack> {
        let env = |k: &str| std::env::var(k).ok();
        std::fs::create_dir_all(&cfg.data_dir)
            .with_context(|| format!("cannot create {}", cfg.data_dir.display()))?;
        write_effective_config(cfg)?;
        let (mut verify_cfg, mut audit_cfg, mut kpi_cfg, mut tiering_cfg, mut gw_settings) = (
            cfg.verify.clone(),
            cfg.audit.clone(),
            cfg.kpi.clone(),
            cfg.tiering.clone(),
            cfg.gateway.clone(),
        );
        let pki = MeshPki::ensure(&cfg.data_dir.join("tls"))?;
        mesh_tls(&pki, &mut verify_cfg.tls, None);
        mesh_tls(&pki, &mut audit_cfg.tls, Some(&mut audit_cfg.peer));
        mesh_tls(&pki, &mut kpi_cfg.tls, Some(&mut kpi_cfg.peer));
        mesh_tls(&pki, &mut tiering_cfg.tls, Some(&mut tiering_cfg.peer));
        if gw_settings.peer == PeerSettings::default() {
            gw_settings.peer = pki.client();
        }
        let uses_pki = [
            &verify_cfg.tls,
            &audit_cfg.tls,
            &kpi_cfg.tls,
            &tiering_cfg.tls,
        ]
        .iter()
        .any(|t| **t == pki.server());

        let service = svc_verify::Service::open(&verify_cfg).await?;
        let tenants: Vec<String> = service.engine.tenants().ids().map(str::to_owned).collect();
        let generated_secret = service.generated_secret.clone();
        let verify_listener = tokio::net::TcpListener::bind(verify_cfg.listen)
            .await
            .with_context(|| format!("svc-verify cannot listen on {}", verify_cfg.listen))?;
        let verify_addr = verify_listener.local_addr()?;
        let verify_url = format!("http://{verify_addr}");
        let verify_registry = service.registry.clone();
        // The feed consumers read svc-verify's in-process fan-out (each record decoded once,
        // shared in batches, never holding up submissions) and report their lag and CPU side
        // by side in one registry.
        let (feed_registry, feed_metrics) = flk_runtime::feed::FeedMetrics::standalone()?;
        let off = |name: &str| cfg.feed_off.iter().any(|n| n == name);
        let in_process = |name: &str| !off(name) && !cfg.feed_grpc.iter().any(|n| n == name);
        // Only started when a consumer reads it (it reads and decodes every record).
        let feed_source = FEED_CONSUMERS
            .iter()
            .any(|n| in_process(n))
            .then(|| service.feed_source());
        let feed_wiring = |name: &str| flk_runtime::feed::FeedWiring {
            source: if off(name) {
                Some(std::sync::Arc::new(flk_runtime::feed::NoFeed))
            } else {
                feed_source.clone().filter(|_| in_process(name))
            },
            metrics: Some(feed_metrics.clone()),
        };
        // The gateway calls this svc-verify directly (no HTTP/2 hop on the two cores the whole
        // stack shares); the port stays for the feed consumers, probes and other clients.
        let verify_in_process = gateway::InProcessUpstream::new(
            format!("svc-verify (in process; also {verify_url})"),
            service.grpc_server(),
        );
        let verify_ready = gateway::ReadyProbe::new(service.readiness_probe());
        let mut running = Running::new();
        running.spawn(service.serve(verify_listener, running.stopped()));

        audit_cfg.verify_url.clone_from(&verify_url);
        let audit = async {
            let mut service = svc_audit::Service::open(&audit_cfg).await?;
            service.set_feed(feed_wiring("audit"));
            let listener = tokio::net::TcpListener::bind(audit_cfg.listen)
                .await
                .with_context(|| format!("svc-audit cannot listen on {}", audit_cfg.listen))?;
            anyhow::Ok((service, listener))
        };
        let (audit_service, audit_listener) = match audit.await {
            Ok(v) => v,
            Err(e) => return Err(running.abandon(e).await),
        };
        let audit_addr = audit_listener.local_addr()?;
        let audit_registry = audit_service.registry().clone();
        let audit_verifier_key = audit_service.ledger().verifier_key().to_owned();
        running.spawn(audit_service.serve(audit_listener, running.stopped()));

        kpi_cfg.verify_url.clone_from(&verify_url);
        kpi_cfg.audit_url = Some(format!("http://{audit_addr}"));
        if kpi_cfg.tenants == svc_kpi::KpiConfig::default().tenants {
            // KPI series per configured tenant (bounded labels).
            kpi_cfg.tenants.clone_from(&tenants);
        }
        let kpi = async {
            let mut service = svc_kpi::Service::open(&kpi_cfg).await?;
            service.set_feed(feed_wiring("kpi"));
            let listener = tokio::net::TcpListener::bind(kpi_cfg.listen)
                .await
                .with_context(|| format!("svc-kpi cannot listen on {}", kpi_cfg.listen))?;
            anyhow::Ok((service, listener))
        };
        let (kpi_service, kpi_listener) = match kpi.await {
            Ok(v) => v,
            Err(e) => return Err(running.abandon(e).await),
        };
        let kpi_addr = kpi_listener.local_addr()?;
        let kpi_registry = kpi_service.kpi().registry().clone();
        running.spawn(kpi_service.serve(kpi_listener, running.stopped()));

        tiering_cfg.verify_url.clone_from(&verify_url);
        let tiering = async {
            let mut service = svc_tiering::Service::open(&tiering_cfg, env).await?;
            service.set_feed(feed_wiring("tiering"));
            let listener = tokio::net::TcpListener::bind(tiering_cfg.listen)
                .await
                .with_context(|| format!("svc-tiering cannot listen on {}", tiering_cfg.listen))?;
            anyhow::Ok((service, listener))
        };
        let (tiering_service, tiering_listener) = match tiering.await {
            Ok(v) => v,
            Err(e) => return Err(running.abandon(e).await),
        };
        let tiering_addr = tiering_listener.local_addr()?;
        let tiering_registry = tiering_service.registry().clone();
        running.spawn(tiering_service.serve(tiering_listener, running.stopped()));

        // svc-crr: its replication port is for other regions, so it keeps its own [crr.tls]
        // or peer token, never the stack's internal PKI; towards svc-verify it is a mesh client.
        let mut crr_cfg = cfg.crr.clone();
        if crr_cfg.peer == PeerSettings::default() {
            crr_cfg.peer = pki.client();
        }
        crr_cfg.verify_url.clone_from(&verify_url);
        let crr = async {
            let service = svc_crr::Service::open(&crr_cfg, feed_wiring("crr"), env).await?;
            let listener = tokio::net::TcpListener::bind(crr_cfg.listen)
                .await
                .with_context(|| format!("svc-crr cannot listen on {}", crr_cfg.listen))?;
            anyhow::Ok((service, listener))
        };
        let (crr_service, crr_listener) = match crr.await {
            Ok(v) => v,
            Err(e) => return Err(running.abandon(e).await),
        };
        let crr_addr = crr_listener.local_addr()?;
        let crr_registry = crr_service.registry().clone();
        let crr_token = crr_service.generated_token().map(Path::to_path_buf);
        running.spawn(crr_service.serve(crr_listener, running.stopped()));

        let mut default_token = None;
        let mut admin_token = None;
        let gateway = async {
            // The tenants file of svc-verify is the gateway's too (limits, API tokens).
            if gw_settings.tenants_file.is_none() {
                gw_settings
                    .tenants_file
                    .clone_from(&verify_cfg.tenants_file);
            }
            gw_settings.audit_upstream = Some(format!("http://{audit_addr}"));
            gw_settings.kpi_upstream = Some(format!("http://{kpi_addr}"));
            gw_settings.tiering_upstream = Some(format!("http://{tiering_addr}"));
            let mut gw_cfg = gw_settings.resolve(env)?;
            gw_cfg.upstreams = Vec::new();
            gw_cfg.in_process = vec![verify_in_process];
            gw_cfg.ready_probes = vec![verify_ready];
            // Reports over the stack's own stores, as `flk report compliance --data-dir`.
            gw_cfg.compliance = Some(std::sync::Arc::new(crate::compliance::DataDirReports::new(
                cfg.data_dir.clone(),
            )));
            gw_cfg.extra_registries = vec![
                verify_registry,
                audit_registry,
                kpi_registry,
                tiering_registry,
                crr_registry,
                feed_registry,
            ];
            if gw_cfg.admin_token.is_none() {
                let path = cfg.data_dir.join(GENERATED_TOKEN_FILE);
                let (token, _) = ensure_token_file(&path)?;
                gw_cfg.admin_token = Some(TokenHash::of(&token));
                admin_token = Some(path);
            }
            if verify_cfg.tenants_file.is_none() {
                let path = cfg.data_dir.join(DEFAULT_TOKEN_FILE);
                let (token, _) = ensure_token_file(&path)?;
                gw_cfg
                    .api_tokens
                    .insert(
                        flk_proto::DEFAULT_TENANT,
                        "flk-up",
                        TokenHash::of(&token),
                        (None, None),
                    )
                    .map_err(anyhow::Error::msg)?;
                default_token = Some(path);
            }
            let gw = gateway::Gateway::new(gw_cfg)?;
            let listener = tokio::net::TcpListener::bind(gw_settings.listen)
                .await
                .with_context(|| format!("cannot listen on {}", gw_settings.listen))?;
            anyhow::Ok((gw, listener))
        };
        let (gw, listener) = match gateway.await {
            Ok(v) => v,
            Err(e) => return Err(running.abandon(e).await),
        };
        let addr = listener.local_addr()?;
        running.spawn(gateway::serve(listener, gw, running.stopped()));
        Ok(Stack {
            addr,
            verify_addr,
            audit_addr,
            kpi_addr,
            tiering_addr,
            crr_addr,
            crr_token,
            audit_dir: audit_cfg.data_dir,
            audit_verifier_key,
            tenants,
            generated_secret,
            admin_token,
            default_token,
            pki: uses_pki.then_some(pki),
            running,
        })
    }

    /// Stops the servers (in-flight requests finish first) and reports the first error.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.running.stop().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_file_configures_every_service_and_the_environment_wins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stack.toml");
        std::fs::write(
            &path,
            r#"
data_dir = "/srv/flk"
[verify]
region = "eu-1"
hmac_key = "s3cret"
[audit]
checkpoint_interval_ms = 250
[audit.anchor]
strategy = "none"
[kpi]
retention_days = 30
[kpi.slo]
containment_min = 0.9
[kpi.prices]
storage_cold_usd_per_gb_month = 0.002
[gateway]
max_in_flight = 7
"#,
        )
        .unwrap();
        let cfg = StackConfig::load(Some(&path), None, |k| match k {
            "FLK_KPI_RETENTION_DAYS" => Some("9".into()),
            "FLK_GATEWAY_LISTEN" => Some("127.0.0.1:0".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(cfg.data_dir, Path::new("/srv/flk"));
        assert_eq!(cfg.verify.region, "eu-1");
        assert_eq!(cfg.verify.data_dir, Path::new("/srv/flk/verify"));
        assert_eq!(cfg.verify.listen.port(), 0);
        assert_eq!(cfg.audit.checkpoint_interval_ms, 250);
        assert_eq!(cfg.audit.data_dir, Path::new("/srv/flk/audit"));
        assert_eq!(cfg.kpi.retention_days, 9);
        assert_eq!(cfg.kpi.slo.containment_min, 0.9);
        // svc-tiering prices moves with svc-kpi's table when [tiering.prices] is not set.
        assert_eq!(cfg.tiering.prices.storage_cold_usd_per_gb_month, 0.002);
        assert_eq!(cfg.tiering.data_dir, Path::new("/srv/flk/tiering"));
        assert_eq!(cfg.gateway.max_in_flight, 7);
        assert_eq!(cfg.gateway.listen.port(), 0);

        let printed = cfg.redacted();
        assert!(!printed.contains("s3cret"), "{printed}");
        assert!(printed.contains("[kpi.slo]"), "{printed}");
        // What is printed loads back to the same configuration.
        std::fs::write(&path, &printed).unwrap();
        let again = StackConfig::load(Some(&path), None, |_| None).unwrap();
        assert_eq!(again.kpi.retention_days, 9);
        assert_eq!(again.audit.checkpoint_interval_ms, 250);

        // The flag wins over the file's data_dir.
        let flagged = StackConfig::load(None, Some(Path::new("/d")), |_| None).unwrap();
        assert_eq!(flagged.kpi.data_dir, Path::new("/d/kpi"));

        // Errors name the section and key.
        std::fs::write(&path, "[kpi]\nretention = 3\n").unwrap();
        let err = StackConfig::load(Some(&path), None, |_| None).unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains("[kpi]") && text.contains("retention"),
            "{text}"
        );
        std::fs::write(&path, "[verfy]\n").unwrap();
        let err = StackConfig::load(Some(&path), None, |_| None).unwrap_err();
        assert!(format!("{err:#}").contains("verfy"), "{err:#}");
    }
}
