//! Typed configuration of svc-crr: one struct, defaults in one place, a TOML file plus
//! `FLK_CRR_*` environment overrides (names in [`mod@env`]), printable as TOML. `flk up`
//! embeds the same table as `[crr]`.
//!
//! ```toml
//! region = "eu"                     # this stack's region (svc-verify records it in every decision)
//! listen = "127.0.0.1:7101"         # replication gRPC + REST (/v1/crr/*) + /health /ready /metrics
//! data_dir = "flk-data/crr"         # tree.fjall: Merkle trees; crr.redb: watermarks, proposals, policies
//! verify_url = "http://127.0.0.1:50051"   # this region's svc-verify
//! default_mode = "none"             # for tenants without a policy: full | none
//! reconcile_mode = "auto_safe"      # manual | auto_safe | auto_aggressive
//! safety_threshold = 0.8            # auto_safe applies actions at least this safe
//! anti_entropy_interval = "30s"     # how often peers compare trees
//! retention = "none"                # records decided before now - retention are not divergence
//! peer_token_env = "FLK_CRR_PEER_TOKEN"   # or peer_token = "...", or mTLS in [tls]
//! batch_max_records = 512           # records per shipped batch at most
//! batch_interval_ms = 20            # longest wait before a partial batch ships
//! [[peers]]
//! region = "us"
//! url = "http://127.0.0.1:7102"
//! [[policies]]
//! tenant = "acme"                   # or include = ["acme-*"], exclude = [...], selector = {tier = "gold"}
//! mode = "selective"                # full | selective | multi_way | none
//! targets = ["us"]
//! priority = 7                      # 1-10: a higher priority tenant's backlog ships first
//! [labels.acme]                     # labels the policies' selectors match
//! tier = "gold"
//! [health]                          # gates that raise alerts (status `alerts`, metric)
//! max_lag_seconds = 60
//! max_ship_errors_per_hour = 100
//! max_divergence = 0
//! [tls]                             # mTLS between regions: cert, key, client_ca (the peers' CA)
//! [peer]                            # credentials towards this region's svc-verify, as every service
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use flk_runtime::ConfigError;
use flk_runtime::config::{EnvVar, ServiceConfig};
use flk_runtime::security::{PeerSettings, TlsSettings};
use serde::{Deserialize, Serialize};

use crate::policy::{Mode, PolicySpec};

/// Environment variable names (each overrides the file).
pub mod env {
    pub const CONFIG: &str = "FLK_CRR_CONFIG";
    pub const REGION: &str = "FLK_CRR_REGION";
    pub const LISTEN: &str = "FLK_CRR_LISTEN";
    pub const DATA_DIR: &str = "FLK_CRR_DATA_DIR";
    pub const VERIFY_URL: &str = "FLK_CRR_VERIFY_URL";
    pub const DEFAULT_MODE: &str = "FLK_CRR_DEFAULT_MODE";
    pub const RECONCILE_MODE: &str = "FLK_CRR_RECONCILE_MODE";
    pub const SAFETY_THRESHOLD: &str = "FLK_CRR_SAFETY_THRESHOLD";
    pub const ANTI_ENTROPY_INTERVAL: &str = "FLK_CRR_ANTI_ENTROPY_INTERVAL";
    pub const RETENTION: &str = "FLK_CRR_RETENTION";
    pub const PEER_TOKEN_ENV: &str = "FLK_CRR_PEER_TOKEN_ENV";
    /// The default variable holding the shared peer token.
    pub const PEER_TOKEN: &str = "FLK_CRR_PEER_TOKEN";
}

/// A peer region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerRegion {
    pub region: String,
    pub url: String,
}

/// The health gates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthGates {
    pub max_lag_seconds: f64,
    pub max_ship_errors_per_hour: u64,
    pub max_divergence: u64,
}

impl Default for HealthGates {
    fn default() -> Self {
        HealthGates {
            max_lag_seconds: 60.0,
            max_ship_errors_per_hour: 100,
            max_divergence: 0,
        }
    }
}

/// How the reconciler acts on divergence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReconcileMode {
    /// Every action waits for approval.
    Manual,
    /// Actions at or above `safety_threshold` run; the others wait for approval.
    AutoSafe,
    /// Every action runs.
    AutoAggressive,
}

