//! The gateway's configuration file, in the runtime's format (TOML, `FLK_GATEWAY_*`
//! environment overrides, unknown keys refused), and its resolution into a
//! [`GatewayConfig`] (files read, tokens hashed).
//!
//! ```toml
//! listen = "127.0.0.1:8080"
//! upstreams = ["http://127.0.0.1:50051"]     # svc-verify replicas
//! # audit_upstream = "http://127.0.0.1:50061" # svc-audit (gRPC), for /v1/audit/*
//! # kpi_upstream = "http://127.0.0.1:50071"   # svc-kpi (REST), for /v1/feedback, /v1/kpi/report
//! # tiering_upstream = "http://127.0.0.1:50081" # svc-tiering (gRPC): tiered reads, /v1/pcs/{id}/body
//! # tenants_file = "tenants.toml"             # limits and the tenants' API tokens
//! max_body_bytes = 1048576
//! timeout_ms = 10000
//! body_timeout_ms = 5000                     # a request body must arrive within this: else 408
//! max_in_flight = 4096
//! upstream_streams = 2
//! # metrics_auth = "user:password"            # basic auth on /metrics
//!
//! [tls]                     # the public port: cert, key, optional client_ca (mTLS)
//! [auth]                    # the admin token (token_file | token_env | token_sha256):
//!                           # needed for Subscribe through the gateway; unset: refused
//! [peer]                    # towards svc-verify, svc-audit, svc-kpi: ca, cert, key,
//!                           # server_name, token_file | token_env
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use flk_runtime::ConfigError;
use flk_runtime::client::Peer;
use flk_runtime::config::{EnvVar, ServiceConfig};
use flk_runtime::security::{AuthSettings, PeerSettings, TlsSettings};
use flk_runtime::tenants::TenantsFile;
use serde::{Deserialize, Serialize};

use crate::GatewayConfig;

/// Environment variable names (each overrides the file).
pub mod env {
    pub const CONFIG: &str = "FLK_GATEWAY_CONFIG";
    pub const LISTEN: &str = "FLK_GATEWAY_LISTEN";
    /// Comma-separated.
    pub const UPSTREAMS: &str = "FLK_GATEWAY_UPSTREAMS";
    pub const AUDIT_UPSTREAM: &str = "FLK_GATEWAY_AUDIT_UPSTREAM";
    pub const KPI_UPSTREAM: &str = "FLK_GATEWAY_KPI_UPSTREAM";
    pub const TIERING_UPSTREAM: &str = "FLK_GATEWAY_TIERING_UPSTREAM";
    pub const TENANTS_FILE: &str = "FLK_GATEWAY_TENANTS_FILE";
    pub const MAX_BODY_BYTES: &str = "FLK_GATEWAY_MAX_BODY_BYTES";
    pub const TIMEOUT_MS: &str = "FLK_GATEWAY_TIMEOUT_MS";
    pub const BODY_TIMEOUT_MS: &str = "FLK_GATEWAY_BODY_TIMEOUT_MS";
    pub const MAX_IN_FLIGHT: &str = "FLK_GATEWAY_MAX_IN_FLIGHT";
    pub const UPSTREAM_STREAMS: &str = "FLK_GATEWAY_UPSTREAM_STREAMS";
    pub const METRICS_AUTH: &str = "FLK_GATEWAY_METRICS_AUTH";
}

/// The gateway's settings as written in its file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewaySettings {
    pub listen: SocketAddr,
    /// svc-verify replicas (`http://host:port`; upgraded to TLS with `[peer] ca`).
    pub upstreams: Vec<String>,
    pub audit_upstream: Option<String>,
    pub kpi_upstream: Option<String>,
    pub tiering_upstream: Option<String>,
    /// The tenants file (svc-verify's format): rate limits, quotas and API tokens.
    pub tenants_file: Option<PathBuf>,
    pub max_body_bytes: usize,
    pub timeout_ms: u64,
    /// How long a client may take to send its request body; a client that stalls gets 408
    /// (its fault), not the 504 of [`GatewaySettings::timeout_ms`]; a value at or above
    /// `timeout_ms` leaves the 504 in charge.
    pub body_timeout_ms: u64,
    pub max_in_flight: usize,
    pub upstream_streams: usize,
    /// `USER:PASSWORD` for basic auth on `/metrics`.
    pub metrics_auth: Option<String>,
    pub tls: TlsSettings,
    pub auth: AuthSettings,
    pub peer: PeerSettings,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        let d = GatewayConfig::default();
        GatewaySettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            upstreams: d.upstreams,
            audit_upstream: None,
            kpi_upstream: None,
            tiering_upstream: None,
            tenants_file: None,
            max_body_bytes: d.max_body_bytes,
            timeout_ms: d.request_timeout.as_millis() as u64,
            body_timeout_ms: d.body_timeout.as_millis() as u64,
            max_in_flight: d.max_in_flight,
            upstream_streams: d.upstream_streams,
            metrics_auth: None,
            tls: TlsSettings::default(),
            auth: AuthSettings::default(),
            peer: PeerSettings::default(),
        }
    }
}

