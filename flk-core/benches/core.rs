//! Criterion benchmarks of the hot domain path: canonicalize + SHA-256 + HMAC sign/verify,
//! Ed25519 verify (single and batched), and full parse + signature + verification of a
//! typical PCS body. Results go to docs/BENCHMARKS.md.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use ed25519_dalek::{Signer, SigningKey};
use flk_core::canon::{SignedFields, canonical_payload_into, sha256};
use flk_core::{
    Canonical, HmacMode, KeySet, Policy, SigningMaterial, TenantKey, canonicalize, parse_pcs,
    verify,
};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::hint::black_box;
use time::macros::datetime;

const BODY: &str = r#"{"pcs_id":"1145fe53d3cb6b4dfcbf92a878ded40faf7cac9788e95c25282d4b10b862ebad","schema":"fractal-lba-kakeya","version":"0.1","shard_id":"shard-080","epoch":713474,"attempt":1,"sent_at":"2025-01-01T00:00:00Z","seed":579,"scales":[2,4,8,16,32],"N_j":{"2":25,"4":88,"8":338,"16":1236,"32":7040},"coh_star":0.879880132,"v_star":[0.0,0.0,1.0],"D_hat":1.941447818,"r":0.3,"regime":"mixed","budget":0.329510567,"merkle_root":"888908fa84bce53196546a49b5c0e1f514619412a5a942173565163e8c2cb7a0","sig":"SIG","ft":{"outbox_seq":1,"degraded":false,"fallbacks":[],"clock_skew_ms":0}}"#;

fn fields() -> SignedFields<'static> {
    SignedFields {
        pcs_id: "1145fe53d3cb6b4dfcbf92a878ded40faf7cac9788e95c25282d4b10b862ebad",
        merkle_root: "888908fa84bce53196546a49b5c0e1f514619412a5a942173565163e8c2cb7a0",
        epoch: 713474,
        shard_id: "shard-080",
        d_hat: 1.941447818,
        coh_star: 0.879880132,
        r: 0.3,
        budget: 0.329510567,
    }
}

fn signing(c: &mut Criterion) {
    let hmac = SigningMaterial::hmac(b"testsecret", HmacMode::Digest).unwrap();
    let keys = KeySet::new(vec![TenantKey::new("k", hmac.verifying())]);
    let now = datetime!(2026-01-01 0:00 UTC);
    let f = fields();
    let sig = hmac.sign_b64(&Canonical::of(&f));
    let mac = Hmac::<Sha256>::new_from_slice(b"testsecret").unwrap();

    let mut g = c.benchmark_group("signing");
    g.throughput(Throughput::Elements(1));
    g.bench_function("canonicalize", |b| {
        let mut buf = Vec::with_capacity(256);
        b.iter(|| {
            canonical_payload_into(black_box(&f), &mut buf);
            black_box(buf.len())
        })
    });
    g.bench_function("canonicalize+sha256+hmac_sign", |b| {
        let mut buf = Vec::with_capacity(256);
        b.iter(|| {
            canonical_payload_into(black_box(&f), &mut buf);
            let digest = sha256(&buf);
            let mut m = mac.clone();
            m.update(&digest);
            black_box(m.finalize().into_bytes())
        })
    });
    g.bench_function("canonicalize+sha256+hmac_verify", |b| {
        b.iter(|| {
            let c = Canonical::of(black_box(&f));
            black_box(keys.verify(&c, Some(&sig), now).is_ok())
        })
    });
    g.bench_function("hmac_sha256_256B_baseline", |b| {
        let data = [7u8; 256];
        b.iter(|| {
            let mut m = mac.clone();
            m.update(black_box(&data));
            black_box(m.finalize().into_bytes())
        })
    });
    g.finish();
}

fn ed25519(c: &mut Criterion) {
    let ed = SigningMaterial::ed25519_seed(&[9u8; 32]).unwrap();
    let vk = ed.verifying();
    let canon = Canonical::of(&fields());
    let sig = ed.sign_raw(&canon);
    let mut g = c.benchmark_group("ed25519");
    g.throughput(Throughput::Elements(1));
    g.bench_function("verify_strict_single", |b| {
        b.iter(|| black_box(vk.verify(&canon, &sig)))
    });

    const N: usize = 64;
    let keys: Vec<SigningKey> = (0..N)
        .map(|i| SigningKey::from_bytes(&[i as u8 + 1; 32]))
        .collect();
    let msgs: Vec<[u8; 32]> = (0..N).map(|i| sha256(&[i as u8])).collect();
    let sigs: Vec<_> = keys.iter().zip(&msgs).map(|(k, m)| k.sign(m)).collect();
    let vks: Vec<_> = keys.iter().map(|k| k.verifying_key()).collect();
    let refs: Vec<&[u8]> = msgs.iter().map(|m| m.as_slice()).collect();
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("verify_batch_64", |b| {
        b.iter(|| black_box(ed25519_dalek::verify_batch(&refs, &sigs, &vks).is_ok()))
    });
    g.finish();
}

fn full_path(c: &mut Criterion) {
    let hmac = SigningMaterial::hmac(b"testsecret", HmacMode::Digest).unwrap();
    let keys = KeySet::new(vec![TenantKey::new("k", hmac.verifying())]);
    let now = datetime!(2026-01-01 0:00 UTC);
    let policy = Policy::default();
    let unsigned = parse_pcs(BODY.as_bytes()).unwrap();
    let sig = hmac.sign_b64(&canonicalize(&unsigned));
    let body = BODY.replace("\"SIG\"", &format!("\"{sig}\"")).into_bytes();

    let mut g = c.benchmark_group("pcs");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse", |b| {
        b.iter(|| black_box(parse_pcs(black_box(&body)).is_ok()))
    });
    g.bench_function("parse+canonicalize+hmac_verify+verify", |b| {
        b.iter(|| {
            let pcs = parse_pcs(black_box(&body)).unwrap();
            let c = canonicalize(&pcs);
            keys.verify(&c, pcs.sig.as_deref(), now).unwrap();
            black_box(verify(&pcs, &policy))
        })
    });
    g.bench_function("verify_rules_only", |b| {
        b.iter_batched_ref(
            || parse_pcs(&body).unwrap(),
            |pcs| black_box(verify(pcs, &policy)),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, signing, ed25519, full_path);
criterion_main!(benches);
