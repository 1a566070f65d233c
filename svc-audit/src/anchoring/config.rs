//! The `[anchor]` section of svc-audit's configuration, with its `FLK_AUDIT_ANCHOR_*`
//! environment overrides (names in [`mod@env`]).
//!
//! ```toml
//! [anchor]
//! strategy = "none"            # none | rfc3161 | opentimestamps | ethereum | polygon | hybrid | auto
//! interval_secs = 600          # anchor the latest checkpoint this often (and on demand)
//! retry_initial_ms = 1000      # backoff after a failed attempt, doubled up to
//! retry_max_ms = 60000         # (never beyond interval_secs)
//! request_timeout_ms = 30000   # bound on one TSA / calendar / JSON-RPC request
//! tsa_url = "https://tsa.example/tsr"     # RFC 3161
//! tsa_ca_cert = "/etc/flk/tsa-ca.pem"     # CA certificate(s) the TSA certificate must chain to
//! ots_calendars = ["https://a.pool.opentimestamps.org"]
//! evm_rpc_url = "https://polygon-rpc.example"
//! evm_chain_id = 137
//! evm_network = "polygon"      # which network the RPC is: "ethereum" or "polygon"
//! evm_key_file = "/secrets/anchor.key"    # 32-byte secp256k1 key, hex (optionally 0x-prefixed)
//! # evm_confirmations = 128    # blocks (the transaction's included) before an EVM anchor is
//! #                            # final; default by evm_chain_id: 12 Ethereum, 128 Polygon, else 12
//! evm_receipt_timeout_secs = 600  # no receipt this long after sending: re-sent, higher gas price
//! evm_poll_interval_ms = 4000  # how often a pending EVM anchor's transaction is polled
//! objective = "balanced"       # auto only: cost | latency | durability | balanced
//! # max_cost_per_month_usd = 50.0, max_latency_secs = 3600.0,
//! # min_durability = 0.9, min_reliability = 0.95     (auto only: hard constraints)
//!
//! # auto only: the optimizer's figures, per strategy (ethereum, polygon, rfc3161,
//! # opentimestamps, hybrid), any of the four; the rest keep the defaults of
//! # flk_anchor::optimizer::default_strategies (ethereum: 2.0 USD, 768 s, 0.99, 0.99).
//! [anchor.strategies.ethereum]
//! cost_per_batch_usd = 0.5
//! [anchor.strategies.polygon]
//! latency_secs = 120.0
//! ```
//!
//! Unknown keys are refused, naming the key (in `[anchor.strategies]` too). The table feeds
//! `auto`'s choice and the estimated cost metric of RFC 3161 and OpenTimestamps anchors
//! (`flk_audit_anchor_cost_usd_total`); EVM anchors count what their receipts say
//! (`flk_audit_anchor_cost_wei_total`).

use std::path::PathBuf;
use std::time::Duration;

use flk_anchor::evm::default_confirmations;
use flk_anchor::optimizer::{Constraints, Objective, Strategy, StrategyId, StrategyTable};
use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

