//! From an outcome-feed record to an audit log entry (the mapping is tabulated in the crate
//! docs). Pure: no I/O. A record that cannot become an entry is a [`Skip`] with a reason from
//! a closed set (it is logged and counted by the caller), never a panic.
//!
//! # Log events made here
//!
//! A `RECORD_KIND_CONFLICTING_DUPLICATE` record (a decided `pcs_id` resubmitted with other
//! signed content; the first decision stands) becomes an event entry of kind
//! `ConflictingDuplicate` whose body is
//!
//! ```json
//! {"tenant_id":"acme","pcs_id":"<64 hex>","request_digest":"<64 hex: the conflicting request>",
//!  "region":"eu-1","at_unix_ms":1700000000123,
//!  "first_outcome":"accepted","first_reason_code":"ok","policy_version":"v1"}
//! ```
//!
//! keyed in the index by `(tenant_id, conflict_key(pcs_id, request_digest))`, so that the same
//! conflict redelivered by the feed (or resubmitted again) is logged once.
//!
//! A burst of signature failures ([`BurstDetector`]) becomes an event of kind
//! `SignatureFailureBurst`:
//!
//! ```json
//! {"tenant_id":"acme","failures":10,"window_ms":60000,"first_at_unix_ms":..,
//!  "last_at_unix_ms":..,"last_pcs_id":"<64 hex>","reason_codes":["signature_invalid"]}
//! ```
//!
//! keyed by `(tenant_id, burst_key(last_pcs_id))`.
//!
//! A `RECORD_KIND_CRR_EVENT` record (svc-crr: a repair proposal, its approval or rejection,
//! an action applied) becomes an event of kind `Replication` whose body is svc-crr's JSON
//! (`type`, `event`, `region`, `peer`, `proposal_id`, `action`, `safety`, `state`, `actor`,
//! `keys`, `pcs_ids`, `detail`, `at_unix_ms`) plus `tenant_id`, keyed by
//! `(tenant_id, replication_key(body))`. A `RECORD_KIND_RECONCILED` record (a repair that
//! replaced a decision) is not a new entry: the decision's key is already logged, and the
//! replication event records the change.

use flk_core::canon::sha256;
use flk_core::pcs::is_lower_hex64;
use flk_core::{Canonical, Pcs, canonicalize, parse_pcs};
use flk_proto::v1;
use flk_tlog::{AuditEntry, AuditOutcome, EventEntry, EventKind};
use serde::{Deserialize, Serialize};

/// Why a feed record does not become an entry. The label values are a closed set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// An unknown record kind: not a decision.
    NotADecision,
    /// The `pcs_id` is not 64 lowercase hex characters.
    BadPcsId,
    /// A decision record whose other fields do not make an entry; the text says which.
    BadRecord(String),
}

impl Skip {
    /// The metric label of this reason.
    pub fn label(&self) -> &'static str {
        match self {
            Skip::NotADecision => "not_a_decision",
            Skip::BadPcsId => "bad_pcs_id",
            Skip::BadRecord(_) => "bad_record",
        }
    }
}

/// An entry ready to append: its key and its encoded bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapped {
    pub tenant_id: String,
    /// The index key: the `pcs_id` of a decision, a derived key for an event
    /// ([`conflict_key`], [`burst_key`]).
    pub pcs_id: [u8; 32],
    /// `AuditEntry::encode` (or `EventEntry::encode`) of the entry.
    pub bytes: Vec<u8>,
    /// The canonical digest recomputed from the request differs from the feed's
    /// `canonical_digest` (the entry keeps both; the caller warns and counts).
    pub digest_mismatch: bool,
    /// A decision rejected for its signature: what [`BurstDetector`] counts.
    pub signature_failure: Option<SignatureFailure>,
    /// A decision (not an event): what the index's decision count counts.
    pub decision: bool,
}

/// A rejection for a bad or missing signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureFailure {
    pub reason_code: String,
    pub at_unix_ms: u64,
}

/// The reason codes of signature failures (flk-core `SignatureError`).
pub const SIGNATURE_FAILURE_CODES: [&str; 3] = [
    "signature_missing",
    "signature_undecodable",
    "signature_invalid",
];

/// The body of a `ConflictingDuplicate` event (module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConflictBody {
    pub tenant_id: String,
    pub pcs_id: String,
    pub request_digest: String,
    pub region: String,
    pub at_unix_ms: u64,
    pub first_outcome: String,
    pub first_reason_code: String,
    pub policy_version: String,
}

