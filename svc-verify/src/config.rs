//! Typed configuration of svc-verify: one struct, defaults in one place, a TOML file plus
//! environment overrides (names below), printable with secrets redacted.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

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

/// TLS on the listen port (gRPC and the HTTP endpoints alike). Off unless `cert` and `key`
/// are both set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSettings {
    /// PEM certificate chain, leaf first.
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    pub key: Option<PathBuf>,
    /// PEM CA bundle: when set, clients (the gateway) must present a certificate signed by
    /// it (mTLS).
    pub client_ca: Option<PathBuf>,
}

impl TlsSettings {
    /// The listener's TLS, or `None` for plain text (call after [`VerifyConfig::validate`]).
    pub fn server_tls(&self) -> Option<flk_proto::tls::ServerTls> {
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Some(flk_proto::tls::ServerTls {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: self.client_ca.clone(),
            }),
            _ => None,
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
    pub tls: TlsSettings,
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
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid value for {name}: {message}")]
    Env { name: &'static str, message: String },
    #[error("invalid config: {0}")]
    Invalid(String),
}

impl VerifyConfig {
    /// Reads `path` (if any), then applies environment overrides from `vars`.
    pub fn load(
        path: Option<&Path>,
        vars: impl Fn(&str) -> Option<String>,
    ) -> Result<VerifyConfig, ConfigError> {
        let mut cfg = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_owned(),
                    source,
                })?;
                toml::from_str(&text).map_err(|e| ConfigError::Parse {
                    path: p.to_owned(),
                    message: e.to_string(),
                })?
            }
            None => VerifyConfig::default(),
        };
        if let Some(v) = vars(env::LISTEN) {
            cfg.listen = v.parse().map_err(|e| ConfigError::Env {
                name: env::LISTEN,
                message: format!("{e}"),
            })?;
        }
        if let Some(v) = vars(env::DATA_DIR) {
            cfg.data_dir = PathBuf::from(v);
        }
        if let Some(v) = vars(env::REGION) {
            cfg.region = v;
        }
        if let Some(v) = vars(env::TENANTS_FILE) {
            cfg.tenants_file = Some(PathBuf::from(v));
        }
        if let Some(v) = vars(env::HMAC_KEY) {
            cfg.hmac_key = Some(v);
        }
        if let Some(v) = vars(env::DEDUP_BACKEND) {
            cfg.dedup.backend = match v.as_str() {
                "embedded" => DedupBackend::Embedded,
                "redis" => DedupBackend::Redis,
                "postgres" => DedupBackend::Postgres,
                other => {
                    return Err(ConfigError::Env {
                        name: env::DEDUP_BACKEND,
                        message: format!("unknown backend {other:?} (embedded, redis, postgres)"),
                    });
                }
            };
        }
        if let Some(v) = vars(env::DEDUP_URL) {
            cfg.dedup.url = Some(v);
        }
        if let Some(v) = vars(env::FSYNC) {
            cfg.log.fsync = match v.as_str() {
                "1" | "true" | "on" => true,
                "0" | "false" | "off" => false,
                _ => {
                    return Err(ConfigError::Env {
                        name: env::FSYNC,
                        message: "expected true or false".into(),
                    });
                }
            };
        }
        if let Some(v) = vars(env::TLS_CERT) {
            cfg.tls.cert = Some(PathBuf::from(v));
        }
        if let Some(v) = vars(env::TLS_KEY) {
            cfg.tls.key = Some(PathBuf::from(v));
        }
        if let Some(v) = vars(env::TLS_CLIENT_CA) {
            cfg.tls.client_ca = Some(PathBuf::from(v));
        }
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
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
        match (&self.tls.cert, &self.tls.key, &self.tls.client_ca) {
            (Some(_), None, _) => {
                return Err(ConfigError::Invalid(format!(
                    "`tls.cert` needs `tls.key` (or {})",
                    env::TLS_KEY
                )));
            }
            (None, Some(_), _) => {
                return Err(ConfigError::Invalid(format!(
                    "`tls.key` needs `tls.cert` (or {})",
                    env::TLS_CERT
                )));
            }
            (None, None, Some(_)) => {
                return Err(ConfigError::Invalid(
                    "`tls.client_ca` needs `tls.cert` and `tls.key`".into(),
                ));
            }
            _ => {}
        }
        Ok(())
    }

    /// The configuration as TOML with secrets redacted (for startup logs).
    pub fn redacted(&self) -> String {
        let mut c = self.clone();
        if c.hmac_key.is_some() {
            c.hmac_key = Some("<redacted>".into());
        }
        if let Some(url) = &c.dedup.url {
            c.dedup.url = Some(redact_url(url));
        }
        toml::to_string(&c).unwrap_or_default()
    }
}

/// Hides a password in `scheme://user:password@host` URLs and `password=...` strings.
fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some((auth, host)) = rest.split_once('@')
        && let Some((user, _)) = auth.split_once(':')
    {
        return format!("{scheme}://{user}:<redacted>@{host}");
    }
    url.split(' ')
        .map(|kv| {
            if kv.starts_with("password=") {
                "password=<redacted>"
            } else {
                kv
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
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
