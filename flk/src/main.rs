//! `flk`: the FLK command line. `flk up` runs svc-verify and the gateway in one process on
//! embedded storage; `flk submit` posts PCS JSON to a gateway; `flk keygen` makes keys;
//! `flk bench` drives a server with a generated workload; `flk demo` does both in one go.

mod audit;
mod bench;
mod compliance;
mod crr;
mod demo;
mod pki;
mod report;
mod soak;
mod stack;
mod tiering;

use std::io::Read as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use base64::Engine as _;
use clap::{Parser, Subcommand};
use flk_runtime::config::redact_url;

// `--features system-alloc` leaves the system allocator in place, so heap profilers that hook
// `malloc` (heaptrack, valgrind's massif) see every allocation.
#[cfg(not(feature = "system-alloc"))]
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
#[allow(clippy::large_enum_variant)] // parsed once per process
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
    /// The hot tier: `tiering eval` compares policies on an access trace, `tiering gen-trace`
    /// writes a synthetic one.
    Tiering(tiering::TieringArgs),
    /// Cross-region replication: status, divergence with a peer, repair proposals.
    Crr(crr::CrrArgs),
    /// Drive a stack at a steady rate for a long time, sampling its memory, descriptors,
    /// disk use and p99; fail when one grows past its bound.
    Soak(soak::SoakArgs),
}

#[derive(clap::Args)]
struct UpArgs {
    /// The stack's config file: one TOML with a section per service (`[verify]`, `[audit]`,
    /// `[kpi]`, `[gateway]`), each in that service's own format; every service's environment
    /// variables override its section. The flags below override both.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print the effective configuration (TOML, secrets redacted) and exit.
    #[arg(long)]
    print_config: bool,
    /// Data directory (restarting on the same directory keeps everything); default
    /// `flk-data`, or the config file's `data_dir`.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Gateway listen address (port 0 picks a free port) [`[gateway] listen`].
    #[arg(long)]
    listen: Option<String>,
    /// Tenants file (TOML) [`[verify] tenants_file`; the gateway reads it too].
    #[arg(long)]
    tenants: Option<PathBuf>,
    /// Shortcut: give the `default` tenant this HMAC secret (digest mode) [`[verify] hmac_key`].
    #[arg(long, conflicts_with = "tenants")]
    hmac_key: Option<String>,
    /// svc-audit's config file (as for the svc-audit binary), used as the `[audit]` section.
    #[arg(long, value_name = "FILE")]
    audit_config: Option<PathBuf>,
}

impl UpArgs {
    /// The value a flag gives to the variable `name` (flags win over the environment).
    fn flag(&self, name: &str) -> Option<String> {
        match name {
            gateway::config::env::LISTEN => self.listen.clone(),
            svc_verify::config::env::TENANTS_FILE => {
                self.tenants.as_ref().map(|p| p.display().to_string())
            }
            svc_verify::config::env::HMAC_KEY => self.hmac_key.clone(),
            _ => None,
        }
    }

    /// The stack's configuration: file, `--audit-config`, environment, flags.
    fn stack_config(&self) -> anyhow::Result<stack::StackConfig> {
        let (mut doc, mut origin) = stack::read_doc(self.config.as_deref())?;
        if let Some(path) = &self.audit_config {
            let (audit, _) = stack::read_doc(Some(path))?;
            if doc.insert("audit".into(), audit.into()).is_some() {
                anyhow::bail!("--audit-config and an [audit] section in --config: give one");
            }
            origin = format!("{origin} with --audit-config {}", path.display());
        }
        let vars = |k: &str| self.flag(k).or_else(|| std::env::var(k).ok());
        stack::StackConfig::from_doc(doc, &origin, self.data_dir.as_deref(), vars)
    }
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
    /// Key (or token) id to put in the snippet.
    #[arg(long, default_value = "k1")]
    id: String,
    /// Make a tenant API token instead of a signing key: prints the token and the
    /// `[[tenant.api_tokens]]` snippet holding its SHA-256.
    #[arg(long)]
    token: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = flk_runtime::telemetry::init("flk", "warn");
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
        // A synchronous replay: off the async runtime.
        Command::Tiering(a) => tokio::task::spawn_blocking(move || tiering::run(a)).await?,
        Command::Crr(a) => crr::run(a).await,
        Command::Soak(a) => soak::run(a).await,
    }
}