impl ServiceConfig for GatewaySettings {
    const ENV: &'static [EnvVar] = &[
        EnvVar::string(env::LISTEN, "listen"),
        EnvVar::list(env::UPSTREAMS, "upstreams"),
        EnvVar::optional(env::AUDIT_UPSTREAM, "audit_upstream"),
        EnvVar::optional(env::KPI_UPSTREAM, "kpi_upstream"),
        EnvVar::optional(env::TIERING_UPSTREAM, "tiering_upstream"),
        EnvVar::optional(env::TENANTS_FILE, "tenants_file"),
        EnvVar::number(env::MAX_BODY_BYTES, "max_body_bytes"),
        EnvVar::number(env::TIMEOUT_MS, "timeout_ms"),
        EnvVar::number(env::BODY_TIMEOUT_MS, "body_timeout_ms"),
        EnvVar::number(env::MAX_IN_FLIGHT, "max_in_flight"),
        EnvVar::number(env::UPSTREAM_STREAMS, "upstream_streams"),
        EnvVar::optional(env::METRICS_AUTH, "metrics_auth"),
    ];
    const MORE_ENV: &'static [&'static [EnvVar]] = &[
        &flk_runtime::server_env!("FLK_GATEWAY"),
        &flk_runtime::peer_env!("FLK_GATEWAY"),
    ];

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.upstreams.is_empty() {
            return bad("`upstreams` needs at least one svc-verify URL".into());
        }
        for u in &self.upstreams {
            flk_runtime::config::check_http_url("upstreams", u)?;
        }
        if let Some(u) = &self.audit_upstream {
            flk_runtime::config::check_http_url("audit_upstream", u)?;
        }
        if let Some(u) = &self.kpi_upstream {
            flk_runtime::config::check_http_url("kpi_upstream", u)?;
        }
        if let Some(u) = &self.tiering_upstream {
            flk_runtime::config::check_http_url("tiering_upstream", u)?;
        }
        if self.max_body_bytes == 0 || self.timeout_ms == 0 || self.max_in_flight == 0 {
            return bad(
                "`max_body_bytes`, `timeout_ms` and `max_in_flight` must be positive".into(),
            );
        }
        if self.body_timeout_ms == 0 {
            return bad("`body_timeout_ms` must be positive".into());
        }
        if self
            .metrics_auth
            .as_deref()
            .is_some_and(|a| !a.contains(':'))
        {
            return bad("`metrics_auth` must be USER:PASSWORD".into());
        }
        self.tls.validate("tls")?;
        self.auth.validate("auth")?;
        self.peer.validate("peer")
    }

    fn redact(&mut self) {
        if let Some(a) = &mut self.metrics_auth
            && let Some((user, _)) = a.split_once(':')
        {
            *a = format!("{user}:<redacted>");
        }
    }
}

impl GatewaySettings {
    /// Reads, applies the environment (`vars`), validates.
    pub fn load(
        path: Option<&std::path::Path>,
        vars: impl Fn(&str) -> Option<String>,
    ) -> Result<GatewaySettings, ConfigError> {
        flk_runtime::config::load(path, vars)
    }

    /// [`GatewaySettings::load`] of a parsed document (`flk up`'s `[gateway]` section).
    pub fn from_table(
        table: toml::Table,
        origin: &str,
        vars: impl Fn(&str) -> Option<String>,
    ) -> Result<GatewaySettings, ConfigError> {
        flk_runtime::config::from_table(table, origin, vars)
    }

    /// The settings as TOML, secrets redacted.
    pub fn redacted(&self) -> String {
        flk_runtime::config::to_toml(self)
    }

    /// Reads the files the settings name (tenants, certificates, tokens) into the gateway's
    /// runtime configuration; errors name the file or key.
    pub fn resolve(&self, vars: impl Fn(&str) -> Option<String>) -> anyhow::Result<GatewayConfig> {
        let tenants = match &self.tenants_file {
            Some(path) => TenantsFile::read(path)?,
            None => TenantsFile::default(),
        };
        let metrics_auth = self
            .metrics_auth
            .as_deref()
            .and_then(|a| a.split_once(':').map(|(u, p)| (u.to_owned(), p.to_owned())));
        Ok(GatewayConfig {
            upstreams: self.upstreams.clone(),
            max_body_bytes: self.max_body_bytes,
            request_timeout: Duration::from_millis(self.timeout_ms),
            body_timeout: Duration::from_millis(self.body_timeout_ms),
            max_in_flight: self.max_in_flight,
            metrics_auth,
            limits: tenants.limits()?,
            api_tokens: tenants.api_tokens(&vars)?,
            admin_token: self.auth.hash(&vars)?,
            tls: self.tls.server_tls(),
            peer: Peer::resolve(&self.peer, &vars)?,
            audit_upstream: self.audit_upstream.clone(),
            kpi_upstream: self.kpi_upstream.clone(),
            tiering_upstream: self.tiering_upstream.clone(),
            upstream_streams: self.upstream_streams,
            ..GatewayConfig::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_and_environment_make_the_settings() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.toml");
        std::fs::write(
            &path,
            "upstreams = [\"http://10.0.0.1:50051\"]\nmetrics_auth = \"prom:hunter2\"\n[peer]\ntoken_env = \"MESH\"\n",
        )
        .unwrap();
        let s = GatewaySettings::load(Some(&path), |k| match k {
            env::UPSTREAMS => Some("http://a:1, http://b:2".into()),
            env::LISTEN => Some("127.0.0.1:0".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(s.upstreams, ["http://a:1", "http://b:2"]);
        assert_eq!(s.listen.port(), 0);
        let printed = s.redacted();
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("prom:<redacted>"), "{printed}");
        let cfg = s
            .resolve(|k| (k == "MESH").then(|| "mesh-token".to_owned()))
            .unwrap();
        assert_eq!(cfg.peer.token(), Some("mesh-token"));
        assert!(cfg.admin_token.is_none());

        std::fs::write(&path, "upstream = [\"http://x:1\"]\n").unwrap();
        let err = GatewaySettings::load(Some(&path), |_| None).unwrap_err();
        assert!(err.to_string().contains("upstream"), "{err}");
        let err = GatewaySettings::load(None, |k| {
            (k == env::KPI_UPSTREAM).then(|| "ftp://x".to_owned())
        })
        .unwrap_err();
        assert!(err.to_string().contains("kpi_upstream"), "{err}");
    }
}
