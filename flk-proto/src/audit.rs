//! The REST shapes of svc-audit's answers, in one place: svc-audit renders its own
//! `/v1/audit/*` routes with these functions and the gateway renders the answers of
//! `flk.v1.AuditService` with the same ones, so both serve byte-identical JSON. The parsing
//! direction ([`inclusion_from_json`]) is what offline verifiers (`flk audit verify --bundle`)
//! read.
//!
//! | route | JSON |
//! |---|---|
//! | `GET /v1/audit/checkpoint` | `{"note", "size", "root_hash", "verifier_key"}` |
//! | `GET /v1/audit/proof/{pcs_id}` | `{"leaf_index", "tree_size", "entry", "proof", "checkpoint"}` |
//! | `GET /v1/audit/consistency?from=m&to=n` | `{"from", "to", "proof"}` |
//!
//! Hashes and the entry are standard padded base64.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use crate::v1;
use crate::{ApiError, ErrorKind};

/// The checkpoint object of the REST answers.
pub fn checkpoint_json(c: &v1::AuditCheckpoint) -> Value {
    json!({
        "note": c.note,
        "size": c.size,
        "root_hash": B64.encode(&c.root_hash),
        "verifier_key": c.verifier_key,
    })
}

/// The answer of `GET /v1/audit/proof/{pcs_id}`. A proof without a checkpoint (never sent by
/// svc-audit) renders `"checkpoint": null`.
pub fn inclusion_json(p: &v1::InclusionProof) -> Value {
    json!({
        "leaf_index": p.leaf_index,
        "tree_size": p.tree_size,
        "entry": B64.encode(&p.entry),
        "proof": p.proof.iter().map(|h| B64.encode(h)).collect::<Vec<_>>(),
        "checkpoint": p.checkpoint.as_ref().map(checkpoint_json),
    })
}

/// The answer of `GET /v1/audit/consistency?from=m&to=n`.
pub fn consistency_json(p: &v1::ConsistencyProof) -> Value {
    json!({
        "from": p.from_size,
        "to": p.to_size,
        "proof": p.proof.iter().map(|h| B64.encode(h)).collect::<Vec<_>>(),
    })
}

/// Why a proof bundle could not be read back.
#[derive(Debug, thiserror::Error)]
#[error("proof bundle: {0}")]
pub struct BundleError(String);

fn field<'a>(v: &'a Value, name: &str) -> Result<&'a Value, BundleError> {
    v.get(name)
        .ok_or_else(|| BundleError(format!("missing field `{name}`")))
}

fn u64_field(v: &Value, name: &str) -> Result<u64, BundleError> {
    field(v, name)?
        .as_u64()
        .ok_or_else(|| BundleError(format!("`{name}` is not a non-negative integer")))
}

fn str_field<'a>(v: &'a Value, name: &str) -> Result<&'a str, BundleError> {
    field(v, name)?
        .as_str()
        .ok_or_else(|| BundleError(format!("`{name}` is not a string")))
}

fn b64_field(v: &Value, name: &str) -> Result<Vec<u8>, BundleError> {
    B64.decode(str_field(v, name)?)
        .map_err(|e| BundleError(format!("`{name}` is not base64: {e}")))
}

/// Reads the checkpoint object of [`checkpoint_json`] back (the origin is the note's first
/// line).
pub fn checkpoint_from_json(v: &Value) -> Result<v1::AuditCheckpoint, BundleError> {
    let note = str_field(v, "note")?.to_owned();
    Ok(v1::AuditCheckpoint {
        origin: note.lines().next().unwrap_or_default().to_owned(),
        size: u64_field(v, "size")?,
        root_hash: b64_field(v, "root_hash")?,
        verifier_key: str_field(v, "verifier_key")?.to_owned(),
        note,
        decisions: None,
    })
}

