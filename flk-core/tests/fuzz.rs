//! Bounded fuzzing of the parser, canonicalizer and verifier (a proptest harness that runs in
//! CI): arbitrary bytes, and structure-aware mutations of a valid PCS, must never panic, and
//! whatever parses must canonicalize and verify deterministically.
//!
//! `FLK_FUZZ_CASES` raises the case count for a longer local run.

use flk_core::{Policy, canonicalize, parse_pcs, verify};
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{Value, json};

fn cases(default: u32) -> u32 {
    std::env::var("FLK_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn exercise(body: &[u8]) {
    if let Ok(pcs) = parse_pcs(body) {
        let a = canonicalize(&pcs);
        let b = canonicalize(&pcs);
        assert_eq!(a.payload, b.payload);
        assert!(a.payload.is_ascii(), "canonical payload must be ASCII");
        let policy = Policy::default();
        let v1 = verify(&pcs, &policy);
        let v2 = verify(&pcs, &policy);
        assert_eq!(v1, v2);
        assert!(v1.recomputed_budget.is_finite());
        assert!((0.0..=1.0).contains(&v1.recomputed_budget));
    }
}

fn seed_doc() -> Value {
    json!({
        "pcs_id": "092f52664e089ca48a36d3c5d21a0ec4e426741deae7b8288d44406119aef123",
        "schema": "fractal-lba-kakeya", "version": "0.1", "shard_id": "shard-691",
        "epoch": 0, "attempt": 1, "sent_at": "2025-01-01T00:00:00Z", "seed": 434,
        "scales": [2, 4, 8, 16, 32],
        "N_j": {"2": 4, "4": 16, "8": 32, "16": 32, "32": 128},
        "coh_star": 0.24, "v_star": [0.12, 0.98, -0.05], "D_hat": 0.56, "r": 0.78,
        "regime": "mixed", "budget": 0.29,
        "merkle_root": "f5f5990c5e4a2d115b32940daf4de6d315bdb46a8a2fdcde7d127b183cec2359",
        "sig": "qY4npzoPA9bmBhIj3GsaBrRaEdZmhaxkikp9mH5pbb0=",
        "ft": {"outbox_seq": 0, "degraded": false, "fallbacks": [], "clock_skew_ms": 0}
    })
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |x| x.is_finite())
            .prop_map(|x| json!(x)),
        ".{0,300}".prop_map(Value::String),
        prop::collection::vec(0u64..2_000_000, 0..70).prop_map(|v| json!(v)),
        prop::collection::btree_map("[0-9]{1,7}", -10i64..100_000, 0..70).prop_map(|m| json!(m)),
    ]
}

const KEYS: [&str; 20] = [
    "pcs_id",
    "schema",
    "version",
    "shard_id",
    "epoch",
    "attempt",
    "sent_at",
    "seed",
    "scales",
    "N_j",
    "coh_star",
    "v_star",
    "D_hat",
    "r",
    "regime",
    "budget",
    "merkle_root",
    "sig",
    "ft",
    "extra",
];

#[test]
fn arbitrary_bytes_never_panic() {
    let mut runner = proptest::test_runner::TestRunner::new(Config::with_cases(cases(10_000)));
    runner
        .run(&prop::collection::vec(any::<u8>(), 0..2048), |bytes| {
            exercise(&bytes);
            Ok(())
        })
        .unwrap();
}

#[test]
fn structured_mutations_never_panic() {
    let mut runner = proptest::test_runner::TestRunner::new(Config::with_cases(cases(10_000)));
    let strategy = prop::collection::vec((0usize..KEYS.len(), json_leaf(), any::<bool>()), 1..6);
    runner
        .run(&strategy, |edits| {
            let mut doc = seed_doc();
            for (k, v, remove) in edits {
                let obj = doc.as_object_mut().unwrap();
                if remove {
                    obj.remove(KEYS[k]);
                } else {
                    obj.insert(KEYS[k].to_owned(), v);
                }
            }
            exercise(&serde_json::to_vec(&doc).unwrap());
            Ok(())
        })
        .unwrap();
}

#[test]
fn textual_mutations_never_panic() {
    // Byte-level damage to a valid document: truncation, insertion, duplication of spans.
    let base = serde_json::to_vec(&seed_doc()).unwrap();
    let mut runner = proptest::test_runner::TestRunner::new(Config::with_cases(cases(10_000)));
    let n = base.len();
    let strategy = (
        0..n,
        0..n,
        prop::collection::vec(any::<u8>(), 0..16),
        0u8..4,
    );
    runner
        .run(&strategy, |(a, b, insert, op)| {
            let (lo, hi) = (a.min(b), a.max(b));
            let mut body = base.clone();
            match op {
                0 => body.truncate(lo),
                1 => {
                    body.splice(lo..lo, insert);
                }
                2 => {
                    let span = body[lo..hi].to_vec();
                    body.splice(hi..hi, span);
                }
                _ => {
                    body.splice(lo..hi, insert);
                }
            }
            exercise(&body);
            Ok(())
        })
        .unwrap();
}