/// The body of a `SignatureFailureBurst` event (module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BurstBody {
    pub tenant_id: String,
    pub failures: u32,
    pub window_ms: u64,
    pub first_at_unix_ms: u64,
    pub last_at_unix_ms: u64,
    pub last_pcs_id: String,
    pub reason_codes: Vec<String>,
}

/// The index key of a conflicting duplicate: one per `(pcs_id, conflicting digest)`.
pub fn conflict_key(pcs_id: &[u8; 32], request_digest: &[u8; 32]) -> [u8; 32] {
    let mut input = Vec::with_capacity(80);
    input.extend_from_slice(b"flk-audit/conflict\0");
    input.extend_from_slice(pcs_id);
    input.extend_from_slice(request_digest);
    sha256(&input)
}

/// The index key of a signature failure burst, named by the failure that completed it.
pub fn burst_key(last_pcs_id: &[u8; 32]) -> [u8; 32] {
    let mut input = Vec::with_capacity(48);
    input.extend_from_slice(b"flk-audit/burst\0");
    input.extend_from_slice(last_pcs_id);
    sha256(&input)
}

/// The index key of a log event, for the kinds that have one (conflicts and bursts: the
/// strategy events are not keyed). `None` also for a body that does not parse.
pub fn event_key(event: &EventEntry) -> Option<(String, [u8; 32])> {
    match event.kind {
        EventKind::AnchorStrategy => None,
        EventKind::ConflictingDuplicate => {
            let b: ConflictBody = serde_json::from_str(&event.body).ok()?;
            let key = conflict_key(&decode_hex32(&b.pcs_id)?, &decode_hex32(&b.request_digest)?);
            Some((b.tenant_id, key))
        }
        EventKind::SignatureFailureBurst => {
            let b: BurstBody = serde_json::from_str(&event.body).ok()?;
            Some((b.tenant_id, burst_key(&decode_hex32(&b.last_pcs_id)?)))
        }
        EventKind::Replication => {
            let tenant = serde_json::from_str::<serde_json::Value>(&event.body)
                .ok()?
                .get("tenant_id")?
                .as_str()?
                .to_owned();
            Some((tenant, replication_key(event.body.as_bytes())))
        }
    }
}

/// Counts signature failures per tenant and reports a burst when `threshold` of them fall
/// within `window_ms` (by decision time); after a burst the tenant's count starts again, so
/// a sustained attack reports one burst per `threshold` failures, not one per failure.
/// In memory: a burst that straddles a restart is counted from the restart.
#[derive(Debug)]
pub struct BurstDetector {
    threshold: u32,
    window_ms: u64,
    recent: std::collections::HashMap<String, std::collections::VecDeque<(u64, String)>>,
}

impl BurstDetector {
    /// `threshold == 0` disables detection.
    pub fn new(threshold: u32, window_ms: u64) -> BurstDetector {
        BurstDetector {
            threshold,
            window_ms,
            recent: std::collections::HashMap::new(),
        }
    }

    /// Counts `failure` of `tenant` (the decision `pcs_id`); the burst event when it
    /// completes one.
    pub fn observe(
        &mut self,
        tenant: &str,
        pcs_id: &[u8; 32],
        failure: &SignatureFailure,
    ) -> Option<Mapped> {
        if self.threshold == 0 {
            return None;
        }
        let queue = self.recent.entry(tenant.to_owned()).or_default();
        queue.push_back((failure.at_unix_ms, failure.reason_code.clone()));
        while let Some(&(first, _)) = queue.front() {
            if failure.at_unix_ms.saturating_sub(first) > self.window_ms {
                queue.pop_front();
            } else {
                break;
            }
        }
        if queue.len() < self.threshold as usize {
            return None;
        }
        let mut reason_codes: Vec<String> = queue.iter().map(|(_, r)| r.clone()).collect();
        reason_codes.sort();
        reason_codes.dedup();
        let body = BurstBody {
            tenant_id: tenant.to_owned(),
            failures: u32::try_from(queue.len()).unwrap_or(u32::MAX),
            window_ms: self.window_ms,
            first_at_unix_ms: queue.front().map_or(0, |f| f.0),
            last_at_unix_ms: failure.at_unix_ms,
            last_pcs_id: hex::encode(pcs_id),
            reason_codes,
        };
        queue.clear();
        let event = EventEntry {
            kind: EventKind::SignatureFailureBurst,
            recorded_at_unix_ms: failure.at_unix_ms,
            body: serde_json::to_string(&body).ok()?,
        };
        Some(Mapped {
            tenant_id: tenant.to_owned(),
            pcs_id: burst_key(pcs_id),
            bytes: event.encode().ok()?,
            digest_mismatch: false,
            signature_failure: None,
            decision: false,
        })
    }
}

