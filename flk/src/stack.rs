//! The whole system in one process, as `flk up` and `flk demo` run it: svc-verify, svc-audit
//! and svc-kpi (both consuming svc-verify's outcome feed; svc-kpi also reads svc-audit's
//! checkpoints for audit coverage) on internal ports and the gateway in front of them, over one
//! data directory. The gateway calls svc-verify in process (its gRPC service, without HTTP/2
//! or a socket); the feed consumers use svc-verify's port like any other client. The gateway's
//! `/metrics` also exports the services' registries, so one scrape target sees every `flk_`
//! metric.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What to start.
pub struct StackConfig {
    /// svc-verify keeps its log, index and generated key under `<data_dir>/verify`, svc-audit
    /// its tamper-evident log, index, cursor and log key under `<data_dir>/audit`, svc-kpi its
    /// KPI store and cursor under `<data_dir>/kpi`.
    pub data_dir: PathBuf,
    /// Gateway address (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Tenants file (TOML), shared by svc-verify and the gateway's admission.
    pub tenants: Option<PathBuf>,
    /// Without a tenants file: the `default` tenant's HMAC secret (digest mode).
    pub hmac_key: Option<String>,
    /// svc-audit's configuration (e.g. its `[anchor]` section, from `flk up --audit-config`);
    /// its `listen`, `data_dir` and `verify_url` are replaced by the stack's own.
    pub audit: Option<svc_audit::AuditConfig>,
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
    /// svc-audit's data directory.
    pub audit_dir: PathBuf,
    /// The audit log's verifier key (`<name>+<key id>+<base64 key>`).
    pub audit_verifier_key: String,
    /// Ids of the configured tenants.
    pub tenants: Vec<String>,
    /// Where the `default` tenant's secret was written, when it was generated.
    pub generated_secret: Option<PathBuf>,
    stop: watch::Sender<bool>,
    gateway: JoinHandle<anyhow::Result<()>>,
    verify: JoinHandle<anyhow::Result<()>>,
    audit: JoinHandle<anyhow::Result<()>>,
    kpi: JoinHandle<anyhow::Result<()>>,
}

impl Stack {
    /// Opens svc-verify's and svc-audit's stores, binds the three listeners and starts serving.
    pub async fn start(cfg: &StackConfig) -> anyhow::Result<Stack> {
        let verify_cfg = svc_verify::VerifyConfig {
            data_dir: cfg.data_dir.join("verify"),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            tenants_file: cfg.tenants.clone(),
            hmac_key: cfg.hmac_key.clone(),
            ..Default::default()
        };
        verify_cfg.validate()?;
        let service = svc_verify::Service::open(&verify_cfg).await?;
        let tenants: Vec<String> = service.engine.tenants().ids().map(str::to_owned).collect();
        let generated_secret = service.generated_secret.clone();
        let verify_listener = tokio::net::TcpListener::bind(verify_cfg.listen).await?;
        let verify_addr = verify_listener.local_addr()?;
        let verify_registry = service.registry.clone();
        // The gateway calls this svc-verify directly (no HTTP/2 hop on the two cores the whole
        // stack shares); the port stays for the feed consumers, probes and other clients.
        let verify_in_process = gateway::InProcessUpstream::new(
            format!("svc-verify (in process; also http://{verify_addr})"),
            service.grpc_server(),
        );
        let (stop, stop_rx) = watch::channel(false);
        let mut verify_stop = stop_rx.clone();
        let verify = tokio::spawn(service.serve(verify_listener, async move {
            let _ = verify_stop.changed().await;
        }));

        let audit_cfg = svc_audit::AuditConfig {
            data_dir: cfg.data_dir.join("audit"),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            verify_url: format!("http://{verify_addr}"),
            ..cfg.audit.clone().unwrap_or_default()
        };
        let audit = async {
            let service = svc_audit::Service::open(&audit_cfg).await?;
            let listener = tokio::net::TcpListener::bind(audit_cfg.listen).await?;
            anyhow::Ok((service, listener))
        };
        let (audit_service, audit_listener) = match audit.await {
            Ok(v) => v,
            Err(e) => {
                let _ = stop.send(true);
                let _ = verify.await;
                return Err(e);
            }
        };
        let audit_addr = audit_listener.local_addr()?;
        let audit_registry = audit_service.registry().clone();
        let audit_verifier_key = audit_service.ledger().verifier_key().to_owned();
        let mut audit_stop = stop_rx.clone();
        let audit = tokio::spawn(audit_service.serve(audit_listener, async move {
            let _ = audit_stop.changed().await;
        }));

        let kpi_cfg = svc_kpi::KpiConfig {
            data_dir: cfg.data_dir.join("kpi"),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            verify_url: format!("http://{verify_addr}"),
            audit_url: Some(format!("http://{audit_addr}")),
            // KPI series per configured tenant (bounded labels).
            tenants: tenants.clone(),
            ..Default::default()
        };
        let kpi = async {
            let service = svc_kpi::Service::open(&kpi_cfg).await?;
            let listener = tokio::net::TcpListener::bind(kpi_cfg.listen).await?;
            anyhow::Ok((service, listener))
        };
        let (kpi_service, kpi_listener) = match kpi.await {
            Ok(v) => v,
            Err(e) => {
                let _ = stop.send(true);
                let _ = verify.await;
                let _ = audit.await;
                return Err(e);
            }
        };
        let kpi_addr = kpi_listener.local_addr()?;
        let kpi_registry = kpi_service.kpi().registry().clone();
        let mut kpi_stop = stop_rx.clone();
        let kpi = tokio::spawn(kpi_service.serve(kpi_listener, async move {
            let _ = kpi_stop.changed().await;
        }));

        let gateway = async {
            // The gateway admits with the same per-tenant limits as svc-verify.
            let limits = match &cfg.tenants {
                Some(path) => gateway::limits_from_tenants_file(path)?,
                None => Default::default(),
            };
            let gw = gateway::Gateway::new(gateway::GatewayConfig {
                upstreams: Vec::new(),
                in_process: vec![verify_in_process],
                audit_upstream: Some(format!("http://{audit_addr}")),
                kpi_upstream: Some(format!("http://{kpi_addr}")),
                extra_registries: vec![verify_registry, audit_registry, kpi_registry],
                limits,
                ..Default::default()
            })?;
            let listener = tokio::net::TcpListener::bind(cfg.listen)
                .await
                .with_context(|| format!("cannot listen on {}", cfg.listen))?;
            anyhow::Ok((gw, listener))
        };
        let (gw, listener) = match gateway.await {
            Ok(v) => v,
            Err(e) => {
                let _ = stop.send(true);
                let _ = verify.await;
                let _ = audit.await;
                let _ = kpi.await;
                return Err(e);
            }
        };
        let addr = listener.local_addr()?;
        let mut gw_stop = stop_rx.clone();
        let gateway = tokio::spawn(gateway::serve(listener, gw, async move {
            let _ = gw_stop.changed().await;
        }));
        Ok(Stack {
            addr,
            verify_addr,
            audit_addr,
            kpi_addr,
            audit_dir: audit_cfg.data_dir,
            audit_verifier_key,
            tenants,
            generated_secret,
            stop,
            gateway,
            verify,
            audit,
            kpi,
        })
    }

    /// Stops the servers (in-flight requests finish first) and reports the first error.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        let gateway = self.gateway.await;
        let kpi = self.kpi.await;
        let audit = self.audit.await;
        let verify = self.verify.await;
        gateway??;
        kpi??;
        audit??;
        verify??;
        Ok(())
    }
}
