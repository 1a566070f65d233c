//! The tenants file, parsed once and strictly (unknown keys refused, errors naming the tenant
//! and the key) for every reader: svc-verify builds its key sets and policies from it, the
//! gateway its admission limits and the tenants' API tokens.
//!
//! ```toml
//! [[tenant]]
//! id = "acme"
//! rate_limit_per_sec = 500.0   # optional token bucket
//! burst = 1000                 # optional, default = one second of rate
//! daily_quota = 1000000        # optional, per UTC day
//! signing = true               # false: signatures are not checked
//! policy = { version = "acme-2", tol_D = 0.2 }   # optional partial override
//!
//! [[tenant.keys]]              # PCS signing keys (svc-verify)
//! id = "k-2026"
//! algorithm = "hmac"           # or "ed25519" with public_key = "<base64>"
//! secret_env = "ACME_HMAC"     # or secret = "..."
//! mode = "digest"              # hmac: digest (default) | payload
//! not_after = "2027-01-01T00:00:00Z"
//!
//! [[tenant.api_tokens]]        # credentials for reads and feedback (the gateway)
//! id = "reader-2026"
//! sha256 = "<hex SHA-256 of the token>"   # or token_env = "ACME_TOKEN"
//! not_before = "2026-01-01T00:00:00Z"    # optional
//! not_after = "2027-01-01T00:00:00Z"     # optional
//! ```
//!
//! A request presents an API token as `Authorization: Bearer <token>`; the token names its
//! tenant ([`ApiTokens::authenticate`]). Tokens are kept only as SHA-256 digests.

use std::collections::HashMap;
use std::path::Path;

use flk_core::Policy;
use flk_core::admission::{Admission, Limits};
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::security::{TokenHash, parse_sha256};

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantsFile {
    #[serde(default, rename = "tenant")]
    pub tenants: Vec<TenantSpec>,
}

/// One `[[tenant]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSpec {
    pub id: String,
    #[serde(default)]
    pub rate_limit_per_sec: Option<f64>,
    #[serde(default)]
    pub burst: Option<f64>,
    #[serde(default)]
    pub daily_quota: Option<u64>,
    #[serde(default = "yes")]
    pub signing: bool,
    #[serde(default)]
    pub policy: Option<Policy>,
    #[serde(default)]
    pub keys: Vec<KeySpec>,
    #[serde(default)]
    pub api_tokens: Vec<ApiTokenSpec>,
}

fn yes() -> bool {
    true
}

/// One `[[tenant.keys]]`: a PCS signing key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySpec {
    pub id: String,
    pub algorithm: String,
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    pub secret_env: Option<String>,
    #[serde(default)]
    pub mode: Option<String>,
    #[serde(default)]
    pub public_key: Option<String>,
    #[serde(default)]
    pub not_before: Option<String>,
    #[serde(default)]
    pub not_after: Option<String>,
}

/// One `[[tenant.api_tokens]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiTokenSpec {
    pub id: String,
    /// Hex SHA-256 of the token.
    #[serde(default)]
    pub sha256: Option<String>,
    /// Environment variable holding the token itself.
    #[serde(default)]
    pub token_env: Option<String>,
    #[serde(default)]
    pub not_before: Option<String>,
    #[serde(default)]
    pub not_after: Option<String>,
}

/// A tenants file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("tenant config: {0}")]
pub struct TenantsError(pub String);

