//! Gateway binary: load the config (file, environment, flags), start telemetry, bind, serve.

use std::path::PathBuf;

use clap::Parser;
use gateway::config::{GatewaySettings, env};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "gateway",
    about = "FLK gateway: REST and gRPC in front of svc-verify replicas",
    long_about = "FLK gateway: REST and gRPC in front of svc-verify replicas.\n\n\
        Settings come from the config file (TOML, see gateway::config), then FLK_GATEWAY_* \
        variables, then these flags."
)]
struct Args {
    /// Config file (TOML); every setting also has an FLK_GATEWAY_* environment override.
    #[arg(long, env = env::CONFIG)]
    config: Option<PathBuf>,
    /// Print the effective configuration (secrets redacted) and exit.
    #[arg(long)]
    print_config: bool,
    /// Listen address (`listen`).
    #[arg(long)]
    listen: Option<String>,
    /// svc-verify replicas, repeated or comma-separated (`upstreams`).
    #[arg(long = "upstream", value_delimiter = ',')]
    upstreams: Vec<String>,
    /// svc-audit's gRPC URL (`audit_upstream`).
    #[arg(long)]
    audit_upstream: Option<String>,
    /// svc-kpi's REST base URL (`kpi_upstream`).
    #[arg(long)]
    kpi_upstream: Option<String>,
    /// The tenants file: limits and API tokens (`tenants_file`).
    #[arg(long)]
    tenants: Option<PathBuf>,
    /// Shared SubmitStreams per replica (`upstream_streams`).
    #[arg(long)]
    upstream_streams: Option<usize>,
}

impl Args {
    /// The value a flag gives to the variable `name`, if any (flags override the environment).
    fn flag(&self, name: &str) -> Option<String> {
        match name {
            env::LISTEN => self.listen.clone(),
            env::UPSTREAMS if !self.upstreams.is_empty() => Some(self.upstreams.join(",")),
            env::AUDIT_UPSTREAM => self.audit_upstream.clone(),
            env::KPI_UPSTREAM => self.kpi_upstream.clone(),
            env::TENANTS_FILE => self.tenants.as_ref().map(|p| p.display().to_string()),
            env::UPSTREAM_STREAMS => self.upstream_streams.map(|n| n.to_string()),
            _ => None,
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = flk_runtime::telemetry::init("gateway", "info");
    flk_runtime::memory::limit_huge_pages_from_env();
    let args = Args::parse();
    let vars = |k: &str| args.flag(k).or_else(|| std::env::var(k).ok());
    let settings = GatewaySettings::load(args.config.as_deref(), vars)?;
    if args.print_config {
        print!("{}", settings.redacted());
        return Ok(());
    }
    let cfg = settings.resolve(|k| std::env::var(k).ok())?;
    let tls = cfg.tls.is_some();
    let gw = gateway::Gateway::new(cfg)?;
    let listener = tokio::net::TcpListener::bind(settings.listen).await?;
    let scheme = if tls { "https" } else { "http" };
    println!("gateway listening on {scheme}://{}", listener.local_addr()?);
    println!("upstreams: {}", settings.upstreams.join(", "));
    if let Some(audit) = &settings.audit_upstream {
        println!("audit upstream: {audit}");
    }
    if let Some(kpi) = &settings.kpi_upstream {
        println!("kpi upstream: {kpi}");
    }
    gateway::serve(listener, gw, flk_runtime::shutdown::signal()).await
}
