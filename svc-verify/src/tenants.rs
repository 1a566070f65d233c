//! Tenants from a TOML file: keys (algorithm, HMAC mode, validity window), rate limit,
//! daily quota and policy override; and their admission control (token bucket + quota).

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use base64::Engine as _;
use flk_core::admission::{Admission, Limits};
use flk_core::{HmacMode, KeyMaterial, KeySet, Policy, TenantKey};
use flk_proto::ApiError;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The tenants file's format (one parser for every reader: `flk_runtime::tenants`).
pub use flk_runtime::tenants::{KeySpec, TenantSpec, TenantsFile};

/// A tenants file or spec that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("tenant config: {0}")]
pub struct TenantConfigError(pub String);

/// A tenant ready to serve.
#[derive(Debug)]
pub struct Tenant {
    pub id: String,
    pub keys: KeySet,
    pub policy: Policy,
    pub policy_hash: String,
    admission: Admission,
}

impl Tenant {
    /// Admission control: rate limit, then daily quota. On refusal, the error carries
    /// `Retry-After`.
    pub fn admit(&self, now: OffsetDateTime) -> Result<(), ApiError> {
        self.admission
            .admit(Instant::now(), now)
            .map_err(|r| ApiError::refused(&self.id, &r))
    }
}

/// Every configured tenant, by id.
#[derive(Debug, Default)]
pub struct TenantRegistry {
    tenants: HashMap<String, Tenant>,
}

impl TenantRegistry {
    pub fn get(&self, id: &str) -> Option<&Tenant> {
        self.tenants.get(id)
    }

    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.tenants.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.tenants.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tenants.is_empty()
    }

    /// Reads and validates a tenants file.
    pub fn from_file(path: &Path) -> Result<TenantRegistry, TenantConfigError> {
        let file = TenantsFile::read(path).map_err(|e| TenantConfigError(e.0))?;
        TenantRegistry::from_specs(file.tenants, |name| std::env::var(name).ok())
    }

    /// Builds the registry from specs; `env` resolves `secret_env`.
    pub fn from_specs(
        specs: Vec<TenantSpec>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<TenantRegistry, TenantConfigError> {
        let mut tenants = HashMap::new();
        for spec in specs {
            let id = spec.id.clone();
            if id.is_empty() || id.len() > 256 || id.chars().any(char::is_control) {
                return Err(TenantConfigError(format!("invalid tenant id {id:?}")));
            }
            if tenants.contains_key(&id) {
                return Err(TenantConfigError(format!("tenant {id:?} is defined twice")));
            }
            let tenant = build_tenant(spec, &env)
                .map_err(|e| TenantConfigError(format!("tenant {id:?}: {e}")))?;
            tenants.insert(id, tenant);
        }
        Ok(TenantRegistry { tenants })
    }

    /// A registry with only the `default` tenant and one HMAC key in digest mode.
    pub fn single_hmac(secret: &str) -> Result<TenantRegistry, TenantConfigError> {
        let spec = TenantSpec {
            id: flk_proto::DEFAULT_TENANT.to_owned(),
            rate_limit_per_sec: None,
            burst: None,
            daily_quota: None,
            signing: true,
            policy: None,
            api_tokens: Vec::new(),
            keys: vec![KeySpec {
                id: "default-hmac".into(),
                algorithm: "hmac".into(),
                secret: Some(secret.to_owned()),
                secret_env: None,
                mode: Some("digest".into()),
                public_key: None,
                not_before: None,
                not_after: None,
            }],
        };
        TenantRegistry::from_specs(vec![spec], |_| None)
    }
}

fn build_tenant(spec: TenantSpec, env: &impl Fn(&str) -> Option<String>) -> Result<Tenant, String> {
    let policy = spec.policy.unwrap_or_default();
    policy.validate().map_err(|e| e.to_string())?;
    // Every decision's index entry lives this long: a TTL the dedup stores refuse would fail
    // every index write of the tenant (a reconciliation would be applied again on each call).
    if std::time::Duration::from_secs(policy.dedup_ttl_secs) > flk_dedup::MAX_TTL {
        return Err(format!(
            "`dedup_ttl_secs` must be at most {} (the dedup index's longest TTL)",
            flk_dedup::MAX_TTL.as_secs()
        ));
    }
    let mut keys = Vec::with_capacity(spec.keys.len());
    for k in &spec.keys {
        keys.push(build_key(k, env).map_err(|e| format!("key {:?}: {e}", k.id))?);
    }
    let keys = if spec.signing {
        if keys.is_empty() {
            return Err("signing is enabled but no key is configured".into());
        }
        KeySet::new(keys)
    } else {
        KeySet::disabled()
    };
    let admission = Admission::new(Limits {
        rate_per_sec: spec.rate_limit_per_sec,
        burst: spec.burst,
        daily_quota: spec.daily_quota,
    })?;
    Ok(Tenant {
        id: spec.id,
        keys,
        policy_hash: policy.hash_hex(),
        policy,
        admission,
    })
}

