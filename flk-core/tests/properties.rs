//! Property tests for canonicalization: the float formatter against an independent oracle,
//! rounding idempotence, and which fields the signature does and does not cover.

use flk_core::canon::{SignedFields, py_float_repr, round9};
use flk_core::{Canonical, HmacMode, KeySet, SigningMaterial, TenantKey, canonicalize, parse_pcs};
use proptest::prelude::*;
use serde_json::{Value, json};
use time::macros::datetime;

/// Python `repr` built from Rust's own shortest `{:e}` output: an independent path from the
/// ryu-based formatter under test.
fn oracle_repr(x: f64) -> String {
    if x == 0.0 {
        return if x.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    let sci = format!("{x:e}"); // e.g. "-1.5e-7", "1e16"
    let (mant, exp) = sci.split_once('e').unwrap();
    let exp: i32 = exp.parse().unwrap();
    let neg = mant.starts_with('-');
    let digits: String = mant.chars().filter(|c| c.is_ascii_digit()).collect();
    let sign = if neg { "-" } else { "" };
    if (-4..16).contains(&exp) {
        let point = exp + 1; // digits before the decimal point
        let body = if point <= 0 {
            format!("0.{}{}", "0".repeat((-point) as usize), digits)
        } else if (point as usize) < digits.len() {
            format!(
                "{}.{}",
                &digits[..point as usize],
                &digits[point as usize..]
            )
        } else {
            format!("{}{}.0", digits, "0".repeat(point as usize - digits.len()))
        };
        format!("{sign}{body}")
    } else {
        let m = if digits.len() > 1 {
            format!("{}.{}", &digits[..1], &digits[1..])
        } else {
            digits.clone()
        };
        format!(
            "{sign}{m}e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.abs()
        )
    }
}

/// Significant digits and the decimal exponent of the first one, from any float text.
fn sci_parts(s: &str) -> (Vec<u8>, i64) {
    let (mant, e) = match s.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i64>().unwrap()),
        None => (s, 0),
    };
    let mant = mant.trim_start_matches('-');
    let point = mant.find('.').unwrap_or(mant.len()) as i64;
    let all: Vec<u8> = mant
        .bytes()
        .filter(|b| b.is_ascii_digit())
        .map(|b| b - b'0')
        .collect();
    let lead = all.iter().take_while(|&&d| d == 0).count();
    if lead == all.len() {
        return (vec![0], 0);
    }
    let mut digits = all[lead..].to_vec();
    while digits.len() > 1 && digits.last() == Some(&0) {
        digits.pop();
    }
    (digits, e + point - 1 - lead as i64)
}

/// round9 by string arithmetic on Rust's shortest `{:e}` digits (independent of the
/// implementation under test): half-up at the 9th decimal, then parse.
fn oracle_round9(x: f64) -> f64 {
    let (digits, exp) = sci_parts(&py_float_repr(x.abs()));
    // digit k (0-based) has weight 10^(exp - k); keep weights >= 10^-9.
    let keep = exp + 10; // number of digits with weight >= 1e-9
    if keep >= digits.len() as i64 {
        return x;
    }
    let mut kept: Vec<u8> = if keep > 0 {
        digits[..keep as usize].to_vec()
    } else {
        vec![]
    };
    let next = if keep >= 0 { digits[keep as usize] } else { 0 };
    let mut carry = next >= 5;
    for d in kept.iter_mut().rev() {
        if !carry {
            break;
        }
        if *d == 9 {
            *d = 0;
        } else {
            *d += 1;
            carry = false;
        }
    }
    let mut text: String = if carry { "1".into() } else { String::new() };
    text.extend(kept.iter().map(|d| char::from(b'0' + d)));
    if text.is_empty() {
        text.push('0');
    }
    let v: f64 = format!("{text}e-9").parse().unwrap();
    if x.is_sign_negative() { -v } else { v }
}

fn finite_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<u64>()
            .prop_map(f64::from_bits)
            .prop_filter("finite", |x| x.is_finite()),
        // subnormals
        (0u64..(1u64 << 52)).prop_map(f64::from_bits),
        (0u64..(1u64 << 52)).prop_map(|b| -f64::from_bits(b)),
        // the ranges agents actually send, and decimal-looking values near rounding ties
        -10.0f64..10.0,
        (-100_000_000_000i64..100_000_000_000).prop_map(|n| n as f64 / 1e10),
        Just(-0.0),
        Just(0.0),
        Just(1e16),
        Just(1e-4),
        Just(9_999_999_999_999_998.0),
    ]
}

