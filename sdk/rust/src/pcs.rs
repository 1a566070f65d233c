//! The PCS record (PROTOCOL.md section 1) and its JSON form, `no_std` + `alloc`.
//!
//! [`Pcs::to_json`] writes every field in a fixed order with the canonical float and string
//! writers of [`crate::canon`], so the same record always gives the same bytes (what the
//! outbox stores and resends) and every float reads back to the same `f64`.

use alloc::string::String;
use alloc::vec::Vec;

use crate::canon::{
    Canonical, SignedFields, compute_pcs_id, write_int, write_json_string, write_py_float,
};
use crate::sign::SigningKey;

/// `schema` of every PCS.
pub const SCHEMA: &str = "fractal-lba-kakeya";
/// `version` of every PCS today.
pub const VERSION: &str = "0.1";

/// The agent's seed: any 64-bit signed or unsigned value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seed {
    Signed(i64),
    Unsigned(u64),
}

impl Default for Seed {
    fn default() -> Self {
        Seed::Unsigned(0)
    }
}

/// Fault-tolerance metadata (informational, unsigned).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultTolerance {
    pub outbox_seq: Option<i64>,
    pub degraded: Option<bool>,
    pub fallbacks: Vec<String>,
    pub clock_skew_ms: Option<i64>,
}

/// A Proof-of-Computation Summary.
#[derive(Debug, Clone, PartialEq)]
pub struct Pcs {
    pub pcs_id: String,
    pub schema: String,
    pub version: String,
    pub shard_id: String,
    pub epoch: u64,
    pub attempt: u64,
    /// RFC 3339 (informational).
    pub sent_at: String,
    pub seed: Seed,
    pub scales: Vec<u64>,
    /// `N_j` entries in order: the decimal key and its count.
    pub n_j: Vec<(String, i64)>,
    pub coh_star: f64,
    pub v_star: Vec<f64>,
    pub d_hat: f64,
    pub r: f64,
    /// `sticky`, `mixed` or `non_sticky`.
    pub regime: String,
    pub budget: f64,
    pub merkle_root: String,
    /// Standard base64; `None` until [`Pcs::sign`].
    pub sig: Option<String>,
    pub ft: Option<FaultTolerance>,
}

