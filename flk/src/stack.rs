//! The whole system in one process, as `flk up` and `flk demo` run it: svc-verify on an
//! internal port and the gateway in front of it, over one data directory.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What to start.
pub struct StackConfig {
    /// svc-verify keeps its log, index and generated key under `<data_dir>/verify`.
    pub data_dir: PathBuf,
    /// Gateway address (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Tenants file (TOML), shared by svc-verify and the gateway's admission.
    pub tenants: Option<PathBuf>,
    /// Without a tenants file: the `default` tenant's HMAC secret (digest mode).
    pub hmac_key: Option<String>,
}

/// A running stack.
pub struct Stack {
    /// The gateway's address (REST and gRPC).
    pub addr: SocketAddr,
    /// svc-verify's internal gRPC address.
    pub verify_addr: SocketAddr,
    /// Ids of the configured tenants.
    pub tenants: Vec<String>,
    /// Where the `default` tenant's secret was written, when it was generated.
    pub generated_secret: Option<PathBuf>,
    stop: watch::Sender<bool>,
    gateway: JoinHandle<anyhow::Result<()>>,
    verify: JoinHandle<anyhow::Result<()>>,
}

impl Stack {
    /// Opens svc-verify's stores, binds both listeners and starts serving.
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
        let (stop, stop_rx) = watch::channel(false);
        let mut verify_stop = stop_rx.clone();
        let verify = tokio::spawn(service.serve(verify_listener, async move {
            let _ = verify_stop.changed().await;
        }));

        let gateway = async {
            // The gateway admits with the same per-tenant limits as svc-verify.
            let limits = match &cfg.tenants {
                Some(path) => gateway::limits_from_tenants_file(path)?,
                None => Default::default(),
            };
            let gw = gateway::Gateway::new(gateway::GatewayConfig {
                upstreams: vec![format!("http://{verify_addr}")],
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
            tenants,
            generated_secret,
            stop,
            gateway,
            verify,
        })
    }

    /// Stops both servers (in-flight requests finish first) and reports the first error.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        self.gateway.await??;
        self.verify.await??;
        Ok(())
    }
}