/// Number of digits after the decimal point in Python `repr` of `x` (fixed notation), or
/// the equivalent for scientific notation.
fn fraction_digits(x: f64) -> i32 {
    let s = format!("{x:e}");
    let (mant, exp) = s.split_once('e').unwrap();
    let exp: i32 = exp.parse().unwrap();
    let digits = mant.chars().filter(|c| c.is_ascii_digit()).count() as i32;
    (digits - 1 - exp).max(0)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]

    #[test]
    fn float_repr_matches_oracle_and_round_trips(x in finite_f64()) {
        let s = py_float_repr(x);
        let oracle = oracle_repr(x);
        if s != oracle {
            // Rust's `{:e}` breaks exact ties between two shortest candidates differently from
            // Python (round-half-even, as David Gay's dtoa): both must round-trip, have the
            // same length, and ours must end in an even digit.
            let (ours, theirs) = (sci_parts(&s).0, sci_parts(&oracle).0);
            prop_assert_eq!(oracle.parse::<f64>().unwrap().to_bits(), x.to_bits());
            prop_assert_eq!(ours.len(), theirs.len(), "{} vs {}", s, oracle);
            prop_assert!(ours.last().unwrap() % 2 == 0, "{} vs {}", s, oracle);
        }
        let back: f64 = s.parse().unwrap();
        prop_assert_eq!(back.to_bits(), x.to_bits());
    }

    #[test]
    fn sci_parts_reads_every_layout(x in finite_f64()) {
        let (a, ea) = sci_parts(&py_float_repr(x));
        let (b, eb) = sci_parts(&format!("{:e}", x));
        prop_assert_eq!(ea, eb);
        prop_assert_eq!(a.len(), b.len());
    }

    #[test]
    fn fused_round9_formatting_matches_two_step(x in finite_f64()) {
        let mut fused = Vec::new();
        flk_core::canon::write_py_float_round9(&mut fused, x);
        prop_assert_eq!(String::from_utf8(fused).unwrap(), py_float_repr(round9(x)));
    }

    #[test]
    fn round9_is_idempotent_and_close(x in finite_f64()) {
        let r = round9(x);
        prop_assert_eq!(r.to_bits(), oracle_round9(x).to_bits(), "round9({:e})", x);
        prop_assert_eq!(round9(r).to_bits(), r.to_bits());
        prop_assert!(fraction_digits(r) <= 9, "{} -> {} has more than 9 decimals", x, r);
        if x.abs() < 1e6 {
            prop_assert!((r - x).abs() <= 5e-10 + 1e-15 * x.abs().max(1.0), "{} -> {}", x, r);
        }
        // Rounding keeps the sign (away from zero, never across it).
        prop_assert!(r == 0.0 || r.is_sign_negative() == x.is_sign_negative());
    }
}

fn sample_doc(epoch: u64, shard: &str, d: f64, coh: f64, r: f64, budget: f64) -> Value {
    let merkle = "ab".repeat(32);
    let pcs_id = flk_core::compute_pcs_id(&merkle, epoch, shard);
    json!({
        "pcs_id": pcs_id, "schema": "fractal-lba-kakeya", "version": "0.1",
        "shard_id": shard, "epoch": epoch, "attempt": 1, "sent_at": "2025-01-01T00:00:00Z",
        "seed": 7, "scales": [2, 4, 8, 16], "N_j": {"2": 3, "4": 9, "8": 27, "16": 81},
        "coh_star": coh, "v_star": [0.0, 0.0, 1.0], "D_hat": d, "r": r, "regime": "mixed",
        "budget": budget, "merkle_root": merkle,
        "ft": {"outbox_seq": 1, "degraded": false, "fallbacks": [], "clock_skew_ms": 0}
    })
}

fn signed(doc: &Value, key: &SigningMaterial) -> Value {
    let pcs = parse_pcs(&serde_json::to_vec(doc).unwrap()).unwrap();
    let mut doc = doc.clone();
    doc["sig"] = json!(key.sign_b64(&canonicalize(&pcs)));
    doc
}

fn verifies(doc: &Value, keys: &KeySet) -> bool {
    let pcs = parse_pcs(&serde_json::to_vec(doc).unwrap()).unwrap();
    keys.verify(
        &canonicalize(&pcs),
        pcs.sig.as_deref(),
        datetime!(2026-01-01 0:00 UTC),
    )
    .is_ok()
}

fn pcs_strategy() -> impl Strategy<Value = Value> {
    (
        0u64..(1u64 << 53),
        "[a-z0-9é😀\"\\\\-]{1,24}",
        -5.0f64..5.0,
        0.0f64..1.2,
        -1.0f64..2.0,
        -3.0f64..3.0,
    )
        .prop_map(|(e, s, d, c, r, b)| sample_doc(e, &s, d, c, r, b))
}