fn build_key(k: &KeySpec, env: &impl Fn(&str) -> Option<String>) -> Result<TenantKey, String> {
    let material = match k.algorithm.as_str() {
        "hmac" => {
            let secret = match (&k.secret, &k.secret_env) {
                (Some(s), None) => s.clone(),
                (None, Some(var)) => env(var).ok_or_else(|| format!("env var {var} is not set"))?,
                _ => return Err("hmac keys need exactly one of `secret`, `secret_env`".into()),
            };
            let mode = match k.mode.as_deref() {
                None => HmacMode::Digest,
                Some(m) => HmacMode::parse(m)
                    .ok_or_else(|| format!("unknown hmac mode {m:?} (digest, payload)"))?,
            };
            KeyMaterial::hmac(secret.as_bytes(), mode).map_err(|e| e.to_string())?
        }
        "ed25519" => {
            let public = k
                .public_key
                .as_deref()
                .ok_or("ed25519 keys need `public_key`")?;
            let raw = base64::engine::general_purpose::STANDARD
                .decode(public.trim())
                .map_err(|_| "`public_key` is not standard base64".to_string())?;
            KeyMaterial::ed25519(&raw).map_err(|e| e.to_string())?
        }
        other => return Err(format!("unknown algorithm {other:?} (hmac, ed25519)")),
    };
    let instant = |s: &Option<String>, name: &str| -> Result<Option<OffsetDateTime>, String> {
        s.as_deref()
            .map(|v| {
                OffsetDateTime::parse(v, &Rfc3339).map_err(|_| format!("`{name}` is not rfc 3339"))
            })
            .transpose()
    };
    TenantKey::new(k.id.clone(), material)
        .with_window(
            instant(&k.not_before, "not_before")?,
            instant(&k.not_after, "not_after")?,
        )
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<TenantRegistry, TenantConfigError> {
        let file = TenantsFile::parse(text).map_err(|e| TenantConfigError(e.0))?;
        TenantRegistry::from_specs(file.tenants, |v| (v == "ACME_SECRET").then(|| "s3".into()))
    }

    #[test]
    fn parses_keys_policies_and_limits() {
        let reg = parse(
            r#"
            [[tenant]]
            id = "acme"
            rate_limit_per_sec = 1.0
            burst = 2
            policy = { version = "acme-1", tol_D = 0.2 }
            [[tenant.keys]]
            id = "a"
            algorithm = "hmac"
            secret_env = "ACME_SECRET"
            mode = "payload"
            [[tenant.keys]]
            id = "b"
            algorithm = "ed25519"
            public_key = "ebVWLo/mVPlAeLES6KmLp5AfhTrmlb7X4OORC60ElmQ="
            not_after = "2030-01-01T00:00:00Z"
            [[tenant]]
            id = "open"
            signing = false
            daily_quota = 1
            "#,
        )
        .unwrap();
        let acme = reg.get("acme").unwrap();
        assert_eq!(acme.keys.keys().len(), 2);
        assert_eq!(acme.policy.tol_d, 0.2);
        assert_ne!(acme.policy_hash, Policy::default().hash_hex());
        let now = OffsetDateTime::now_utc();
        acme.admit(now).unwrap();
        acme.admit(now).unwrap();
        let err = acme.admit(now).unwrap_err();
        assert_eq!(err.code, "rate_limited");
        assert!(err.retry_after_secs().unwrap() >= 1);
        let open = reg.get("open").unwrap();
        assert!(!open.keys.signing_required);
        open.admit(now).unwrap();
        let err = open.admit(now).unwrap_err();
        assert_eq!(err.code, "quota_exceeded");
    }

    #[test]
    fn refuses_bad_specs() {
        for bad in [
            "[[tenant]]\nid = \"x\"\n",
            "[[tenant]]\nid = \"x\"\nsigning = false\npolicy = { tol_D = -1.0 }\n",
            "[[tenant]]\nid = \"x\"\n[[tenant.keys]]\nid = \"k\"\nalgorithm = \"rsa\"\n",
            "[[tenant]]\nid = \"x\"\n[[tenant.keys]]\nid = \"k\"\nalgorithm = \"hmac\"\n",
            "[[tenant]]\nid = \"x\"\nsigning = false\n[[tenant]]\nid = \"x\"\nsigning = false\n",
            "[[tenant]]\nid = \"x\"\nsigning = false\nrate = 3\n",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    /// Found by the `replication` fuzz target's fixture: a TTL above the dedup stores' longest
    /// was accepted, then every index write of the tenant failed.
    #[test]
    fn refuses_a_dedup_ttl_the_index_cannot_keep() {
        let spec = |secs: u64| {
            format!(
                "[[tenant]]\nid = \"x\"\nsigning = false\npolicy = {{ dedup_ttl_secs = {secs} }}\n"
            )
        };
        let max = flk_dedup::MAX_TTL.as_secs();
        assert!(parse(&spec(max)).is_ok());
        let err = parse(&spec(max + 1)).expect_err("a TTL beyond MAX_TTL");
        assert!(err.0.contains("dedup_ttl_secs"), "{err}");
    }
}
