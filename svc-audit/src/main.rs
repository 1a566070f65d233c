//! svc-audit binary: parse config, start telemetry, serve.

use clap::Parser;
use svc_audit::config::{AuditConfig, env};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "svc-audit",
    about = "FLK svc-audit: tamper-evident log of verification decisions, with proofs"
)]
struct Args {
    /// Config file (TOML); every setting also has an FLK_AUDIT_* environment override.
    #[arg(long, env = env::CONFIG)]
    config: Option<std::path::PathBuf>,
    /// Print the effective configuration and exit.
    #[arg(long)]
    print_config: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = flk_runtime::telemetry::init("svc-audit", "info");
    flk_runtime::memory::limit_huge_pages_from_env();
    let args = Args::parse();
    let cfg = AuditConfig::load(args.config.as_deref(), |k| std::env::var(k).ok())?;
    if args.print_config {
        print!("{}", cfg.redacted());
        return Ok(());
    }
    svc_audit::run(cfg).await
}
