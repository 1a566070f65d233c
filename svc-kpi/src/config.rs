//! Typed configuration of svc-kpi: one struct, defaults in one place, a TOML file plus
//! `FLK_KPI_*` environment overrides (names in [`mod@env`]), printable as TOML.
//!
//! ```toml
//! listen = "127.0.0.1:50071"             # gRPC + REST + /health /ready /metrics
//! data_dir = "flk-data/kpi"              # kpi.redb
//! verify_url = "http://127.0.0.1:50051"  # svc-verify, the outcome feed
//! # audit_url = "http://127.0.0.1:50061" # svc-audit, for audit coverage (unset: null)
//! tenants = ["default"]                  # tenants exported as metric labels
//! batch_max_records = 4096               # feed records per write transaction at most
//! batch_interval_ms = 100                # longest a received record waits to be applied
//! retention_days = 8                     # at least 7
//! metrics_refresh_ms = 15000             # gauges are recomputed at least this often
//! audit_poll_ms = 5000                   # svc-audit checkpoint polling
//! reconnect_initial_ms = 100
//! reconnect_max_ms = 5000
//!
//! [prices]
//! compute_usd_per_100ms = 0.0001         # per 100 ms of measured verification time
//! storage_hot_usd_per_gb_month = 0.023
//! storage_warm_usd_per_gb_month = 0.0125
//! storage_cold_usd_per_gb_month = 0.004
//! storage_months = 1.0                   # how long a decision's bytes are paid for
//! network_usd_per_gb = 0.09              # inter-region, per GB replicated
//! [prices.anchoring_usd_per_batch]       # strategy -> USD per anchor batch; the default is
//! ethereum = 2.0                         # the anchoring optimizer's table
//! polygon = 0.01                         # (flk_anchor::optimizer::default_strategies);
//! rfc3161 = 0.01                         # a table given here replaces it whole
//! opentimestamps = 0.0
//! hybrid = 0.02
//!
//! [slo]
//! containment_min = 0.98
//! escalation_max = 0.02
//! verify_latency_p95_ms_max = 50.0     # defaults: flk_core::slo, as the dashboards and alerts
//!
//! [tls]                                  # the listen port (flk_runtime::security)
//! # cert = "kpi.pem"; key = "kpi.key"; client_ca = "ca.pem"   # client_ca: mTLS
//! [auth]                                 # without mTLS: the bearer token every call needs
//! # token_sha256 = "<hex>"               # default: generated in <data_dir>/admin.token
//! [peer]                                 # how svc-verify and svc-audit are reached
//! # ca = "ca.pem"; cert = "kpi-client.pem"; key = "kpi-client.key"; token_file = "admin.token"
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use flk_runtime::ConfigError;
use flk_runtime::config::{EnvVar, ServiceConfig};
use flk_runtime::security::{AuthSettings, PeerSettings, TlsSettings};
use serde::{Deserialize, Serialize};

/// Environment variable names (each overrides the file).
pub mod env {
    pub const CONFIG: &str = "FLK_KPI_CONFIG";
    pub const LISTEN: &str = "FLK_KPI_LISTEN";
    pub const DATA_DIR: &str = "FLK_KPI_DATA_DIR";
    pub const VERIFY_URL: &str = "FLK_KPI_VERIFY_URL";
    /// svc-audit's URL; an empty value unsets it.
    pub const AUDIT_URL: &str = "FLK_KPI_AUDIT_URL";
    /// Comma-separated tenant ids.
    pub const TENANTS: &str = "FLK_KPI_TENANTS";
    pub const BATCH_MAX_RECORDS: &str = "FLK_KPI_BATCH_MAX_RECORDS";
    pub const BATCH_INTERVAL_MS: &str = "FLK_KPI_BATCH_INTERVAL_MS";
    pub const RETENTION_DAYS: &str = "FLK_KPI_RETENTION_DAYS";
    pub const METRICS_REFRESH_MS: &str = "FLK_KPI_METRICS_REFRESH_MS";
    pub const AUDIT_POLL_MS: &str = "FLK_KPI_AUDIT_POLL_MS";
}