/// The `ConflictingDuplicate` event of a conflict record.
fn conflict_event(rec: &v1::FeedRecord) -> Result<Mapped, Skip> {
    let pcs_id = decode_hex32(&rec.pcs_id).ok_or(Skip::BadPcsId)?;
    let bad = |what: &str| Skip::BadRecord(what.to_owned());
    let digest: [u8; 32] = rec
        .canonical_digest
        .as_slice()
        .try_into()
        .map_err(|_| bad("canonical_digest is not 32 bytes"))?;
    let at_unix_ms =
        u64::try_from(rec.decided_at_unix_ms).map_err(|_| bad("decided_at_unix_ms is negative"))?;
    let first = rec.outcome.clone().unwrap_or_default();
    let first_outcome = match v1::OutcomeKind::try_from(first.outcome) {
        Ok(v1::OutcomeKind::Accepted) => "accepted",
        Ok(v1::OutcomeKind::Escalated) => "escalated",
        Ok(v1::OutcomeKind::Rejected) => "rejected",
        _ => "unknown",
    };
    let body = ConflictBody {
        tenant_id: rec.tenant_id.clone(),
        pcs_id: rec.pcs_id.clone(),
        request_digest: hex::encode(digest),
        region: rec.region.clone(),
        at_unix_ms,
        first_outcome: first_outcome.to_owned(),
        first_reason_code: first.reason_code,
        policy_version: first.policy_version,
    };
    let event = EventEntry {
        kind: EventKind::ConflictingDuplicate,
        recorded_at_unix_ms: at_unix_ms,
        body: serde_json::to_string(&body).map_err(|e| bad(&e.to_string()))?,
    };
    Ok(Mapped {
        tenant_id: rec.tenant_id.clone(),
        pcs_id: conflict_key(&pcs_id, &digest),
        bytes: event
            .encode()
            .map_err(|e| Skip::BadRecord(format!("event does not encode: {e}")))?,
        digest_mismatch: false,
        signature_failure: None,
        decision: false,
    })
}

/// The audit entry for a feed record (see the crate docs for the field mapping).
pub fn entry_for(rec: &v1::FeedRecord) -> Result<(AuditEntry, bool), Skip> {
    if v1::RecordKind::try_from(rec.kind) != Ok(v1::RecordKind::Decision) {
        return Err(Skip::NotADecision);
    }
    let pcs_id = decode_hex32(&rec.pcs_id).ok_or(Skip::BadPcsId)?;
    let bad = |what: &str| Skip::BadRecord(what.to_owned());
    let outcome = rec.outcome.as_ref().ok_or_else(|| bad("no outcome"))?;
    let kind = match v1::OutcomeKind::try_from(outcome.outcome) {
        Ok(v1::OutcomeKind::Accepted) => AuditOutcome::Accepted,
        Ok(v1::OutcomeKind::Escalated) => AuditOutcome::Escalated,
        Ok(v1::OutcomeKind::Rejected) => AuditOutcome::Rejected,
        _ => return Err(bad("unknown outcome kind")),
    };
    let policy_hash =
        decode_hex32(&outcome.policy_hash).ok_or_else(|| bad("policy_hash is not 64 hex"))?;
    let request_digest: [u8; 32] = rec
        .canonical_digest
        .as_slice()
        .try_into()
        .map_err(|_| bad("canonical_digest is not 32 bytes"))?;
    let decided_at_unix_ms =
        u64::try_from(rec.decided_at_unix_ms).map_err(|_| bad("decided_at_unix_ms is negative"))?;
    let (payload, digest) = match published_payload(rec, &request_digest) {
        Some(payload) => (payload, request_digest),
        None => {
            let pcs = request_pcs(rec)?;
            if pcs.pcs_id != rec.pcs_id {
                return Err(bad("the request's pcs_id differs from the record's"));
            }
            let Canonical { payload, digest } = canonicalize(&pcs);
            (payload, digest)
        }
    };
    let entry = AuditEntry {
        tenant_id: rec.tenant_id.clone(),
        pcs_id,
        signed_fields: payload,
        outcome: kind,
        reason_code: outcome.reason_code.clone(),
        policy_version: outcome.policy_version.clone(),
        policy_hash,
        region: rec.region.clone(),
        decided_at_unix_ms,
        request_digest,
    };
    Ok((entry, digest != request_digest))
}

