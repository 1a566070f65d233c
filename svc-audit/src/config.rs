//! Typed configuration of svc-audit: one struct, defaults in one place, a TOML file plus
//! `FLK_AUDIT_*` environment overrides (names in [`mod@env`]), printable as TOML.
//!
//! ```toml
//! listen = "127.0.0.1:50061"          # gRPC + REST + /health /ready /metrics
//! data_dir = "flk-data/audit"         # tlog tiles, index, cursor, generated log key
//! verify_url = "http://127.0.0.1:50051"  # svc-verify, the outcome feed
//! origin = "flk.local/audit"          # checkpoint origin line (and generated key name)
//! checkpoint_interval_ms = 500        # longest a received decision waits to be integrated
//! batch_max_entries = 4096            # a batch is cut earlier when it reaches this
//! # log_key_file = "/secrets/audit.key"  # default: <data_dir>/log.key, generated on first start
//! sync = "file"                       # "file" (fsync per file) or "filesystem" (syncfs)
//! reconnect_initial_ms = 100          # feed reconnect backoff, doubled up to
//! reconnect_max_ms = 5000
//! storage = "embedded"                # "embedded" (tiles in <data_dir>/tlog) or "postgres"
//! # postgres_url = "postgres://flk_audit@db:5432/flk"  # with storage = "postgres"
//!
//! [siem]                              # SIEM streaming: crate::siem::config
//! # [[siem.sinks]]                    # name, kind, url, token_env, batch_*, ...
//!
//! [anchor]                            # checkpoint anchoring: crate::anchoring::config
//! strategy = "none"                   # (FLK_AUDIT_ANCHOR_* overrides)
//! # evm_confirmations = 12            # EVM anchors final at this depth (default by chain id:
//! #                                   # 12 Ethereum, 128 Polygon; FLK_AUDIT_ANCHOR_EVM_CONFIRMATIONS)
//! # [anchor.strategies.ethereum]      # auto: the optimizer's figures per strategy, any of
//! # cost_per_batch_usd = 2.0          # cost_per_batch_usd, latency_secs, durability, reliability
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use flk_runtime::ConfigError;
use flk_runtime::config::{EnvVar, ServiceConfig, redact_url};
use flk_runtime::security::{AuthSettings, PeerSettings, TlsSettings};
use serde::{Deserialize, Serialize};

/// Environment variable names (each overrides the file).
pub mod env {
    pub const CONFIG: &str = "FLK_AUDIT_CONFIG";
    pub const LISTEN: &str = "FLK_AUDIT_LISTEN";
    pub const DATA_DIR: &str = "FLK_AUDIT_DATA_DIR";
    pub const VERIFY_URL: &str = "FLK_AUDIT_VERIFY_URL";
    pub const ORIGIN: &str = "FLK_AUDIT_ORIGIN";
    pub const CHECKPOINT_INTERVAL_MS: &str = "FLK_AUDIT_CHECKPOINT_INTERVAL_MS";
    pub const BATCH_MAX_ENTRIES: &str = "FLK_AUDIT_BATCH_MAX_ENTRIES";
    pub const LOG_KEY_FILE: &str = "FLK_AUDIT_LOG_KEY_FILE";
    pub const SYNC: &str = "FLK_AUDIT_SYNC";
    pub const STORAGE: &str = "FLK_AUDIT_STORAGE";
    pub const POSTGRES_URL: &str = "FLK_AUDIT_POSTGRES_URL";
}

/// Where the log's tiles, bundles and checkpoints live (the index, cursor and key stay in
/// `data_dir` either way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StorageSetting {
    /// `flk_tlog::FsStore` in `<data_dir>/tlog`.
    #[default]
    Embedded,
    /// `flk_tlog::PgStore` at `postgres_url`: append-only tables enforced by the database.
    Postgres,
}

/// How the tile store makes a batch durable (see `flk_tlog::SyncMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SyncSetting {
    /// `fsync` every new file and directory (portable).
    #[default]
    File,
    /// One `syncfs(2)` per batch (Linux; also flushes other data on the filesystem).
    Filesystem,
}

impl SyncSetting {
    pub fn mode(self) -> flk_tlog::SyncMode {
        match self {
            SyncSetting::File => flk_tlog::SyncMode::PerFile,
            SyncSetting::Filesystem => flk_tlog::SyncMode::Filesystem,
        }
    }
}

