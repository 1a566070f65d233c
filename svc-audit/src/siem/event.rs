//! The SIEM envelope: one JSON object per event, the same for every sink.
//!
//! | field | value |
//! |---|---|
//! | `event_id` | 32 hex: SHA-256 of the event's identity (below), so a receiver can deduplicate |
//! | `type` | `decision`, `audit_checkpoint`, `anchor`, `conflicting_duplicate`, `signature_failure_burst` |
//! | `time` | RFC 3339 UTC with milliseconds (`2026-12-05T17:00:00.123Z`) |
//! | `tenant_id` | the tenant, `null` for events of the log itself |
//! | `region` | the deciding region (decisions, conflicts), else `null` |
//! | `severity` | `info` accepted, `warning` escalated / conflicting duplicate, `error` rejected / signature failure burst |
//! | `message` | one human line |
//! | `details` | per type; decisions: `pcs_id`, `outcome`, `reason_code`, `policy_version`, `policy_hash`, `request_digest`, `audit_index` |
//!
//! Identities: a decision is `(tenant_id, pcs_id)` (the same decision logged in two regions
//! has one id); a conflict `(tenant_id, pcs_id, request_digest)`; a burst `(tenant_id,
//! last_pcs_id)`; a strategy event `(origin, audit_index)`; a checkpoint `(origin, size)`; an
//! anchor `(origin, journal id)`.

use flk_tlog::{AuditEntry, AuditOutcome, EventEntry, EventKind, LogEntry};
use serde::Serialize;
use serde_json::{Value, json};

use crate::mapping::{BurstBody, ConflictBody};

/// An event ready to spool: its id, its time and the envelope as JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: String,
    pub time_ms: u64,
    pub json: String,
}

#[derive(Serialize)]
struct Envelope<'a, D: Serialize = Value> {
    event_id: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    time: String,
    tenant_id: Option<&'a str>,
    region: Option<&'a str>,
    severity: &'a str,
    message: String,
    details: D,
}

/// The details of a decision: a struct rather than a map, because this is the stage's hot
/// path (one per decision).
#[derive(Serialize)]
struct DecisionDetails<'a> {
    pcs_id: &'a str,
    outcome: &'a str,
    reason_code: &'a str,
    policy_version: &'a str,
    policy_hash: String,
    request_digest: String,
    audit_index: u64,
}

/// Builds envelopes, with the configured fields redacted.
#[derive(Debug, Clone)]
pub struct Encoder {
    origin: String,
    redact: Vec<Vec<String>>,
}

/// What replaces a redacted field.
pub const REDACTED: &str = "[redacted]";

impl Encoder {
    pub fn new(origin: &str, redact: &[String]) -> Encoder {
        Encoder {
            origin: origin.to_owned(),
            redact: redact
                .iter()
                .map(|p| p.split('.').map(str::to_owned).collect())
                .collect(),
        }
    }

    /// The event of log entry `index`; `None` for an entry that does not decode (counted by
    /// the caller; `flk audit verify` locates such damage).
    pub fn entry(&self, index: u64, bytes: &[u8]) -> Option<Event> {
        match LogEntry::decode(bytes).ok()? {
            LogEntry::Decision(e) => Some(self.decision(index, &e)),
            LogEntry::Event(e) => self.log_event(index, &e),
        }
    }

    fn decision(&self, index: u64, e: &AuditEntry) -> Event {
        let (outcome, severity) = match e.outcome {
            AuditOutcome::Accepted => ("accepted", "info"),
            AuditOutcome::Escalated => ("escalated", "warning"),
            AuditOutcome::Rejected => ("rejected", "error"),
        };
        let pcs_id = hex_lower(&e.pcs_id);
        let id = event_id(&[b"decision", e.tenant_id.as_bytes(), &e.pcs_id]);
        let details = DecisionDetails {
            pcs_id: &pcs_id,
            outcome,
            reason_code: &e.reason_code,
            policy_version: &e.policy_version,
            policy_hash: hex_lower(&e.policy_hash),
            request_digest: hex_lower(&e.request_digest),
            audit_index: index,
        };
        self.finish(
            Envelope {
                event_id: &id,
                kind: "decision",
                time: rfc3339_ms(e.decided_at_unix_ms),
                tenant_id: Some(&e.tenant_id),
                region: Some(&e.region),
                severity,
                message: format!(
                    "PCS {pcs_id} of tenant {} {outcome} ({})",
                    e.tenant_id, e.reason_code
                ),
                details,
            },
            e.decided_at_unix_ms,
        )
    }

