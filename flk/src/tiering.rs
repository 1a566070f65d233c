//! `flk tiering`: `eval` replays an access trace through the hot tier's policies (LRU, SIEVE,
//! W-TinyLFU and the predictive models) and reports hit ratios, p95 read latency and monthly
//! cost per policy; `gen-trace` writes a seeded synthetic trace. The work is `flk-cachesim`'s;
//! this file parses flags, reads and writes files, and renders.

use std::path::PathBuf;

use anyhow::Context as _;
use flk_cachesim::cost::CostModel;
use flk_cachesim::eval::{self, EvalConfig, EvalReport};
use flk_cachesim::generator::{self, GenConfig, TenantKind};
use flk_cachesim::policy::PredictiveConfig;
use flk_cachesim::trace::{self, Format};

#[derive(clap::Args)]
pub struct TieringArgs {
    #[command(subcommand)]
    command: TieringCommand,
}

#[derive(clap::Subcommand)]
enum TieringCommand {
    /// Replay an access trace through the hot tier's policies and compare them.
    Eval(EvalArgs),
    /// Write a seeded synthetic trace (diurnal, bursty and drifting tenants).
    GenTrace(GenTraceArgs),
}

#[derive(clap::Args)]
struct EvalArgs {
    /// The trace file.
    #[arg(long, value_name = "FILE")]
    trace: PathBuf,
    /// `csv` (header `timestamp,tenant_id,key,size_bytes`) or `oracle-general` (libCacheSim).
    #[arg(long, value_parser = parse_format)]
    format: Format,
    /// Bytes the hot tier holds.
    #[arg(long)]
    hot_capacity_bytes: u64,
    /// Fraction of the trace, at its end, that is counted; models train on the rest.
    #[arg(long, default_value_t = 0.3)]
    holdout: f64,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Policies to replay, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "lru,sieve,w_tinylfu,predictive_ses,predictive_logreg"
    )]
    policies: Vec<String>,
    /// Hot-tier time to first byte, ms.
    #[arg(long, default_value_t = 1.0)]
    hot_read_ms: f64,
    /// Hot-tier read throughput, MB/s.
    #[arg(long, default_value_t = 1000.0)]
    hot_mb_per_s: f64,
    /// Warm-tier time to first byte, ms.
    #[arg(long, default_value_t = 20.0)]
    warm_read_ms: f64,
    /// Warm-tier read throughput, MB/s.
    #[arg(long, default_value_t = 100.0)]
    warm_mb_per_s: f64,
    /// Hot storage price, USD per GB-month [default: the shared storage table's `storage_hot_usd_per_gb_month`, flk_core::prices].
    #[arg(long)]
    hot_usd_per_gb_month: Option<f64>,
    /// USD per read from the warm tier (a miss or a promotion).
    #[arg(long, default_value_t = 1e-6)]
    warm_read_usd: f64,
    /// USD per GB read from the warm tier.
    #[arg(long, default_value_t = 0.01)]
    warm_read_usd_per_gb: f64,
    /// USD per promotion on top of its warm read.
    #[arg(long, default_value_t = 0.0)]
    promotion_usd: f64,
    /// What a millisecond of read latency saved is worth in the promotion rule, USD.
    #[arg(long, default_value_t = 0.0)]
    usd_per_saved_ms: f64,
    /// Horizon of the models' "accessed within the next horizon", seconds.
    #[arg(long, default_value_t = 3600.0)]
    horizon_secs: f64,
    /// Seconds (of trace time) between promotion cycles.
    #[arg(long, default_value_t = 600.0)]
    cycle_secs: f64,
    /// At most this many promotions per cycle.
    #[arg(long, default_value_t = 100)]
    max_promotions_per_cycle: usize,
    /// Seed of the predictive tiers' eviction sample and training sample.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(clap::Args)]
struct GenTraceArgs {
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long)]
    requests: usize,
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    #[arg(long, value_parser = parse_format)]
    format: Format,
    /// Number of tenants; their kinds cycle through `--kinds`.
    #[arg(long, default_value_t = 6)]
    tenants: usize,
    /// Kinds of tenant, comma-separated: diurnal, bursty, drifting.
    #[arg(long, value_delimiter = ',', default_value = "diurnal,bursty,drifting")]
    kinds: Vec<TenantKind>,
    /// Days the trace spans.
    #[arg(long, default_value_t = 7.0)]
    days: f64,
    #[arg(long, default_value_t = 20_000)]
    objects_per_tenant: u64,
    /// Zipf exponent of object popularity.
    #[arg(long, default_value_t = 0.9)]
    zipf: f64,
}

fn parse_format(s: &str) -> Result<Format, String> {
    s.parse()
}

pub fn run(a: TieringArgs) -> anyhow::Result<()> {
    match a.command {
        TieringCommand::Eval(a) => run_eval(a),
        TieringCommand::GenTrace(a) => gen_trace(a),
    }
}