/// Reads a proof bundle (the JSON of [`inclusion_json`]) back. Only the shape is checked here;
/// whether it proves anything is for the verifier.
pub fn inclusion_from_json(v: &Value) -> Result<v1::InclusionProof, BundleError> {
    let proof = field(v, "proof")?
        .as_array()
        .ok_or_else(|| BundleError("`proof` is not an array".into()))?
        .iter()
        .enumerate()
        .map(|(i, h)| {
            h.as_str()
                .and_then(|s| B64.decode(s).ok())
                .ok_or_else(|| BundleError(format!("`proof[{i}]` is not a base64 string")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(v1::InclusionProof {
        leaf_index: u64_field(v, "leaf_index")?,
        tree_size: u64_field(v, "tree_size")?,
        entry: b64_field(v, "entry")?,
        proof,
        checkpoint: Some(checkpoint_from_json(field(v, "checkpoint")?)?),
    })
}

/// `from` and `to` of `GET /v1/audit/consistency`: both present, once, canonical decimal
/// (other parameters are ignored). Errors are 400 `invalid_range`.
pub fn parse_range(query: Option<&str>) -> Result<(u64, u64), ApiError> {
    let bad = |m: &str| ApiError::new(ErrorKind::InvalidArgument, "invalid_range", m);
    let (mut from, mut to) = (None, None);
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match k {
            "from" => &mut from,
            "to" => &mut to,
            _ => continue,
        };
        let canonical = !v.is_empty()
            && v.bytes().all(|b| b.is_ascii_digit())
            && (v == "0" || !v.starts_with('0'));
        let n = v
            .parse::<u64>()
            .ok()
            .filter(|_| canonical)
            .ok_or_else(|| bad(&format!("`{k}` must be a decimal tree size")))?;
        if slot.replace(n).is_some() {
            return Err(bad(&format!("`{k}` is given twice")));
        }
    }
    match (from, to) {
        (Some(f), Some(t)) => Ok((f, t)),
        _ => Err(bad("query needs `from` and `to`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_strictly() {
        assert_eq!(parse_range(Some("from=1&to=5")).unwrap(), (1, 5));
        assert_eq!(parse_range(Some("to=5&x=y&from=2")).unwrap(), (2, 5));
        for bad in [
            None,
            Some(""),
            Some("from=1"),
            Some("from=1&to="),
            Some("from=01&to=2"),
            Some("from=-1&to=2"),
            Some("from=1&to=2&to=3"),
            Some("from=1&to=99999999999999999999"),
            Some("from=a&to=2"),
        ] {
            let e = parse_range(bad).unwrap_err();
            assert_eq!(e.kind.http_status(), 400, "{bad:?}");
            assert_eq!(e.code, "invalid_range");
        }
    }

    #[test]
    fn proof_bundles_roundtrip() {
        let cp = v1::AuditCheckpoint {
            note: "o\n3\nAAAA\n\n— o sig\n".into(),
            size: 3,
            root_hash: vec![7; 32],
            verifier_key: "o+01020304+AQ==".into(),
            origin: "o".into(),
            decisions: None,
        };
        let p = v1::InclusionProof {
            leaf_index: 1,
            tree_size: 3,
            entry: b"entry".to_vec(),
            proof: vec![vec![1; 32], vec![2; 32]],
            checkpoint: Some(cp),
        };
        let v = inclusion_json(&p);
        let mut keys: Vec<_> = v.as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(
            keys,
            ["checkpoint", "entry", "leaf_index", "proof", "tree_size"]
        );
        assert_eq!(inclusion_from_json(&v).unwrap(), p);
        let mut broken = v.clone();
        broken["proof"][1] = json!(5);
        let e = inclusion_from_json(&broken).unwrap_err();
        assert!(e.to_string().contains("proof[1]"), "{e}");
        broken = v;
        broken["checkpoint"].as_object_mut().unwrap().remove("note");
        assert!(inclusion_from_json(&broken).is_err());
    }
}