/// Environment variable names (each overrides the file).
pub mod env {
    pub const STRATEGY: &str = "FLK_AUDIT_ANCHOR_STRATEGY";
    pub const INTERVAL_SECS: &str = "FLK_AUDIT_ANCHOR_INTERVAL_SECS";
    pub const RETRY_INITIAL_MS: &str = "FLK_AUDIT_ANCHOR_RETRY_INITIAL_MS";
    pub const RETRY_MAX_MS: &str = "FLK_AUDIT_ANCHOR_RETRY_MAX_MS";
    pub const REQUEST_TIMEOUT_MS: &str = "FLK_AUDIT_ANCHOR_REQUEST_TIMEOUT_MS";
    pub const TSA_URL: &str = "FLK_AUDIT_ANCHOR_TSA_URL";
    pub const TSA_CA_CERT: &str = "FLK_AUDIT_ANCHOR_TSA_CA_CERT";
    /// Comma-separated URLs.
    pub const OTS_CALENDARS: &str = "FLK_AUDIT_ANCHOR_OTS_CALENDARS";
    pub const EVM_RPC_URL: &str = "FLK_AUDIT_ANCHOR_EVM_RPC_URL";
    pub const EVM_CHAIN_ID: &str = "FLK_AUDIT_ANCHOR_EVM_CHAIN_ID";
    pub const EVM_NETWORK: &str = "FLK_AUDIT_ANCHOR_EVM_NETWORK";
    pub const EVM_KEY_FILE: &str = "FLK_AUDIT_ANCHOR_EVM_KEY_FILE";
    pub const EVM_RECEIPT_TIMEOUT_SECS: &str = "FLK_AUDIT_ANCHOR_EVM_RECEIPT_TIMEOUT_SECS";
    pub const EVM_CONFIRMATIONS: &str = "FLK_AUDIT_ANCHOR_EVM_CONFIRMATIONS";
    pub const EVM_POLL_INTERVAL_MS: &str = "FLK_AUDIT_ANCHOR_EVM_POLL_INTERVAL_MS";
    pub const OBJECTIVE: &str = "FLK_AUDIT_ANCHOR_OBJECTIVE";
    pub const MAX_COST_PER_MONTH_USD: &str = "FLK_AUDIT_ANCHOR_MAX_COST_PER_MONTH_USD";
    pub const MAX_LATENCY_SECS: &str = "FLK_AUDIT_ANCHOR_MAX_LATENCY_SECS";
    pub const MIN_DURABILITY: &str = "FLK_AUDIT_ANCHOR_MIN_DURABILITY";
    pub const MIN_RELIABILITY: &str = "FLK_AUDIT_ANCHOR_MIN_RELIABILITY";
}

/// The configured strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum StrategySetting {
    /// No anchoring (the default).
    #[default]
    None,
    /// An RFC 3161 token per checkpoint.
    Rfc3161,
    /// An OpenTimestamps proof per checkpoint, upgraded later.
    Opentimestamps,
    /// A calldata transaction on Ethereum.
    Ethereum,
    /// A calldata transaction on Polygon.
    Polygon,
    /// RFC 3161 now, Polygon later.
    Hybrid,
    /// Chosen by `flk_anchor::optimizer::choose` among the configured methods.
    Auto,
}

impl StrategySetting {
    /// The fixed strategy, or `None` for `none` and `auto`.
    pub fn fixed(self) -> Option<StrategyId> {
        match self {
            StrategySetting::Rfc3161 => Some(StrategyId::Rfc3161),
            StrategySetting::Opentimestamps => Some(StrategyId::Opentimestamps),
            StrategySetting::Ethereum => Some(StrategyId::Ethereum),
            StrategySetting::Polygon => Some(StrategyId::Polygon),
            StrategySetting::Hybrid => Some(StrategyId::Hybrid),
            StrategySetting::None | StrategySetting::Auto => None,
        }
    }

    /// The config name.
    pub fn name(self) -> &'static str {
        match self {
            StrategySetting::None => "none",
            StrategySetting::Auto => "auto",
            other => other.fixed().map_or("none", StrategyId::name),
        }
    }

    fn parse(s: &str) -> Option<StrategySetting> {
        Some(match s {
            "none" => StrategySetting::None,
            "rfc3161" => StrategySetting::Rfc3161,
            "opentimestamps" => StrategySetting::Opentimestamps,
            "ethereum" => StrategySetting::Ethereum,
            "polygon" => StrategySetting::Polygon,
            "hybrid" => StrategySetting::Hybrid,
            "auto" => StrategySetting::Auto,
            _ => return None,
        })
    }
}

/// Which network `evm_rpc_url` reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum EvmNetwork {
    Ethereum,
    #[default]
    Polygon,
}

