//! Every golden vector: the signing vectors (canonical payload, digest, HMAC in digest mode,
//! Ed25519) and the construction vectors (every signal from raw points), read from copies of
//! `shared/golden/` kept beside this test and checked against the shared originals when those
//! are present.

use base64::Engine as _;
use flk_sdk::construct::{self, BuildParams};
use flk_sdk::{HmacMode, Pcs, SigningKey, VerifyingKey, hex};
use serde_json::Value;

fn data(name: &str) -> Value {
    let here = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/");
    let bytes = std::fs::read(format!("{here}{name}")).unwrap();
    let shared = format!(
        "{}/../../../shared/golden/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    if let Ok(original) = std::fs::read(&shared) {
        assert!(original == bytes, "tests/data/{name} differs from {shared}");
    }
    serde_json::from_slice(&bytes).unwrap()
}

#[test]
fn every_signing_vector() {
    let file = data("signing_vectors.json");
    let hmac = SigningKey::hmac(
        file["hmac_key_utf8"].as_str().unwrap().as_bytes(),
        HmacMode::Digest,
    )
    .unwrap();
    let ed = SigningKey::ed25519_seed_hex(file["ed25519_seed_hex"].as_str().unwrap()).unwrap();
    let public = base64::engine::general_purpose::STANDARD.encode(ed.public_key().unwrap());
    assert_eq!(public, file["ed25519_public_key_b64"].as_str().unwrap());
    let vectors = file["vectors"].as_array().unwrap();
    assert_eq!(vectors.len(), 64);
    for (i, v) in vectors.iter().enumerate() {
        let pcs = Pcs::from_value(&v["pcs"]).unwrap();
        let c = pcs.canonical();
        assert_eq!(
            std::str::from_utf8(&c.payload).unwrap(),
            v["canonical_payload"].as_str().unwrap(),
            "vector {i}"
        );
        assert_eq!(
            hex::encode(&c.digest),
            v["digest_sha256_hex"].as_str().unwrap()
        );
        let h = hmac.sign(&c).to_base64();
        assert_eq!(h, v["sig_hmac_sha256_b64"].as_str().unwrap(), "vector {i}");
        let e = ed.sign(&c).to_base64();
        assert_eq!(e, v["sig_ed25519_b64"].as_str().unwrap(), "vector {i}");
        assert!(hmac.verifying_key().verify_b64(&c, &h));
        assert!(
            VerifyingKey::ed25519_b64(&public)
                .unwrap()
                .verify_b64(&c, &e)
        );
        assert_eq!(pcs.expected_pcs_id(), pcs.pcs_id, "vector {i}");
        // The JSON the SDK sends reads back to the same record.
        assert_eq!(Pcs::from_json(&pcs.to_json()).unwrap(), pcs);
    }
}

/// The points, raw bytes and parameters of one construction vector.
fn construction_input(v: &Value) -> (Vec<[f64; 3]>, Vec<u8>, BuildParams) {
    let params = &v["params"];
    let points: Vec<[f64; 3]> = v["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let p = p.as_array().unwrap();
            [
                p[0].as_f64().unwrap(),
                p[1].as_f64().unwrap(),
                p[2].as_f64().unwrap(),
            ]
        })
        .collect();
    let raw = construct::raw_rows(
        points
            .iter()
            .enumerate()
            .map(|(i, p)| (1_700_000_000.0 + 0.25 * i as f64, p)),
    );
    let mut bp = BuildParams::new(
        params["shard_id"].as_str().unwrap(),
        params["epoch"].as_u64().unwrap(),
        params["coherence_seed"].as_u64().unwrap() as u32,
    );
    bp.scales = params["scales"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_u64().unwrap())
        .collect();
    (points, raw, bp)
}