fn progress_bar(len: u64, what: &str) -> indicatif::ProgressBar {
    // Draws only when stderr is a terminal.
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(len),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg} [{elapsed_precise}] {wide_bar} {pos}/{len} ({eta})",
    ) {
        bar.set_style(style);
    }
    bar.set_message(what.to_owned());
    bar
}

fn run_eval(a: EvalArgs) -> anyhow::Result<()> {
    let file = std::fs::File::open(&a.trace)
        .with_context(|| format!("cannot read trace {}", a.trace.display()))?;
    let trace = trace::read(a.format, std::io::BufReader::new(file))
        .with_context(|| format!("bad trace {}", a.trace.display()))?;
    let prices = flk_core::prices::StoragePrices::default();
    let config = EvalConfig {
        hot_capacity_bytes: a.hot_capacity_bytes,
        holdout: a.holdout,
        costs: CostModel {
            hot_read_ms: a.hot_read_ms,
            hot_mb_per_s: a.hot_mb_per_s,
            warm_read_ms: a.warm_read_ms,
            warm_mb_per_s: a.warm_mb_per_s,
            hot_usd_per_gb_month: a
                .hot_usd_per_gb_month
                .unwrap_or(prices.storage_hot_usd_per_gb_month),
            warm_read_usd: a.warm_read_usd,
            warm_read_usd_per_gb: a.warm_read_usd_per_gb,
            promotion_usd: a.promotion_usd,
            usd_per_saved_ms: a.usd_per_saved_ms,
        },
        predictive: PredictiveConfig {
            cycle_secs: a.cycle_secs,
            max_promotions_per_cycle: a.max_promotions_per_cycle,
            seed: a.seed,
            ..PredictiveConfig::default()
        },
        horizon_secs: a.horizon_secs,
        policies: a.policies.clone(),
    };
    for (name, v) in [
        ("--hot-mb-per-s", a.hot_mb_per_s),
        ("--warm-mb-per-s", a.warm_mb_per_s),
        ("--cycle-secs", a.cycle_secs),
        ("--horizon-secs", a.horizon_secs),
    ] {
        anyhow::ensure!(v > 0.0 && v.is_finite(), "{name} must be > 0, got {v}");
    }
    eval::validate(&trace, &config)?;
    let bar = progress_bar(
        trace.requests.len() as u64 * config.policies.len() as u64,
        "replaying",
    );
    let report = eval::evaluate(&trace, &config, &|n| bar.inc(n))?;
    bar.finish_and_clear();
    if a.json {
        let mut v = serde_json::to_value(&report)?;
        v["trace"] = a.trace.display().to_string().into();
        v["config"] = serde_json::to_value(&config)?;
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(())
}

fn render(r: &EvalReport) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} requests, {} evaluated (from #{}, {:.1} h), hot tier {} bytes",
        r.requests,
        r.evaluated_requests,
        r.evaluated_from,
        r.evaluated_secs / 3600.0,
        r.hot_capacity_bytes
    );
    let _ = writeln!(
        s,
        "{:<18} {:>9} {:>14} {:>11} {:>16} {:>10} {:>9}",
        "policy",
        "hit_ratio",
        "byte_hit_ratio",
        "p95_read_ms",
        "monthly_cost_usd",
        "promotions",
        "replay_s"
    );
    for p in &r.policies {
        let _ = writeln!(
            s,
            "{:<18} {:>9.4} {:>14.4} {:>11.3} {:>16.4} {:>10} {:>9.2}",
            p.name,
            p.hit_ratio,
            p.byte_hit_ratio,
            p.p95_read_ms,
            p.monthly_cost_usd,
            p.promotions,
            p.replay_secs
        );
    }
    for k in &r.skipped {
        let _ = writeln!(s, "{:<18} skipped: {}", k.name, k.reason);
    }
    let _ = writeln!(
        s,
        "best_baseline: {}",
        r.best_baseline.as_deref().unwrap_or("none")
    );
    let _ = writeln!(
        s,
        "predictive_beats_best_baseline: {}",
        r.predictive_beats_best_baseline
    );
    s
}

fn gen_trace(a: GenTraceArgs) -> anyhow::Result<()> {
    let config = GenConfig {
        seed: a.seed,
        requests: a.requests,
        tenants: a.tenants,
        kinds: a.kinds,
        days: a.days,
        objects_per_tenant: a.objects_per_tenant,
        zipf_s: a.zipf,
    };
    let trace = generator::generate(&config)?;
    let file = std::fs::File::create(&a.out)
        .with_context(|| format!("cannot create {}", a.out.display()))?;
    trace::write(a.format, &trace, file)
        .with_context(|| format!("cannot write {}", a.out.display()))?;
    eprintln!(
        "wrote {} requests, {} objects, {} tenants to {}",
        trace.requests.len(),
        trace.keys.len(),
        trace.tenants.len(),
        a.out.display()
    );
    Ok(())
}