    fn log_event(&self, index: u64, e: &EventEntry) -> Option<Event> {
        match e.kind {
            EventKind::ConflictingDuplicate => {
                let b: ConflictBody = serde_json::from_str(&e.body).ok()?;
                let id = event_id(&[
                    b"conflicting_duplicate",
                    b.tenant_id.as_bytes(),
                    b.pcs_id.as_bytes(),
                    b.request_digest.as_bytes(),
                ]);
                let mut details = serde_json::to_value(&b).ok()?;
                details["audit_index"] = json!(index);
                Some(self.finish(Envelope {
                    event_id: &id,
                    kind: "conflicting_duplicate",
                    time: rfc3339_ms(b.at_unix_ms),
                    tenant_id: Some(&b.tenant_id),
                    region: Some(&b.region),
                    severity: "warning",
                    message: format!(
                        "PCS {} of tenant {} resubmitted with other signed content; the first decision ({}) stands",
                        b.pcs_id, b.tenant_id, b.first_outcome
                    ),
                    details,
                }, b.at_unix_ms))
            }
            EventKind::SignatureFailureBurst => {
                let b: BurstBody = serde_json::from_str(&e.body).ok()?;
                let id = event_id(&[
                    b"signature_failure_burst",
                    b.tenant_id.as_bytes(),
                    b.last_pcs_id.as_bytes(),
                ]);
                let mut details = serde_json::to_value(&b).ok()?;
                details["audit_index"] = json!(index);
                Some(self.finish(
                    Envelope {
                        event_id: &id,
                        kind: "signature_failure_burst",
                        time: rfc3339_ms(b.last_at_unix_ms),
                        tenant_id: Some(&b.tenant_id),
                        region: None,
                        severity: "error",
                        message: format!(
                            "{} signature failures from tenant {} within {} ms",
                            b.failures, b.tenant_id, b.window_ms
                        ),
                        details,
                    },
                    b.last_at_unix_ms,
                ))
            }
            EventKind::Replication => {
                let body: Value = serde_json::from_str(&e.body).ok()?;
                let id = event_id(&[b"replication", e.body.as_bytes()]);
                let text = |k: &str| {
                    body.get(k)
                        .and_then(Value::as_str)
                        .unwrap_or("?")
                        .to_owned()
                };
                let tenant = text("tenant_id");
                let region = text("region");
                let message = format!(
                    "replication repair {} {} ({}, {} keys, peer {})",
                    text("proposal_id"),
                    text("event"),
                    text("action"),
                    body.get("keys").and_then(Value::as_u64).unwrap_or(0),
                    text("peer"),
                );
                let mut details = body.clone();
                details["audit_index"] = json!(index);
                Some(self.finish(
                    Envelope {
                        event_id: &id,
                        kind: "replication",
                        time: rfc3339_ms(e.recorded_at_unix_ms),
                        tenant_id: Some(&tenant),
                        region: Some(&region),
                        severity: "warning",
                        message,
                        details,
                    },
                    e.recorded_at_unix_ms,
                ))
            }
            EventKind::AnchorStrategy => {
                let body: Value = serde_json::from_str(&e.body).ok()?;
                let id = event_id(&[
                    b"anchor_strategy",
                    self.origin.as_bytes(),
                    &index.to_be_bytes(),
                ]);
                let chosen = body
                    .get("chosen")
                    .and_then(Value::as_str)
                    .unwrap_or("?")
                    .to_owned();
                Some(self.finish(
                    Envelope {
                        event_id: &id,
                        kind: "anchor",
                        time: rfc3339_ms(e.recorded_at_unix_ms),
                        tenant_id: None,
                        region: None,
                        severity: "info",
                        message: format!("audit log anchoring strategy: {chosen}"),
                        details: json!({
                            "action": "strategy",
                            "origin": self.origin,
                            "audit_index": index,
                            "strategy": body,
                        }),
                    },
                    e.recorded_at_unix_ms,
                ))
            }
        }
    }

    /// The event of a published checkpoint.
    pub fn checkpoint(&self, size: u64, root_hash: &[u8], note: &str, now_ms: u64) -> Event {
        let id = event_id(&[
            b"audit_checkpoint",
            self.origin.as_bytes(),
            &size.to_be_bytes(),
        ]);
        self.finish(
            Envelope {
                event_id: &id,
                kind: "audit_checkpoint",
                time: rfc3339_ms(now_ms),
                tenant_id: None,
                region: None,
                severity: "info",
                message: format!("audit log {} checkpoint at size {size}", self.origin),
                details: json!({
                    "origin": self.origin,
                    "size": size,
                    "root_hash": hex_lower(root_hash),
                    "note": note,
                }),
            },
            now_ms,
        )
    }

    /// The event of anchor `id` of the journal.
    pub fn anchor(&self, a: &crate::anchoring::store::StoredAnchor) -> Event {
        let id = event_id(&[b"anchor", self.origin.as_bytes(), &a.id.to_be_bytes()]);
        let time_ms = u64::try_from(a.record.created_at_unix)
            .unwrap_or(0)
            .saturating_mul(1000);
        let method = crate::anchoring::kind_label(a.record.kind);
        self.finish(
            Envelope {
                event_id: &id,
                kind: "anchor",
                time: rfc3339_ms(time_ms),
                tenant_id: None,
                region: None,
                severity: "info",
                message: format!(
                    "audit log checkpoint {} anchored by {method}{}",
                    a.record.checkpoint_size,
                    if a.complete { "" } else { " (pending)" }
                ),
                details: json!({
                    "action": "anchored",
                    "origin": self.origin,
                    "anchor_id": a.id,
                    "method": method,
                    "strategy": a.record.strategy,
                    "checkpoint_size": a.record.checkpoint_size,
                    "root_hash": a.record.root_hash,
                    "complete": a.complete,
                }),
            },
            time_ms,
        )
    }