/// Anchoring settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnchorConfig {
    /// The strategy.
    pub strategy: StrategySetting,
    /// Seconds between two anchoring rounds (each anchors the latest checkpoint if it is not
    /// anchored yet, and upgrades pending OpenTimestamps proofs). Also sets the optimizer's
    /// batches per month (`30 * 86400 / interval_secs`).
    pub interval_secs: u64,
    /// First delay after a failed round; doubled after each failure.
    pub retry_initial_ms: u64,
    /// Longest delay after failures (capped by `interval_secs`).
    pub retry_max_ms: u64,
    /// Bound on one request to a TSA, calendar or JSON-RPC node.
    pub request_timeout_ms: u64,
    /// RFC 3161 TSA URL (http or https).
    pub tsa_url: Option<String>,
    /// PEM file with the CA certificate(s) the TSA certificate must be issued by.
    pub tsa_ca_cert: Option<PathBuf>,
    /// OpenTimestamps calendar base URLs.
    pub ots_calendars: Vec<String>,
    /// EVM JSON-RPC URL.
    pub evm_rpc_url: Option<String>,
    /// EVM chain id (checked against the node before each transaction).
    pub evm_chain_id: Option<u64>,
    /// The network of `evm_rpc_url` (which of `ethereum` / `polygon` it can serve).
    pub evm_network: EvmNetwork,
    /// File holding the sender's secp256k1 private key, 64 hex digits.
    pub evm_key_file: Option<PathBuf>,
    /// How long a sent transaction may stay without a receipt before it is re-submitted with
    /// a higher gas price.
    pub evm_receipt_timeout_secs: u64,
    /// Confirmations before an EVM anchor is final; `None`: by chain id
    /// (`flk_anchor::evm::default_confirmations`: 12 Ethereum, 128 Polygon, else 12).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evm_confirmations: Option<u64>,
    /// Pause between two polls of a pending EVM anchor's transaction.
    pub evm_poll_interval_ms: u64,
    /// `auto`: what the optimizer maximizes.
    pub objective: Objective,
    /// `auto`: hard constraint, USD per month.
    pub max_cost_per_month_usd: Option<f64>,
    /// `auto`: hard constraint, seconds until an anchor is verifiable.
    pub max_latency_secs: Option<f64>,
    /// `auto`: hard constraint.
    pub min_durability: Option<f64>,
    /// `auto`: hard constraint.
    pub min_reliability: Option<f64>,
    /// The optimizer's figures per strategy (`[anchor.strategies.<name>]`), over
    /// `flk_anchor::optimizer::default_strategies`.
    pub strategies: StrategyTable,
}

impl Default for AnchorConfig {
    fn default() -> Self {
        AnchorConfig {
            strategy: StrategySetting::None,
            interval_secs: 600,
            retry_initial_ms: 1000,
            retry_max_ms: 60_000,
            request_timeout_ms: 30_000,
            tsa_url: None,
            tsa_ca_cert: None,
            ots_calendars: Vec::new(),
            evm_rpc_url: None,
            evm_chain_id: None,
            evm_network: EvmNetwork::Polygon,
            evm_key_file: None,
            evm_receipt_timeout_secs: 600,
            evm_confirmations: None,
            evm_poll_interval_ms: 4000,
            objective: Objective::Balanced,
            max_cost_per_month_usd: None,
            max_latency_secs: None,
            min_durability: None,
            min_reliability: None,
            strategies: StrategyTable::default(),
        }
    }
}

fn parse_env<T: std::str::FromStr>(name: &'static str, v: &str) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    v.trim().parse().map_err(|e: T::Err| ConfigError::Env {
        name,
        message: e.to_string(),
    })
}

