//! The verification policy (PROTOCOL.md section 3): versioned, validated, hashed over its
//! canonical JSON so that every outcome can name exactly the rules that decided it.

use serde::{Deserialize, Serialize};

use crate::canon::{sha256, write_json_string, write_py_float};

/// The default policy's version string.
pub const DEFAULT_POLICY_VERSION: &str = "default-1";

/// Tolerances, budget weights, regime thresholds and dedup TTL.
///
/// Field names follow the protocol text (`tol_D`, `D0`) in serialized form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    pub version: String,
    #[serde(rename = "tol_D")]
    pub tol_d: f64,
    pub tol_coh: f64,
    pub tol_budget: f64,
    pub alpha: f64,
    pub beta: f64,
    pub gamma: f64,
    pub base: f64,
    #[serde(rename = "D0")]
    pub d0: f64,
    /// Sticky when `coh_star >= sticky_coh_min` and `D_hat <= sticky_d_max`.
    pub sticky_coh_min: f64,
    pub sticky_d_max: f64,
    /// Non-sticky when `D_hat >= non_sticky_d_min`.
    pub non_sticky_d_min: f64,
    /// How long a decided `(tenant_id, pcs_id)` answers duplicates.
    pub dedup_ttl_secs: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            version: DEFAULT_POLICY_VERSION.to_owned(),
            tol_d: 0.15,
            tol_coh: 0.05,
            tol_budget: 0.01,
            alpha: 0.30,
            beta: 0.50,
            gamma: 0.20,
            base: 0.10,
            d0: 2.2,
            sticky_coh_min: 0.70,
            sticky_d_max: 1.5,
            non_sticky_d_min: 2.6,
            dedup_ttl_secs: 14 * 24 * 3600,
        }
    }
}

/// A policy that cannot be used, with the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid policy: {0}")]
pub struct PolicyError(pub String);

impl Policy {
    /// Checks bounds and ordering; every tenant override goes through this.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let fields = [
            ("tol_D", self.tol_d),
            ("tol_coh", self.tol_coh),
            ("tol_budget", self.tol_budget),
            ("alpha", self.alpha),
            ("beta", self.beta),
            ("gamma", self.gamma),
            ("base", self.base),
            ("D0", self.d0),
            ("sticky_coh_min", self.sticky_coh_min),
            ("sticky_d_max", self.sticky_d_max),
            ("non_sticky_d_min", self.non_sticky_d_min),
        ];
        for (name, v) in fields {
            if !v.is_finite() || v < 0.0 {
                return Err(PolicyError(format!(
                    "`{name}` must be a finite number >= 0"
                )));
            }
        }
        if self.version.is_empty() || self.version.len() > 64 {
            return Err(PolicyError("`version` must be 1 to 64 bytes".into()));
        }
        for (name, v) in [("tol_coh", self.tol_coh), ("tol_budget", self.tol_budget)] {
            if v > 1.0 {
                return Err(PolicyError(format!("`{name}` must be at most 1")));
            }
        }
        for (name, v) in [
            ("alpha", self.alpha),
            ("beta", self.beta),
            ("gamma", self.gamma),
            ("base", self.base),
        ] {
            if v > 1.0 {
                return Err(PolicyError(format!("`{name}` must be at most 1")));
            }
        }
        if self.sticky_coh_min > 1.0 {
            return Err(PolicyError("`sticky_coh_min` must be at most 1".into()));
        }
        if self.sticky_d_max >= self.non_sticky_d_min {
            return Err(PolicyError(
                "thresholds out of order: `sticky_d_max` must be below `non_sticky_d_min`".into(),
            ));
        }
        if self.dedup_ttl_secs == 0 {
            return Err(PolicyError("`dedup_ttl_secs` must be positive".into()));
        }
        Ok(())
    }

    /// Canonical JSON: keys sorted by code point, no whitespace, floats in Python `repr`
    /// style (the same rules as the signing payload).
    pub fn canonical_json(&self) -> Vec<u8> {
        let floats = [
            ("D0", self.d0),
            ("alpha", self.alpha),
            ("base", self.base),
            ("beta", self.beta),
        ];
        let mut out = Vec::with_capacity(320);
        out.push(b'{');
        for (k, v) in floats {
            write_key(&mut out, k);
            write_py_float(&mut out, v);
        }
        write_key(&mut out, "dedup_ttl_secs");
        out.extend_from_slice(self.dedup_ttl_secs.to_string().as_bytes());
        let more = [
            ("gamma", self.gamma),
            ("non_sticky_d_min", self.non_sticky_d_min),
            ("sticky_coh_min", self.sticky_coh_min),
            ("sticky_d_max", self.sticky_d_max),
            ("tol_D", self.tol_d),
            ("tol_budget", self.tol_budget),
            ("tol_coh", self.tol_coh),
        ];
        for (k, v) in more {
            write_key(&mut out, k);
            write_py_float(&mut out, v);
        }
        write_key(&mut out, "version");
        write_json_string(&mut out, &self.version);
        out.push(b'}');
        out
    }

    /// SHA-256 of the canonical JSON, lowercase hex.
    pub fn hash_hex(&self) -> String {
        hex::encode(sha256(&self.canonical_json()))
    }
}

fn write_key(out: &mut Vec<u8>, k: &str) {
    if out.len() > 1 {
        out.push(b',');
    }
    write_json_string(out, k);
    out.push(b':');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_hash_is_stable() {
        let p = Policy::default();
        p.validate().unwrap();
        let json = String::from_utf8(p.canonical_json()).unwrap();
        assert!(
            json.starts_with(r#"{"D0":2.2,"alpha":0.3,"base":0.1,"beta":0.5,"#),
            "{json}"
        );
        // Keys in code-point order, parseable JSON carrying every field.
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert_eq!(keys.len(), 13);
        let back: Policy = serde_json::from_value(v).unwrap();
        assert_eq!(back, p);
        assert_eq!(p.hash_hex(), Policy::default().hash_hex());
        let mut q = p.clone();
        q.tol_d = 0.2;
        assert_ne!(p.hash_hex(), q.hash_hex());
    }

    #[test]
    fn validation_refuses_bad_values() {
        let bad = [
            Policy {
                tol_d: f64::NAN,
                ..Policy::default()
            },
            Policy {
                alpha: -0.1,
                ..Policy::default()
            },
            Policy {
                beta: 1.5,
                ..Policy::default()
            },
            Policy {
                sticky_d_max: 3.0,
                ..Policy::default()
            },
            Policy {
                dedup_ttl_secs: 0,
                ..Policy::default()
            },
            Policy {
                version: String::new(),
                ..Policy::default()
            },
        ];
        for p in bad {
            assert!(p.validate().is_err(), "{p:?}");
        }
    }

    #[test]
    fn overrides_are_partial_and_strict() {
        let p: Policy = serde_json::from_str(r#"{"version":"t1","tol_D":0.2}"#).unwrap();
        assert_eq!(p.tol_d, 0.2);
        assert_eq!(p.alpha, 0.30);
        assert!(serde_json::from_str::<Policy>(r#"{"tolD":0.2}"#).is_err());
    }
}
