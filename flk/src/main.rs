//! `flk`: the FLK command line. `flk up` runs svc-verify and the gateway in one process on
//! embedded storage; `flk submit` posts PCS JSON to a gateway; `flk keygen` makes keys;
//! `flk bench` drives a server with a generated workload; `flk demo` does both in one go.

mod audit;
mod bench;
mod demo;
mod report;
mod stack;

use std::io::Read as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use base64::Engine as _;
use clap::{Parser, Subcommand};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "flk",
    version,
    about = "FLK: verify agents' Proof-of-Computation Summaries"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway and svc-verify in one process on embedded storage.
    Up(UpArgs),
    /// Submit PCS JSON (one document, or NDJSON for many) and print the outcomes.
    Submit(SubmitArgs),
    /// Generate key material for a tenants file.
    Keygen(KeygenArgs),
    /// Drive a gateway (REST or gRPC) or svc-verify with a generated workload and report
    /// throughput, latency and every answer that differs from the expected one.
    Bench(bench::BenchArgs),
    /// Start the system in this process, feed it a mixed workload for a few seconds and show
    /// what happened.
    Demo(demo::DemoArgs),
    /// Reports: `report kpi` renders svc-kpi's KPIs (JSON or HTML) from a URL or a data dir.
    Report(report::ReportArgs),
    /// The audit log: `audit verify` checks a stored log or a proof bundle offline.
    Audit(audit::AuditArgs),
}

#[derive(clap::Args)]
struct UpArgs {
    /// Data directory (restarting on the same directory keeps everything).
    #[arg(long, default_value = "flk-data")]
    data_dir: PathBuf,
    /// Gateway listen address (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Tenants file (TOML).
    #[arg(long)]
    tenants: Option<PathBuf>,
    /// Shortcut: give the `default` tenant this HMAC secret (digest mode).
    #[arg(long, conflicts_with = "tenants")]
    hmac_key: Option<String>,
    /// svc-audit's config file (TOML, as for the svc-audit binary; e.g. its `[anchor]`
    /// section to anchor checkpoints). Its `listen`, `data_dir` and `verify_url` are set by
    /// `flk up`.
    #[arg(long)]
    audit_config: Option<PathBuf>,
}

#[derive(clap::Args)]
struct SubmitArgs {
    /// File with one PCS JSON document or NDJSON; `-` reads standard input.
    file: String,
    /// Gateway URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Tenant (sent as X-Tenant-Id).
    #[arg(long, default_value = "default")]
    tenant: String,
}

#[derive(clap::Args)]
struct KeygenArgs {
    /// Key algorithm.
    #[arg(long, value_parser = ["hmac", "ed25519"], default_value = "hmac")]
    algorithm: String,
    /// Key id to put in the snippet.
    #[arg(long, default_value = "k1")]
    id: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Up(a) => up(a).await,
        Command::Submit(a) => submit(a).await,
        Command::Keygen(a) => {
            keygen(&a);
            Ok(())
        }
        Command::Bench(a) => bench::run(a).await,
        Command::Demo(a) => demo::run(a).await,
        Command::Report(a) => report::run(a).await,
        // Synchronous file and database reads: off the async runtime.
        Command::Audit(a) => tokio::task::spawn_blocking(move || audit::run(a)).await?,
    }
}