/// svc-audit configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// gRPC, REST and `/health`, `/ready`, `/metrics`, all on one port.
    pub listen: SocketAddr,
    /// The log's tiles (`tlog/`), the index (`index.fjall/`), the feed cursor (`feed.cursor`)
    /// and, unless `log_key_file` is set, the log key (`log.key`).
    pub data_dir: PathBuf,
    /// svc-verify's gRPC address, whose `Subscribe` feed is consumed.
    pub verify_url: String,
    /// The checkpoint origin line; also the name of a generated log key.
    pub origin: String,
    /// The longest a decision received from the feed waits before it is integrated. Every
    /// integration publishes a signed checkpoint, so a decision is covered by a checkpoint
    /// within this interval plus one append.
    pub checkpoint_interval_ms: u64,
    /// A batch is integrated as soon as it holds this many feed records (at most 65,536).
    pub batch_max_entries: usize,
    /// File with the log's signer key (`PRIVATE+KEY+<name>+<id>+<key>`). When set it must
    /// exist; when unset, `<data_dir>/log.key` is used and generated (mode 0600) on first start.
    pub log_key_file: Option<PathBuf>,
    /// How tile writes are made durable.
    pub sync: SyncSetting,
    /// First delay before reconnecting to the feed; doubled after each failure.
    pub reconnect_initial_ms: u64,
    /// Longest delay between reconnection attempts.
    pub reconnect_max_ms: u64,
    /// Tile storage backend.
    pub storage: StorageSetting,
    /// With `storage = "postgres"`: the database (libpq string or `postgres://` URL).
    pub postgres_url: Option<String>,
    /// Checkpoint anchoring ([`crate::anchoring::config`]).
    pub anchor: crate::anchoring::AnchorConfig,
    /// TLS on the listen port; with `client_ca`, clients need a certificate it signed (mTLS).
    pub tls: TlsSettings,
    /// Without mTLS: the bearer token every call needs (generated in
    /// `<data_dir>/admin.token` when unset).
    pub auth: AuthSettings,
    /// How svc-verify is reached: CA, client certificate, token.
    pub peer: PeerSettings,
    /// SIEM streaming ([`crate::siem::config`]).
    pub siem: crate::siem::SiemConfig,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 50061)),
            data_dir: PathBuf::from("flk-data/audit"),
            verify_url: "http://127.0.0.1:50051".to_owned(),
            origin: "flk.local/audit".to_owned(),
            checkpoint_interval_ms: 500,
            batch_max_entries: 4096,
            log_key_file: None,
            sync: SyncSetting::File,
            reconnect_initial_ms: 100,
            reconnect_max_ms: 5000,
            storage: StorageSetting::Embedded,
            postgres_url: None,
            anchor: crate::anchoring::AnchorConfig::default(),
            tls: TlsSettings::default(),
            auth: AuthSettings::default(),
            peer: PeerSettings::default(),
            siem: crate::siem::SiemConfig::default(),
        }
    }
}

impl ServiceConfig for AuditConfig {
    const ENV: &'static [EnvVar] = &[
        EnvVar::string(env::LISTEN, "listen"),
        EnvVar::string(env::DATA_DIR, "data_dir"),
        EnvVar::string(env::VERIFY_URL, "verify_url"),
        EnvVar::string(env::ORIGIN, "origin"),
        EnvVar::number(env::CHECKPOINT_INTERVAL_MS, "checkpoint_interval_ms"),
        EnvVar::number(env::BATCH_MAX_ENTRIES, "batch_max_entries"),
        EnvVar::optional(env::LOG_KEY_FILE, "log_key_file"),
        EnvVar::string(env::SYNC, "sync"),
        EnvVar::string(env::STORAGE, "storage"),
        EnvVar::optional(env::POSTGRES_URL, "postgres_url"),
    ];
    const MORE_ENV: &'static [&'static [EnvVar]] = &[
        &flk_runtime::server_env!("FLK_AUDIT"),
        &flk_runtime::peer_env!("FLK_AUDIT"),
    ];

    fn validate(&self) -> Result<(), ConfigError> {
        AuditConfig::validate(self)
    }

    fn redact(&mut self) {
        self.postgres_url = self.postgres_url.as_deref().map(redact_url);
        // A Sumo HTTP source URL is its credential.
        for sink in &mut self.siem.sinks {
            if sink.kind == "sumo"
                && let Some(url) = &mut sink.url
                && let Ok(mut u) = reqwest::Url::parse(url)
            {
                u.set_path("/<redacted>");
                *url = u.to_string();
            }
        }
    }
}