/// The price table costs are computed from (USD).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Prices {
    /// Per 100 ms of measured verification time (`verify_cpu_ns`).
    pub compute_usd_per_100ms: f64,
    /// Per GB-month (GB = 10^9 bytes) in the hot tier, defaults from `flk_core::prices` (the
    /// table svc-tiering shares). Every decision is charged at the hot price: svc-kpi does not
    /// yet follow svc-tiering's moves.
    pub storage_hot_usd_per_gb_month: f64,
    pub storage_warm_usd_per_gb_month: f64,
    pub storage_cold_usd_per_gb_month: f64,
    /// Months of storage a decision's bytes are charged for, at decision time.
    pub storage_months: f64,
    /// Per GB replicated into this region from another (svc-crr; see `report`).
    pub network_usd_per_gb: f64,
    /// Per anchor batch (one checkpoint anchored by one strategy), by anchoring strategy.
    pub anchoring_usd_per_batch: BTreeMap<String, f64>,
}

impl Prices {
    /// The storage part, the table svc-tiering prices its moves with.
    pub fn storage(&self) -> flk_core::prices::StoragePrices {
        flk_core::prices::StoragePrices {
            storage_hot_usd_per_gb_month: self.storage_hot_usd_per_gb_month,
            storage_warm_usd_per_gb_month: self.storage_warm_usd_per_gb_month,
            storage_cold_usd_per_gb_month: self.storage_cold_usd_per_gb_month,
        }
    }
}

impl Default for Prices {
    fn default() -> Self {
        let storage = flk_core::prices::StoragePrices::default();
        Prices {
            compute_usd_per_100ms: 0.0001,
            storage_hot_usd_per_gb_month: storage.storage_hot_usd_per_gb_month,
            storage_warm_usd_per_gb_month: storage.storage_warm_usd_per_gb_month,
            storage_cold_usd_per_gb_month: storage.storage_cold_usd_per_gb_month,
            storage_months: 1.0,
            network_usd_per_gb: 0.09,
            anchoring_usd_per_batch: flk_anchor::optimizer::default_strategies()
                .into_iter()
                .map(|s| (s.id.name().to_owned(), s.cost_per_batch_usd))
                .collect(),
        }
    }
}

/// Service-level objectives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SloTargets {
    /// Hallucination containment rate at least this.
    pub containment_min: f64,
    /// Escalation rate at most this.
    pub escalation_max: f64,
    /// p95 verification time at most this many milliseconds.
    pub verify_latency_p95_ms_max: f64,
}

impl Default for SloTargets {
    fn default() -> Self {
        SloTargets {
            containment_min: flk_core::slo::CONTAINMENT_MIN,
            escalation_max: flk_core::slo::ESCALATION_MAX,
            verify_latency_p95_ms_max: flk_core::slo::VERIFY_LATENCY_P95_MAX_SECONDS * 1000.0,
        }
    }
}

/// svc-kpi configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KpiConfig {
    /// gRPC, REST and `/health`, `/ready`, `/metrics`, all on one port.
    pub listen: SocketAddr,
    /// Holds `kpi.redb`.
    pub data_dir: PathBuf,
    /// svc-verify's gRPC address, whose `Subscribe` feed is consumed.
    pub verify_url: String,
    /// svc-audit's gRPC address, for audit coverage; unset means coverage is null.
    pub audit_url: Option<String>,
    /// Tenants whose KPIs are exported as metrics (labels must be a bounded set). Reports
    /// are served for every tenant.
    pub tenants: Vec<String>,
    /// Feed records per write transaction at most.
    pub batch_max_records: usize,
    /// The longest a received record waits before its batch is applied.
    pub batch_interval_ms: u64,
    /// Days of decisions and buckets kept (at least 7).
    pub retention_days: u32,
    /// Gauges are recomputed at least this often (windows roll) and at most about once a
    /// second when events arrive.
    pub metrics_refresh_ms: u64,
    /// How often svc-audit's checkpoint is read.
    pub audit_poll_ms: u64,
    pub reconnect_initial_ms: u64,
    pub reconnect_max_ms: u64,
    pub prices: Prices,
    pub slo: SloTargets,
    /// TLS on the listen port; with `client_ca`, clients need a certificate it signed (mTLS).
    pub tls: TlsSettings,
    /// Without mTLS: the bearer token every call needs (generated in
    /// `<data_dir>/admin.token` when unset).
    pub auth: AuthSettings,
    /// How svc-verify and svc-audit are reached: CA, client certificate, token.
    pub peer: PeerSettings,
}