    fn finish<D: Serialize>(&self, env: Envelope<'_, D>, time_ms: u64) -> Event {
        let id = env.event_id.to_owned();
        let json = if self.redact.is_empty() {
            serde_json::to_string(&env).unwrap_or_default()
        } else {
            let mut value = serde_json::to_value(&env).unwrap_or(Value::Null);
            for path in &self.redact {
                redact(&mut value, path);
            }
            value.to_string()
        };
        Event { id, time_ms, json }
    }
}

fn redact(value: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut at = value;
    for p in parents {
        match at.get_mut(p) {
            Some(v) => at = v,
            None => return,
        }
    }
    if let Some(v) = at.get_mut(last) {
        *v = Value::String(REDACTED.to_owned());
    }
}

/// 32 hex characters of SHA-256 over the parts, each length-prefixed (so that no two
/// identities share an input).
pub fn event_id(parts: &[&[u8]]) -> String {
    let mut input = b"flk-siem/v1".to_vec();
    for p in parts {
        input.extend_from_slice(&(p.len() as u32).to_be_bytes());
        input.extend_from_slice(p);
    }
    hex_lower(&flk_core::canon::sha256(&input)[..16])
}

/// Lowercase hex through a table: `hex::encode`'s char iterator was a visible share of the
/// stage's CPU (four encodings per decision).
fn hex_lower(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = Vec::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 0xf)]);
    }
    // Only ASCII digits were pushed.
    String::from_utf8(out).unwrap_or_default()
}

/// RFC 3339, UTC, millisecond precision.
pub fn rfc3339_ms(unix_ms: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    ))
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(outcome: AuditOutcome) -> AuditEntry {
        AuditEntry {
            tenant_id: "acme".into(),
            pcs_id: [7; 32],
            signed_fields: b"{}".to_vec(),
            outcome,
            reason_code: "ok".into(),
            policy_version: "v1".into(),
            policy_hash: [1; 32],
            region: "eu-1".into(),
            decided_at_unix_ms: 1_764_954_000_123,
            request_digest: [2; 32],
        }
    }

    #[test]
    fn a_decision_has_the_documented_envelope_and_a_stable_id() {
        let enc = Encoder::new("flk.local/audit", &[]);
        let bytes = decision(AuditOutcome::Escalated).encode().unwrap();
        let ev = enc.entry(41, &bytes).unwrap();
        let v: Value = serde_json::from_str(&ev.json).unwrap();
        assert_eq!(v["type"], "decision");
        assert_eq!(v["time"], "2025-12-05T17:00:00.123Z");
        assert_eq!(v["tenant_id"], "acme");
        assert_eq!(v["region"], "eu-1");
        assert_eq!(v["severity"], "warning");
        assert_eq!(v["details"]["pcs_id"], hex::encode([7u8; 32]));
        assert_eq!(v["details"]["outcome"], "escalated");
        assert_eq!(v["details"]["reason_code"], "ok");
        assert_eq!(v["details"]["policy_version"], "v1");
        assert_eq!(v["details"]["audit_index"], 41);
        assert_eq!(v["event_id"], ev.id);
        assert_eq!(ev.id.len(), 32);
        // The same decision at another index (another region's log) has the same id.
        assert_eq!(enc.entry(7, &bytes).unwrap().id, ev.id);
        let rejected = decision(AuditOutcome::Rejected).encode().unwrap();
        let r: Value = serde_json::from_str(&enc.entry(41, &rejected).unwrap().json).unwrap();
        assert_eq!(r["severity"], "error");
        assert_ne!(
            enc.checkpoint(5, &[0; 32], "n", 1).id,
            enc.checkpoint(6, &[0; 32], "n", 1).id
        );
        assert!(enc.entry(1, b"\x09garbage").is_none());
    }

    #[test]
    fn hex_is_lowercase_and_complete() {
        assert_eq!(hex_lower(&[0x00, 0xab, 0xff, 0x10]), "00abff10");
        assert_eq!(hex_lower(&[0x5f; 32]), "5f".repeat(32));
    }

    #[test]
    fn configured_fields_are_redacted_before_anything_is_written() {
        let enc = Encoder::new(
            "o",
            &[
                "message".to_owned(),
                "details.reason_code".to_owned(),
                "details.none".to_owned(),
            ],
        );
        let ev = enc
            .entry(0, &decision(AuditOutcome::Accepted).encode().unwrap())
            .unwrap();
        let v: Value = serde_json::from_str(&ev.json).unwrap();
        assert_eq!(v["message"], REDACTED);
        assert_eq!(v["details"]["reason_code"], REDACTED);
        assert!(v["details"].get("none").is_none());
        assert!(!ev.json.contains("acme "), "{}", ev.json);
    }
}
