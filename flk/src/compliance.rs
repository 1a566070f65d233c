//! `flk report compliance`: a compliance report (SOC 2, ISO 27001, HIPAA, GDPR or a custom
//! framework file) over a period, with evidence computed from the stores of a data directory
//! (`--data-dir`, read-only: the stack may be running), as JSON, HTML, PDF or OSCAL
//! `assessment-results`.
//!
//! What only a service's crate reads is read here and handed to the evidence
//! (`flk_compliance::evidence::External`): svc-verify's signature refusal counts
//! (`svc_verify::refusals::read_dir`, from a copy of the store), svc-kpi's SLOs (its report
//! at the end of the period, from a copy of `kpi.redb`: a running svc-kpi locks the file) and
//! svc-tiering's catalog figures: asked of the running svc-tiering, which holds the catalog's
//! lock, or, when the stack is stopped, read by opening the catalog as svc-tiering does (the
//! one write to the directory: fjall recovers its journal, and an older `catalog.redb` is
//! moved into the keyspace, as the next start would).
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
    /// A running stack's gateway (`GET /v1/compliance/report`; built-in frameworks only).
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
    let (bytes, failed) = match &a.url {
        Some(url) => from_gateway(url, &a)?,
        None => {
            let period = Period::parse(&a.from, &a.to).map_err(|e| anyhow::anyhow!("{e}"))?;
            let framework = flk_compliance::framework::resolve(&a.framework)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let progress = |line: &str| eprintln!("flk report compliance: {line}");
            let (bytes, failed) = produce(&a.data_dir, &framework, &period, &a.format, &progress)?;
            (bytes, failed > 0)
        }
    };
    match &a.out {
        Some(path) => std::fs::write(path, &bytes)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => {
            use std::io::Write as _;
            std::io::stdout().write_all(&bytes)?;
        }
    }
    Ok(a.strict && failed)
}