impl AnchorConfig {
    /// Applies the `FLK_AUDIT_ANCHOR_*` overrides.
    pub fn apply_env(&mut self, vars: &dyn Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(v) = vars(env::STRATEGY) {
            self.strategy = StrategySetting::parse(v.trim()).ok_or_else(|| ConfigError::Env {
                name: env::STRATEGY,
                message: format!(
                    "unknown strategy {v:?} (none, rfc3161, opentimestamps, ethereum, polygon, hybrid, auto)"
                ),
            })?;
        }
        if let Some(v) = vars(env::INTERVAL_SECS) {
            self.interval_secs = parse_env(env::INTERVAL_SECS, &v)?;
        }
        if let Some(v) = vars(env::RETRY_INITIAL_MS) {
            self.retry_initial_ms = parse_env(env::RETRY_INITIAL_MS, &v)?;
        }
        if let Some(v) = vars(env::RETRY_MAX_MS) {
            self.retry_max_ms = parse_env(env::RETRY_MAX_MS, &v)?;
        }
        if let Some(v) = vars(env::REQUEST_TIMEOUT_MS) {
            self.request_timeout_ms = parse_env(env::REQUEST_TIMEOUT_MS, &v)?;
        }
        if let Some(v) = vars(env::TSA_URL) {
            self.tsa_url = Some(v);
        }
        if let Some(v) = vars(env::TSA_CA_CERT) {
            self.tsa_ca_cert = Some(PathBuf::from(v));
        }
        if let Some(v) = vars(env::OTS_CALENDARS) {
            self.ots_calendars = v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
        }
        if let Some(v) = vars(env::EVM_RPC_URL) {
            self.evm_rpc_url = Some(v);
        }
        if let Some(v) = vars(env::EVM_CHAIN_ID) {
            self.evm_chain_id = Some(parse_env(env::EVM_CHAIN_ID, &v)?);
        }
        if let Some(v) = vars(env::EVM_NETWORK) {
            self.evm_network = match v.trim() {
                "ethereum" => EvmNetwork::Ethereum,
                "polygon" => EvmNetwork::Polygon,
                other => {
                    return Err(ConfigError::Env {
                        name: env::EVM_NETWORK,
                        message: format!("unknown network {other:?} (ethereum, polygon)"),
                    });
                }
            };
        }
        if let Some(v) = vars(env::EVM_KEY_FILE) {
            self.evm_key_file = Some(PathBuf::from(v));
        }
        if let Some(v) = vars(env::EVM_RECEIPT_TIMEOUT_SECS) {
            self.evm_receipt_timeout_secs = parse_env(env::EVM_RECEIPT_TIMEOUT_SECS, &v)?;
        }
        if let Some(v) = vars(env::EVM_CONFIRMATIONS) {
            self.evm_confirmations = Some(parse_env(env::EVM_CONFIRMATIONS, &v)?);
        }
        if let Some(v) = vars(env::EVM_POLL_INTERVAL_MS) {
            self.evm_poll_interval_ms = parse_env(env::EVM_POLL_INTERVAL_MS, &v)?;
        }
        if let Some(v) = vars(env::OBJECTIVE) {
            self.objective = match v.trim() {
                "cost" => Objective::Cost,
                "latency" => Objective::Latency,
                "durability" => Objective::Durability,
                "balanced" => Objective::Balanced,
                other => {
                    return Err(ConfigError::Env {
                        name: env::OBJECTIVE,
                        message: format!(
                            "unknown objective {other:?} (cost, latency, durability, balanced)"
                        ),
                    });
                }
            };
        }
        let limits = [
            (
                env::MAX_COST_PER_MONTH_USD,
                &mut self.max_cost_per_month_usd,
            ),
            (env::MAX_LATENCY_SECS, &mut self.max_latency_secs),
            (env::MIN_DURABILITY, &mut self.min_durability),
            (env::MIN_RELIABILITY, &mut self.min_reliability),
        ];
        for (name, slot) in limits {
            if let Some(v) = vars(name) {
                *slot = Some(parse_env(name, &v)?);
            }
        }
        Ok(())
    }

