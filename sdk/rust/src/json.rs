//! Reading a PCS from JSON (`std`): the vector files, the outbox, records built elsewhere.
//!
//! Structure only, like the server's parser: every required key present with its JSON type,
//! finite numbers (serde_json with `float_roundtrip`, so every float reads back exactly).

use std::string::{String, ToString};
use std::vec::Vec;
use std::{format, vec};

use serde_json::Value;

use crate::pcs::{FaultTolerance, Pcs, Seed};

/// Why a JSON document is not a PCS.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed pcs: {0}")]
pub struct PcsJsonError(pub String);

fn err<T>(m: impl Into<String>) -> Result<T, PcsJsonError> {
    Err(PcsJsonError(m.into()))
}

fn field<'a>(o: &'a serde_json::Map<String, Value>, k: &str) -> Result<&'a Value, PcsJsonError> {
    o.get(k)
        .ok_or_else(|| PcsJsonError(format!("missing field `{k}`")))
}

fn string(o: &serde_json::Map<String, Value>, k: &str) -> Result<String, PcsJsonError> {
    match field(o, k)? {
        Value::String(s) => Ok(s.clone()),
        _ => err(format!("`{k}` must be a string")),
    }
}

fn uint(v: &Value, k: &str) -> Result<u64, PcsJsonError> {
    v.as_u64()
        .ok_or_else(|| PcsJsonError(format!("`{k}` must be a non-negative integer")))
}

fn int(v: &Value, k: &str) -> Result<i64, PcsJsonError> {
    v.as_i64()
        .ok_or_else(|| PcsJsonError(format!("`{k}` must be an integer")))
}

fn float(o: &serde_json::Map<String, Value>, k: &str) -> Result<f64, PcsJsonError> {
    match field(o, k)? {
        Value::Number(n) => n
            .as_f64()
            .filter(|x| x.is_finite())
            .ok_or_else(|| PcsJsonError(format!("`{k}` must be finite"))),
        _ => err(format!("`{k}` must be a number")),
    }
}

impl Pcs {
    /// Parses a PCS from JSON bytes.
    pub fn from_json(bytes: &[u8]) -> Result<Pcs, PcsJsonError> {
        let v: Value =
            serde_json::from_slice(bytes).map_err(|e| PcsJsonError(format!("not json: {e}")))?;
        Pcs::from_value(&v)
    }

    /// Parses a PCS from a JSON value.
    pub fn from_value(v: &Value) -> Result<Pcs, PcsJsonError> {
        let Value::Object(o) = v else {
            return err("a pcs is a json object");
        };
        let seed = match field(o, "seed")? {
            Value::Number(n) if n.is_u64() => Seed::Unsigned(n.as_u64().unwrap_or(0)),
            Value::Number(n) if n.is_i64() => Seed::Signed(n.as_i64().unwrap_or(0)),
            _ => return err("`seed` must be a 64-bit integer"),
        };
        let scales = match field(o, "scales")? {
            Value::Array(a) => a
                .iter()
                .map(|s| uint(s, "scales"))
                .collect::<Result<Vec<_>, _>>()?,
            _ => return err("`scales` must be an array"),
        };
        let mut n_j = match field(o, "N_j")? {
            Value::Object(m) => m
                .iter()
                .map(|(k, v)| Ok((k.clone(), int(v, "N_j")?)))
                .collect::<Result<Vec<_>, PcsJsonError>>()?,
            _ => return err("`N_j` must be an object"),
        };
        // Numeric keys in numeric order (as the agents write them), others after.
        n_j.sort_by_key(|(k, _)| (k.parse::<u64>().unwrap_or(u64::MAX), k.clone()));
        let v_star = match field(o, "v_star")? {
            Value::Array(a) => a
                .iter()
                .map(|x| {
                    x.as_f64()
                        .filter(|x| x.is_finite())
                        .ok_or_else(|| PcsJsonError("`v_star` must hold finite numbers".into()))
                })
                .collect::<Result<Vec<_>, _>>()?,
            _ => return err("`v_star` must be an array"),
        };
        let sig = match o.get("sig") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return err("`sig` must be a string"),
        };
        let ft = match o.get("ft") {
            None | Some(Value::Null) => None,
            Some(Value::Object(f)) => Some(FaultTolerance {
                outbox_seq: f
                    .get("outbox_seq")
                    .map(|v| int(v, "ft.outbox_seq"))
                    .transpose()?,
                degraded: f
                    .get("degraded")
                    .map(|v| {
                        v.as_bool()
                            .ok_or_else(|| PcsJsonError("`ft.degraded` must be a bool".into()))
                    })
                    .transpose()?,
                fallbacks: match f.get("fallbacks") {
                    None => vec![],
                    Some(Value::Array(a)) => a
                        .iter()
                        .map(|x| {
                            x.as_str().map(ToString::to_string).ok_or_else(|| {
                                PcsJsonError("`ft.fallbacks` must hold strings".into())
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                    Some(_) => return err("`ft.fallbacks` must be an array"),
                },
                clock_skew_ms: f
                    .get("clock_skew_ms")
                    .map(|v| int(v, "ft.clock_skew_ms"))
                    .transpose()?,
            }),
            Some(_) => return err("`ft` must be an object"),
        };
        Ok(Pcs {
            pcs_id: string(o, "pcs_id")?,
            schema: string(o, "schema")?,
            version: string(o, "version")?,
            shard_id: string(o, "shard_id")?,
            epoch: uint(field(o, "epoch")?, "epoch")?,
            attempt: uint(field(o, "attempt")?, "attempt")?,
            sent_at: string(o, "sent_at")?,
            seed,
            scales,
            n_j,
            coh_star: float(o, "coh_star")?,
            v_star,
            d_hat: float(o, "D_hat")?,
            r: float(o, "r")?,
            regime: string(o, "regime")?,
            budget: float(o, "budget")?,
            merkle_root: string(o, "merkle_root")?,
            sig,
            ft,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_roundtrips() {
        let mut p = Pcs::example();
        p.sig = Some("c2ln".into());
        p.ft = Some(FaultTolerance {
            outbox_seq: Some(3),
            degraded: Some(false),
            fallbacks: vec!["a".into()],
            clock_skew_ms: Some(-2),
        });
        p.d_hat = 1.5e-7;
        assert_eq!(Pcs::from_json(&p.to_json()).unwrap(), p);
        assert!(Pcs::from_json(b"{}").is_err());
    }
}
