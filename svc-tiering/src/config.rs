//! Typed configuration of svc-tiering: one struct, defaults in one place, a TOML file plus
//! `FLK_TIERING_*` environment overrides (names in [`mod@env`]), printable as TOML. `flk up`
//! embeds the same table as `[tiering]`.
//!
//! ```toml
//! listen = "127.0.0.1:50081"             # gRPC + REST + /health /ready /metrics
//! data_dir = "flk-data/tiering"          # catalog.fjall, warm.redb (embedded), cold/ (default)
//! verify_url = "http://127.0.0.1:50051"  # svc-verify, the outcome feed
//! hot = "memory"                         # memory | redis://host:port/db
//! hot_max_bytes = 268435456              # hot bytes (outcome plus body) above this: demote early
//! warm = "embedded"                      # embedded | postgres://...
//! cold = "file:///var/lib/flk/cold"      # file:// | s3:// | gs:// | az:// (default file://<data_dir>/cold)
//! hot_ttl = "1h"                         # humantime durations
//! warm_ttl = "7d"
//! retention = "90d"                      # or "none"
//! demote_interval = "60s"
//! prewarm = "none"                       # none | predictive_ses | predictive_logreg (predictive_gbdt: not available yet)
//! prewarm_max_per_cycle = 256            # promotions ahead of reads per cycle at most
//! prewarm_retrain = "1h"                 # the model is retrained on the access log this often
//! batch_max_records = 1024               # feed records per catalog transaction at most
//! batch_interval_ms = 100
//! move_chunk = 512                       # records per crash-safe move step (and per cold pack)
//! reconnect_initial_ms = 100
//! reconnect_max_ms = 5000
//!
//! [prices]                               # must match svc-kpi's [prices] storage keys
//! storage_hot_usd_per_gb_month = 0.023
//! storage_warm_usd_per_gb_month = 0.0125
//! storage_cold_usd_per_gb_month = 0.004
//! [tls] [auth] [peer]                    # as every service (flk_runtime::security)
//! ```
//!
//! Object-store credentials and endpoints are never in this file: `s3://` reads `AWS_*`
//! (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
//! `AWS_ALLOW_HTTP`, ...), `gs://` `GOOGLE_*`, `az://` `AZURE_*` from the environment the
//! service is opened with (see `cold::open`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use flk_runtime::ConfigError;
use flk_runtime::config::{EnvVar, ServiceConfig};
use flk_runtime::security::{AuthSettings, PeerSettings, TlsSettings};
use serde::{Deserialize, Serialize};

/// Environment variable names (each overrides the file).
pub mod env {
    pub const CONFIG: &str = "FLK_TIERING_CONFIG";
    pub const LISTEN: &str = "FLK_TIERING_LISTEN";
    pub const DATA_DIR: &str = "FLK_TIERING_DATA_DIR";
    pub const VERIFY_URL: &str = "FLK_TIERING_VERIFY_URL";
    pub const HOT: &str = "FLK_TIERING_HOT";
    pub const HOT_MAX_BYTES: &str = "FLK_TIERING_HOT_MAX_BYTES";
    pub const WARM: &str = "FLK_TIERING_WARM";
    /// Empty: the default, `file://<data_dir>/cold`.
    pub const COLD: &str = "FLK_TIERING_COLD";
    pub const HOT_TTL: &str = "FLK_TIERING_HOT_TTL";
    pub const WARM_TTL: &str = "FLK_TIERING_WARM_TTL";
    pub const RETENTION: &str = "FLK_TIERING_RETENTION";
    pub const DEMOTE_INTERVAL: &str = "FLK_TIERING_DEMOTE_INTERVAL";
    pub const PREWARM: &str = "FLK_TIERING_PREWARM";
    pub const PREWARM_MAX_PER_CYCLE: &str = "FLK_TIERING_PREWARM_MAX_PER_CYCLE";
    pub const PREWARM_RETRAIN: &str = "FLK_TIERING_PREWARM_RETRAIN";
    pub const BATCH_MAX_RECORDS: &str = "FLK_TIERING_BATCH_MAX_RECORDS";
    pub const BATCH_INTERVAL_MS: &str = "FLK_TIERING_BATCH_INTERVAL_MS";
    pub const MOVE_CHUNK: &str = "FLK_TIERING_MOVE_CHUNK";
}

