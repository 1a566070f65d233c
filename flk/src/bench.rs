//! `flk bench`: drives a gateway (REST or gRPC) or svc-verify (gRPC) with a generated mixed
//! workload (flk-bench) and prints the report; exits non-zero when any answer differs from
//! the one PROTOCOL.md requires. With `--stack-metrics` it also samples the stack's
//! `/metrics` and reports each outcome-feed consumer's lag, catch-up time and CPU share.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::ValueEnum;
use flk_bench::{GrpcMode, Mix, Protocol, Report, RunConfig, Stop, Workload, WorkloadConfig};
use flk_core::{HmacMode, SigningMaterial};

/// Where `flk up` (without `--hmac-key` or `--tenants`, in the same working directory) keeps
/// the `default` tenant's secret.
const DEFAULT_KEY_FILE: &str = "flk-data/verify/default-hmac.key";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProtocolArg {
    Rest,
    Grpc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GrpcModeArg {
    Unary,
    Stream,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HmacModeArg {
    Digest,
    Payload,
}

/// The signing key, shared by `flk bench` and `flk demo`'s reproduction hints.
#[derive(clap::Args, Debug, Clone)]
pub struct KeyArgs {
    /// HMAC secret of the tenant (default: the secret `flk up` generated in
    /// flk-data/verify/default-hmac.key, when that file exists).
    #[arg(long, group = "key")]
    pub hmac_key: Option<String>,
    /// File holding the HMAC secret (e.g. flk-data/verify/default-hmac.key).
    #[arg(long, group = "key")]
    pub key_file: Option<PathBuf>,
    /// Ed25519 private seed of the tenant's key, 64 hex characters (`flk keygen --algorithm
    /// ed25519` prints one).
    #[arg(long, group = "key")]
    pub ed25519_seed: Option<String>,
    /// HMAC mode of the tenant's key.
    #[arg(long, value_enum, default_value = "digest")]
    pub hmac_mode: HmacModeArg,
}

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Gateway URL (or svc-verify's, with --protocol grpc).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    #[arg(long, value_enum, default_value = "rest")]
    pub protocol: ProtocolArg,
    /// gRPC: unary Submit calls or SubmitStream.
    #[arg(long, value_enum, default_value = "unary")]
    pub grpc_mode: GrpcModeArg,
    /// Tenant (X-Tenant-Id / tenant_id).
    #[arg(long, default_value = "default")]
    pub tenant: String,
    #[command(flatten)]
    pub key: KeyArgs,
    /// REST keep-alive connections, or concurrent gRPC unary callers.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// gRPC stream mode: concurrent SubmitStream calls.
    #[arg(long, default_value_t = 4)]
    pub streams: usize,
    /// gRPC stream mode: most items in flight per stream.
    #[arg(long, default_value_t = 256)]
    pub window: usize,
    /// How long to send (10s, 500ms, 2m); the default when --count is not given.
    #[arg(long, value_parser = flk_bench::parse_duration, conflicts_with = "count")]
    pub duration: Option<Duration>,
    /// Send exactly this many items.
    #[arg(long)]
    pub count: Option<u64>,
    /// Target items per second, open loop: latency counts from each item's scheduled send
    /// time, so a stalled server shows in the percentiles (default: flat out).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Fractions of each kind: accepted, escalated, rejected, duplicate, tampered (decimals
    /// or percentages; accepted gets the remainder when left out).
    #[arg(
        long,
        default_value = "accepted=0.9,escalated=0.04,rejected=0.03,duplicate=0.02,tampered=0.01"
    )]
    pub mix: Mix,
    /// Per-request timeout (per answer for streams).
    #[arg(long, value_parser = flk_bench::parse_duration, default_value = "30s")]
    pub timeout: Duration,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// No progress lines on stderr.
    #[arg(long)]
    pub quiet: bool,
    #[command(flatten)]
    pub peer: PeerArgs,
    /// Whole-stack mode: sample the stack's `/metrics` during the run (the outcome-feed
    /// consumers' lag and CPU), wait for every consumer to catch up, and report per consumer
    /// lag p99, catch-up time and CPU share. Consumers are left out with `consume_feed =
    /// false` in their section of `flk up`'s stack file.
    #[arg(long)]
    pub stack_metrics: bool,
    /// The `/metrics` URL to sample (default: --url's `/metrics`, the gateway's).
    #[arg(long)]
    pub metrics_url: Option<String>,
    /// Whole-stack mode: time between two samples.
    #[arg(long, value_parser = flk_bench::parse_duration, default_value = "250ms")]
    pub sample_every: Duration,
    /// Whole-stack mode: longest wait for the consumers to catch up after the run.
    #[arg(long, value_parser = flk_bench::parse_duration, default_value = "120s")]
    pub catch_up_timeout: Duration,
}

/// gRPC credentials towards a port that requires them (svc-verify in a stack).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct PeerArgs {
    /// A stack's data directory (as for `flk up`): its mesh CA and client certificate
    /// (`<data-dir>/tls/`), to bench svc-verify's own mTLS port.
    #[arg(long, conflicts_with_all = ["ca", "client_cert"])]
    pub data_dir: Option<PathBuf>,
    /// PEM CA to trust (TLS; an http:// URL is then dialed over TLS).
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// PEM client certificate (mTLS; with --client-key).
    #[arg(long, requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// PEM key of --client-cert.
    #[arg(long, requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    /// File holding a bearer token to send (a port in token mode).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
}