impl Default for KpiConfig {
    fn default() -> Self {
        KpiConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 50071)),
            data_dir: PathBuf::from("flk-data/kpi"),
            verify_url: "http://127.0.0.1:50051".to_owned(),
            audit_url: None,
            tenants: vec!["default".to_owned()],
            batch_max_records: 4096,
            batch_interval_ms: 100,
            retention_days: 8,
            metrics_refresh_ms: 15_000,
            audit_poll_ms: 5_000,
            reconnect_initial_ms: 100,
            reconnect_max_ms: 5_000,
            prices: Prices::default(),
            slo: SloTargets::default(),
            tls: TlsSettings::default(),
            auth: AuthSettings::default(),
            peer: PeerSettings::default(),
        }
    }
}

impl ServiceConfig for KpiConfig {
    const ENV: &'static [EnvVar] = &[
        EnvVar::string(env::LISTEN, "listen"),
        EnvVar::string(env::DATA_DIR, "data_dir"),
        EnvVar::string(env::VERIFY_URL, "verify_url"),
        EnvVar::optional(env::AUDIT_URL, "audit_url"),
        EnvVar::list(env::TENANTS, "tenants"),
        EnvVar::number(env::BATCH_MAX_RECORDS, "batch_max_records"),
        EnvVar::number(env::BATCH_INTERVAL_MS, "batch_interval_ms"),
        EnvVar::number(env::RETENTION_DAYS, "retention_days"),
        EnvVar::number(env::METRICS_REFRESH_MS, "metrics_refresh_ms"),
        EnvVar::number(env::AUDIT_POLL_MS, "audit_poll_ms"),
    ];
    const MORE_ENV: &'static [&'static [EnvVar]] = &[
        &flk_runtime::server_env!("FLK_KPI"),
        &flk_runtime::peer_env!("FLK_KPI"),
    ];

    fn validate(&self) -> Result<(), ConfigError> {
        KpiConfig::validate(self)
    }
}

impl KpiConfig {
    /// Reads `path` (if any), then applies environment overrides from `vars`, then validates.
    pub fn load(
        path: Option<&Path>,
        vars: impl Fn(&str) -> Option<String>,
    ) -> Result<KpiConfig, ConfigError> {
        flk_runtime::config::load(path, vars)
    }