/// Storage prices (USD per GB-month, GB = 10^9 bytes): the table svc-kpi shares
/// (`flk_core::prices`; `flk up` hands svc-kpi's to svc-tiering unless `[tiering.prices]` is
/// set).
pub use flk_core::prices::StoragePrices as Prices;

/// svc-tiering configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TieringConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub verify_url: String,
    /// `memory` or `redis://host:port/db`.
    pub hot: String,
    pub hot_max_bytes: u64,
    /// `embedded` or `postgres://...`.
    pub warm: String,
    /// Object-store URL; empty means `file://<data_dir>/cold`.
    pub cold: String,
    pub hot_ttl: String,
    pub warm_ttl: String,
    /// A duration or `none`.
    pub retention: String,
    pub demote_interval: String,
    pub prewarm: String,
    /// Promotions ahead of reads per placement cycle at most.
    pub prewarm_max_per_cycle: usize,
    /// How often the prewarm model is retrained on the access log.
    pub prewarm_retrain: String,
    pub batch_max_records: usize,
    pub batch_interval_ms: u64,
    pub move_chunk: usize,
    pub reconnect_initial_ms: u64,
    pub reconnect_max_ms: u64,
    pub prices: Prices,
    pub tls: TlsSettings,
    pub auth: AuthSettings,
    pub peer: PeerSettings,
}

impl Default for TieringConfig {
    fn default() -> Self {
        TieringConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 50081)),
            data_dir: PathBuf::from("flk-data/tiering"),
            verify_url: "http://127.0.0.1:50051".to_owned(),
            hot: "memory".to_owned(),
            hot_max_bytes: 256 * 1024 * 1024,
            warm: "embedded".to_owned(),
            cold: String::new(),
            hot_ttl: "1h".to_owned(),
            warm_ttl: "7d".to_owned(),
            retention: "90d".to_owned(),
            demote_interval: "60s".to_owned(),
            prewarm: "none".to_owned(),
            prewarm_max_per_cycle: 256,
            prewarm_retrain: "1h".to_owned(),
            batch_max_records: 1024,
            batch_interval_ms: 100,
            move_chunk: 512,
            reconnect_initial_ms: 100,
            reconnect_max_ms: 5_000,
            prices: Prices::default(),
            tls: TlsSettings::default(),
            auth: AuthSettings::default(),
            peer: PeerSettings::default(),
        }
    }
}

impl ServiceConfig for TieringConfig {
    const ENV: &'static [EnvVar] = &[
        EnvVar::string(env::LISTEN, "listen"),
        EnvVar::string(env::DATA_DIR, "data_dir"),
        EnvVar::string(env::VERIFY_URL, "verify_url"),
        EnvVar::string(env::HOT, "hot"),
        EnvVar::number(env::HOT_MAX_BYTES, "hot_max_bytes"),
        EnvVar::string(env::WARM, "warm"),
        EnvVar::string(env::COLD, "cold"),
        EnvVar::string(env::HOT_TTL, "hot_ttl"),
        EnvVar::string(env::WARM_TTL, "warm_ttl"),
        EnvVar::string(env::RETENTION, "retention"),
        EnvVar::string(env::DEMOTE_INTERVAL, "demote_interval"),
        EnvVar::string(env::PREWARM, "prewarm"),
        EnvVar::number(env::PREWARM_MAX_PER_CYCLE, "prewarm_max_per_cycle"),
        EnvVar::string(env::PREWARM_RETRAIN, "prewarm_retrain"),
        EnvVar::number(env::BATCH_MAX_RECORDS, "batch_max_records"),
        EnvVar::number(env::BATCH_INTERVAL_MS, "batch_interval_ms"),
        EnvVar::number(env::MOVE_CHUNK, "move_chunk"),
    ];
    const MORE_ENV: &'static [&'static [EnvVar]] = &[
        &flk_runtime::server_env!("FLK_TIERING"),
        &flk_runtime::peer_env!("FLK_TIERING"),
    ];

    fn validate(&self) -> Result<(), ConfigError> {
        TieringConfig::validate(self)
    }

    fn redact(&mut self) {
        self.hot = flk_runtime::config::redact_url(&self.hot);
        self.warm = flk_runtime::config::redact_url(&self.warm);
    }
}