impl TenantsFile {
    /// Reads and checks `path`.
    pub fn read(path: &Path) -> Result<TenantsFile, TenantsError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| TenantsError(format!("cannot read {}: {e}", path.display())))?;
        TenantsFile::parse(&text).map_err(|e| TenantsError(format!("{}: {}", path.display(), e.0)))
    }

    /// Parses and checks a document: ids valid and unique.
    pub fn parse(text: &str) -> Result<TenantsFile, TenantsError> {
        let file: TenantsFile = toml::from_str(text).map_err(|e| TenantsError(e.to_string()))?;
        let mut seen = std::collections::HashSet::new();
        for t in &file.tenants {
            if t.id.is_empty() || t.id.len() > 256 || t.id.chars().any(char::is_control) {
                return Err(TenantsError(format!("invalid tenant id {:?}", t.id)));
            }
            if !seen.insert(t.id.as_str()) {
                return Err(TenantsError(format!("tenant {:?} is defined twice", t.id)));
            }
        }
        Ok(file)
    }

    /// Each tenant's admission limits (checked).
    pub fn limits(&self) -> Result<HashMap<String, Limits>, TenantsError> {
        let mut out = HashMap::new();
        for t in &self.tenants {
            let limits = t.limits();
            Admission::new(limits).map_err(|e| TenantsError(format!("tenant {:?}: {e}", t.id)))?;
            out.insert(t.id.clone(), limits);
        }
        Ok(out)
    }

    /// The tenants' API tokens; `env` resolves `token_env`.
    pub fn api_tokens(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<ApiTokens, TenantsError> {
        let mut tokens = ApiTokens::default();
        for t in &self.tenants {
            for spec in &t.api_tokens {
                let fail = |m: String| {
                    TenantsError(format!("tenant {:?}: api token {:?}: {m}", t.id, spec.id))
                };
                let hash = match (&spec.sha256, &spec.token_env) {
                    (Some(h), None) => {
                        parse_sha256(h).map_err(|m| fail(format!("`sha256`: {m}")))?
                    }
                    (None, Some(var)) => {
                        let token = env(var)
                            .filter(|v| !v.trim().is_empty())
                            .ok_or_else(|| fail(format!("env var {var} is not set")))?;
                        TokenHash::of(token.trim())
                    }
                    _ => return Err(fail("needs exactly one of `sha256`, `token_env`".into())),
                };
                let window = (
                    instant(&spec.not_before).map_err(|m| fail(format!("`not_before` {m}")))?,
                    instant(&spec.not_after).map_err(|m| fail(format!("`not_after` {m}")))?,
                );
                tokens.insert(&t.id, &spec.id, hash, window).map_err(fail)?;
            }
        }
        Ok(tokens)
    }
}

impl TenantSpec {
    pub fn limits(&self) -> Limits {
        Limits {
            rate_per_sec: self.rate_limit_per_sec,
            burst: self.burst,
            daily_quota: self.daily_quota,
        }
    }
}

fn instant(s: &Option<String>) -> Result<Option<OffsetDateTime>, String> {
    s.as_deref()
        .map(|v| OffsetDateTime::parse(v, &Rfc3339).map_err(|_| "is not rfc 3339".to_owned()))
        .transpose()
}

/// A tenant's API token, as known to the server (no secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    pub tenant: String,
    pub id: String,
    pub not_before: Option<OffsetDateTime>,
    pub not_after: Option<OffsetDateTime>,
}

/// Why a presented token does not authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRefusal {
    Unknown,
    NotYetValid,
    Expired,
}

impl TokenRefusal {
    pub fn message(self) -> &'static str {
        match self {
            TokenRefusal::Unknown => "the api token is not valid",
            TokenRefusal::NotYetValid => "the api token is not valid yet",
            TokenRefusal::Expired => "the api token has expired",
        }
    }
}

/// Every tenant's API tokens, by digest.
#[derive(Debug, Clone, Default)]
pub struct ApiTokens {
    by_hash: HashMap<[u8; 32], ApiToken>,
}

