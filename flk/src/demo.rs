//! `flk demo`: starts the system in this process exactly as `flk up` does (in a temporary
//! data directory unless told otherwise), gives the `default` tenant a fresh key, feeds it a
//! mixed workload for a few seconds and shows what happened: expected vs received answers per
//! kind, throughput and latency, one example answer of each kind, and how to reproduce with
//! curl. Exits non-zero when any answer differs from the expected one.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use flk_bench::{Mix, Protocol, Report, RunConfig, Stop, Workload, WorkloadConfig};
use flk_core::{HmacMode, SigningMaterial};

use crate::bench::ProtocolArg;
use crate::stack::{Stack, StackConfig};

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Data directory (default: a temporary one, removed when the demo ends).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Gateway listen address (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// How long to feed the workload.
    #[arg(long, value_parser = flk_bench::parse_duration, default_value = "3s")]
    pub duration: Duration,
    /// Fractions of each kind (see `flk bench --help`).
    #[arg(
        long,
        default_value = "accepted=0.85,escalated=0.05,rejected=0.05,duplicate=0.03,tampered=0.02"
    )]
    pub mix: Mix,
    /// Concurrent connections (REST) or callers (gRPC).
    #[arg(long, default_value_t = 16)]
    pub connections: usize,
    #[arg(long, value_enum, default_value = "rest")]
    pub protocol: ProtocolArg,
    /// Target items per second (default: flat out).
    #[arg(long)]
    pub rate: Option<f64>,
}

pub async fn run(a: DemoArgs) -> anyhow::Result<()> {
    let temp = match &a.data_dir {
        Some(_) => None,
        None => Some(tempfile::Builder::new().prefix("flk-demo-").tempdir()?),
    };
    let data_dir = match (&a.data_dir, &temp) {
        (Some(d), _) => d.clone(),
        (None, Some(t)) => t.path().to_path_buf(),
        (None, None) => unreachable!("a temporary directory is made when none is given"),
    };
    let secret = {
        use rand::RngCore;
        let mut raw = [0u8; 24];
        rand::thread_rng().fill_bytes(&mut raw);
        hex::encode(raw)
    };
    // The demo's own settings only: no config file, no environment.
    let config = StackConfig::load(None, Some(&data_dir), |k| match k {
        gateway::config::env::LISTEN => Some(a.listen.to_string()),
        svc_verify::config::env::HMAC_KEY => Some(secret.clone()),
        _ => None,
    })?;
    let stack = Stack::start(&config).await?;
    let url = format!("http://{}", stack.addr);
    println!("flk demo: the whole system in this process, as `flk up` runs it");
    println!("  gateway     {url} (REST and gRPC)");
    println!(
        "  svc-verify  http://{} (gRPC, embedded storage)",
        stack.verify_addr
    );
    println!(
        "  data dir    {}{}",
        data_dir.display(),
        if temp.is_some() {
            " (temporary, removed at the end)"
        } else {
            ""
        }
    );
    println!("  tenant      default, new hmac key (digest mode): {secret}");
    let protocol = match a.protocol {
        ProtocolArg::Rest => Protocol::Rest,
        ProtocolArg::Grpc => Protocol::Grpc,
    };
    println!(
        "workload: {:.1} s of {} over {}, {} connections",
        a.duration.as_secs_f64(),
        a.mix,
        match protocol {
            Protocol::Rest => "REST",
            Protocol::Grpc => "gRPC",
        },
        a.connections
    );

    let signer = SigningMaterial::hmac(secret.as_bytes(), HmacMode::Digest)?;
    let mut wcfg = WorkloadConfig::new(signer, a.mix);
    wcfg.prefix = "demo".to_owned();
    let workload = Arc::new(Workload::new(wcfg)?);
    let mut cfg = RunConfig::new(url.clone());
    cfg.protocol = protocol;
    cfg.connections = a.connections;
    cfg.stop = Stop::Duration(a.duration);
    cfg.rate = a.rate;
    cfg.progress = true;
    let result = flk_bench::run(workload, &cfg).await;
    let stopped = stack.stop().await;
    let report = result?;
    stopped?;

    println!();
    println!("== what happened ==");
    print!("{}", report.to_text());
    print_examples(&report)?;
    print_reproduce(&report, &secret);
    drop(temp);
    crate::bench::check(&report)
}

fn print_examples(report: &Report) -> anyhow::Result<()> {
    println!();
    println!("== example answers (one of each kind) ==");
    for (kind, e) in &report.examples {
        println!(
            "-- {kind}: item {}, expected {}, got {}",
            e.index, e.expected, e.got
        );
        println!("{}", serde_json::to_string_pretty(&e.response)?);
    }
    Ok(())
}

fn print_reproduce(report: &Report, secret: &str) {
    println!();
    println!("== reproduce ==");
    println!("  flk up --data-dir ./demo-data --hmac-key {secret}");
    if let Some(e) = report.examples.get(&flk_bench::Kind::Accepted) {
        println!(
            "  curl -s -XPOST http://127.0.0.1:8080/v1/pcs/submit -H 'content-type: application/json' \\\n       -H 'x-tenant-id: default' --data '{}'",
            e.request
        );
        println!(
            "  (signed with that key: answered 200 accepted; the same POST again answers the stored outcome with \"duplicate\": true)"
        );
    }
    println!("  flk bench --url http://127.0.0.1:8080 --hmac-key {secret} --duration 10s");
}
