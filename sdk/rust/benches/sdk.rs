//! flk-sdk's throughput per core (criterion, one thread): canonical payload + signature per
//! PCS for HMAC (digest and payload modes) and Ed25519, verification of each, and building a
//! PCS from a 10,000-point cloud (raw rows, N_j, D_hat, coherence over 100 directions, zlib,
//! Merkle). Run: `cargo bench -p flk-sdk --bench sdk` (figures in docs/BENCHMARKS.md).

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use flk_sdk::construct::{self, BuildParams};
use flk_sdk::{HmacMode, Pcs, SigningKey};

fn pcs() -> Pcs {
    let mut p = Pcs::example();
    p.d_hat = 1.234_567_891_234;
    p.coh_star = 0.712_345_678_9;
    p.r = 0.318_765_432_1;
    p.budget = 0.456_789_123_4;
    p
}

fn signing(c: &mut Criterion) {
    let p = pcs();
    let keys = [
        (
            "hmac_digest",
            SigningKey::hmac(b"testsecret", HmacMode::Digest).unwrap(),
        ),
        (
            "hmac_payload",
            SigningKey::hmac(b"testsecret", HmacMode::Payload).unwrap(),
        ),
        ("ed25519", SigningKey::ed25519_seed(&[7u8; 32]).unwrap()),
    ];
    let mut g = c.benchmark_group("sign");
    g.throughput(Throughput::Elements(1));
    for (name, key) in &keys {
        // What an agent does per PCS: canonical payload, digest, signature, base64.
        g.bench_function(*name, |b| {
            b.iter(|| {
                let c = black_box(&p).canonical();
                let mut buf = [0u8; 88];
                black_box(key.sign(&c).encode_base64(&mut buf).len())
            })
        });
    }
    g.finish();
    let mut g = c.benchmark_group("verify");
    g.throughput(Throughput::Elements(1));
    for (name, key) in &keys {
        let sig = key.sign(&p.canonical());
        let vk = key.verifying_key();
        g.bench_function(*name, |b| {
            b.iter(|| black_box(vk.verify(&black_box(&p).canonical(), sig.as_bytes())))
        });
    }
    g.finish();
}

fn construction(c: &mut Criterion) {
    // A 10,000-point cloud in the unit cube (a deterministic LCG), 6 decimals like the agents'.
    let mut s = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        s = s
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((s >> 11) as f64 / (1u64 << 53) as f64 * 1e6).round() / 1e6
    };
    let points: Vec<[f64; 3]> = (0..10_000).map(|_| [next(), next(), next()]).collect();
    let params = BuildParams::new("bench-shard", 1, 42);
    let mut g = c.benchmark_group("construct");
    g.sample_size(20);
    g.bench_function("pcs_from_10k_points", |b| {
        b.iter_batched(
            || points.clone(),
            |pts| {
                let raw = construct::raw_rows(
                    pts.iter()
                        .enumerate()
                        .map(|(i, p)| (1_700_000_000.0 + 0.25 * i as f64, p)),
                );
                black_box(construct::build_pcs(&pts, &raw, &params).unwrap())
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, signing, construction);
criterion_main!(benches);