impl ApiTokens {
    /// Adds a token; the same token for two entries is an error.
    pub fn insert(
        &mut self,
        tenant: &str,
        id: &str,
        hash: TokenHash,
        (not_before, not_after): (Option<OffsetDateTime>, Option<OffsetDateTime>),
    ) -> Result<(), String> {
        if let (Some(a), Some(b)) = (not_before, not_after)
            && a >= b
        {
            return Err("`not_before` is not before `not_after`".into());
        }
        let token = ApiToken {
            tenant: tenant.to_owned(),
            id: id.to_owned(),
            not_before,
            not_after,
        };
        if let Some(other) = self.by_hash.insert(hash.0, token) {
            return Err(format!(
                "the same token is already api token {:?} of tenant {:?}",
                other.id, other.tenant
            ));
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// The token's entry, if it is known and valid at `now`.
    pub fn authenticate(
        &self,
        token: &str,
        now: OffsetDateTime,
    ) -> Result<&ApiToken, TokenRefusal> {
        // A map lookup by digest: what it could leak in time is about the digest, not the token.
        let t = self
            .by_hash
            .get(&TokenHash::of(token).0)
            .ok_or(TokenRefusal::Unknown)?;
        if t.not_before.is_some_and(|nb| now < nb) {
            return Err(TokenRefusal::NotYetValid);
        }
        if t.not_after.is_some_and(|na| now >= na) {
            return Err(TokenRefusal::Expired);
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const FILE: &str = r#"
        [[tenant]]
        id = "acme"
        rate_limit_per_sec = 5.0
        [[tenant.keys]]
        id = "k"
        algorithm = "hmac"
        secret = "s"
        [[tenant.api_tokens]]
        id = "reader"
        sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        not_after = "2027-01-01T00:00:00Z"
        [[tenant.api_tokens]]
        id = "from-env"
        token_env = "ACME_TOKEN"
        not_before = "2026-06-01T00:00:00Z"
        [[tenant]]
        id = "beta"
        signing = false
    "#;

    #[test]
    fn tokens_name_their_tenant_within_their_window() {
        let file = TenantsFile::parse(FILE).unwrap();
        assert_eq!(file.limits().unwrap()["acme"].rate_per_sec, Some(5.0));
        let tokens = file
            .api_tokens(|v| (v == "ACME_TOKEN").then(|| "envtoken".into()))
            .unwrap();
        assert_eq!(tokens.len(), 2);
        let now = datetime!(2026-12-03 00:00 UTC);
        // sha256("test")
        let t = tokens.authenticate("test", now).unwrap();
        assert_eq!((t.tenant.as_str(), t.id.as_str()), ("acme", "reader"));
        assert_eq!(
            tokens.authenticate("test", datetime!(2027-01-01 00:00 UTC)),
            Err(TokenRefusal::Expired)
        );
        assert_eq!(tokens.authenticate("envtoken", now).unwrap().id, "from-env");
        assert_eq!(
            tokens.authenticate("envtoken", datetime!(2026-01-01 00:00 UTC)),
            Err(TokenRefusal::NotYetValid)
        );
        assert_eq!(tokens.authenticate("nope", now), Err(TokenRefusal::Unknown));
    }

    #[test]
    fn bad_files_are_refused_naming_what_is_wrong() {
        let cases = [
            ("[[tenant]]\nid = \"x\"\nrate = 3\n", "rate"),
            ("[[tenant]]\nid = \"x\"\n[[tenant]]\nid = \"x\"\n", "twice"),
            ("[[tenant]]\nid = \"\"\n", "invalid tenant id"),
            (
                "[[tenant]]\nid = \"x\"\n[[tenant.api_tokens]]\nid = \"t\"\n",
                "exactly one",
            ),
            (
                "[[tenant]]\nid = \"x\"\n[[tenant.api_tokens]]\nid = \"t\"\nsha256 = \"ab\"\n",
                "sha256",
            ),
            (
                "[[tenant]]\nid = \"x\"\n[[tenant.api_tokens]]\nid = \"t\"\ntoken_env = \"UNSET_VAR\"\n",
                "UNSET_VAR",
            ),
            (
                "[[tenant]]\nid = \"x\"\n[[tenant.api_tokens]]\nid = \"t\"\ntoken_env = \"T\"\nnot_after = \"soon\"\n",
                "not_after",
            ),
            (
                "[[tenant]]\nid = \"x\"\n[[tenant.api_tokens]]\nid = \"a\"\ntoken_env = \"T\"\n[[tenant]]\nid = \"y\"\n[[tenant.api_tokens]]\nid = \"b\"\ntoken_env = \"T\"\n",
                "already",
            ),
        ];
        for (text, needle) in cases {
            let err = TenantsFile::parse(text)
                .and_then(|f| f.api_tokens(|v| (v == "T").then(|| "tok".into())))
                .unwrap_err();
            assert!(err.to_string().contains(needle), "{text}: {err}");
        }
    }
}