/// The report of `framework` over `period` from the stores of `data_dir`, in `format`, and
/// the number of failed controls.
fn produce(
    data_dir: &Path,
    framework: &flk_compliance::framework::Framework,
    period: &Period,
    format: &str,
    progress: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<(Vec<u8>, u32)> {
    let external = external(data_dir, period, progress);
    let evidence = flk_compliance::evidence::from_data_dir(data_dir, period, &external, progress)
        .with_context(|| format!("cannot read the stores of {}", data_dir.display()))?;
    let report = flk_compliance::evaluate(framework, &evidence, period);
    let bytes = match format {
        "html" => flk_compliance::render::html(&report).into_bytes(),
        "pdf" => flk_compliance::render::pdf(&report).map_err(|e| anyhow::anyhow!("{e}"))?,
        "oscal" => flk_compliance::render::oscal(&report),
        _ => flk_compliance::render::json(&report),
    };
    let failed = report
        .controls
        .iter()
        .filter(|c| c.status == Status::Fail)
        .count();
    Ok((bytes, u32::try_from(failed).unwrap_or(u32::MAX)))
}

/// `--url`: the same report from a running stack's gateway, with the admin token.
fn from_gateway(url: &str, a: &ComplianceArgs) -> anyhow::Result<(Vec<u8>, bool)> {
    let token_file = a
        .admin_token_file
        .as_ref()
        .context("--url needs --admin-token-file")?;
    let token = std::fs::read_to_string(token_file)
        .with_context(|| format!("cannot read {}", token_file.display()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let resp = reqwest::Client::new()
            .get(format!(
                "{}/v1/compliance/report",
                url.trim_end_matches('/')
            ))
            .query(&[
                ("framework", a.framework.as_str()),
                ("from", a.from.as_str()),
                ("to", a.to.as_str()),
                ("format", a.format.as_str()),
            ])
            .bearer_auth(token.trim())
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        let status = resp.status();
        let failed = resp
            .headers()
            .get("x-flk-failed-controls")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0);
        let body = resp.bytes().await?.to_vec();
        anyhow::ensure!(
            status.is_success(),
            "{url} answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
        Ok((body, failed > 0))
    })
}

/// What `flk up` gives the gateway for `GET /v1/compliance/report` and `ComplianceService`:
/// the report from the stack's own data directory, as `--data-dir` reads it.
#[derive(Debug)]
pub struct DataDirReports {
    data_dir: PathBuf,
}

impl DataDirReports {
    pub fn new(data_dir: PathBuf) -> DataDirReports {
        DataDirReports { data_dir }
    }
}

impl gateway::compliance::ComplianceReports for DataDirReports {
    fn report(
        &self,
        req: &flk_proto::v1::ComplianceReportRequest,
    ) -> Result<flk_proto::v1::ComplianceReport, flk_proto::ApiError> {
        use flk_proto::{ApiError, ErrorKind};
        let invalid =
            |code: &str, message: String| ApiError::new(ErrorKind::InvalidArgument, code, message);
        let framework = flk_compliance::framework::builtin(&req.framework).ok_or_else(|| {
            invalid(
                "unknown_framework",
                format!(
                    "framework {:?} is not built in (soc2, iso27001, hipaa, gdpr); custom frameworks: flk report compliance --framework FILE --data-dir",
                    req.framework
                ),
            )
        })?;
        let period = Period::parse(&req.from, &req.to)
            .map_err(|e| invalid("invalid_period", e.to_string()))?;
        let (format, content_type) = match req.format.as_str() {
            "" | "json" => ("json", "application/json"),
            "html" => ("html", "text/html; charset=utf-8"),
            "pdf" => ("pdf", "application/pdf"),
            "oscal" => ("oscal", "application/json"),
            other => {
                return Err(invalid(
                    "invalid_format",
                    format!("format {other:?} is not json, html, pdf or oscal"),
                ));
            }
        };
        let quiet = |_: &str| {};
        let (body, failed_controls) = produce(&self.data_dir, &framework, &period, format, &quiet)
            .map_err(|e| {
                tracing::warn!(error = %format!("{e:#}"), "compliance report failed");
                ApiError::new(
                    ErrorKind::Unavailable,
                    "stores_unreadable",
                    format!("{e:#}"),
                )
                .with_retry_after(std::time::Duration::from_secs(1))
            })?;
        Ok(flk_proto::v1::ComplianceReport {
            content_type: content_type.to_owned(),
            body,
            failed_controls,
        })
    }
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
    let tiering_dir = dir.join(crate::stack::TIERING_DIR);
    let tiering = svc_tiering::catalog::Catalog::exists(&tiering_dir)
        .then(|| tiering_figures(dir, &tiering_dir).map_err(|e| format!("{e:#}")));
    External {
        tiering,
        refusals,
        slos: Some(Box::new(move |at_ms| {
            kpi_slos(&kpi_dir, at_ms).map_err(|e| format!("{e:#}"))
        })),
    }
}

/// svc-tiering's placement catalog, with the retention and placement interval of the
/// stack's effective configuration: read directly when the stack is stopped, else asked of
/// the running svc-tiering (its `Stats` with `catalog`), which holds the catalog's lock. A
/// fjall keyspace cannot be copied consistently while it is written.
fn tiering_figures(
    dir: &Path,
    tiering_dir: &Path,
) -> anyhow::Result<flk_compliance::evidence::TieringFigures> {
    // Only the placement keys: the section's store URLs are redacted there.
    let mut section = toml::Table::new();
    let effective = dir.join(crate::stack::EFFECTIVE_CONFIG_FILE);
    if let Ok(text) = std::fs::read_to_string(&effective) {
        let doc: toml::Table = text
            .parse()
            .with_context(|| format!("cannot parse {}", effective.display()))?;
        if let Some(t) = doc.get("tiering").and_then(|t| t.as_table()) {
            for key in ["retention", "demote_interval", "hot_ttl", "warm_ttl"] {
                if let Some(v) = t.get(key) {
                    section.insert(key.to_owned(), v.clone());
                }
            }
        }
    }
    let policy =
        svc_tiering::TieringConfig::from_table(section, "[tiering]", |_| None)?.policy()?;
    // Against the newest record held, not the clock: the same catalog gives the same answer.
    let past_retention_after_ms = policy
        .retention_ms
        .map(|r| r.saturating_add(policy.demote_interval_ms));
    let catalog = svc_tiering::catalog::Catalog::open_if_free(tiering_dir).map_err(|e| {
        anyhow::anyhow!("cannot open the catalog in {}: {e}", tiering_dir.display())
    })?;
    let c = match catalog {
        Some(catalog) => catalog.figures(past_retention_after_ms).map_err(|e| {
            anyhow::anyhow!("cannot read the catalog in {}: {e}", tiering_dir.display())
        })?,
        None => running_catalog_figures(dir, tiering_dir, past_retention_after_ms)?,
    };
    Ok(flk_compliance::evidence::TieringFigures {
        records: c.records,
        bytes: c.bytes,
        oldest_decided_ms: c.oldest_decided_ms,
        newest_decided_ms: c.newest_decided_ms,
        retention_ms: policy.retention_ms,
        demote_interval_ms: policy.demote_interval_ms,
        past_retention: c.past_retention,
        pending_moves: c.pending_moves,
    })
}

/// The catalog figures of the svc-tiering running over `tiering_dir`, from its `Stats` at the
/// address it wrote there (`svc_tiering::ADDR_FILE`), with the stack's mesh client
/// certificate (`<dir>/tls/`, what `flk up` gives its internal ports).
fn running_catalog_figures(
    dir: &Path,
    tiering_dir: &Path,
    past_retention_after_ms: Option<u64>,
) -> anyhow::Result<svc_tiering::catalog::CatalogFigures> {
    use flk_runtime::client::{EndpointOptions, Peer, TieringClient};
    let addr = svc_tiering::read_addr_file(tiering_dir)?.with_context(|| {
        format!(
            "svc-tiering holds the catalog in {} and has not written its address yet",
            tiering_dir.display()
        )
    })?;
    let pki = crate::pki::MeshPki {
        dir: dir.join("tls"),
    };
    let peer = Peer::resolve(&pki.client(), |_| None).context("the stack's mesh certificate")?;
    let url = format!("http://{addr}");
    let call = async move {
        let channel = peer
            .connect(&url, EndpointOptions::default())
            .await
            .with_context(|| format!("cannot reach svc-tiering at {url}"))?;
        let stats = TieringClient::new(channel)
            .stats(flk_proto::v1::TieringStatsRequest {
                catalog: true,
                past_retention_after_ms,
            })
            .await
            .with_context(|| format!("svc-tiering at {url}: Stats"))?
            .into_inner();
        stats
            .catalog
            .with_context(|| format!("svc-tiering at {url} answered no catalog figures"))
    };
    // On a blocking thread of a runtime (the gateway's reports, `flk report`), or none.
    let c = match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle.block_on(call)?,
        Err(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(call)?,
    };
    let mut f = svc_tiering::catalog::CatalogFigures {
        pending_moves: c.pending_moves,
        oldest_decided_ms: c.oldest_decided_unix_ms,
        newest_decided_ms: c.newest_decided_unix_ms,
        past_retention: c.past_retention,
        ..Default::default()
    };
    for t in &c.tiers {
        let tier = svc_tiering::Tier::ALL
            .into_iter()
            .find(|x| x.as_str() == t.tier)
            .with_context(|| format!("svc-tiering named an unknown tier {:?}", t.tier))?;
        f.records[tier.index()] = t.records;
        f.bytes[tier.index()] = t.bytes;
    }
    Ok(f)
}

/// svc-kpi's objectives, prices and retention as the stack ran it: `[kpi]` of the effective
/// configuration (only those keys: the rest names files and secrets, redacted there), else
/// svc-kpi's defaults.
fn kpi_settings(dir: &Path) -> anyhow::Result<svc_kpi::KpiConfig> {
    let effective = dir.join(crate::stack::EFFECTIVE_CONFIG_FILE);
    let mut section = toml::Table::new();
    if let Ok(text) = std::fs::read_to_string(&effective) {
        let doc: toml::Table = text
            .parse()
            .with_context(|| format!("cannot parse {}", effective.display()))?;
        if let Some(kpi) = doc.get("kpi").and_then(|t| t.as_table()) {
            for key in ["slo", "prices", "retention_days"] {
                if let Some(v) = kpi.get(key) {
                    section.insert(key.to_owned(), v.clone());
                }
            }
        }
    }
    Ok(svc_kpi::KpiConfig::from_table(section, "[kpi]", |_| None)?)
}

/// svc-kpi's SLOs per tenant and window at the end of the period, from a copy of its store.
fn kpi_slos(kpi_dir: &Path, at_ms: i64) -> anyhow::Result<Vec<SloFigure>> {
    let file = kpi_dir.join(svc_kpi::store::FILE_NAME);
    anyhow::ensure!(file.is_file(), "{} does not exist", file.display());
    let copy = tempfile::tempdir().context("cannot make a temporary directory")?;
    std::fs::copy(&file, copy.path().join(svc_kpi::store::FILE_NAME))
        .with_context(|| format!("cannot copy {}", file.display()))?;
    let cfg = kpi_settings(kpi_dir.parent().unwrap_or(kpi_dir))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn availability_is_judged_by_the_objectives_the_stack_ran_with() {
        let dir = tempfile::tempdir().unwrap();
        // No effective configuration: svc-kpi's defaults.
        let d = kpi_settings(dir.path()).unwrap();
        assert_eq!(d.slo, svc_kpi::KpiConfig::default().slo);
        // Its [kpi] objectives; keys that name files or secrets are not read.
        std::fs::write(
            dir.path().join(crate::stack::EFFECTIVE_CONFIG_FILE),
            "[kpi]\nlisten = \"127.0.0.1:0\"\nretention_days = 9\n[kpi.slo]\ncontainment_min = 0.5\n[kpi.auth]\ntoken_sha256 = \"<redacted>\"\n",
        )
        .unwrap();
        let c = kpi_settings(dir.path()).unwrap();
        assert_eq!(c.slo.containment_min, 0.5);
        assert_eq!(c.retention_days, 9);
    }
}