impl Pcs {
    /// The 8 signed fields.
    pub fn signed_fields(&self) -> SignedFields<'_> {
        SignedFields {
            pcs_id: &self.pcs_id,
            merkle_root: &self.merkle_root,
            epoch: self.epoch,
            shard_id: &self.shard_id,
            d_hat: self.d_hat,
            coh_star: self.coh_star,
            r: self.r,
            budget: self.budget,
        }
    }

    /// The canonical payload and its digest.
    pub fn canonical(&self) -> Canonical {
        Canonical::of(&self.signed_fields())
    }

    /// `pcs_id` as the server recomputes it from `merkle_root`, `epoch` and `shard_id`.
    pub fn expected_pcs_id(&self) -> String {
        compute_pcs_id(&self.merkle_root, self.epoch, &self.shard_id)
    }

    /// Signs the record in place (sets `sig`).
    pub fn sign(&mut self, key: &SigningKey) {
        self.sig = Some(key.sign(&self.canonical()).to_base64());
    }

    /// A small, valid record (docs and tests): accepted by a server with default policy.
    pub fn example() -> Pcs {
        let merkle_root =
            String::from("f5f5990c5e4a2d115b32940daf4de6d315bdb46a8a2fdcde7d127b183cec2359");
        let shard_id = String::from("shard-example");
        Pcs {
            pcs_id: compute_pcs_id(&merkle_root, 1, &shard_id),
            schema: SCHEMA.into(),
            version: VERSION.into(),
            shard_id,
            epoch: 1,
            attempt: 1,
            sent_at: "2025-01-01T00:00:00Z".into(),
            seed: Seed::Unsigned(42),
            scales: alloc::vec![2, 4, 8, 16],
            n_j: alloc::vec![
                ("2".into(), 4),
                ("4".into(), 16),
                ("8".into(), 64),
                ("16".into(), 256),
            ],
            coh_star: 0.5,
            v_star: alloc::vec![1.0, 0.0, 0.0],
            d_hat: 2.0,
            r: 0.5,
            regime: "mixed".into(),
            budget: 0.35,
            merkle_root,
            sig: None,
            ft: None,
        }
    }

    /// The record as compact JSON (keys in a fixed order, floats in Python `repr` form).
    /// Non-finite floats are written as `null`, which the server refuses (400): a record
    /// holding them is not a PCS.
    pub fn to_json(&self) -> Vec<u8> {
        let mut o = Vec::with_capacity(640 + self.shard_id.len() * 6);
        let float = |o: &mut Vec<u8>, x: f64| {
            if x.is_finite() {
                write_py_float(o, x)
            } else {
                o.extend_from_slice(b"null")
            }
        };
        o.extend_from_slice(b"{\"pcs_id\":");
        write_json_string(&mut o, &self.pcs_id);
        o.extend_from_slice(b",\"schema\":");
        write_json_string(&mut o, &self.schema);
        o.extend_from_slice(b",\"version\":");
        write_json_string(&mut o, &self.version);
        o.extend_from_slice(b",\"shard_id\":");
        write_json_string(&mut o, &self.shard_id);
        o.extend_from_slice(b",\"epoch\":");
        write_int(&mut o, i128::from(self.epoch));
        o.extend_from_slice(b",\"attempt\":");
        write_int(&mut o, i128::from(self.attempt));
        o.extend_from_slice(b",\"sent_at\":");
        write_json_string(&mut o, &self.sent_at);
        o.extend_from_slice(b",\"seed\":");
        match self.seed {
            Seed::Signed(v) => write_int(&mut o, i128::from(v)),
            Seed::Unsigned(v) => write_int(&mut o, i128::from(v)),
        }
        o.extend_from_slice(b",\"scales\":[");
        for (i, s) in self.scales.iter().enumerate() {
            if i > 0 {
                o.push(b',');
            }
            write_int(&mut o, i128::from(*s));
        }
        o.extend_from_slice(b"],\"N_j\":{");
        for (i, (k, v)) in self.n_j.iter().enumerate() {
            if i > 0 {
                o.push(b',');
            }
            write_json_string(&mut o, k);
            o.push(b':');
            write_int(&mut o, i128::from(*v));
        }
        o.extend_from_slice(b"},\"coh_star\":");
        float(&mut o, self.coh_star);
        o.extend_from_slice(b",\"v_star\":[");
        for (i, v) in self.v_star.iter().enumerate() {
            if i > 0 {
                o.push(b',');
            }
            float(&mut o, *v);
        }
        o.extend_from_slice(b"],\"D_hat\":");
        float(&mut o, self.d_hat);
        o.extend_from_slice(b",\"r\":");
        float(&mut o, self.r);
        o.extend_from_slice(b",\"regime\":");
        write_json_string(&mut o, &self.regime);
        o.extend_from_slice(b",\"budget\":");
        float(&mut o, self.budget);
        o.extend_from_slice(b",\"merkle_root\":");
        write_json_string(&mut o, &self.merkle_root);
        if let Some(sig) = &self.sig {
            o.extend_from_slice(b",\"sig\":");
            write_json_string(&mut o, sig);
        }
        if let Some(ft) = &self.ft {
            o.extend_from_slice(b",\"ft\":{");
            let mut first = true;
            let mut key = |o: &mut Vec<u8>, k: &[u8]| {
                if !first {
                    o.push(b',');
                }
                first = false;
                o.extend_from_slice(k);
            };
            if let Some(v) = ft.outbox_seq {
                key(&mut o, b"\"outbox_seq\":");
                write_int(&mut o, i128::from(v));
            }
            if let Some(v) = ft.degraded {
                key(&mut o, b"\"degraded\":");
                o.extend_from_slice(if v { b"true" } else { b"false" });
            }
            key(&mut o, b"\"fallbacks\":[");
            for (i, f) in ft.fallbacks.iter().enumerate() {
                if i > 0 {
                    o.push(b',');
                }
                write_json_string(&mut o, f);
            }
            o.push(b']');
            if let Some(v) = ft.clock_skew_ms {
                key(&mut o, b"\"clock_skew_ms\":");
                write_int(&mut o, i128::from(v));
            }
            o.push(b'}');
        }
        o.push(b'}');
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_has_a_consistent_id_and_stable_json() {
        let p = Pcs::example();
        assert_eq!(p.pcs_id, p.expected_pcs_id());
        assert_eq!(p.to_json(), p.clone().to_json());
        let text = String::from_utf8(p.to_json()).unwrap();
        assert!(text.starts_with("{\"pcs_id\":\""), "{text}");
        assert!(text.contains("\"N_j\":{\"2\":4,"), "{text}");
    }
}
