//! Conversions between `flk.v1` wire types and `flk-core` domain types. Wire input is
//! validated here, once, through the same `PcsFields::validate` the JSON parser uses.

use flk_core::{
    FaultTolerance, Outcome, OutcomeRecord, ParseError, Pcs, PcsFields, ReasonCode, Regime,
};
use time::OffsetDateTime;

use crate::v1;

impl TryFrom<v1::Pcs> for Pcs {
    type Error = ParseError;

    fn try_from(p: v1::Pcs) -> Result<Pcs, ParseError> {
        let v_star = match p.v_star.as_slice() {
            [] => None,
            [a, b, c] => Some([*a, *b, *c]),
            other => {
                return Err(ParseError::invalid(format!(
                    "field `v_star`: expected 3 numbers, got {}",
                    other.len()
                )));
            }
        };
        let mut n_j = Vec::with_capacity(p.n_j.len());
        let mut other_keys: Vec<&str> = Vec::new();
        for e in &p.n_j {
            let canonical = !e.scale.is_empty()
                && e.scale.bytes().all(|b| b.is_ascii_digit())
                && (e.scale == "0" || !e.scale.starts_with('0'));
            match e.scale.parse::<u64>() {
                Ok(s) if canonical => {
                    if n_j.iter().any(|(k, _)| *k == s) {
                        return Err(ParseError::invalid(format!(
                            "field `N_j`: duplicate key `{}`",
                            e.scale
                        )));
                    }
                    n_j.push((s, e.count));
                }
                _ => {
                    if other_keys.contains(&e.scale.as_str()) {
                        return Err(ParseError::invalid(format!(
                            "field `N_j`: duplicate key `{}`",
                            e.scale
                        )));
                    }
                    other_keys.push(&e.scale);
                }
            }
        }
        let fields = PcsFields {
            pcs_id: p.pcs_id,
            schema: p.schema,
            version: p.version,
            shard_id: p.shard_id,
            epoch: p.epoch,
            attempt: p.attempt,
            sent_at: p.sent_at,
            seed: p.seed.map(|s| match s {
                v1::pcs::Seed::SeedSigned(v) => i128::from(v),
                v1::pcs::Seed::SeedUnsigned(v) => i128::from(v),
            }),
            scales: (!p.scales.is_empty()).then_some(p.scales),
            n_j: Some(n_j),
            coh_star: p.coh_star,
            v_star,
            d_hat: p.d_hat,
            r: p.r,
            regime: p.regime,
            budget: p.budget,
            merkle_root: p.merkle_root,
            sig: p.sig,
            ft: p.ft.map(|f| FaultTolerance {
                outbox_seq: f.outbox_seq,
                degraded: f.degraded,
                fallbacks: Some(f.fallbacks),
                clock_skew_ms: f.clock_skew_ms,
            }),
        };
        fields.validate()
    }
}

impl From<&Pcs> for v1::Pcs {
    fn from(p: &Pcs) -> v1::Pcs {
        v1::Pcs {
            pcs_id: Some(p.pcs_id.clone()),
            schema: Some(p.schema.clone()),
            version: Some(p.version.clone()),
            shard_id: Some(p.shard_id.clone()),
            epoch: Some(p.epoch),
            attempt: Some(p.attempt as i64),
            sent_at: Some(p.sent_at.clone()),
            seed: Some(match i64::try_from(p.seed) {
                Ok(v) => v1::pcs::Seed::SeedSigned(v),
                Err(_) => v1::pcs::Seed::SeedUnsigned(p.seed as u64),
            }),
            scales: p.scales.clone(),
            n_j: p
                .n_j
                .iter()
                .map(|(s, c)| v1::ScaleCount {
                    scale: s.to_string(),
                    count: *c,
                })
                .collect(),
            coh_star: Some(p.coh_star),
            v_star: p.v_star.to_vec(),
            d_hat: Some(p.d_hat),
            r: Some(p.r),
            regime: Some(p.regime.as_str().to_owned()),
            budget: Some(p.budget),
            merkle_root: Some(p.merkle_root.clone()),
            sig: p.sig.clone(),
            ft: p.ft.as_ref().map(|f| v1::FaultTolerance {
                outbox_seq: f.outbox_seq,
                degraded: f.degraded,
                fallbacks: f.fallbacks.clone().unwrap_or_default(),
                clock_skew_ms: f.clock_skew_ms,
            }),
        }
    }
}

impl From<Outcome> for v1::OutcomeKind {
    fn from(o: Outcome) -> v1::OutcomeKind {
        match o {
            Outcome::Accepted => v1::OutcomeKind::Accepted,
            Outcome::Escalated => v1::OutcomeKind::Escalated,
            Outcome::Rejected => v1::OutcomeKind::Rejected,
        }
    }
}

