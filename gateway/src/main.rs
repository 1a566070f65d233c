//! Gateway binary: parse flags, start telemetry, bind, serve.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "gateway",
    about = "FLK gateway: REST and gRPC in front of svc-verify replicas"
)]
struct Args {
    /// Listen address.
    #[arg(long, env = "FLK_GATEWAY_LISTEN", default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
    /// svc-verify replicas (repeat, or comma-separated), e.g. http://127.0.0.1:50051.
    #[arg(
        long = "upstream",
        env = "FLK_GATEWAY_UPSTREAMS",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:50051"
    )]
    upstreams: Vec<String>,
    /// Largest accepted body in bytes.
    #[arg(long, default_value_t = 1024 * 1024)]
    max_body_bytes: usize,
    /// Request timeout towards svc-verify, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    /// Requests in flight above which the gateway sheds load (503 overloaded).
    #[arg(long, default_value_t = 4096)]
    max_in_flight: usize,
    /// Basic auth for /metrics as USER:PASSWORD.
    #[arg(long, env = "FLK_METRICS_AUTH")]
    metrics_auth: Option<String>,
    /// Tenants file (the svc-verify format): the gateway applies its rate limits and quotas.
    #[arg(long, env = "FLK_TENANTS_FILE")]
    tenants: Option<std::path::PathBuf>,
    /// TLS on the listen port: PEM certificate chain (needs --tls-key).
    #[arg(long, env = "FLK_GATEWAY_TLS_CERT", value_name = "PEM")]
    tls_cert: Option<PathBuf>,
    /// TLS on the listen port: PEM private key (needs --tls-cert).
    #[arg(long, env = "FLK_GATEWAY_TLS_KEY", value_name = "PEM")]
    tls_key: Option<PathBuf>,
    /// Require client certificates signed by this PEM CA bundle (mTLS; needs --tls-cert).
    #[arg(long, env = "FLK_GATEWAY_TLS_CLIENT_CA", value_name = "PEM")]
    tls_client_ca: Option<PathBuf>,
    /// Reach svc-verify over TLS, trusting this PEM CA bundle.
    #[arg(long, env = "FLK_GATEWAY_UPSTREAM_CA", value_name = "PEM")]
    upstream_ca: Option<PathBuf>,
    /// Client certificate towards svc-verify (mTLS; needs --upstream-key and --upstream-ca).
    #[arg(long, env = "FLK_GATEWAY_UPSTREAM_CERT", value_name = "PEM")]
    upstream_cert: Option<PathBuf>,
    /// Private key of --upstream-cert.
    #[arg(long, env = "FLK_GATEWAY_UPSTREAM_KEY", value_name = "PEM")]
    upstream_key: Option<PathBuf>,
    /// Name to check svc-verify's certificate against, when not the upstream URL's host.
    #[arg(long, env = "FLK_GATEWAY_UPSTREAM_SERVER_NAME", value_name = "NAME")]
    upstream_server_name: Option<String>,
    /// svc-audit's gRPC address (e.g. http://127.0.0.1:50061), for /v1/audit/*; without it
    /// those routes answer 503. Reached with the same TLS settings as svc-verify.
    #[arg(long, env = "FLK_GATEWAY_AUDIT_UPSTREAM", value_name = "URL")]
    audit_upstream: Option<String>,
    /// svc-kpi's REST base URL (e.g. http://127.0.0.1:50071), for POST /v1/feedback and
    /// GET /v1/kpi/report; without it those routes answer 503.
    #[arg(long, env = "FLK_GATEWAY_KPI_UPSTREAM", value_name = "URL")]
    kpi_upstream: Option<String>,
    /// Long-lived SubmitStreams per svc-verify replica that carry REST and unary gRPC
    /// submissions as stream items; 0 sends each submission as a unary call of its own.
    #[arg(long, env = "FLK_GATEWAY_UPSTREAM_STREAMS", default_value_t = gateway::DEFAULT_UPSTREAM_STREAMS)]
    upstream_streams: usize,
}

impl Args {
    /// The listen port's TLS settings, if any (a partial set is an error).
    fn tls(&self) -> anyhow::Result<Option<gateway::ServerTls>> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Ok(Some(gateway::ServerTls {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: self.tls_client_ca.clone(),
            })),
            (Some(_), None) => anyhow::bail!("--tls-cert needs --tls-key (FLK_GATEWAY_TLS_KEY)"),
            (None, Some(_)) => anyhow::bail!("--tls-key needs --tls-cert (FLK_GATEWAY_TLS_CERT)"),
            (None, None) if self.tls_client_ca.is_some() => {
                anyhow::bail!("--tls-client-ca needs --tls-cert and --tls-key")
            }
            (None, None) => Ok(None),
        }
    }

    /// The TLS settings towards svc-verify, if any (a partial set is an error).
    fn upstream_tls(&self) -> anyhow::Result<Option<gateway::UpstreamTls>> {
        match (&self.upstream_cert, &self.upstream_key) {
            (Some(_), None) => {
                anyhow::bail!("--upstream-cert needs --upstream-key (FLK_GATEWAY_UPSTREAM_KEY)")
            }
            (None, Some(_)) => {
                anyhow::bail!("--upstream-key needs --upstream-cert (FLK_GATEWAY_UPSTREAM_CERT)")
            }
            _ => {}
        }
        let Some(ca) = &self.upstream_ca else {
            if self.upstream_cert.is_some() || self.upstream_server_name.is_some() {
                anyhow::bail!(
                    "--upstream-cert and --upstream-server-name need --upstream-ca (FLK_GATEWAY_UPSTREAM_CA)"
                );
            }
            return Ok(None);
        };
        Ok(Some(gateway::UpstreamTls {
            ca: ca.clone(),
            client_cert: self.upstream_cert.clone(),
            client_key: self.upstream_key.clone(),
            server_name: self.upstream_server_name.clone(),
        }))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let tls = args.tls()?;
    let upstream_tls = args.upstream_tls()?;
    let metrics_auth = match args.metrics_auth {
        Some(s) => match s.split_once(':') {
            Some((u, p)) => Some((u.to_owned(), p.to_owned())),
            None => anyhow::bail!("--metrics-auth must be USER:PASSWORD"),
        },
        None => None,
    };
    let limits = match &args.tenants {
        Some(path) => gateway::limits_from_tenants_file(path)?,
        None => Default::default(),
    };
    let gw = gateway::Gateway::new(gateway::GatewayConfig {
        upstreams: args.upstreams.clone(),
        max_body_bytes: args.max_body_bytes,
        request_timeout: Duration::from_millis(args.timeout_ms),
        max_in_flight: args.max_in_flight,
        metrics_auth,
        limits,
        tls: tls.clone(),
        upstream_tls,
        audit_upstream: args.audit_upstream.clone(),
        kpi_upstream: args.kpi_upstream.clone(),
        in_process: Vec::new(),
        upstream_streams: args.upstream_streams,
        extra_registries: Vec::new(),
    })?;
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    println!("gateway listening on {scheme}://{}", listener.local_addr()?);
    println!("upstreams: {}", args.upstreams.join(", "));
    if let Some(audit) = &args.audit_upstream {
        println!("audit upstream: {audit}");
    }
    if let Some(kpi) = &args.kpi_upstream {
        println!("kpi upstream: {kpi}");
    }
    gateway::serve(listener, gw, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
}
