//! Gateway binary: parse flags, start telemetry, bind, serve.

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
    })?;
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("gateway listening on http://{}", listener.local_addr()?);
    println!("upstreams: {}", args.upstreams.join(", "));
    gateway::serve(listener, gw, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
}
