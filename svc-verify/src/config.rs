//! Typed configuration of svc-verify: one struct, defaults in one place, a TOML file plus
//! environment overrides (names below), printable with secrets redacted.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub use flk_runtime::ConfigError;
use flk_runtime::config::{EnvVar, ServiceConfig};
pub use flk_runtime::security::{AuthSettings, TlsSettings};
use serde::{Deserialize, Serialize};

/// Environment variable names (each overrides the file).
pub mod env {
    pub const CONFIG: &str = "FLK_VERIFY_CONFIG";
    pub const LISTEN: &str = "FLK_VERIFY_LISTEN";
    pub const DATA_DIR: &str = "FLK_DATA_DIR";
    pub const REGION: &str = "FLK_REGION";
    pub const TENANTS_FILE: &str = "FLK_TENANTS_FILE";
    pub const HMAC_KEY: &str = "FLK_HMAC_KEY";
    pub const DEDUP_BACKEND: &str = "FLK_DEDUP_BACKEND";
    pub const DEDUP_URL: &str = "FLK_DEDUP_URL";
    pub const FSYNC: &str = "FLK_LOG_FSYNC";
    pub const TLS_CERT: &str = "FLK_TLS_CERT";
    pub const TLS_KEY: &str = "FLK_TLS_KEY";
    pub const TLS_CLIENT_CA: &str = "FLK_TLS_CLIENT_CA";
    pub const AUTH_TOKEN_FILE: &str = "FLK_VERIFY_AUTH_TOKEN_FILE";
    pub const AUTH_TOKEN_SHA256: &str = "FLK_VERIFY_AUTH_TOKEN_SHA256";
}

/// Which dedup index backend to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DedupBackend {
    /// fjall keyspace in the data directory.
    #[default]
    Embedded,
    /// Redis at `dedup.url` (`redis://host:port/db`).
    Redis,
    /// PostgreSQL at `dedup.url` (`postgres://user@host:port/db` or key=value form).
    Postgres,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DedupConfig {
    pub backend: DedupBackend,
    /// Server URL for `redis` / `postgres`.
    pub url: Option<String>,
}

impl Default for DedupConfig {
    fn default() -> Self {
        DedupConfig {
            backend: DedupBackend::Embedded,
            url: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// Rotate segments past this size.
    pub segment_max_bytes: u64,
    /// fsync before acknowledging (never turn off in production).
    pub fsync: bool,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            segment_max_bytes: 64 * 1024 * 1024,
            fsync: true,
        }
    }
}

/// svc-verify configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VerifyConfig {
    /// gRPC (and `/metrics`, `/health`, `/ready` over HTTP/1.1) listen address.
    pub listen: SocketAddr,
    /// Outcome log, embedded dedup index and watermark live here.
    pub data_dir: PathBuf,
    /// Region name recorded in every decision.
    pub region: String,
    /// Tenants file (TOML). Without one, a single `default` tenant with one HMAC key.
    pub tenants_file: Option<PathBuf>,
    /// HMAC secret of the `default` tenant when no tenants file is given. When neither is
    /// set, a random secret is generated once and kept in `<data_dir>/default-hmac.key`.
    pub hmac_key: Option<String>,
    /// Largest accepted PCS body.
    pub max_body_bytes: usize,
    pub dedup: DedupConfig,
    pub log: LogSettings,
    /// TLS on the listen port (gRPC and the HTTP endpoints alike); with `client_ca`, clients
    /// (the gateway, the feed consumers) must present a certificate it signed (mTLS).
    pub tls: TlsSettings,
    /// Without mTLS: the bearer token every call needs (`flk_runtime::security`); generated
    /// in `<data_dir>/admin.token` when neither is configured.
    pub auth: AuthSettings,
}

impl Default for VerifyConfig {
    fn default() -> Self {
        VerifyConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            data_dir: PathBuf::from("flk-data/verify"),
            region: "local".to_owned(),
            tenants_file: None,
            hmac_key: None,
            max_body_bytes: 1024 * 1024,
            dedup: DedupConfig::default(),
            log: LogSettings::default(),
            tls: TlsSettings::default(),
            auth: AuthSettings::default(),
        }
    }
}