impl PeerArgs {
    pub fn peer(&self) -> anyhow::Result<flk_runtime::client::Peer> {
        let mut settings = flk_runtime::security::PeerSettings {
            ca: self.ca.clone(),
            cert: self.client_cert.clone(),
            key: self.client_key.clone(),
            server_name: None,
            token_file: self.token_file.clone(),
            token_env: None,
        };
        if let Some(dir) = &self.data_dir {
            let tls = dir.join("tls");
            settings.ca = Some(tls.join("ca.pem"));
            settings.cert = Some(tls.join("client.pem"));
            settings.key = Some(tls.join("client.key"));
            settings.server_name = Some("localhost".into());
        }
        flk_runtime::client::Peer::resolve(&settings, |k| std::env::var(k).ok())
    }
}

pub async fn run(a: BenchArgs) -> anyhow::Result<()> {
    let mut key = a.key.clone();
    if let Some(dir) = &a.peer.data_dir {
        // The stack's generated secret, when it made one and no key is named.
        let generated = dir.join("verify").join("default-hmac.key");
        if key.hmac_key.is_none()
            && key.key_file.is_none()
            && key.ed25519_seed.is_none()
            && generated.is_file()
        {
            key.key_file = Some(generated);
        }
    }
    let signer = signer(&key)?;
    let workload = Arc::new(Workload::new(WorkloadConfig::new(signer, a.mix))?);
    let mut cfg = RunConfig::new(a.url.clone());
    cfg.protocol = match a.protocol {
        ProtocolArg::Rest => Protocol::Rest,
        ProtocolArg::Grpc => Protocol::Grpc,
    };
    cfg.grpc_mode = match a.grpc_mode {
        GrpcModeArg::Unary => GrpcMode::Unary,
        GrpcModeArg::Stream => GrpcMode::Stream,
    };
    cfg.tenant = a.tenant.clone();
    cfg.connections = a.connections;
    cfg.streams = a.streams;
    cfg.window = a.window;
    cfg.stop = match (a.count, a.duration) {
        (Some(n), _) => Stop::Count(n),
        (None, Some(d)) => Stop::Duration(d),
        (None, None) => Stop::Duration(Duration::from_secs(10)),
    };
    cfg.rate = a.rate;
    cfg.timeout = a.timeout;
    cfg.progress = !a.quiet;
    cfg.peer = a.peer.peer()?;
    if !a.stack_metrics {
        let report = flk_bench::run(workload, &cfg).await?;
        if a.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{}", report.to_text());
        }
        return check(&report);
    }
    let metrics_url = a
        .metrics_url
        .clone()
        .unwrap_or_else(|| format!("{}/metrics", a.url.trim_end_matches('/')));
    let (report, stack) = flk_bench::stack::observe(
        &metrics_url,
        a.sample_every,
        a.catch_up_timeout,
        flk_bench::run(workload, &cfg),
    )
    .await?;
    let report = report?;
    if a.json {
        let both = serde_json::json!({ "run": report, "stack": stack });
        println!("{}", serde_json::to_string_pretty(&both)?);
    } else {
        print!("{}{}", report.to_text(), stack.to_text());
    }
    check(&report)
}

/// Fails when any answer differs from the expected one.
pub fn check(report: &Report) -> anyhow::Result<()> {
    if report.mismatches > 0 {
        anyhow::bail!(
            "{} of {} answers differed from the expected outcome",
            report.mismatches,
            report.completed
        );
    }
    if report.completed == 0 {
        anyhow::bail!("no submission was answered");
    }
    Ok(())
}

/// The signing material named on the command line, or `flk up`'s generated secret.
pub fn signer(k: &KeyArgs) -> anyhow::Result<SigningMaterial> {
    let mode = match k.hmac_mode {
        HmacModeArg::Digest => HmacMode::Digest,
        HmacModeArg::Payload => HmacMode::Payload,
    };
    if let Some(secret) = &k.hmac_key {
        return Ok(SigningMaterial::hmac(secret.as_bytes(), mode)?);
    }
    if let Some(seed) = &k.ed25519_seed {
        let raw = hex::decode(seed.trim())
            .ok()
            .filter(|r| r.len() == 32)
            .context("--ed25519-seed must be 64 hex characters (32 bytes)")?;
        return Ok(SigningMaterial::ed25519_seed(&raw)?);
    }
    let (path, named) = match &k.key_file {
        Some(p) => (p.as_path(), true),
        None => (Path::new(DEFAULT_KEY_FILE), false),
    };
    let secret = match std::fs::read_to_string(path) {
        Ok(s) => s.trim().to_owned(),
        Err(e) if named => {
            return Err(e).with_context(|| format!("cannot read key file {}", path.display()));
        }
        Err(_) => anyhow::bail!(
            "no signing key: pass --hmac-key SECRET, --key-file FILE or --ed25519-seed HEX \
             (`flk up` without --hmac-key keeps the default tenant's secret in {DEFAULT_KEY_FILE}, \
             which is not here)"
        ),
    };
    if secret.is_empty() {
        anyhow::bail!("key file {} is empty", path.display());
    }
    Ok(SigningMaterial::hmac(secret.as_bytes(), mode)?)
}
