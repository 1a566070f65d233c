//! `flk report kpi`: the KPI reports of svc-kpi for every window (1h, 24h, 7d), written as
//! JSON or as a self-contained HTML page with SLO compliance per tenant and window, from
//!
//! * `--url`: a gateway or svc-kpi serving `GET /v1/kpi/report`. The gateway wants a tenant
//!   API token (`--token`, `--token-file`; `flk up` writes the `default` tenant's to
//!   `<data_dir>/default.token`), sent as `Authorization: Bearer`;
//! * `--data-dir`: a stack's data directory, as `flk up --data-dir` takes it (svc-kpi's store
//!   is `<dir>/kpi/kpi.redb`), or svc-kpi's own (`<dir>/kpi.redb`), read directly while the
//!   stack or svc-kpi is stopped (redb locks its file). Prices and SLOs are svc-kpi's
//!   defaults unless `--config` gives its config file.

use std::path::{Path, PathBuf};
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
    /// A compliance report (SOC 2, ISO 27001, HIPAA, GDPR or a framework file) with evidence
    /// computed from a data directory, as JSON, HTML, PDF or OSCAL.
    Compliance(crate::compliance::ComplianceArgs),
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
    /// Tenant API token for the gateway (sent as `Authorization: Bearer`).
    #[arg(
        long,
        value_name = "TOKEN",
        requires = "url",
        conflicts_with = "token_file"
    )]
    token: Option<String>,
    /// File holding the tenant API token (e.g. `flk up`'s `<data_dir>/default.token`).
    #[arg(long, value_name = "FILE", requires = "url")]
    token_file: Option<PathBuf>,
    /// Data directory to read directly (stopped): a stack's, as given to `flk up` (reads
    /// `<dir>/kpi`), or svc-kpi's own (holding kpi.redb).
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
        // Synchronous file reads: off the async runtime. Exit 3 with --strict on a failed
        // control.
        ReportWhat::Compliance(c) => {
            if tokio::task::spawn_blocking(move || crate::compliance::run(c)).await?? {
                std::process::exit(3);
            }
            Ok(())
        }
    }
}

async fn kpi(a: KpiArgs) -> anyhow::Result<()> {
    let reports = match (&a.url, &a.data_dir) {
        (Some(url), _) => {
            let token = match (&a.token, &a.token_file) {
                (Some(t), _) => Some(t.trim().to_owned()),
                (None, Some(path)) => Some(read_token(path)?),
                (None, None) => None,
            };
            fetch(url, token.as_deref(), &a.tenants).await?
        }
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

/// The token in `path` (surrounding whitespace removed); an empty file is an error.
fn read_token(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read token file {}", path.display()))?;
    let token = text.trim();
    anyhow::ensure!(!token.is_empty(), "token file {} is empty", path.display());
    Ok(token.to_owned())
}

async fn fetch(
    url: &str,
    token: Option<&str>,
    tenants: &[String],
) -> anyhow::Result<Vec<KpiReport>> {
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
            let mut req = client.get(&u).header("x-tenant-id", tenant);
            if let Some(token) = token {
                req = req.bearer_auth(token);
            }
            let resp = req
                .send()
                .await
                .with_context(|| format!("cannot reach {u}"))?;
            let status = resp.status();
            let body = resp.bytes().await.unwrap_or_default();
            if status == reqwest::StatusCode::UNAUTHORIZED {
                let hint = if token.is_some() {
                    "the token given is not valid for this tenant"
                } else {
                    "pass the tenant's API token with --token TOKEN or --token-file FILE (`flk up` writes the default tenant's to <data_dir>/default.token)"
                };
                anyhow::bail!(
                    "{u} (tenant {tenant}) answered {status}: {hint}; it said: {}",
                    String::from_utf8_lossy(&body)
                );
            }
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
        let dir = kpi_dir(&dir)?;
        let store = svc_kpi::Store::open(&dir, cfg.retention_days).with_context(|| {
            format!(
                "cannot open svc-kpi's store in {} (while svc-kpi or `flk up` runs on it, the file is locked: stop it, or use --url)",
                dir.display()
            )
        })?;
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

/// The svc-kpi data directory of `dir`: `<dir>/kpi` when `dir` is a stack's data directory
/// (`flk up --data-dir`), else `dir` itself when it holds svc-kpi's store.
fn kpi_dir(dir: &Path) -> anyhow::Result<PathBuf> {
    let file = svc_kpi::store::FILE_NAME;
    let stack = dir.join(crate::stack::KPI_DIR);
    if stack.join(file).is_file() {
        return Ok(stack);
    }
    if dir.join(file).is_file() {
        return Ok(dir.to_owned());
    }
    anyhow::bail!(
        "{} holds no svc-kpi store: neither {} (a `flk up` data dir) nor {} (a svc-kpi data dir) exists",
        dir.display(),
        stack.join(file).display(),
        dir.join(file).display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stack_dir_or_a_svc_kpi_dir_is_accepted_and_else_both_paths_are_named() {
        let root = tempfile::tempdir().unwrap();
        let stack = root.path().join("stack");
        std::fs::create_dir_all(stack.join("kpi")).unwrap();
        std::fs::write(stack.join("kpi").join(svc_kpi::store::FILE_NAME), b"").unwrap();
        assert_eq!(kpi_dir(&stack).unwrap(), stack.join("kpi"));
        assert_eq!(kpi_dir(&stack.join("kpi")).unwrap(), stack.join("kpi"));

        let err = kpi_dir(root.path()).unwrap_err().to_string();
        for path in [
            root.path().join("kpi").join("kpi.redb"),
            root.path().join("kpi.redb"),
        ] {
            assert!(err.contains(&path.display().to_string()), "{err}");
        }
    }

    #[test]
    fn token_files_are_trimmed_and_must_hold_a_token() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        std::fs::write(&path, "abc\n").unwrap();
        assert_eq!(read_token(&path).unwrap(), "abc");
        std::fs::write(&path, " \n").unwrap();
        assert!(read_token(&path).unwrap_err().to_string().contains("empty"));
        let err = read_token(&dir.path().join("missing")).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
    }
}
