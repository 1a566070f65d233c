//! A minimal FLK agent: reads a point cloud (CSV rows `t,x,y,z`, or a generated helix), builds
//! its PCS the way the field's agents do, signs it, writes it ahead to an outbox and delivers
//! everything pending (what a crash left behind included).
//!
//! ```text
//! cargo run -p flk-sdk --example agent -- --url http://127.0.0.1:8080 --hmac-key SECRET \
//!     [--tenant default] [--shard shard-1] [--epoch 1] [--csv points.csv] [--outbox ./outbox]
//! ```

use std::process::ExitCode;

use flk_sdk::client::{Client, ClientConfig, Outbox};
use flk_sdk::construct::{self, BuildParams};
use flk_sdk::{HmacMode, SigningKey};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// `(t, [x, y, z])` rows of a CSV file (a header line is skipped), or a generated helix.
fn rows() -> Result<Vec<(f64, [f64; 3])>, String> {
    let Some(path) = arg("--csv") else {
        return Ok((0..2_000)
            .map(|i| {
                let a = i as f64 * 0.01;
                let p = [0.5 + 0.3 * a.cos(), 0.5 + 0.3 * a.sin(), i as f64 / 2_000.0];
                (1_700_000_000.0 + 0.25 * i as f64, p)
            })
            .collect());
    };
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    text.lines()
        .filter(|l| l.starts_with(|c: char| c.is_ascii_digit() || c == '-'))
        .map(|l| {
            let v: Vec<f64> = l
                .split(',')
                .map(|c| c.trim().parse::<f64>().map_err(|e| format!("{l:?}: {e}")))
                .collect::<Result<_, _>>()?;
            match v[..] {
                [t, x, y, z] => Ok((t, [x, y, z])),
                _ => Err(format!("{l:?}: need t,x,y,z")),
            }
        })
        .collect()
}

async fn run() -> Result<(), String> {
    let url = arg("--url").ok_or("--url is required")?;
    let secret = arg("--hmac-key").ok_or("--hmac-key is required")?;
    let tenant = arg("--tenant").unwrap_or_else(|| "default".into());
    let epoch = arg("--epoch").and_then(|e| e.parse().ok()).unwrap_or(1);
    let params = BuildParams::new(
        arg("--shard").unwrap_or_else(|| "shard-1".into()),
        epoch,
        42,
    );

    let rows = rows()?;
    let points: Vec<[f64; 3]> = rows.iter().map(|(_, p)| *p).collect();
    let raw = construct::raw_rows(rows.iter().map(|(t, p)| (*t, p)));
    let mut pcs = construct::build_pcs(&points, &raw, &params).map_err(|e| e.to_string())?;
    pcs.sign(&SigningKey::hmac(secret.as_bytes(), HmacMode::Digest).map_err(|e| e.to_string())?);
    println!(
        "built pcs {} (D_hat {}, coh_star {}, r {}, regime {})",
        pcs.pcs_id, pcs.d_hat, pcs.coh_star, pcs.r, pcs.regime
    );

    let mut outbox = Outbox::open(arg("--outbox").unwrap_or_else(|| "outbox".into()))
        .map_err(|e| e.to_string())?;
    outbox.enqueue(pcs.to_json()).map_err(|e| e.to_string())?;
    let client = Client::new(ClientConfig::new(url, tenant)).map_err(|e| e.to_string())?;
    let report = outbox
        .deliver(&client, |seq, a| {
            println!(
                "#{seq}: {} {} duplicate={} {}",
                a.http_status,
                a.outcome.as_deref().unwrap_or("-"),
                a.duplicate,
                a.error_code
                    .as_deref()
                    .or(a.reason_code.as_deref())
                    .unwrap_or("")
            )
        })
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "delivered: {} decided ({} duplicates), {} dead-lettered, {} pending",
        report.decided, report.duplicates, report.dead_lettered, report.pending
    );
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("agent: {e}");
            ExitCode::from(1)
        }
    }
}