    /// [`KpiConfig::load`] of a parsed document (`flk up`'s `[kpi]` section).
    pub fn from_table(
        table: toml::Table,
        origin: &str,
        vars: impl Fn(&str) -> Option<String>,
    ) -> Result<KpiConfig, ConfigError> {
        flk_runtime::config::from_table(table, origin, vars)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        flk_runtime::config::check_http_url("verify_url", &self.verify_url)?;
        if let Some(a) = &self.audit_url {
            flk_runtime::config::check_http_url("audit_url", a)?;
        }
        self.tls.validate("tls")?;
        self.auth.validate("auth")?;
        self.peer.validate("peer")?;
        if self.tenants.len() > 1000 || self.tenants.iter().any(|t| t.is_empty()) {
            return bad("`tenants` must hold at most 1000 non-empty ids".into());
        }
        if self.batch_max_records == 0 || self.batch_max_records > 65_536 {
            return bad("`batch_max_records` must be in 1..=65536".into());
        }
        if self.batch_interval_ms == 0 || self.batch_interval_ms > 60_000 {
            return bad("`batch_interval_ms` must be in 1..=60000".into());
        }
        if self.retention_days < 7 {
            return bad("`retention_days` must be at least 7 (the 7d window)".into());
        }
        if self.metrics_refresh_ms == 0 || self.audit_poll_ms == 0 {
            return bad("`metrics_refresh_ms` and `audit_poll_ms` must be positive".into());
        }
        if self.reconnect_initial_ms == 0 || self.reconnect_max_ms < self.reconnect_initial_ms {
            return bad("need 0 < `reconnect_initial_ms` <= `reconnect_max_ms`".into());
        }
        let p = &self.prices;
        let prices = [
            p.compute_usd_per_100ms,
            p.storage_hot_usd_per_gb_month,
            p.storage_warm_usd_per_gb_month,
            p.storage_cold_usd_per_gb_month,
            p.storage_months,
            p.network_usd_per_gb,
        ];
        if prices
            .iter()
            .chain(p.anchoring_usd_per_batch.values())
            .any(|v| !v.is_finite() || *v < 0.0)
        {
            return bad("prices must be finite and non-negative".into());
        }
        let s = &self.slo;
        if ![
            s.containment_min,
            s.escalation_max,
            s.verify_latency_p95_ms_max,
        ]
        .iter()
        .all(|v| v.is_finite() && *v >= 0.0)
        {
            return bad("slo targets must be finite and non-negative".into());
        }
        Ok(())
    }

    pub fn reconnect(&self) -> (Duration, Duration) {
        (
            Duration::from_millis(self.reconnect_initial_ms),
            Duration::from_millis(self.reconnect_max_ms),
        )
    }

    /// The configuration as TOML (tokens are referenced by file or variable, not held).
    pub fn redacted(&self) -> String {
        flk_runtime::config::to_toml(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_file_and_unknown_fields_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kpi.toml");
        std::fs::write(
            &path,
            "tenants = [\"a\"]\n[prices]\ncompute_usd_per_100ms = 0.5\n[prices.anchoring_usd_per_batch]\nrfc3161 = 0.01\n",
        )
        .unwrap();
        let cfg = KpiConfig::load(Some(&path), |k| match k {
            env::LISTEN => Some("127.0.0.1:0".to_owned()),
            env::TENANTS => Some("x, y".to_owned()),
            env::AUDIT_URL => Some("http://127.0.0.1:9".to_owned()),
            _ => None,
        })
        .unwrap();
        assert_eq!(cfg.tenants, ["x", "y"]);
        assert_eq!(cfg.listen.port(), 0);
        assert_eq!(cfg.prices.compute_usd_per_100ms, 0.5);
        assert_eq!(cfg.prices.anchoring_usd_per_batch["rfc3161"], 0.01);
        assert_eq!(cfg.audit_url.as_deref(), Some("http://127.0.0.1:9"));
        assert!(cfg.redacted().contains("rfc3161"));
        std::fs::write(&path, "tenant = [\"x\"]\n").unwrap();
        let err = KpiConfig::load(Some(&path), |_| None).unwrap_err();
        assert!(err.to_string().contains("tenant"), "{err}");
    }

    #[test]
    fn invalid_values_are_refused() {
        let bad = |k: &'static str, v: &'static str| {
            KpiConfig::load(None, move |name| (name == k).then(|| v.to_owned())).unwrap_err()
        };
        assert!(
            bad(env::RETENTION_DAYS, "6")
                .to_string()
                .contains("retention")
        );
        assert!(
            bad(env::VERIFY_URL, "x:1")
                .to_string()
                .contains("verify_url")
        );
        assert!(bad(env::AUDIT_URL, "x:1").to_string().contains("audit_url"));
        assert!(
            bad(env::BATCH_MAX_RECORDS, "0")
                .to_string()
                .contains("batch")
        );
        assert!(
            bad(env::BATCH_INTERVAL_MS, "soon")
                .to_string()
                .contains("INTERVAL")
        );
        assert_eq!(
            KpiConfig::load(None, |_| None).unwrap(),
            KpiConfig::default()
        );
    }
}