/// The placement rules in force (durations in milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub hot_ttl_ms: u64,
    pub warm_ttl_ms: u64,
    /// `None`: kept forever.
    pub retention_ms: Option<u64>,
    pub hot_max_bytes: u64,
    pub demote_interval_ms: u64,
}

impl Policy {
    /// Checks ranges; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.hot_ttl_ms == 0 {
            return Err("`hot_ttl` must be positive".into());
        }
        if self.warm_ttl_ms == 0 {
            return Err("`warm_ttl` must be positive".into());
        }
        if self.retention_ms == Some(0) {
            return Err("`retention` must be positive (or none)".into());
        }
        if self.hot_max_bytes == 0 {
            return Err("`hot_max_bytes` must be positive".into());
        }
        if self.demote_interval_ms < 10 || self.demote_interval_ms > 86_400_000 {
            return Err("`demote_interval` must be between 10ms and 1d".into());
        }
        Ok(())
    }
}

/// Where the hot tier lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HotBackend {
    Memory,
    Redis(String),
}

/// Where the warm tier lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WarmBackend {
    Embedded,
    Postgres(String),
}

/// The prewarm model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrewarmKind {
    /// LRU ordering, no promotion ahead of reads.
    None,
    /// A flk-cachesim model: `predictive_ses` or `predictive_logreg`.
    Model(String),
}

fn duration(key: &str, text: &str) -> Result<u64, ConfigError> {
    let d: Duration = humantime::parse_duration(text.trim()).map_err(|e| {
        ConfigError::Invalid(format!(
            "`{key}` must be a duration such as \"90s\", \"1h\" or \"7d\", got {text:?}: {e}"
        ))
    })?;
    u64::try_from(d.as_millis())
        .map_err(|_| ConfigError::Invalid(format!("`{key}` is too long: {text:?}")))
}

impl TieringConfig {
    /// Reads `path` (if any), then applies environment overrides from `vars`, then validates.
    pub fn load(
        path: Option<&Path>,
        vars: impl Fn(&str) -> Option<String>,
    ) -> Result<TieringConfig, ConfigError> {
        flk_runtime::config::load(path, vars)
    }

    /// [`TieringConfig::load`] of a parsed document (`flk up`'s `[tiering]` section).
    pub fn from_table(
        table: toml::Table,
        origin: &str,
        vars: impl Fn(&str) -> Option<String>,
    ) -> Result<TieringConfig, ConfigError> {
        flk_runtime::config::from_table(table, origin, vars)
    }

    /// The placement policy the durations describe.
    pub fn policy(&self) -> Result<Policy, ConfigError> {
        let retention_ms = if self.retention.trim().eq_ignore_ascii_case("none") {
            None
        } else {
            Some(duration("retention", &self.retention)?)
        };
        let p = Policy {
            hot_ttl_ms: duration("hot_ttl", &self.hot_ttl)?,
            warm_ttl_ms: duration("warm_ttl", &self.warm_ttl)?,
            retention_ms,
            hot_max_bytes: self.hot_max_bytes,
            demote_interval_ms: duration("demote_interval", &self.demote_interval)?,
        };
        p.validate().map_err(ConfigError::Invalid)?;
        Ok(p)
    }

