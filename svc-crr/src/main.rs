//! The svc-crr binary: configuration from `--config` / `FLK_CRR_CONFIG` and `FLK_CRR_*`
//! variables, telemetry, then [`svc_crr::run`] until SIGINT or SIGTERM.

use std::path::PathBuf;

use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "svc-crr", about = "FLK cross-region replication")]
struct Args {
    /// TOML configuration file; every setting also has an FLK_CRR_* environment override.
    #[arg(long, env = svc_crr::config::env::CONFIG)]
    config: Option<PathBuf>,
    /// Print the effective configuration (secrets redacted) and exit.
    #[arg(long)]
    print_config: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = flk_runtime::telemetry::init("svc-crr", "info");
    flk_runtime::memory::limit_huge_pages_from_env();
    let args = Args::parse();
    let cfg: svc_crr::CrrConfig =
        flk_runtime::config::load(args.config.as_deref(), |k| std::env::var(k).ok())?;
    if args.print_config {
        print!("{}", flk_runtime::config::to_toml(&cfg));
        return Ok(());
    }
    svc_crr::run(cfg, flk_runtime::shutdown::signal()).await
}
