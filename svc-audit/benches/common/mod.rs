//! What the benches share: a synthetic outcome feed (decision records as svc-verify
//! publishes them) and their settings from the environment.
#![allow(dead_code)] // each bench uses a different subset

use flk_core::{canonicalize, compute_pcs_id, parse_pcs};
use flk_proto::v1;

pub const ROOT: &str = "609f33cac6ffd6b1d3dab6089400413eaefec0019ef869f705831ddf924bab92";

pub fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A decision record as svc-verify would publish it, for shard `n`.
pub fn record(seq: u64, n: usize) -> v1::FeedRecord {
    let shard = format!("bench-shard-{n}");
    let id = compute_pcs_id(ROOT, 1000 + n as u64, &shard);
    let json = format!(
        r#"{{"pcs_id":"{id}","schema":"fractal-lba-kakeya","version":"0.1","shard_id":"{shard}","epoch":{},"attempt":1,"sent_at":"2025-01-01T00:00:00Z","seed":42,"scales":[2,4,8,16],"N_j":{{"2":8,"4":13,"8":46,"16":90}},"coh_star":0.731221,"v_star":[0.0,0.0,1.0],"D_hat":1.646363045,"r":0.504138283,"regime":"mixed","budget":0.289103089,"merkle_root":"{ROOT}","sig":"IRIcwPev1Tzi++hDC7EUC3EfeAu246mcY2CD/ppkvUI=","ft":{{"outbox_seq":{n},"degraded":false,"fallbacks":[],"clock_skew_ms":0}}}}"#,
        1000 + n
    );
    let canonical = canonicalize(&parse_pcs(json.as_bytes()).expect("bench pcs parses"));
    let kinds = [
        (v1::OutcomeKind::Accepted, "ok"),
        (v1::OutcomeKind::Escalated, "budget_deviation"),
        (v1::OutcomeKind::Rejected, "r_out_of_bounds"),
    ];
    let (kind, reason) = kinds[n % kinds.len()];
    v1::FeedRecord {
        seq,
        tenant_id: format!("tenant-{}", n % 7),
        pcs_id: id.clone(),
        outcome: Some(v1::Outcome {
            pcs_id: id,
            tenant_id: format!("tenant-{}", n % 7),
            outcome: kind as i32,
            reason_code: reason.into(),
            policy_version: "1".into(),
            policy_hash: "5f".repeat(32),
            ..Default::default()
        }),
        canonical_digest: canonical.digest.to_vec(),
        request_json: json.into_bytes(),
        decided_at_unix_ms: 1_735_689_600_000 + n as i64,
        region: "bench".into(),
        key_id: "k1".into(),
        kind: v1::RecordKind::Decision as i32,
        request_pcs: None,
        verify_cpu_ns: 0,
        signals: None,
        // As svc-verify publishes it: the canonical payload it verified.
        canonical_payload: canonical.payload,
        ..Default::default()
    }
}