impl From<&OutcomeRecord> for v1::Outcome {
    fn from(r: &OutcomeRecord) -> v1::Outcome {
        v1::Outcome {
            pcs_id: r.pcs_id.clone(),
            tenant_id: r.tenant_id.clone(),
            outcome: v1::OutcomeKind::from(r.outcome) as i32,
            accepted: r.outcome.accepted(),
            escalated: r.outcome.escalated(),
            reason_code: r.reason_code.as_str().to_owned(),
            reason: r.reason.clone(),
            d_hat: r.recomputed_d_hat,
            recomputed_budget: r.recomputed_budget,
            regime: r.regime.as_str().to_owned(),
            policy_version: r.policy_version.clone(),
            policy_hash: r.policy_hash.clone(),
            duplicate: r.duplicate,
            received_at: r.received_at_rfc3339(),
            seq: r.seq,
            origin_region: r.origin_region.clone().unwrap_or_default(),
            replicated: r.replicated,
        }
    }
}

/// A stored or received `Outcome` message that does not decode to a domain record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid outcome message: {0}")]
pub struct OutcomeDecodeError(pub String);

impl TryFrom<&v1::Outcome> for OutcomeRecord {
    type Error = OutcomeDecodeError;

    fn try_from(o: &v1::Outcome) -> Result<OutcomeRecord, OutcomeDecodeError> {
        let bad = |what: &str| OutcomeDecodeError(what.to_owned());
        let outcome = match v1::OutcomeKind::try_from(o.outcome) {
            Ok(v1::OutcomeKind::Accepted) => Outcome::Accepted,
            Ok(v1::OutcomeKind::Escalated) => Outcome::Escalated,
            Ok(v1::OutcomeKind::Rejected) => Outcome::Rejected,
            _ => return Err(bad("unknown outcome kind")),
        };
        let received_at = OffsetDateTime::parse(
            &o.received_at,
            &time::format_description::well_known::Rfc3339,
        )
        .map_err(|_| bad("received_at is not rfc 3339"))?;
        Ok(OutcomeRecord {
            pcs_id: o.pcs_id.clone(),
            tenant_id: o.tenant_id.clone(),
            outcome,
            reason_code: ReasonCode::parse(&o.reason_code)
                .ok_or_else(|| bad("unknown reason_code"))?,
            reason: o.reason.clone(),
            recomputed_d_hat: o.d_hat,
            recomputed_budget: o.recomputed_budget,
            regime: Regime::parse(&o.regime).ok_or_else(|| bad("unknown regime"))?,
            policy_version: o.policy_version.clone(),
            policy_hash: o.policy_hash.clone(),
            duplicate: o.duplicate,
            received_at,
            seq: o.seq,
            origin_region: (!o.origin_region.is_empty()).then(|| o.origin_region.clone()),
            replicated: o.replicated,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flk_core::{Policy, parse_pcs, verify};

    fn vectors() -> serde_json::Value {
        let text = include_str!("../../flk-core/tests/data/verify_vectors.json");
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn structured_pcs_round_trips_and_verifies_identically() {
        let policy = Policy::default();
        for v in vectors()["vectors"].as_array().unwrap() {
            let pcs = parse_pcs(&serde_json::to_vec(&v["pcs"]).unwrap()).unwrap();
            let wire = v1::Pcs::from(&pcs);
            let back = Pcs::try_from(wire).unwrap();
            assert_eq!(back, pcs);
            assert_eq!(verify(&back, &policy), verify(&pcs, &policy));
            assert_eq!(
                flk_core::canonicalize(&back).payload,
                flk_core::canonicalize(&pcs).payload
            );
        }
    }

    #[test]
    fn structured_pcs_is_validated_at_the_edge() {
        let pcs = parse_pcs(&serde_json::to_vec(&vectors()["vectors"][0]["pcs"]).unwrap()).unwrap();
        let mut wire = v1::Pcs::from(&pcs);
        wire.epoch = None;
        assert!(
            Pcs::try_from(wire)
                .unwrap_err()
                .message
                .contains("missing field `epoch`")
        );
        let mut wire = v1::Pcs::from(&pcs);
        wire.d_hat = Some(f64::NAN);
        assert!(Pcs::try_from(wire).unwrap_err().message.contains("D_hat"));
        let mut wire = v1::Pcs::from(&pcs);
        wire.n_j.push(v1::ScaleCount {
            scale: "2".into(),
            count: 1,
        });
        assert!(
            Pcs::try_from(wire)
                .unwrap_err()
                .message
                .contains("duplicate key")
        );
        let mut wire = v1::Pcs::from(&pcs);
        wire.v_star.pop();
        assert!(Pcs::try_from(wire).unwrap_err().message.contains("v_star"));
    }

    #[test]
    fn outcome_round_trips() {
        let policy = Policy::default();
        let v = &vectors()["vectors"][1];
        let pcs = parse_pcs(&serde_json::to_vec(&v["pcs"]).unwrap()).unwrap();
        let mut rec = OutcomeRecord::new(
            "t1",
            &pcs.pcs_id,
            verify(&pcs, &policy),
            &policy.version,
            &policy.hash_hex(),
            OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
        );
        rec.seq = 42;
        let wire = v1::Outcome::from(&rec);
        assert_eq!(OutcomeRecord::try_from(&wire).unwrap(), rec);
    }
}