async fn up(a: UpArgs) -> anyhow::Result<()> {
    let cfg = a.stack_config()?;
    if a.print_config {
        print!("{}", cfg.redacted());
        return Ok(());
    }
    flk_runtime::memory::limit_huge_pages_from_env();
    let stack = stack::Stack::start(&cfg).await?;
    let (addr, verify_addr) = (stack.addr, stack.verify_addr);
    let scheme = if stack.pki.is_some() { "https" } else { "http" };
    println!("flk up: data dir {}", cfg.data_dir.display());
    println!("svc-verify (grpc) on {scheme}://{verify_addr}, embedded storage");
    println!(
        "svc-audit (grpc, REST /v1/audit/*) on {scheme}://{}, consuming svc-verify's outcome feed, log in {}",
        stack.audit_addr,
        stack.audit_dir.display()
    );
    println!("audit log verifier key: {}", stack.audit_verifier_key);
    let anchor = &cfg.audit.anchor;
    if anchor.strategy != svc_audit::anchoring::StrategySetting::None {
        println!(
            "audit checkpoint anchoring: {} every {} s",
            anchor.strategy.name(),
            anchor.interval_secs
        );
    } else {
        println!("audit checkpoint anchoring: off ([audit.anchor] in --config)");
    }
    println!(
        "svc-kpi (grpc, REST /v1/feedback /v1/kpi/report) on {scheme}://{}, consuming the outcome feed",
        stack.kpi_addr
    );
    println!(
        "svc-tiering (grpc TieringService) on {scheme}://{}: hot {}, warm {}, cold {}; reads via GET /v1/pcs/{{pcs_id}}[/body]",
        stack.tiering_addr,
        redact_url(&cfg.tiering.hot),
        redact_url(&cfg.tiering.warm),
        redact_url(&cfg.tiering.cold_url().unwrap_or_default()),
    );
    println!(
        "svc-crr (region {}) on http://{}: REST /v1/crr/*, {} peer(s), reconcile {:?}{}",
        cfg.crr.region,
        stack.crr_addr,
        cfg.crr.peers.len(),
        cfg.crr.reconcile_mode,
        stack
            .crr_token
            .as_ref()
            .map(|p| format!("; token in {}", p.display()))
            .unwrap_or_default(),
    );
    match &stack.pki {
        Some(pki) => println!(
            "internal ports: mTLS, private CA {}",
            pki.path("ca.pem").display()
        ),
        None => println!("internal ports: the [tls] sections of the config"),
    }
    if let Some(path) = &stack.admin_token {
        println!("admin token: {}", path.display());
    }
    println!("tenants: {}", stack.tenants.join(", "));
    match (
        &cfg.verify.tenants_file,
        &cfg.verify.hmac_key,
        &stack.generated_secret,
    ) {
        (Some(t), _, _) => println!("keys and api tokens: from {}", t.display()),
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
    if let Some(path) = &stack.default_token {
        println!("api token of tenant default: {}", path.display());
    }
    println!(
        "submit: curl -s -XPOST http://{addr}/v1/pcs/submit -H 'content-type: application/json' --data @pcs.json"
    );
    if let Some(path) = &stack.default_token {
        println!(
            "read:   curl -s http://{addr}/v1/pcs/<pcs_id> -H \"authorization: Bearer $(cat {})\"",
            path.display()
        );
    }
    println!("gateway listening on http://{addr}");
    flk_runtime::shutdown::signal().await;
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
    if a.token {
        let token = flk_runtime::security::generate_token();
        let hash = flk_runtime::security::TokenHash::of(&token).hex();
        println!("{token}");
        println!("# ^ the token: give it to the tenant (it is kept nowhere); the tenants file");
        println!("# holds only its SHA-256:");
        println!(
            "[[tenant.api_tokens]]\nid = \"{}\"\nsha256 = \"{hash}\"",
            a.id
        );
        println!("# not_after = \"2027-01-01T00:00:00Z\"   # optional validity window");
        return;
    }
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
