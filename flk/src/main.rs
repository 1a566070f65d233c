//! `flk`: the FLK command line. `flk up` runs svc-verify and the gateway in one process on
//! embedded storage; `flk submit` posts PCS JSON to a gateway; `flk keygen` makes keys.

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
    }
}

async fn up(a: UpArgs) -> anyhow::Result<()> {
    let cfg = svc_verify::VerifyConfig {
        data_dir: a.data_dir.join("verify"),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        tenants_file: a.tenants.clone(),
        hmac_key: a.hmac_key.clone(),
        ..Default::default()
    };
    cfg.validate()?;
    let service = svc_verify::Service::open(&cfg).await?;
    let tenants: Vec<String> = service.engine.tenants().ids().map(str::to_owned).collect();
    let secret_file = service.generated_secret.clone();
    let verify_listener = tokio::net::TcpListener::bind(cfg.listen).await?;
    let verify_addr = verify_listener.local_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut verify_stop = stop_rx.clone();
    let verify = tokio::spawn(service.serve(verify_listener, async move {
        let _ = verify_stop.changed().await;
    }));

    // The gateway admits with the same per-tenant limits as svc-verify.
    let limits = match &a.tenants {
        Some(path) => gateway::limits_from_tenants_file(path)?,
        None => Default::default(),
    };
    let gw = gateway::Gateway::new(gateway::GatewayConfig {
        upstreams: vec![format!("http://{verify_addr}")],
        limits,
        ..Default::default()
    })?;
    let listener = tokio::net::TcpListener::bind(a.listen)
        .await
        .with_context(|| format!("cannot listen on {}", a.listen))?;
    let addr = listener.local_addr()?;
    println!("flk up: data dir {}", a.data_dir.display());
    println!("svc-verify (grpc) on http://{verify_addr}, embedded storage");
    println!("tenants: {}", tenants.join(", "));
    match (&a.tenants, &a.hmac_key, &secret_file) {
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
    let mut gw_stop = stop_rx.clone();
    let server = tokio::spawn(gateway::serve(listener, gw, async move {
        let _ = gw_stop.changed().await;
    }));
    println!("gateway listening on http://{addr}");
    svc_verify::shutdown_signal().await;
    println!("shutting down");
    let _ = stop_tx.send(true);
    server.await??;
    verify.await??;
    Ok(())
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