fn key_strategy() -> impl Strategy<Value = SigningMaterial> {
    prop_oneof![
        "[ -~]{1,40}".prop_map(|s| SigningMaterial::hmac(s.as_bytes(), HmacMode::Digest).unwrap()),
        "[ -~]{1,40}".prop_map(|s| SigningMaterial::hmac(s.as_bytes(), HmacMode::Payload).unwrap()),
        any::<[u8; 32]>().prop_map(|seed| SigningMaterial::ed25519_seed(&seed).unwrap()),
    ]
}

/// A float whose `round9` differs from `round9(v)`.
fn changed_float(v: f64, delta: f64) -> f64 {
    let candidate = v + delta;
    if round9(candidate) != round9(v) {
        candidate
    } else {
        v + 1.0
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn unsigned_fields_never_change_the_signature(
        doc in pcs_strategy(),
        key in key_strategy(),
        which in 0usize..9,
        n in 1i64..1_000_000,
        text in "[ -~]{0,20}",
    ) {
        let keys = KeySet::new(vec![TenantKey::new("k", key.verifying())]);
        let mut doc = signed(&doc, &key);
        prop_assert!(verifies(&doc, &keys));
        match which {
            0 => doc["N_j"]["8"] = json!(n),
            1 => doc["scales"] = json!([2, 4, 8, 16, 32 + n as u64 % 1000]),
            2 => doc["regime"] = json!("sticky"),
            3 => doc["ft"] = json!({"degraded": true, "fallbacks": [text]}),
            4 => doc["v_star"] = json!([n as f64, 1.5, -2.0]),
            5 => doc["seed"] = json!(n),
            6 => doc["attempt"] = json!(n),
            7 => doc["sent_at"] = json!("2031-05-06T07:08:09.123+02:00"),
            _ => doc["some_unknown_key"] = json!(text),
        }
        prop_assert!(verifies(&doc, &keys), "changing unsigned field {} broke the signature", which);
    }

    #[test]
    fn signed_fields_always_change_the_signature(
        doc in pcs_strategy(),
        key in key_strategy(),
        which in 0usize..8,
        delta in prop_oneof![1e-8f64..1.0, -1.0f64..-1e-8],
        other in "[a-z]{1,12}",
    ) {
        let keys = KeySet::new(vec![TenantKey::new("k", key.verifying())]);
        let mut doc = signed(&doc, &key);
        prop_assert!(verifies(&doc, &keys));
        let f = |d: &Value, k: &str| d[k].as_f64().unwrap();
        match which {
            0 => doc["pcs_id"] = json!("cd".repeat(32)),
            1 => doc["merkle_root"] = json!("ef".repeat(32)),
            2 => doc["epoch"] = json!((doc["epoch"].as_u64().unwrap() + 1) % (1u64 << 53)),
            3 => doc["shard_id"] = json!(format!("{}{}", doc["shard_id"].as_str().unwrap(), other)),
            4 => doc["D_hat"] = json!(changed_float(f(&doc, "D_hat"), delta)),
            5 => doc["coh_star"] = json!(changed_float(f(&doc, "coh_star"), delta)),
            6 => doc["r"] = json!(changed_float(f(&doc, "r"), delta)),
            _ => doc["budget"] = json!(changed_float(f(&doc, "budget"), delta)),
        }
        prop_assert!(!verifies(&doc, &keys), "changing signed field {} kept the signature valid", which);
    }
}

#[test]
fn canonical_payload_is_stable_under_reparse() {
    // Formatting then re-reading the rounded values gives the same payload (no drift).
    let f = SignedFields {
        pcs_id: "p",
        merkle_root: "m",
        epoch: 3,
        shard_id: "s",
        d_hat: 0.1234567885,
        coh_star: 1e-12,
        r: 2.5e16,
        budget: -4e-10,
    };
    let c = Canonical::of(&f);
    let text = String::from_utf8(c.payload.clone()).unwrap();
    assert_eq!(
        text,
        r#"{"D_hat":0.123456789,"budget":-0.0,"coh_star":0.0,"epoch":3,"merkle_root":"m","pcs_id":"p","r":2.5e+16,"shard_id":"s"}"#
    );
    let v: Value = serde_json::from_str(&text).unwrap();
    let again = SignedFields {
        d_hat: v["D_hat"].as_f64().unwrap(),
        coh_star: v["coh_star"].as_f64().unwrap(),
        r: v["r"].as_f64().unwrap(),
        budget: v["budget"].as_f64().unwrap(),
        ..f
    };
    assert_eq!(Canonical::of(&again).payload, c.payload);
}