impl AuditConfig {
    /// Reads `path` (if any), then applies environment overrides from `vars` (the
    /// `[anchor]` ones too), then validates.
    pub fn load(
        path: Option<&Path>,
        vars: impl Fn(&str) -> Option<String>,
    ) -> Result<AuditConfig, ConfigError> {
        let mut cfg: AuditConfig = flk_runtime::config::load(path, &vars)?;
        cfg.anchor.apply_env(&vars)?;
        cfg.siem.apply_env(&vars)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// [`AuditConfig::load`] of a parsed document (`flk up`'s `[audit]` section).
    pub fn from_table(
        table: toml::Table,
        origin: &str,
        vars: impl Fn(&str) -> Option<String>,
    ) -> Result<AuditConfig, ConfigError> {
        let mut cfg: AuditConfig = flk_runtime::config::from_table(table, origin, &vars)?;
        cfg.anchor.apply_env(&vars)?;
        cfg.siem.apply_env(&vars)?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        flk_tlog::note::check_key_name(&self.origin).map_err(|_| {
            ConfigError::Invalid(format!(
                "`origin` {:?} must be non-empty, without white space or `+`",
                self.origin
            ))
        })?;
        flk_runtime::config::check_http_url("verify_url", &self.verify_url)?;
        self.tls.validate("tls")?;
        self.auth.validate("auth")?;
        self.peer.validate("peer")?;
        if self.checkpoint_interval_ms == 0 || self.checkpoint_interval_ms > 60_000 {
            return Err(ConfigError::Invalid(
                "`checkpoint_interval_ms` must be in 1..=60000".into(),
            ));
        }
        if self.batch_max_entries == 0 || self.batch_max_entries > flk_tlog::MAX_BATCH_ENTRIES {
            return Err(ConfigError::Invalid(format!(
                "`batch_max_entries` must be in 1..={}",
                flk_tlog::MAX_BATCH_ENTRIES
            )));
        }
        if self.storage == StorageSetting::Postgres && self.postgres_url.is_none() {
            return Err(ConfigError::Invalid(format!(
                "`storage = \"postgres\"` needs `postgres_url` ({})",
                env::POSTGRES_URL
            )));
        }
        if self.reconnect_initial_ms == 0 || self.reconnect_max_ms < self.reconnect_initial_ms {
            return Err(ConfigError::Invalid(
                "need 0 < `reconnect_initial_ms` <= `reconnect_max_ms`".into(),
            ));
        }
        self.siem.validate()?;
        self.anchor.validate()
    }

    pub fn checkpoint_interval(&self) -> Duration {
        Duration::from_millis(self.checkpoint_interval_ms)
    }

    /// The signer key file in use.
    pub fn key_path(&self) -> PathBuf {
        self.log_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join(crate::keys::DEFAULT_KEY_FILE))
    }

    /// The configuration as TOML, the password of `postgres_url` redacted (the key is
    /// referenced by path).
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
        let path = dir.path().join("audit.toml");
        std::fs::write(
            &path,
            "origin = \"audit.example/log\"\ncheckpoint_interval_ms = 200\nsync = \"filesystem\"\n",
        )
        .unwrap();
        let cfg = AuditConfig::load(Some(&path), |k| match k {
            env::LISTEN => Some("127.0.0.1:0".to_owned()),
            env::CHECKPOINT_INTERVAL_MS => Some("50".to_owned()),
            env::VERIFY_URL => Some("http://10.0.0.1:9".to_owned()),
            _ => None,
        })
        .unwrap();
        assert_eq!(cfg.origin, "audit.example/log");
        assert_eq!(cfg.listen.port(), 0);
        assert_eq!(cfg.checkpoint_interval_ms, 50);
        assert_eq!(cfg.verify_url, "http://10.0.0.1:9");
        assert_eq!(cfg.sync, SyncSetting::Filesystem);
        assert_eq!(cfg.key_path(), cfg.data_dir.join("log.key"));
        assert!(cfg.redacted().contains("audit.example/log"));
        let pg = AuditConfig::load(None, |k| match k {
            env::STORAGE => Some("postgres".to_owned()),
            env::POSTGRES_URL => Some("postgres://u:hunter2@db:5432/flk".to_owned()),
            _ => None,
        })
        .unwrap();
        assert_eq!(pg.storage, StorageSetting::Postgres);
        let printed = pg.redacted();
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(
            printed.contains("postgres://u:<redacted>@db:5432/flk"),
            "{printed}"
        );
        assert_eq!(
            redact_url("host=db user=u password=hunter2"),
            "host=db user=u password=<redacted>"
        );

        std::fs::write(&path, "orign = \"x\"\n").unwrap();
        let err = AuditConfig::load(Some(&path), |_| None).unwrap_err();
        assert!(err.to_string().contains("orign"), "{err}");
    }

    #[test]
    fn invalid_values_are_refused() {
        let bad = |k: &'static str, v: &'static str| {
            AuditConfig::load(None, move |name| (name == k).then(|| v.to_owned())).unwrap_err()
        };
        assert!(bad(env::ORIGIN, "has space").to_string().contains("origin"));
        assert!(bad(env::ORIGIN, "").to_string().contains("origin"));
        assert!(
            bad(env::CHECKPOINT_INTERVAL_MS, "0")
                .to_string()
                .contains("interval")
        );
        assert!(
            bad(env::CHECKPOINT_INTERVAL_MS, "soon")
                .to_string()
                .contains("INTERVAL")
        );
        assert!(
            bad(env::BATCH_MAX_ENTRIES, "70000")
                .to_string()
                .contains("batch")
        );
        assert!(
            bad(env::VERIFY_URL, "localhost:1")
                .to_string()
                .contains("verify_url")
        );
        assert!(bad(env::SYNC, "never").to_string().contains("sync"));
        assert!(bad(env::STORAGE, "s3").to_string().contains("STORAGE"));
        assert!(
            bad(env::STORAGE, "postgres")
                .to_string()
                .contains("postgres_url")
        );
        assert_eq!(
            AuditConfig::load(None, |_| None).unwrap(),
            AuditConfig::default()
        );
    }
}