/// The index key of a replication event: its body's hash (the same event redelivered by the
/// feed is logged once).
pub fn replication_key(body: &[u8]) -> [u8; 32] {
    let mut input = Vec::with_capacity(body.len() + 20);
    input.extend_from_slice(b"flk-audit/crr\0");
    input.extend_from_slice(body);
    sha256(&input)
}

/// The `Replication` event of a `RECORD_KIND_CRR_EVENT` record: svc-crr's JSON (a proposal,
/// its decision, an action) with the record's tenant added as `tenant_id`.
fn replication_event(rec: &v1::FeedRecord) -> Result<Mapped, Skip> {
    let bad = |what: &str| Skip::BadRecord(what.to_owned());
    let mut body: serde_json::Value =
        serde_json::from_str(&rec.event_json).map_err(|_| bad("event_json is not JSON"))?;
    let map = body
        .as_object_mut()
        .ok_or_else(|| bad("event_json is not an object"))?;
    map.insert(
        "tenant_id".into(),
        serde_json::Value::from(rec.tenant_id.as_str()),
    );
    let body = body.to_string();
    let at_unix_ms =
        u64::try_from(rec.decided_at_unix_ms).map_err(|_| bad("decided_at_unix_ms is negative"))?;
    let event = EventEntry {
        kind: EventKind::Replication,
        recorded_at_unix_ms: at_unix_ms,
        body,
    };
    Ok(Mapped {
        tenant_id: rec.tenant_id.clone(),
        pcs_id: replication_key(event.body.as_bytes()),
        bytes: event
            .encode()
            .map_err(|e| Skip::BadRecord(format!("event does not encode: {e}")))?,
        digest_mismatch: false,
        signature_failure: None,
        decision: false,
    })
}

/// [`entry_for`], encoded; a conflict record becomes its event, a replication record its
/// event (module docs).
pub fn map_record(rec: &v1::FeedRecord) -> Result<Mapped, Skip> {
    match v1::RecordKind::try_from(rec.kind) {
        Ok(v1::RecordKind::ConflictingDuplicate) => return conflict_event(rec),
        Ok(v1::RecordKind::CrrEvent) => return replication_event(rec),
        _ => {}
    }
    let (entry, digest_mismatch) = entry_for(rec)?;
    let bytes = entry
        .encode()
        .map_err(|e| Skip::BadRecord(format!("entry does not encode: {e}")))?;
    let signature_failure = (entry.outcome == AuditOutcome::Rejected
        && SIGNATURE_FAILURE_CODES.contains(&entry.reason_code.as_str()))
    .then(|| SignatureFailure {
        reason_code: entry.reason_code.clone(),
        at_unix_ms: entry.decided_at_unix_ms,
    });
    Ok(Mapped {
        tenant_id: entry.tenant_id,
        pcs_id: entry.pcs_id,
        bytes,
        digest_mismatch,
        signature_failure,
        decision: true,
    })
}

/// The canonical signing payload svc-verify published with the decision, when it is there,
/// hashes to the record's `canonical_digest` and names the record's `pcs_id`: then it is the
/// entry's signed fields as they are, with no parse of the request. Anything else (records
/// written before the field existed, or a payload that does not check out) is `None`, and the
/// signed fields are derived from the request instead.
///
/// The `pcs_id` check looks for the canonical key `,"pcs_id":"<64 hex>"`: the canonical
/// encoding escapes every `"` inside a string value, so that byte sequence can only be the key.
fn published_payload(rec: &v1::FeedRecord, digest: &[u8; 32]) -> Option<Vec<u8>> {
    let payload = rec.canonical_payload.as_slice();
    if payload.is_empty() || sha256(payload) != *digest {
        return None;
    }
    let key = b",\"pcs_id\":\"";
    let at = payload.windows(key.len()).position(|w| w == key)? + key.len();
    let id = payload.get(at..at + 64)?;
    (id == rec.pcs_id.as_bytes() && payload.get(at + 64) == Some(&b'"')).then(|| payload.to_vec())
}

/// The PCS the decision was about: `request_json` re-parsed strictly, else the structured
/// `request_pcs` through flk-proto's validating conversion.
fn request_pcs(rec: &v1::FeedRecord) -> Result<Pcs, Skip> {
    if !rec.request_json.is_empty() {
        return parse_pcs(&rec.request_json)
            .map_err(|e| Skip::BadRecord(format!("request_json does not parse: {}", e.message)));
    }
    match &rec.request_pcs {
        Some(p) => Pcs::try_from(p.clone())
            .map_err(|e| Skip::BadRecord(format!("request_pcs is invalid: {}", e.message))),
        None => Err(Skip::BadRecord("record carries no request".into())),
    }
}

