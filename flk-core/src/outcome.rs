//! A recorded decision: the verdict plus who, when and under which policy, and its JSON
//! outcome body (PROTOCOL.md section 5).

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::pcs::Regime;
use crate::verify::{Outcome, ReasonCode, Verdict};

/// One decision as stored in the outcome log and dedup index, and as answered to clients.
#[derive(Debug, Clone, PartialEq)]
pub struct OutcomeRecord {
    pub pcs_id: String,
    pub tenant_id: String,
    pub outcome: Outcome,
    pub reason_code: ReasonCode,
    pub reason: String,
    pub recomputed_d_hat: Option<f64>,
    pub recomputed_budget: f64,
    pub regime: Regime,
    pub policy_version: String,
    pub policy_hash: String,
    /// True when this answer is a stored outcome rather than a fresh decision.
    pub duplicate: bool,
    pub received_at: OffsetDateTime,
    /// Position of the decision in the outcome log (0 before it is recorded).
    pub seq: u64,
    /// Region that decided it, when known (stored outcomes of a stack with cross-region
    /// replication); the body then carries `origin_region` and `replicated`.
    pub origin_region: Option<String>,
    /// This region holds the decision as a copy replicated from `origin_region`.
    pub replicated: bool,
}

impl OutcomeRecord {
    /// A fresh decision for `verdict`.
    pub fn new(
        tenant_id: &str,
        pcs_id: &str,
        verdict: Verdict,
        policy_version: &str,
        policy_hash: &str,
        received_at: OffsetDateTime,
    ) -> OutcomeRecord {
        OutcomeRecord {
            pcs_id: pcs_id.to_owned(),
            tenant_id: tenant_id.to_owned(),
            outcome: verdict.outcome,
            reason_code: verdict.reason_code,
            reason: verdict.reason,
            recomputed_d_hat: verdict.recomputed_d_hat,
            recomputed_budget: verdict.recomputed_budget,
            regime: verdict.regime,
            policy_version: policy_version.to_owned(),
            policy_hash: policy_hash.to_owned(),
            duplicate: false,
            received_at,
            seq: 0,
            origin_region: None,
            replicated: false,
        }
    }

    /// HTTP status of this outcome (200 accepted, 202 escalated or rejected).
    pub fn http_status(&self) -> u16 {
        self.outcome.http_status()
    }

    /// `received_at` in RFC 3339.
    pub fn received_at_rfc3339(&self) -> String {
        self.received_at.format(&Rfc3339).unwrap_or_default()
    }

    /// The outcome body of PROTOCOL.md section 5.
    pub fn to_json_body(&self) -> Value {
        let mut body = json!({
            "pcs_id": self.pcs_id,
            "tenant_id": self.tenant_id,
            "outcome": self.outcome.as_str(),
            "accepted": self.outcome.accepted(),
            "escalated": self.outcome.escalated(),
            "reason_code": self.reason_code.as_str(),
            "reason": self.reason,
            "D_hat": self.recomputed_d_hat,
            "recomputed_D_hat": self.recomputed_d_hat,
            "recomputed_budget": self.recomputed_budget,
            "regime": self.regime.as_str(),
            "policy_version": self.policy_version,
            "policy_hash": self.policy_hash,
            "duplicate": self.duplicate,
            "received_at": self.received_at_rfc3339(),
            "seq": self.seq,
        });
        if let (Some(region), Some(map)) = (&self.origin_region, body.as_object_mut()) {
            map.insert("origin_region".into(), Value::from(region.as_str()));
            map.insert("replicated".into(), Value::from(self.replicated));
        }
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Policy, parse_pcs, verify};

    #[test]
    fn json_body_has_every_contract_key() {
        let body = include_str!("../tests/data/verify_vectors.json");
        let doc: Value = serde_json::from_str(body).unwrap();
        let pcs_json = serde_json::to_vec(&doc["vectors"][0]["pcs"]).unwrap();
        let pcs = parse_pcs(&pcs_json).unwrap();
        let policy = Policy::default();
        let rec = OutcomeRecord::new(
            "default",
            &pcs.pcs_id,
            verify(&pcs, &policy),
            &policy.version,
            &policy.hash_hex(),
            OffsetDateTime::UNIX_EPOCH,
        );
        let v = rec.to_json_body();
        for key in [
            "pcs_id",
            "tenant_id",
            "outcome",
            "accepted",
            "escalated",
            "reason_code",
            "reason",
            "D_hat",
            "recomputed_D_hat",
            "recomputed_budget",
            "regime",
            "policy_version",
            "duplicate",
            "received_at",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        assert_eq!(v["received_at"], "1970-01-01T00:00:00Z");
        assert_eq!(v["outcome"], "rejected");
        assert_eq!(v["D_hat"], Value::Null);
    }
}
