//! `flk report compliance`: a compliance report (SOC 2, ISO 27001, HIPAA, GDPR or a custom
//! framework file) over a period, with evidence computed from the stores of a data directory
//! (`--data-dir`, read-only: the stack may be running), as JSON, HTML, PDF or OSCAL
//! `assessment-results`.
//!
//! What only a service's crate reads is read here and handed to the evidence
//! (`flk_compliance::evidence::External`): svc-verify's signature refusal counts
//! (`svc_verify::refusals::read_dir`, from a copy of the store) and svc-kpi's SLOs (its report
//! at the end of the period, from a copy of `kpi.redb`: a running svc-kpi locks the file).
//!
//! Exit status: 0 when the report was written, whatever the verdicts; 3 with `--strict` when a
//! control fails; 1 on errors (bad period, unknown framework, unreadable store).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use flk_compliance::evidence::{External, RefusalRow, SloFigure};
use flk_compliance::{Period, Status};

#[derive(clap::Args)]
pub struct ComplianceArgs {
    /// `soc2`, `iso27001`, `hipaa`, `gdpr`, or a framework file (TOML).
    #[arg(long, value_name = "ID|FILE")]
    framework: String,
    /// Start of the period, inclusive: RFC 3339 datetime or YYYY-MM-DD (00:00 UTC).
    #[arg(long, value_name = "T")]
    from: String,
    /// End of the period, exclusive: RFC 3339 datetime or YYYY-MM-DD (00:00 UTC).
    #[arg(long, value_name = "T")]
    to: String,
    /// Output format.
    #[arg(long, value_parser = ["json", "html", "pdf", "oscal"], default_value = "json")]
    format: String,
    /// Output file (default: standard output).
    #[arg(long, short = 'o', value_name = "FILE")]
    out: Option<PathBuf>,
    /// A stack's data directory, as given to `flk up` (read-only; the stack may run).
    #[arg(
        long,
        value_name = "DIR",
        default_value = "flk-data",
        conflicts_with = "url"
    )]
    data_dir: PathBuf,
    /// A running gateway (needs `GET /v1/compliance/report`, not served yet).
    #[arg(long, requires = "admin_token_file")]
    url: Option<String>,
    /// File holding the gateway's admin token (with --url).
    #[arg(long, value_name = "FILE")]
    admin_token_file: Option<PathBuf>,
    /// Exit with status 3 when any control fails.
    #[arg(long)]
    strict: bool,
}

/// Writes the report; `Ok(true)` when a control failed.
pub fn run(a: ComplianceArgs) -> anyhow::Result<bool> {
    let period = Period::parse(&a.from, &a.to).map_err(|e| anyhow::anyhow!("{e}"))?;
    let framework =
        flk_compliance::framework::resolve(&a.framework).map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(url) = &a.url {
        anyhow::bail!(
            "--url {url}: the gateway does not serve GET /v1/compliance/report yet; use --data-dir on the stack's data directory (it may be running)"
        );
    }
    let progress = |line: &str| eprintln!("flk report compliance: {line}");
    let external = external(&a.data_dir, &period, &progress);
    let evidence =
        flk_compliance::evidence::from_data_dir(&a.data_dir, &period, &external, &progress)
            .with_context(|| format!("cannot read the stores of {}", a.data_dir.display()))?;
    let report = flk_compliance::evaluate(&framework, &evidence, &period);
    let bytes = match a.format.as_str() {
        "html" => flk_compliance::render::html(&report).into_bytes(),
        "pdf" => flk_compliance::render::pdf(&report).map_err(|e| anyhow::anyhow!("{e}"))?,
        "oscal" => flk_compliance::render::oscal(&report),
        _ => flk_compliance::render::json(&report),
    };
    match &a.out {
        Some(path) => std::fs::write(path, &bytes)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => {
            use std::io::Write as _;
            std::io::stdout().write_all(&bytes)?;
        }
    }
    Ok(a.strict && report.controls.iter().any(|c| c.status == Status::Fail))
}

fn unix_ms(t: time::OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// The refusal counts and the SLOs, each read with its service's crate from a copy.
fn external(dir: &Path, period: &Period, progress: &(dyn Fn(&str) + Sync)) -> External {
    let verify_dir = dir.join(crate::stack::VERIFY_DIR);
    let (from, to) = (unix_ms(period.from), unix_ms(period.to));
    let refusals = match svc_verify::refusals::read_dir(&verify_dir, from, to) {
        Ok(rows) => rows.map(|rows| {
            rows.into_iter()
                .map(|r| RefusalRow {
                    minute_unix_ms: r.minute_unix_ms,
                    tenant_id: r.tenant_id,
                    reason_code: r.reason_code,
                    count: r.count,
                })
                .collect()
        }),
        Err(e) => {
            progress(&format!("cannot read the refusal counts: {e}"));
            None
        }
    };
    let kpi_dir = dir.join(crate::stack::KPI_DIR);
    External {
        refusals,
        slos: Some(Box::new(move |at_ms| {
            kpi_slos(&kpi_dir, at_ms).map_err(|e| format!("{e:#}"))
        })),
    }
}

/// svc-kpi's SLOs per tenant and window at the end of the period, from a copy of its store.
fn kpi_slos(kpi_dir: &Path, at_ms: i64) -> anyhow::Result<Vec<SloFigure>> {
    let file = kpi_dir.join(svc_kpi::store::FILE_NAME);
    anyhow::ensure!(file.is_file(), "{} does not exist", file.display());
    let copy = tempfile::tempdir().context("cannot make a temporary directory")?;
    std::fs::copy(&file, copy.path().join(svc_kpi::store::FILE_NAME))
        .with_context(|| format!("cannot copy {}", file.display()))?;
    let cfg = svc_kpi::KpiConfig::default();
    let store = svc_kpi::Store::open(copy.path(), cfg.retention_days)
        .with_context(|| format!("cannot open a copy of {}", file.display()))?;
    let settings = svc_kpi::ReportSettings {
        prices: cfg.prices,
        slo: cfg.slo,
    };
    let mut out = Vec::new();
    let mut tenants = store.tenants()?;
    tenants.sort();
    for tenant in &tenants {
        for w in svc_kpi::Window::ALL {
            let r = svc_kpi::compute_report(&store, tenant, w, at_ms, &settings, None)?;
            for (name, slo) in &r.slo {
                out.push(SloFigure {
                    name: format!("{tenant}/{}/{name}", w.as_str()),
                    met: slo.ok,
                });
            }
        }
    }
    Ok(out)
}
