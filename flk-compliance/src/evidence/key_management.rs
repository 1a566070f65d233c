//! `key_management`: the tenants file named by the effective configuration
//! (`[verify] tenants_file`, parsed with `flk_runtime::tenants`): per tenant its keys,
//! algorithms and validity windows, the keys active at the end of the period, and the
//! rotations in the period (a key whose `not_before` or `not_after` falls in it). Passes when
//! every tenant requires signatures and has a key active at the end of the period. Without a
//! tenants file the only tenant, `default`, signs with an HMAC secret svc-verify generated in
//! its data directory: one key, no validity window.

use serde_json::json;

use super::{Inputs, evidence};
use crate::model::{Evidence, Status, parse_instant};

pub const KIND: &str = "key_management";

pub fn compute(inputs: &Inputs<'_>) -> Evidence {
    let Some(path) = inputs
        .layout
        .setting("verify", "tenants_file")
        .and_then(|v| v.as_str())
    else {
        let figures = [
            ("tenants", json!(1)),
            ("keys", json!(1)),
            ("keys_with_validity_window", json!(0)),
            ("rotations_in_period", json!(0)),
            ("tenants_file", json!(null)),
        ];
        if inputs.layout.config.is_none() {
            return evidence(
                KIND,
                Status::NotApplicable,
                figures,
                "no effective-config.toml in the data directory (written by `flk up`), so the tenants file is not known",
            );
        }
        return evidence(
            KIND,
            Status::Pass,
            figures,
            "no tenants file: the only tenant, `default`, signs with an HMAC secret generated in svc-verify's data directory (one key, no validity window, never rotated)",
        );
    };
    let file = match flk_runtime::tenants::TenantsFile::read(std::path::Path::new(path)) {
        Ok(f) => f,
        Err(e) => {
            return evidence(
                KIND,
                Status::Fail,
                [("tenants_file", json!(path))],
                format!("the tenants file {path} cannot be read: {e}"),
            );
        }
    };
    let end = inputs.period.to;
    let in_period = |s: &Option<String>| {
        s.as_deref()
            .and_then(parse_instant)
            .is_some_and(|t| t >= inputs.period.from && t < inputs.period.to)
    };
    let mut tenants: Vec<serde_json::Value> = Vec::new();
    let (mut keys, mut windowed, mut rotations) = (0u64, 0u64, 0u64);
    let mut problems: Vec<String> = Vec::new();
    let mut specs: Vec<_> = file.tenants.iter().collect();
    specs.sort_by(|a, b| a.id.cmp(&b.id));
    for t in specs {
        let mut active = 0u64;
        let mut list: Vec<serde_json::Value> = Vec::new();
        let mut ks: Vec<_> = t.keys.iter().collect();
        ks.sort_by(|a, b| a.id.cmp(&b.id));
        for k in ks {
            keys += 1;
            if k.not_before.is_some() || k.not_after.is_some() {
                windowed += 1;
            }
            rotations += u64::from(in_period(&k.not_before)) + u64::from(in_period(&k.not_after));
            let nb = k.not_before.as_deref().and_then(parse_instant);
            let na = k.not_after.as_deref().and_then(parse_instant);
            if nb.is_none_or(|t| t < end) && na.is_none_or(|t| t >= end) {
                active += 1;
            }
            list.push(json!({
                "id": k.id, "algorithm": k.algorithm,
                "not_before": k.not_before, "not_after": k.not_after,
            }));
        }
        if !t.signing {
            problems.push(format!("tenant {:?} has signing disabled", t.id));
        } else if active == 0 {
            problems.push(format!(
                "tenant {:?} has no key active at the end of the period",
                t.id
            ));
        }
        tenants.push(json!({"tenant": t.id, "signing": t.signing, "keys_active_at_end": active, "keys": list}));
    }
    let figures = [
        ("tenants_file", json!(path)),
        ("tenants", json!(tenants.len())),
        ("keys", json!(keys)),
        ("keys_with_validity_window", json!(windowed)),
        ("rotations_in_period", json!(rotations)),
        ("by_tenant", json!(tenants)),
    ];
    if problems.is_empty() {
        evidence(
            KIND,
            Status::Pass,
            figures,
            format!(
                "{} tenants, each requiring signatures with a key active at the end of the period; {keys} keys, {windowed} with a validity window, {rotations} rotations in the period",
                file.tenants.len()
            ),
        )
    } else {
        evidence(KIND, Status::Fail, figures, problems.join("; "))
    }
}