impl ServiceConfig for VerifyConfig {
    const ENV: &'static [EnvVar] = &[
        EnvVar::string(env::LISTEN, "listen"),
        EnvVar::string(env::DATA_DIR, "data_dir"),
        EnvVar::string(env::REGION, "region"),
        EnvVar::optional(env::TENANTS_FILE, "tenants_file"),
        EnvVar::optional(env::HMAC_KEY, "hmac_key"),
        EnvVar::string(env::DEDUP_BACKEND, "dedup.backend"),
        EnvVar::optional(env::DEDUP_URL, "dedup.url"),
        EnvVar::bool(env::FSYNC, "log.fsync"),
        EnvVar::optional(env::TLS_CERT, "tls.cert"),
        EnvVar::optional(env::TLS_KEY, "tls.key"),
        EnvVar::optional(env::TLS_CLIENT_CA, "tls.client_ca"),
        EnvVar::optional(env::AUTH_TOKEN_FILE, "auth.token_file"),
        EnvVar::optional(env::AUTH_TOKEN_SHA256, "auth.token_sha256"),
    ];

    fn validate(&self) -> Result<(), ConfigError> {
        if self.region.is_empty() {
            return Err(ConfigError::Invalid("`region` must not be empty".into()));
        }
        if self.max_body_bytes == 0 {
            return Err(ConfigError::Invalid(
                "`max_body_bytes` must be positive".into(),
            ));
        }
        if self.dedup.backend != DedupBackend::Embedded && self.dedup.url.is_none() {
            return Err(ConfigError::Invalid(format!(
                "dedup backend {:?} needs `dedup.url` (or {})",
                self.dedup.backend,
                env::DEDUP_URL
            )));
        }
        self.tls.validate("tls")?;
        self.auth.validate("auth")
    }

    fn redact(&mut self) {
        if self.hmac_key.is_some() {
            self.hmac_key = Some("<redacted>".into());
        }
        if let Some(url) = &self.dedup.url {
            self.dedup.url = Some(flk_runtime::config::redact_url(url));
        }
    }
}

impl VerifyConfig {
    /// Reads `path` (if any), then applies environment overrides from `vars`.
    pub fn load(
        path: Option<&Path>,
        vars: impl Fn(&str) -> Option<String>,
    ) -> Result<VerifyConfig, ConfigError> {
        flk_runtime::config::load(path, vars)
    }

    /// The configuration as TOML with secrets redacted.
    pub fn redacted(&self) -> String {
        flk_runtime::config::to_toml(self)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        ServiceConfig::validate(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_file_and_unknown_fields_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("verify.toml");
        std::fs::write(
            &path,
            "region = \"eu\"\n[dedup]\nbackend = \"redis\"\nurl = \"redis://:pw@h:1\"\n",
        )
        .unwrap();
        let cfg = VerifyConfig::load(Some(&path), |k| {
            (k == env::LISTEN).then(|| "127.0.0.1:0".to_owned())
        })
        .unwrap();
        assert_eq!(cfg.region, "eu");
        assert_eq!(cfg.listen.port(), 0);
        assert_eq!(cfg.dedup.backend, DedupBackend::Redis);
        assert!(!cfg.redacted().contains("pw"));
        std::fs::write(&path, "regoin = \"eu\"\n").unwrap();
        let err = VerifyConfig::load(Some(&path), |_| None).unwrap_err();
        assert!(err.to_string().contains("regoin"), "{err}");
        std::fs::write(&path, "[dedup]\nbackend = \"postgres\"\n").unwrap();
        assert!(VerifyConfig::load(Some(&path), |_| None).is_err());
    }

    #[test]
    fn tls_from_file_and_env_and_half_a_pair_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("verify.toml");
        std::fs::write(
            &path,
            "[tls]\ncert = \"s.pem\"\nkey = \"s.key\"\nclient_ca = \"ca.pem\"\n",
        )
        .unwrap();
        let cfg = VerifyConfig::load(Some(&path), |_| None).unwrap();
        let tls = cfg.tls.server_tls().unwrap();
        assert_eq!(tls.cert, PathBuf::from("s.pem"));
        assert_eq!(tls.client_ca, Some(PathBuf::from("ca.pem")));
        assert!(cfg.redacted().contains("[tls]"), "{}", cfg.redacted());
        // Environment over file.
        let cfg = VerifyConfig::load(Some(&path), |k| {
            (k == env::TLS_CERT).then(|| "other.pem".to_owned())
        })
        .unwrap();
        assert_eq!(cfg.tls.cert, Some(PathBuf::from("other.pem")));
        // Off by default.
        assert_eq!(
            VerifyConfig::load(None, |_| None).unwrap().tls.server_tls(),
            None
        );
        // A certificate without its key, from the environment alone.
        let err = VerifyConfig::load(None, |k| (k == env::TLS_CERT).then(|| "s.pem".to_owned()))
            .unwrap_err();
        assert!(err.to_string().contains("tls.key"), "{err}");
        std::fs::write(&path, "[tls]\nclient_ca = \"ca.pem\"\n").unwrap();
        assert!(VerifyConfig::load(Some(&path), |_| None).is_err());
        std::fs::write(&path, "[tls]\ncrt = \"s.pem\"\n").unwrap();
        let err = VerifyConfig::load(Some(&path), |_| None).unwrap_err();
        assert!(err.to_string().contains("crt"), "{err}");
    }
}