/// 64 lowercase hex characters to 32 bytes.
pub fn decode_hex32(s: &str) -> Option<[u8; 32]> {
    if !is_lower_hex64(s) {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flk_core::compute_pcs_id;

    fn pcs_json(shard: &str) -> (String, Vec<u8>) {
        let root = "609f33cac6ffd6b1d3dab6089400413eaefec0019ef869f705831ddf924bab92";
        let id = compute_pcs_id(root, 7, shard);
        let json = format!(
            r#"{{"pcs_id":"{id}","schema":"fractal-lba-kakeya","version":"0.1","shard_id":"{shard}","epoch":7,"attempt":1,"sent_at":"2025-01-01T00:00:00Z","seed":1,"scales":[2,4,8],"N_j":{{"2":3,"4":9,"8":27}},"coh_star":0.7,"v_star":[0,0,1],"D_hat":1.58496250072,"r":0.5,"regime":"mixed","budget":0.44,"merkle_root":"{root}","sig":"c2ln"}}"#
        );
        (id, json.into_bytes())
    }

    fn record(shard: &str) -> v1::FeedRecord {
        let (id, json) = pcs_json(shard);
        let digest = canonicalize(&parse_pcs(&json).unwrap()).digest;
        v1::FeedRecord {
            seq: 3,
            tenant_id: "acme".into(),
            pcs_id: id.clone(),
            outcome: Some(v1::Outcome {
                pcs_id: id,
                tenant_id: "acme".into(),
                outcome: v1::OutcomeKind::Escalated as i32,
                reason_code: "budget_deviation".into(),
                policy_version: "v1".into(),
                policy_hash: "ab".repeat(32),
                ..Default::default()
            }),
            canonical_digest: digest.to_vec(),
            request_json: json,
            decided_at_unix_ms: 1_700_000_000_123,
            region: "eu".into(),
            key_id: "k1".into(),
            kind: v1::RecordKind::Decision as i32,
            request_pcs: None,
            verify_cpu_ns: 0,
            signals: None,
            canonical_payload: Vec::new(),
            ..Default::default()
        }
    }

    #[test]
    fn fields_map_as_documented() {
        let rec = record("s1");
        let (e, mismatch) = entry_for(&rec).unwrap();
        assert!(!mismatch);
        assert_eq!(e.tenant_id, "acme");
        assert_eq!(hex::encode(e.pcs_id), rec.pcs_id);
        assert_eq!(e.outcome, AuditOutcome::Escalated);
        assert_eq!(e.reason_code, "budget_deviation");
        assert_eq!(e.policy_version, "v1");
        assert_eq!(e.policy_hash, [0xab; 32]);
        assert_eq!(e.region, "eu");
        assert_eq!(e.decided_at_unix_ms, 1_700_000_000_123);
        assert_eq!(e.request_digest.to_vec(), rec.canonical_digest);
        let pcs = parse_pcs(&rec.request_json).unwrap();
        assert_eq!(e.signed_fields, canonicalize(&pcs).payload);
        assert!(e.signed_fields.starts_with(b"{\"D_hat\":"));
        let m = map_record(&rec).unwrap();
        assert_eq!(AuditEntry::decode(&m.bytes).unwrap(), e);
    }

    #[test]
    fn structured_requests_give_the_same_entry() {
        let rec = record("s2");
        let pcs = parse_pcs(&rec.request_json).unwrap();
        let structured = v1::FeedRecord {
            request_json: Vec::new(),
            request_pcs: Some(v1::Pcs::from(&pcs)),
            ..rec.clone()
        };
        assert_eq!(map_record(&structured), map_record(&rec));
    }

    #[test]
    fn malformed_records_are_skipped_with_a_reason() {
        let rec = record("s3");
        let conflict = v1::FeedRecord {
            kind: v1::RecordKind::ConflictingDuplicate as i32,
            ..rec.clone()
        };
        // A conflict is an event, keyed by the conflicting content.
        let m = map_record(&conflict).unwrap();
        let digest: [u8; 32] = rec.canonical_digest.as_slice().try_into().unwrap();
        let id = decode_hex32(&rec.pcs_id).unwrap();
        assert_eq!(m.pcs_id, conflict_key(&id, &digest));
        let ev = EventEntry::decode(&m.bytes).unwrap();
        assert_eq!(ev.kind, EventKind::ConflictingDuplicate);
        assert_eq!(event_key(&ev), Some(("acme".to_owned(), m.pcs_id)));
        let body: ConflictBody = serde_json::from_str(&ev.body).unwrap();
        assert_eq!(
            (body.first_outcome.as_str(), body.region.as_str()),
            ("escalated", "eu")
        );
        let unknown = v1::FeedRecord {
            kind: 99,
            ..rec.clone()
        };
        assert_eq!(map_record(&unknown), Err(Skip::NotADecision));
        for bad_id in ["", "zz", &rec.pcs_id.to_uppercase(), &rec.pcs_id[1..]] {
            let r = v1::FeedRecord {
                pcs_id: bad_id.to_owned(),
                ..rec.clone()
            };
            assert_eq!(map_record(&r), Err(Skip::BadPcsId), "{bad_id:?}");
        }
        let cases = [
            v1::FeedRecord {
                outcome: None,
                ..rec.clone()
            },
            v1::FeedRecord {
                canonical_digest: vec![1, 2, 3],
                ..rec.clone()
            },
            v1::FeedRecord {
                decided_at_unix_ms: -1,
                ..rec.clone()
            },
            v1::FeedRecord {
                request_json: b"{not json".to_vec(),
                ..rec.clone()
            },
            v1::FeedRecord {
                request_json: Vec::new(),
                ..rec.clone()
            },
            v1::FeedRecord {
                pcs_id: "0".repeat(64),
                ..rec.clone()
            },
            v1::FeedRecord {
                tenant_id: "t".repeat(70_000),
                ..rec.clone()
            },
        ];
        for r in cases {
            let skip = map_record(&r).unwrap_err();
            assert_eq!(skip.label(), "bad_record", "{skip:?}");
        }
    }

    /// A record as svc-verify publishes it now: with the canonical payload it verified.
    fn published(shard: &str) -> v1::FeedRecord {
        let rec = record(shard);
        let payload = canonicalize(&parse_pcs(&rec.request_json).unwrap()).payload;
        v1::FeedRecord {
            canonical_payload: payload,
            ..rec
        }
    }

    #[test]
    fn a_published_payload_gives_the_entry_derived_from_the_request() {
        let rec = published("s5");
        let legacy = v1::FeedRecord {
            canonical_payload: Vec::new(),
            ..rec.clone()
        };
        assert_eq!(map_record(&rec), map_record(&legacy));
        // The request is not parsed when the payload checks out.
        let unparsed = v1::FeedRecord {
            request_json: b"{not json".to_vec(),
            ..rec.clone()
        };
        assert_eq!(map_record(&unparsed), map_record(&legacy));
    }

    #[test]
    fn a_payload_that_does_not_check_out_is_ignored() {
        let rec = published("s6");
        let legacy = map_record(&v1::FeedRecord {
            canonical_payload: Vec::new(),
            ..rec.clone()
        })
        .unwrap();
        // Altered: it no longer hashes to `canonical_digest`.
        let mut altered = rec.canonical_payload.clone();
        let last = altered.len() - 2;
        altered[last] ^= 1;
        let r = v1::FeedRecord {
            canonical_payload: altered,
            ..rec.clone()
        };
        assert_eq!(map_record(&r).unwrap(), legacy);
        // Another PCS's payload with its own digest: the record's pcs_id is not in it, so the
        // request decides, and its digest disagrees with the record's.
        let other = published("s7");
        let r = v1::FeedRecord {
            canonical_payload: other.canonical_payload.clone(),
            canonical_digest: other.canonical_digest.clone(),
            ..rec.clone()
        };
        let m = map_record(&r).unwrap();
        assert!(m.digest_mismatch);
        let e = AuditEntry::decode(&m.bytes).unwrap();
        assert_eq!(
            e.signed_fields,
            AuditEntry::decode(&legacy.bytes).unwrap().signed_fields
        );
        assert_eq!(e.request_digest.to_vec(), other.canonical_digest);
    }

    #[test]
    fn a_digest_that_disagrees_is_kept_and_flagged() {
        let rec = v1::FeedRecord {
            canonical_digest: vec![9; 32],
            ..record("s4")
        };
        let m = map_record(&rec).unwrap();
        assert!(m.digest_mismatch);
        assert_eq!(
            AuditEntry::decode(&m.bytes).unwrap().request_digest,
            [9; 32]
        );
    }
}