/// svc-crr configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CrrConfig {
    pub region: String,
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub verify_url: String,
    pub default_mode: Mode,
    pub reconcile_mode: ReconcileMode,
    pub safety_threshold: f64,
    pub anti_entropy_interval: String,
    /// A duration or `none`.
    pub retention: String,
    /// The shared peer token inline (prefer `peer_token_env`).
    pub peer_token: Option<String>,
    /// The variable holding the shared peer token.
    pub peer_token_env: Option<String>,
    pub batch_max_records: usize,
    pub batch_interval_ms: u64,
    pub reconnect_initial_ms: u64,
    pub reconnect_max_ms: u64,
    pub peers: Vec<PeerRegion>,
    pub policies: Vec<PolicySpec>,
    pub labels: BTreeMap<String, BTreeMap<String, String>>,
    pub health: HealthGates,
    /// mTLS between regions: this region's certificate and key (server and client) and the
    /// CA that signs the peers' certificates (`client_ca`).
    pub tls: TlsSettings,
    /// Credentials towards this region's svc-verify.
    pub peer: PeerSettings,
}

impl Default for CrrConfig {
    fn default() -> Self {
        CrrConfig {
            region: "local".to_owned(),
            listen: SocketAddr::from(([127, 0, 0, 1], 7101)),
            data_dir: PathBuf::from("flk-data/crr"),
            verify_url: "http://127.0.0.1:50051".to_owned(),
            default_mode: Mode::None,
            reconcile_mode: ReconcileMode::AutoSafe,
            safety_threshold: 0.8,
            anti_entropy_interval: "30s".to_owned(),
            retention: "none".to_owned(),
            peer_token: None,
            peer_token_env: None,
            batch_max_records: 512,
            batch_interval_ms: 20,
            reconnect_initial_ms: 100,
            reconnect_max_ms: 5_000,
            peers: Vec::new(),
            policies: Vec::new(),
            labels: BTreeMap::new(),
            health: HealthGates::default(),
            tls: TlsSettings::default(),
            peer: PeerSettings::default(),
        }
    }
}

impl ServiceConfig for CrrConfig {
    const ENV: &'static [EnvVar] = &[
        EnvVar::string(env::REGION, "region"),
        EnvVar::string(env::LISTEN, "listen"),
        EnvVar::string(env::DATA_DIR, "data_dir"),
        EnvVar::string(env::VERIFY_URL, "verify_url"),
        EnvVar::string(env::DEFAULT_MODE, "default_mode"),
        EnvVar::string(env::RECONCILE_MODE, "reconcile_mode"),
        EnvVar::number(env::SAFETY_THRESHOLD, "safety_threshold"),
        EnvVar::string(env::ANTI_ENTROPY_INTERVAL, "anti_entropy_interval"),
        EnvVar::string(env::RETENTION, "retention"),
        EnvVar::optional(env::PEER_TOKEN_ENV, "peer_token_env"),
    ];
    const MORE_ENV: &'static [&'static [EnvVar]] = &[
        &flk_runtime::server_env!("FLK_CRR"),
        &flk_runtime::peer_env!("FLK_CRR"),
    ];

    fn validate(&self) -> Result<(), ConfigError> {
        CrrConfig::validate(self)
    }

    fn redact(&mut self) {
        if self.peer_token.is_some() {
            self.peer_token = Some("<redacted>".to_owned());
        }
    }
}

fn invalid(message: String) -> ConfigError {
    ConfigError::Invalid(message)
}

/// A humantime duration; the message names the key.
pub fn duration(key: &str, text: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(text.trim()).map_err(|e| {
        invalid(format!(
            "`{key}` must be a duration such as \"30s\" or \"7d\", got {text:?}: {e}"
        ))
    })
}