    /// Checks that the strategy has what it needs.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if self.interval_secs == 0 {
            return invalid("`anchor.interval_secs` must be at least 1".into());
        }
        if self.retry_initial_ms == 0 || self.retry_max_ms < self.retry_initial_ms {
            return invalid("need 0 < `anchor.retry_initial_ms` <= `anchor.retry_max_ms`".into());
        }
        if self.request_timeout_ms == 0 {
            return invalid("`anchor.request_timeout_ms` must be at least 1".into());
        }
        if self.evm_confirmations == Some(0) {
            return invalid("`anchor.evm_confirmations` must be at least 1".into());
        }
        if self.evm_poll_interval_ms == 0 {
            return invalid("`anchor.evm_poll_interval_ms` must be at least 1".into());
        }
        if self.evm_receipt_timeout_secs == 0 {
            return invalid("`anchor.evm_receipt_timeout_secs` must be at least 1".into());
        }
        self.strategies
            .validate()
            .map_err(|m| ConfigError::Invalid(format!("`anchor.strategies.{m}`")))?;
        let c = self.constraints();
        for v in [
            c.max_cost_per_month_usd,
            c.max_latency_secs,
            c.min_durability,
            c.min_reliability,
        ]
        .into_iter()
        .flatten()
        {
            if !v.is_finite() {
                return invalid("`anchor` constraints must be finite numbers".into());
            }
        }
        let needs = |id: StrategyId| -> Result<(), ConfigError> {
            match self.missing(id) {
                Some(what) => Err(ConfigError::Invalid(format!(
                    "anchor strategy {} needs {what}",
                    id.name()
                ))),
                None => Ok(()),
            }
        };
        match self.strategy {
            StrategySetting::None => Ok(()),
            StrategySetting::Auto => {
                if self.available().is_empty() {
                    return invalid(
                        "anchor strategy auto needs at least one configured method (tsa_url + tsa_ca_cert, ots_calendars, or evm_*)"
                            .into(),
                    );
                }
                Ok(())
            }
            other => needs(other.fixed().unwrap_or(StrategyId::Rfc3161)),
        }
    }

    /// What strategy `id` lacks in this config, if anything.
    pub fn missing(&self, id: StrategyId) -> Option<String> {
        let tsa = self.tsa_url.is_some() && self.tsa_ca_cert.is_some();
        let evm = self.evm_rpc_url.is_some()
            && self.evm_chain_id.is_some()
            && self.evm_key_file.is_some();
        let network = |n: EvmNetwork, name: &str| {
            if !evm {
                Some("`evm_rpc_url`, `evm_chain_id` and `evm_key_file`".to_owned())
            } else if self.evm_network != n {
                Some(format!("`evm_network = \"{name}\"`"))
            } else {
                None
            }
        };
        match id {
            StrategyId::Rfc3161 => (!tsa).then(|| "`tsa_url` and `tsa_ca_cert`".to_owned()),
            StrategyId::Opentimestamps => self
                .ots_calendars
                .is_empty()
                .then(|| "`ots_calendars`".to_owned()),
            StrategyId::Ethereum => network(EvmNetwork::Ethereum, "ethereum"),
            StrategyId::Polygon => network(EvmNetwork::Polygon, "polygon"),
            StrategyId::Hybrid => self
                .missing(StrategyId::Rfc3161)
                .or_else(|| self.missing(StrategyId::Polygon)),
        }
    }

    /// The strategies this config can run (the optimizer's candidates under `auto`).
    pub fn available(&self) -> Vec<StrategyId> {
        [
            StrategyId::Ethereum,
            StrategyId::Polygon,
            StrategyId::Rfc3161,
            StrategyId::Opentimestamps,
            StrategyId::Hybrid,
        ]
        .into_iter()
        .filter(|&id| self.missing(id).is_none())
        .collect()
    }

    /// The confirmation depth of EVM anchors: `evm_confirmations`, else the chain id's default.
    pub fn confirmations(&self) -> Option<u64> {
        self.evm_confirmations
            .or(self.evm_chain_id.map(default_confirmations))
    }

    /// The optimizer's figures: the defaults with `strategies` applied.
    pub fn strategy_table(&self) -> Vec<Strategy> {
        self.strategies.strategies()
    }

    pub fn evm_poll_interval(&self) -> Duration {
        Duration::from_millis(self.evm_poll_interval_ms)
    }

    /// The optimizer's hard constraints.
    pub fn constraints(&self) -> Constraints {
        Constraints {
            max_cost_per_month_usd: self.max_cost_per_month_usd,
            max_latency_secs: self.max_latency_secs,
            min_durability: self.min_durability,
            min_reliability: self.min_reliability,
        }
    }

    /// Anchoring rounds per 30-day month at this interval.
    pub fn batches_per_month(&self) -> u64 {
        (30 * 86_400 / self.interval_secs.max(1)).max(1)
    }

    pub fn interval(&self) -> Duration {
        Duration::from_secs(self.interval_secs)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn env_overrides_and_requirements() {
        let mut c = AnchorConfig::default();
        c.validate().unwrap();
        c.apply_env(&vars(&[
            (env::STRATEGY, "hybrid"),
            (env::INTERVAL_SECS, "60"),
            (env::TSA_URL, "http://tsa.test/"),
            (env::TSA_CA_CERT, "/ca.pem"),
            (env::OTS_CALENDARS, "http://a.test, http://b.test"),
            (env::OBJECTIVE, "latency"),
            (env::MAX_LATENCY_SECS, "30"),
        ]))
        .unwrap();
        assert_eq!(c.strategy, StrategySetting::Hybrid);
        assert_eq!(c.ots_calendars, ["http://a.test", "http://b.test"]);
        assert_eq!(c.objective, Objective::Latency);
        assert_eq!(c.constraints().max_latency_secs, Some(30.0));
        assert_eq!(c.batches_per_month(), 43_200);
        let err = c.validate().unwrap_err().to_string();
        assert!(
            err.contains("hybrid") && err.contains("evm_rpc_url"),
            "{err}"
        );
        assert_eq!(
            c.available(),
            [StrategyId::Rfc3161, StrategyId::Opentimestamps]
        );
        c.strategy = StrategySetting::Auto;
        c.validate().unwrap();

        let mut c = AnchorConfig::default();
        let err = c
            .apply_env(&vars(&[(env::STRATEGY, "sometimes")]))
            .unwrap_err();
        assert!(err.to_string().contains(env::STRATEGY), "{err}");
        c.strategy = StrategySetting::Auto;
        assert!(c.validate().unwrap_err().to_string().contains("auto"));
        c.strategy = StrategySetting::None;
        c.interval_secs = 0;
        assert!(c.validate().unwrap_err().to_string().contains("interval"));
    }

    #[test]
    fn evm_confirmations_default_by_chain_and_are_overridden() {
        let mut c = AnchorConfig::default();
        assert_eq!(c.confirmations(), None);
        c.evm_chain_id = Some(1);
        assert_eq!(c.confirmations(), Some(12));
        c.evm_chain_id = Some(137);
        assert_eq!(c.confirmations(), Some(128));
        c.apply_env(&vars(&[
            (env::EVM_CONFIRMATIONS, "3"),
            (env::EVM_POLL_INTERVAL_MS, "250"),
        ]))
        .unwrap();
        assert_eq!(c.confirmations(), Some(3));
        assert_eq!(c.evm_poll_interval(), Duration::from_millis(250));
        c.validate().unwrap();

        let err = c
            .apply_env(&vars(&[(env::EVM_CONFIRMATIONS, "many")]))
            .unwrap_err();
        assert!(err.to_string().contains(env::EVM_CONFIRMATIONS), "{err}");
        c.apply_env(&vars(&[(env::EVM_CONFIRMATIONS, "0")]))
            .unwrap();
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("evm_confirmations"), "{err}");
        let c = AnchorConfig {
            evm_poll_interval_ms: 0,
            ..AnchorConfig::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("poll"));
    }

    #[test]
    fn anchor_section_from_toml_with_a_strategy_table() {
        use crate::config::AuditConfig;

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.toml");
        std::fs::write(
            &path,
            "[anchor]\nevm_confirmations = 5\nevm_chain_id = 1\n\
             [anchor.strategies.ethereum]\ncost_per_batch_usd = 0.5\n\
             [anchor.strategies.hybrid]\nlatency_secs = 10.0\n",
        )
        .unwrap();
        let cfg = AuditConfig::load(Some(&path), |k| {
            (k == env::EVM_CONFIRMATIONS).then(|| "7".to_owned())
        })
        .unwrap();
        let a = &cfg.anchor;
        assert_eq!(a.confirmations(), Some(7), "the environment wins");
        let eth = a.strategies.strategy(StrategyId::Ethereum).unwrap();
        assert_eq!((eth.cost_per_batch_usd, eth.latency_secs), (0.5, 768.0));
        assert_eq!(
            a.strategies
                .strategy(StrategyId::Hybrid)
                .unwrap()
                .latency_secs,
            10.0
        );
        // Printed and read back unchanged.
        let printed = cfg.redacted();
        assert!(printed.contains("cost_per_batch_usd = 0.5"), "{printed}");
        std::fs::write(&path, &printed).unwrap();
        assert_eq!(
            AuditConfig::load(Some(&path), |_| None).unwrap().anchor,
            AnchorConfig {
                evm_confirmations: Some(7),
                ..a.clone()
            }
        );

        // Unknown strategies and figures are refused, naming the key; ranges are checked.
        for (toml, key) in [
            (
                "[anchor.strategies.solana]\ncost_per_batch_usd = 1.0\n",
                "solana",
            ),
            ("[anchor.strategies.polygon]\ncost_usd = 1.0\n", "cost_usd"),
            ("[anchor]\nevm_confirmation = 3\n", "evm_confirmation"),
            (
                "[anchor.strategies.rfc3161]\nreliability = 2.0\n",
                "anchor.strategies.rfc3161.reliability",
            ),
        ] {
            std::fs::write(&path, toml).unwrap();
            let err = AuditConfig::load(Some(&path), |_| None)
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{key}: {err}");
        }
    }
}
