//! `flk report kpi`: the KPI reports of svc-kpi for every window (1h, 24h, 7d), fetched from a
//! gateway or svc-kpi (`GET /v1/kpi/report`, `--url`) or computed from a svc-kpi data
//! directory (`--data-dir`, while svc-kpi is stopped: redb locks its file), written as JSON
//! or as a self-contained HTML page with SLO compliance per tenant and window.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Subcommand;
use svc_kpi::{KpiReport, Window};

#[derive(clap::Args)]
pub struct ReportArgs {
    #[command(subcommand)]
    what: ReportWhat,
}

#[derive(Subcommand)]
enum ReportWhat {
    /// Hallucination containment, escalation, false alarms, cost per trusted task, audit
    /// coverage and verification latency, per tenant and window, with SLO compliance.
    Kpi(KpiArgs),
}

#[derive(clap::Args)]
struct KpiArgs {
    /// Gateway or svc-kpi URL serving `GET /v1/kpi/report`.
    #[arg(
        long,
        conflicts_with = "data_dir",
        required_unless_present = "data_dir"
    )]
    url: Option<String>,
    /// A svc-kpi data directory (holding kpi.redb) to read directly.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// svc-kpi config file whose prices and SLOs apply with --data-dir (default: defaults).
    #[arg(long, requires = "data_dir")]
    config: Option<PathBuf>,
    /// Tenant (repeatable). Default: `default` with --url, every tenant seen with --data-dir.
    #[arg(long = "tenant")]
    tenants: Vec<String>,
    /// Output format.
    #[arg(long, value_parser = ["json", "html"], default_value = "json")]
    format: String,
    /// Output file (default: standard output).
    #[arg(long)]
    out: Option<PathBuf>,
}

pub async fn run(a: ReportArgs) -> anyhow::Result<()> {
    match a.what {
        ReportWhat::Kpi(k) => kpi(k).await,
    }
}

async fn kpi(a: KpiArgs) -> anyhow::Result<()> {
    let reports = match (&a.url, &a.data_dir) {
        (Some(url), _) => fetch(url, &a.tenants).await?,
        (None, Some(dir)) => read_dir(dir.clone(), a.config.clone(), a.tenants.clone()).await?,
        (None, None) => anyhow::bail!("give --url or --data-dir"),
    };
    let text = match a.format.as_str() {
        "html" => svc_kpi::render::render_html(&reports, "FLK KPI report"),
        _ => svc_kpi::render::render_json(&reports) + "\n",
    };
    match &a.out {
        Some(path) => std::fs::write(path, text)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => print!("{text}"),
    }
    Ok(())
}

async fn fetch(url: &str, tenants: &[String]) -> anyhow::Result<Vec<KpiReport>> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let tenants = if tenants.is_empty() {
        vec!["default".to_owned()]
    } else {
        tenants.to_vec()
    };
    let mut out = Vec::new();
    for tenant in &tenants {
        for w in Window::ALL {
            let u = format!(
                "{}/v1/kpi/report?window={}",
                url.trim_end_matches('/'),
                w.as_str()
            );
            let resp = client
                .get(&u)
                .header("x-tenant-id", tenant)
                .send()
                .await
                .with_context(|| format!("cannot reach {u}"))?;
            let status = resp.status();
            let body = resp.bytes().await.unwrap_or_default();
            if !status.is_success() {
                anyhow::bail!(
                    "{u} (tenant {tenant}) answered {status}: {}",
                    String::from_utf8_lossy(&body)
                );
            }
            out.push(
                serde_json::from_slice::<KpiReport>(&body)
                    .with_context(|| format!("{u} did not answer a KPI report"))?,
            );
        }
    }
    Ok(out)
}

async fn read_dir(
    dir: PathBuf,
    config: Option<PathBuf>,
    tenants: Vec<String>,
) -> anyhow::Result<Vec<KpiReport>> {
    tokio::task::spawn_blocking(move || {
        let cfg = svc_kpi::KpiConfig::load(config.as_deref(), |_| None)?;
        anyhow::ensure!(
            dir.join(svc_kpi::store::FILE_NAME).is_file(),
            "{} holds no svc-kpi store ({})",
            dir.display(),
            svc_kpi::store::FILE_NAME
        );
        let store = svc_kpi::Store::open(&dir, cfg.retention_days)?;
        let tenants = if tenants.is_empty() {
            store.tenants()?
        } else {
            tenants
        };
        let settings = svc_kpi::ReportSettings {
            prices: cfg.prices,
            slo: cfg.slo,
        };
        let now = svc_kpi::Clock::now_ms(&svc_kpi::SystemClock);
        let mut out = Vec::new();
        for tenant in &tenants {
            for w in Window::ALL {
                out.push(svc_kpi::compute_report(
                    &store, tenant, w, now, &settings, None,
                )?);
            }
        }
        Ok(out)
    })
    .await?
}