async fn up(a: UpArgs) -> anyhow::Result<()> {
    let audit = match &a.audit_config {
        // Only the file: `flk up` reads no FLK_AUDIT_* variables.
        Some(path) => Some(svc_audit::AuditConfig::load(Some(path), |_| None)?),
        None => None,
    };
    let stack = stack::Stack::start(&stack::StackConfig {
        data_dir: a.data_dir.clone(),
        listen: a.listen,
        tenants: a.tenants.clone(),
        hmac_key: a.hmac_key.clone(),
        audit: audit.clone(),
    })
    .await?;
    let (addr, verify_addr) = (stack.addr, stack.verify_addr);
    println!("flk up: data dir {}", a.data_dir.display());
    println!("svc-verify (grpc) on http://{verify_addr}, embedded storage");
    println!(
        "svc-audit (grpc, REST /v1/audit/*) on http://{}, consuming svc-verify's outcome feed, log in {}",
        stack.audit_addr,
        stack.audit_dir.display()
    );
    println!("audit log verifier key: {}", stack.audit_verifier_key);
    let anchor = audit.as_ref().map(|c| &c.anchor);
    match anchor.map(|a| (a.strategy, a.interval_secs)) {
        Some((strategy, every)) if strategy != svc_audit::anchoring::StrategySetting::None => {
            println!(
                "audit checkpoint anchoring: {} every {every} s",
                strategy.name()
            )
        }
        _ => println!("audit checkpoint anchoring: off (--audit-config with an [anchor] section)"),
    }
    println!(
        "svc-kpi (grpc, REST /v1/feedback /v1/kpi/report) on http://{}, consuming the outcome feed",
        stack.kpi_addr
    );
    println!("tenants: {}", stack.tenants.join(", "));
    match (&a.tenants, &a.hmac_key, &stack.generated_secret) {
        (Some(t), _, _) => println!("keys: from {}", t.display()),
        (None, Some(_), _) => {
            println!("keys: tenant default, hmac digest mode, the --hmac-key secret")
        }
        (None, None, Some(f)) => {
            println!(
                "keys: tenant default, hmac digest mode, secret in {}",
                f.display()
            )
        }
        (None, None, None) => {}
    }
    println!(
        "submit: curl -s -XPOST http://{addr}/v1/pcs/submit -H 'content-type: application/json' --data @pcs.json"
    );
    println!("gateway listening on http://{addr}");
    svc_verify::shutdown_signal().await;
    println!("shutting down");
    stack.stop().await
}

async fn submit(a: SubmitArgs) -> anyhow::Result<()> {
    let text = if a.file == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        s
    } else {
        std::fs::read_to_string(&a.file).with_context(|| format!("cannot read {}", a.file))?
    };
    // One JSON document (possibly pretty-printed), or NDJSON: one document per line.
    let docs: Vec<String> = match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(_) => vec![text.clone()],
        Err(_) => text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned)
            .collect(),
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let url = format!("{}/v1/pcs/submit", a.url.trim_end_matches('/'));
    let mut failures = 0usize;
    for (i, doc) in docs.iter().enumerate() {
        let resp = client
            .post(&url)
            .header("content-type", "application/json")
            .header("x-tenant-id", &a.tenant)
            .body(doc.clone())
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.unwrap_or_default();
        let body: serde_json::Value =
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        if status == 200 || status == 202 {
            println!(
                "{i}\t{status}\t{}\t{}\t{}{}",
                body["outcome"].as_str().unwrap_or("?"),
                body["reason_code"].as_str().unwrap_or("?"),
                body["pcs_id"].as_str().unwrap_or("?"),
                if body["duplicate"] == true {
                    "\tduplicate"
                } else {
                    ""
                }
            );
        } else {
            failures += 1;
            println!(
                "{i}\t{status}\terror\t{}\t{}",
                body["error"]["code"].as_str().unwrap_or("?"),
                body["error"]["message"].as_str().unwrap_or("")
            );
        }
    }
    if failures > 0 {
        anyhow::bail!("{failures} of {} submissions were refused", docs.len());
    }
    Ok(())
}

fn keygen(a: &KeygenArgs) {
    use rand::RngCore;
    let mut seed = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut seed);
    let b64 = base64::engine::general_purpose::STANDARD;
    println!("[[tenant.keys]]\nid = \"{}\"", a.id);
    if a.algorithm == "hmac" {
        println!(
            "algorithm = \"hmac\"\nmode = \"digest\"\nsecret = \"{}\"",
            hex::encode(seed)
        );
    } else {
        let sk = ed25519_dalek::SigningKey::from_bytes(&seed);
        println!(
            "algorithm = \"ed25519\"\npublic_key = \"{}\"\n# agent's private seed (keep secret): {}",
            b64.encode(sk.verifying_key().as_bytes()),
            hex::encode(seed)
        );
    }
}
