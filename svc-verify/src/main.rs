//! svc-verify binary: parse config, start telemetry, serve.

use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use svc_verify::config::{VerifyConfig, env};

#[derive(Parser)]
#[command(
    name = "svc-verify",
    about = "FLK svc-verify: durable, idempotent PCS verification over gRPC"
)]
struct Args {
    /// Config file (TOML); every setting also has an FLK_* environment override.
    #[arg(long, env = env::CONFIG)]
    config: Option<std::path::PathBuf>,
    /// Print the effective configuration (secrets redacted) and exit.
    #[arg(long)]
    print_config: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = flk_runtime::telemetry::init("svc-verify", "info");
    flk_runtime::memory::limit_huge_pages_from_env();
    let args = Args::parse();
    let cfg = VerifyConfig::load(args.config.as_deref(), |k| std::env::var(k).ok())?;
    if args.print_config {
        print!("{}", cfg.redacted());
        return Ok(());
    }
    svc_verify::run(cfg).await
}
