//! svc-tiering binary: parse config, start telemetry, serve.

use clap::Parser;
use svc_tiering::config::{TieringConfig, env};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "svc-tiering",
    about = "FLK svc-tiering: decisions placed in hot, warm and cold tiers from the outcome feed"
)]
struct Args {
    /// Config file (TOML); every setting also has an FLK_TIERING_* environment override.
    #[arg(long, env = env::CONFIG)]
    config: Option<std::path::PathBuf>,
    /// Print the effective configuration and exit.
    #[arg(long)]
    print_config: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = flk_runtime::telemetry::init("svc-tiering", "info");
    flk_runtime::memory::limit_huge_pages_from_env();
    let args = Args::parse();
    let cfg = TieringConfig::load(args.config.as_deref(), |k| std::env::var(k).ok())?;
    if args.print_config {
        print!("{}", cfg.redacted());
        return Ok(());
    }
    svc_tiering::run(cfg).await
}