impl CrrConfig {
    /// Checks what types cannot; messages name the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !valid_region(&self.region) {
            return Err(invalid(format!(
                "`region` must be 1-64 characters of [a-z0-9-_.], got {:?}",
                self.region
            )));
        }
        flk_runtime::config::check_http_url("verify_url", &self.verify_url)?;
        if !(0.0..=1.0).contains(&self.safety_threshold) {
            return Err(invalid(format!(
                "`safety_threshold` must be within 0..=1, got {}",
                self.safety_threshold
            )));
        }
        let interval = duration("anti_entropy_interval", &self.anti_entropy_interval)?;
        if interval < Duration::from_millis(100) {
            return Err(invalid(
                "`anti_entropy_interval` must be at least 100ms".to_owned(),
            ));
        }
        self.retention_ms()?;
        if self.batch_max_records == 0 || self.batch_max_records > 10_000 {
            return Err(invalid(format!(
                "`batch_max_records` must be within 1..=10000, got {}",
                self.batch_max_records
            )));
        }
        if matches!(self.default_mode, Mode::Selective | Mode::MultiWay) {
            return Err(invalid(
                "`default_mode` must be `full` or `none` (selective and multi_way name targets per tenant)"
                    .to_owned(),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, p) in self.peers.iter().enumerate() {
            if !valid_region(&p.region) {
                return Err(invalid(format!(
                    "`peers[{i}].region` must be 1-64 characters of [a-z0-9-_.], got {:?}",
                    p.region
                )));
            }
            if p.region == self.region {
                return Err(invalid(format!(
                    "`peers[{i}].region` is this region ({:?})",
                    p.region
                )));
            }
            if !seen.insert(p.region.as_str()) {
                return Err(invalid(format!(
                    "`peers[{i}].region` {:?} is listed twice",
                    p.region
                )));
            }
            flk_runtime::config::check_http_url(&format!("peers[{i}].url"), &p.url)?;
        }
        for (i, p) in self.policies.iter().enumerate() {
            p.validate()
                .map_err(|m| invalid(format!("`policies[{i}]`: {m}")))?;
        }
        self.tls.validate("tls")?;
        self.peer.validate("peer")?;
        Ok(())
    }

    /// `retention` in milliseconds; `None` keeps everything.
    pub fn retention_ms(&self) -> Result<Option<i64>, ConfigError> {
        if self.retention.trim() == "none" {
            return Ok(None);
        }
        let d = duration("retention", &self.retention)?;
        if d.is_zero() {
            return Err(invalid("`retention` must be positive (or none)".to_owned()));
        }
        Ok(Some(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)))
    }

    /// The anti-entropy period (validated).
    pub fn anti_entropy_every(&self) -> Duration {
        duration("anti_entropy_interval", &self.anti_entropy_interval)
            .unwrap_or(Duration::from_secs(30))
    }

    /// The shared peer token: `peer_token`, else the variable `peer_token_env` names (else
    /// `FLK_CRR_PEER_TOKEN`).
    pub fn peer_token(&self, vars: impl Fn(&str) -> Option<String>) -> Option<String> {
        if let Some(t) = &self.peer_token {
            return Some(t.clone());
        }
        let name = self.peer_token_env.as_deref().unwrap_or(env::PEER_TOKEN);
        vars(name).filter(|t| !t.trim().is_empty())
    }

    /// Whether links to peers use mTLS (`[tls]` with a client CA).
    pub fn mtls(&self) -> bool {
        self.tls.mutual()
    }
}

/// Region names: short, lowercase, safe in metric labels and file names.
pub fn valid_region(r: &str) -> bool {
    !r.is_empty()
        && r.len() <= 64
        && r.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<CrrConfig, ConfigError> {
        let table: toml::Table = text.parse().expect("toml");
        flk_runtime::config::from_table::<CrrConfig>(table, "test", &|_: &str| None)
            .map_err(|e| ConfigError::Invalid(format!("{e:#}")))
    }

    #[test]
    fn the_issue_example_loads() {
        let cfg = load(
            r#"
region = "eu"
listen = "127.0.0.1:7101"
default_mode = "none"
reconcile_mode = "auto_safe"
anti_entropy_interval = "30s"
peer_token_env = "FLK_CRR_PEER_TOKEN"
[[peers]]
region = "us"
url = "http://127.0.0.1:7102"
[[policies]]
tenant = "acme"
mode = "selective"
targets = ["us"]
priority = 7
"#,
        )
        .unwrap();
        assert_eq!(cfg.region, "eu");
        assert_eq!(cfg.peers[0].region, "us");
        assert_eq!(cfg.policies[0].priority, 7);
        assert_eq!(cfg.reconcile_mode, ReconcileMode::AutoSafe);
    }

    #[test]
    fn errors_name_the_key() {
        let e = load("region = \"EU\"\n").unwrap_err().to_string();
        assert!(e.contains("region"), "{e}");
        let e = load("region = \"eu\"\n[[peers]]\nregion = \"eu\"\nurl = \"http://x:1\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("peers[0].region"), "{e}");
        let e = load("anti_entropy_interval = \"soon\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("anti_entropy_interval"), "{e}");
        let e = load("[[policies]]\ntenant = \"a\"\nmode = \"selective\"\npriority = 11\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("policies[0]") && e.contains("priority"), "{e}");
        let e = load("default_mode = \"selective\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("default_mode"), "{e}");
    }
}