#[test]
fn every_construction_vector() {
    let file = data("construction_vectors.json");
    let vectors = file["vectors"].as_array().unwrap();
    assert_eq!(vectors.len(), 12);
    // The field agent of these vectors signs in payload mode (HMAC over the payload itself).
    let key = SigningKey::hmac(b"testsecret", HmacMode::Payload).unwrap();
    let mut failures = Vec::new();
    for v in vectors {
        let name = v["name"].as_str().unwrap();
        let e = &v["expected"];
        let (points, raw, bp) = construction_input(v);
        assert_eq!(
            raw.len() as u64,
            v["raw_bytes_len"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(
            hex::encode(&sha2_digest(&raw)),
            v["raw_bytes_hex_sha256"].as_str().unwrap(),
            "{name}"
        );
        let s = construct::signals(&points, &raw, &bp);
        let mut check = |what: &str, ok: bool, got: String| {
            if !ok {
                failures.push(format!("{name}: {what} = {got}, expected {}", e[what]));
            }
        };
        for (scale, n) in &s.n_j {
            check(
                "N_j",
                e["N_j"][scale.to_string()].as_u64() == Some(*n),
                format!("{:?}", s.n_j),
            );
        }
        check(
            "D_hat",
            s.d_hat == e["D_hat"].as_f64(),
            format!("{:?}", s.d_hat),
        );
        check(
            "coh_star",
            Some(s.coh_star) == e["coh_star"].as_f64(),
            s.coh_star.to_string(),
        );
        let want_v: Vec<f64> = e["v_star"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        let close = s
            .v_star
            .iter()
            .zip(&want_v)
            .all(|(a, b)| (a - b).abs() <= 1e-12);
        check("v_star", close, format!("{:?}", s.v_star));
        check("r", Some(s.r) == e["r"].as_f64(), s.r.to_string());
        check(
            "regime",
            Some(s.regime) == e["regime"].as_str(),
            s.regime.to_string(),
        );
        check(
            "budget",
            Some(s.budget) == e["budget"].as_f64(),
            s.budget.to_string(),
        );
        check(
            "merkle_root",
            Some(s.merkle_root.as_str()) == e["merkle_root"].as_str(),
            s.merkle_root.clone(),
        );
        check(
            "merkle_n_leaves",
            Some(s.merkle_n_leaves as u64) == e["merkle_n_leaves"].as_u64(),
            s.merkle_n_leaves.to_string(),
        );
        check(
            "pcs_id",
            Some(s.pcs_id.as_str()) == e["pcs_id"].as_str(),
            s.pcs_id.clone(),
        );
        let mut pcs = construct::build_pcs(&points, &raw, &bp).unwrap();
        let c = pcs.canonical();
        let payload = String::from_utf8(c.payload.clone()).unwrap();
        check(
            "signature_payload",
            Some(payload.as_str()) == e["signature_payload"].as_str(),
            payload.clone(),
        );
        pcs.sign(&key);
        let sig = pcs.sig.clone().unwrap();
        check(
            "sig_hmac_sha256_b64",
            Some(sig.as_str()) == e["sig_hmac_sha256_b64"].as_str(),
            sig,
        );
        let mut bp1024 = bp.clone();
        bp1024.merkle_chunk_size = 1024;
        let (root, _) = construct::merkle::merkle_root(&raw, 1024);
        check(
            "merkle_root_chunk1024",
            Some(root.as_str()) == v["expected_variants"]["merkle_root_chunk1024"].as_str(),
            root.clone(),
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn sha2_digest(b: &[u8]) -> [u8; 32] {
    flk_sdk::canon::sha256(b)
}

/// The SDK ships its own copy of the server's contract (it must build outside this
/// workspace): the copy must stay the workspace's `proto/flk/v1/verify.proto`.
#[test]
fn the_proto_copy_is_the_servers() {
    let copy = concat!(env!("CARGO_MANIFEST_DIR"), "/proto/flk/v1/verify.proto");
    let server = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../proto/flk/v1/verify.proto"
    );
    if let Ok(original) = std::fs::read(server) {
        assert!(
            std::fs::read(copy).unwrap() == original,
            "sdk/rust/proto/flk/v1/verify.proto differs from proto/flk/v1/verify.proto: copy it again"
        );
    }
}