    pub fn hot_backend(&self) -> Result<HotBackend, ConfigError> {
        let h = self.hot.trim();
        if h == "memory" {
            Ok(HotBackend::Memory)
        } else if h.starts_with("redis://") || h.starts_with("rediss://") {
            Ok(HotBackend::Redis(h.to_owned()))
        } else {
            Err(ConfigError::Invalid(format!(
                "`hot` must be \"memory\" or a redis:// URL, got {:?}",
                flk_runtime::config::redact_url(h)
            )))
        }
    }

    pub fn warm_backend(&self) -> Result<WarmBackend, ConfigError> {
        let w = self.warm.trim();
        if w == "embedded" {
            Ok(WarmBackend::Embedded)
        } else if w.starts_with("postgres://") || w.starts_with("postgresql://") {
            Ok(WarmBackend::Postgres(w.to_owned()))
        } else {
            Err(ConfigError::Invalid(format!(
                "`warm` must be \"embedded\" or a postgres:// URL, got {:?}",
                flk_runtime::config::redact_url(w)
            )))
        }
    }

    /// The cold tier's URL (the default is `file://<data_dir>/cold`).
    pub fn cold_url(&self) -> Result<String, ConfigError> {
        let c = self.cold.trim();
        if c.is_empty() {
            return Ok(format!("file://{}", self.data_dir.join("cold").display()));
        }
        let known = [
            "file://", "s3://", "s3a://", "gs://", "az://", "abfs://", "abfss://",
        ];
        if !known.iter().any(|p| c.starts_with(p)) {
            return Err(ConfigError::Invalid(format!(
                "`cold` must be a file://, s3://, gs:// or az:// URL, got {c:?}"
            )));
        }
        if c.starts_with("file://") && c.len() == "file://".len() {
            return Err(ConfigError::Invalid(
                "`cold` file:// URL names no directory".into(),
            ));
        }
        Ok(c.to_owned())
    }

    /// How often the prewarm model is retrained (milliseconds).
    pub fn prewarm_retrain_ms(&self) -> Result<u64, ConfigError> {
        let ms = duration("prewarm_retrain", &self.prewarm_retrain)?;
        if ms == 0 {
            return Err(ConfigError::Invalid(
                "`prewarm_retrain` must be positive".into(),
            ));
        }
        Ok(ms)
    }

