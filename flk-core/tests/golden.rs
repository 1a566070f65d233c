//! Reproduces every shared golden vector (copies of `shared/golden/*.json` kept in
//! `tests/data/`): canonical payload bytes, digests, HMAC and Ed25519 signatures, and every
//! verification outcome with its recomputed values.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use flk_core::{
    HmacMode, KeyMaterial, KeySet, Outcome, Policy, SigningMaterial, TenantKey, canonicalize,
    parse_pcs, verify,
};
use serde_json::Value;
use time::macros::datetime;

fn load(name: &str) -> Value {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

#[test]
fn signing_vectors_reproduce_payload_digest_and_signatures() {
    let doc = load("signing_vectors.json");
    let key = doc["hmac_key_utf8"].as_str().unwrap();
    let hmac = SigningMaterial::hmac(key.as_bytes(), HmacMode::Digest).unwrap();
    let seed = hex::decode(doc["ed25519_seed_hex"].as_str().unwrap()).unwrap();
    let ed = SigningMaterial::ed25519_seed(&seed).unwrap();
    let public = KeyMaterial::ed25519_b64(doc["ed25519_public_key_b64"].as_str().unwrap()).unwrap();
    let keys = KeySet::new(vec![
        TenantKey::new("hmac", hmac.verifying()),
        TenantKey::new("ed", public.clone()),
    ]);
    let now = datetime!(2026-01-01 0:00 UTC);
    let vectors = doc["vectors"].as_array().unwrap();
    assert!(vectors.len() >= 64);
    for (i, v) in vectors.iter().enumerate() {
        let body = serde_json::to_vec(&v["pcs"]).unwrap();
        let pcs = parse_pcs(&body).unwrap_or_else(|e| panic!("vector {i}: {e}"));
        let c = canonicalize(&pcs);
        assert_eq!(
            String::from_utf8_lossy(&c.payload),
            v["canonical_payload"].as_str().unwrap(),
            "vector {i}: payload"
        );
        assert_eq!(
            hex::encode(c.digest),
            v["digest_sha256_hex"].as_str().unwrap(),
            "vector {i}"
        );
        let want_hmac = v["sig_hmac_sha256_b64"].as_str().unwrap();
        let want_ed = v["sig_ed25519_b64"].as_str().unwrap();
        assert_eq!(hmac.sign_b64(&c), want_hmac, "vector {i}: hmac");
        assert_eq!(ed.sign_b64(&c), want_ed, "vector {i}: ed25519");
        assert_eq!(
            keys.verify(&c, Some(want_hmac), now),
            Ok(Some("hmac")),
            "vector {i}"
        );
        assert_eq!(
            keys.verify(&c, Some(want_ed), now),
            Ok(Some("ed")),
            "vector {i}"
        );
        // Payload mode signs the payload bytes themselves.
        let payload_mode = SigningMaterial::hmac(key.as_bytes(), HmacMode::Payload).unwrap();
        let sig = payload_mode.sign_raw(&c);
        let mut expect =
            <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(key.as_bytes()).unwrap();
        hmac::Mac::update(
            &mut expect,
            v["canonical_payload"].as_str().unwrap().as_bytes(),
        );
        assert_eq!(sig, hmac::Mac::finalize(expect).into_bytes().to_vec());
        assert!(!public.verify(&c, &B64.decode(want_hmac).unwrap()));
    }
}

#[test]
fn verify_vectors_reproduce_outcomes() {
    let doc = load("verify_vectors.json");
    let key = doc["hmac_key_utf8"].as_str().unwrap();
    let policy: Policy = serde_json::from_value(doc["policy"].clone()).unwrap();
    assert_eq!(policy, Policy::default(), "vectors use the default policy");
    let keys = KeySet::new(vec![TenantKey::new(
        "k",
        KeyMaterial::hmac(key.as_bytes(), HmacMode::Digest).unwrap(),
    )]);
    let now = datetime!(2026-01-01 0:00 UTC);
    let vectors = doc["vectors"].as_array().unwrap();
    assert!(vectors.len() >= 100);
    let mut seen = std::collections::BTreeSet::new();
    for (i, v) in vectors.iter().enumerate() {
        let body = serde_json::to_vec(&v["pcs"]).unwrap();
        let e = &v["expect"];
        let pcs = parse_pcs(&body).unwrap_or_else(|err| panic!("vector {i}: {err}"));
        let c = canonicalize(&pcs);
        keys.verify(&c, pcs.sig.as_deref(), now)
            .unwrap_or_else(|err| panic!("vector {i}: signature: {err}"));
        let verdict = verify(&pcs, &policy);
        let ctx = format!("vector {i} ({})", e["reason_code"]);
        assert_eq!(
            verdict.outcome.as_str(),
            e["outcome"].as_str().unwrap(),
            "{ctx}"
        );
        assert_eq!(
            verdict.reason_code.as_str(),
            e["reason_code"].as_str().unwrap(),
            "{ctx}"
        );
        assert_eq!(
            verdict.outcome.accepted(),
            e["accepted"].as_bool().unwrap(),
            "{ctx}"
        );
        assert_eq!(
            verdict.outcome.escalated(),
            e["escalated"].as_bool().unwrap(),
            "{ctx}"
        );
        assert_eq!(
            u64::from(verdict.outcome.http_status()),
            e["http_status"].as_u64().unwrap()
        );
        assert_eq!(
            verdict.recomputed_d_hat,
            e["recomputed_D_hat"].as_f64(),
            "{ctx}: D_hat"
        );
        assert_eq!(
            verdict.recomputed_budget,
            e["recomputed_budget"].as_f64().unwrap(),
            "{ctx}: budget"
        );
        seen.insert(verdict.reason_code.as_str());
        if verdict.outcome == Outcome::Accepted {
            assert_eq!(verdict.regime, pcs.regime);
        }
    }
    assert_eq!(seen.len(), 9, "every reason code is exercised: {seen:?}");
}
