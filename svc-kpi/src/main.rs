//! svc-kpi binary: parse config, start telemetry, serve.

use clap::Parser;
use svc_kpi::config::{KpiConfig, env};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "svc-kpi",
    about = "FLK svc-kpi: containment, escalation, false-alarm and cost KPIs from the outcome feed"
)]
struct Args {
    /// Config file (TOML); every setting also has an FLK_KPI_* environment override.
    #[arg(long, env = env::CONFIG)]
    config: Option<std::path::PathBuf>,
    /// Print the effective configuration and exit.
    #[arg(long)]
    print_config: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = flk_runtime::telemetry::init("svc-kpi", "info");
    flk_runtime::memory::limit_huge_pages_from_env();
    let args = Args::parse();
    let cfg = KpiConfig::load(args.config.as_deref(), |k| std::env::var(k).ok())?;
    if args.print_config {
        print!("{}", cfg.redacted());
        return Ok(());
    }
    svc_kpi::run(cfg).await
}