    pub fn prewarm_kind(&self) -> Result<PrewarmKind, ConfigError> {
        match self.prewarm.trim() {
            "none" => Ok(PrewarmKind::None),
            m @ ("predictive_ses" | "predictive_logreg") => Ok(PrewarmKind::Model(m.to_owned())),
            "predictive_gbdt" => Err(ConfigError::Invalid(
                "`prewarm` = \"predictive_gbdt\" is not available yet (flk-cachesim has no \
                 gradient-boosted model); use none, predictive_ses or predictive_logreg"
                    .into(),
            )),
            other => Err(ConfigError::Invalid(format!(
                "`prewarm` must be none, predictive_ses, predictive_gbdt or predictive_logreg, got {other:?}"
            ))),
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        flk_runtime::config::check_http_url("verify_url", &self.verify_url)?;
        self.tls.validate("tls")?;
        self.auth.validate("auth")?;
        self.peer.validate("peer")?;
        self.policy()?;
        self.hot_backend()?;
        self.warm_backend()?;
        self.cold_url()?;
        self.prewarm_kind()?;
        self.prewarm_retrain_ms()?;
        if self.prewarm_max_per_cycle > 65_536 {
            return bad("`prewarm_max_per_cycle` must be at most 65536".into());
        }
        if self.batch_max_records == 0 || self.batch_max_records > 65_536 {
            return bad("`batch_max_records` must be in 1..=65536".into());
        }
        if self.batch_interval_ms == 0 || self.batch_interval_ms > 60_000 {
            return bad("`batch_interval_ms` must be in 1..=60000".into());
        }
        if self.move_chunk == 0 || self.move_chunk > 65_536 {
            return bad("`move_chunk` must be in 1..=65536".into());
        }
        if self.reconnect_initial_ms == 0 || self.reconnect_max_ms < self.reconnect_initial_ms {
            return bad("need 0 < `reconnect_initial_ms` <= `reconnect_max_ms`".into());
        }
        if !self.prices.is_valid() {
            return bad("prices must be finite and non-negative".into());
        }
        Ok(())
    }

    pub fn reconnect(&self) -> (Duration, Duration) {
        (
            Duration::from_millis(self.reconnect_initial_ms),
            Duration::from_millis(self.reconnect_max_ms),
        )
    }

    /// The configuration as TOML (passwords in URLs redacted).
    pub fn redacted(&self) -> String {
        flk_runtime::config::to_toml(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad(k: &'static str, v: &'static str) -> String {
        TieringConfig::load(None, move |name| (name == k).then(|| v.to_owned()))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn defaults_env_overrides_and_bad_values_name_the_key() {
        let cfg = TieringConfig::load(None, |_| None).unwrap();
        assert_eq!(cfg, TieringConfig::default());
        let p = cfg.policy().unwrap();
        assert_eq!(p.hot_ttl_ms, 3_600_000);
        assert_eq!(p.warm_ttl_ms, 7 * 86_400_000);
        assert_eq!(p.retention_ms, Some(90 * 86_400_000));
        assert_eq!(p.demote_interval_ms, 60_000);
        assert!(cfg.cold_url().unwrap().ends_with("flk-data/tiering/cold"));
        let cfg = TieringConfig::load(None, |k| match k {
            env::RETENTION => Some("none".into()),
            env::HOT => Some("redis://127.0.0.1:1/0".into()),
            env::HOT_MAX_BYTES => Some("1000".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(cfg.policy().unwrap().retention_ms, None);
        assert_eq!(cfg.policy().unwrap().hot_max_bytes, 1000);
        assert!(matches!(cfg.hot_backend().unwrap(), HotBackend::Redis(_)));

        assert!(bad(env::HOT_TTL, "soon").contains("`hot_ttl`"));
        assert!(bad(env::WARM_TTL, "0s").contains("`warm_ttl`"));
        assert!(bad(env::RETENTION, "forever").contains("`retention`"));
        assert!(bad(env::DEMOTE_INTERVAL, "1ms").contains("`demote_interval`"));
        assert!(bad(env::HOT, "memcached://x").contains("`hot`"));
        assert!(bad(env::WARM, "mysql://x").contains("`warm`"));
        assert!(bad(env::COLD, "ftp://x").contains("`cold`"));
        assert!(bad(env::HOT_MAX_BYTES, "0").contains("`hot_max_bytes`"));
        assert!(bad(env::PREWARM, "predictive_gbdt").contains("not available yet"));
        assert!(bad(env::PREWARM_RETRAIN, "often").contains("`prewarm_retrain`"));
        let cfg = TieringConfig::load(None, |k| {
            (k == env::PREWARM).then(|| "predictive_logreg".to_owned())
        })
        .unwrap();
        assert_eq!(
            cfg.prewarm_kind().unwrap(),
            PrewarmKind::Model("predictive_logreg".into())
        );
        assert!(bad(env::PREWARM, "magic").contains("`prewarm`"));
        assert!(bad(env::MOVE_CHUNK, "0").contains("move_chunk"));
    }

    #[test]
    fn unknown_keys_are_refused_and_passwords_redacted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiering.toml");
        std::fs::write(&path, "hot_tll = \"1h\"\n").unwrap();
        let err = TieringConfig::load(Some(&path), |_| None).unwrap_err();
        assert!(err.to_string().contains("hot_tll"), "{err}");
        std::fs::write(
            &path,
            "warm = \"postgres://u:secret@127.0.0.1/db\"\n[prices]\nstorage_cold_usd_per_gb_month = 0.001\n",
        )
        .unwrap();
        let cfg = TieringConfig::load(Some(&path), |_| None).unwrap();
        assert_eq!(cfg.prices.storage_cold_usd_per_gb_month, 0.001);
        assert!(!cfg.redacted().contains("secret"));
    }
}
