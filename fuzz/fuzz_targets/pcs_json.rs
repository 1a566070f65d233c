//! Fuzz target: a PCS as JSON bytes (the REST body and gRPC `pcs_json`), through flk-core's
//! strict parser, canonicalization, the signature check and the verification rules, as
//! svc-verify runs them. None of it may panic, and a parsed PCS
//! must canonicalize to the same digest twice.
#![no_main]

use flk_core::{HmacMode, KeyMaterial, KeySet, Policy, TenantKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(pcs) = flk_core::parse_pcs(data) else {
        return;
    };
    let canonical = flk_core::canonicalize(&pcs);
    assert_eq!(canonical.digest, flk_core::canonicalize(&pcs).digest);
    // The golden vectors' HMAC key (digest mode) and Ed25519 public key: both signature
    // checks run on every parsed PCS.
    let now = time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
    if let Ok(hmac) = KeyMaterial::hmac(b"testsecret", HmacMode::Digest) {
        let keys = KeySet::new(vec![TenantKey::new("k1", hmac)]);
        let _ = keys.verify(&canonical, pcs.sig.as_deref(), now);
    }
    if let Ok(ed) = KeyMaterial::ed25519_b64("ebVWLo/mVPlAeLES6KmLp5AfhTrmlb7X4OORC60ElmQ=") {
        let keys = KeySet::new(vec![TenantKey::new("k2", ed)]);
        let _ = keys.verify(&canonical, pcs.sig.as_deref(), now);
    }
    let verdict = flk_core::verify(&pcs, &Policy::default());
    let _ = verdict.outcome.http_status();
    let _ = flk_core::verify::recompute_d_hat(&pcs);
});
