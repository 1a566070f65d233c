//! A plain throughput probe (no criterion): signatures per second per core for each signing
//! kind, the best of several timed rounds (robust when other processes share the machine).
//! `cargo run --release -p flk-sdk --example sign_throughput`.

use std::hint::black_box;
use std::time::Instant;

use flk_sdk::{HmacMode, Pcs, SigningKey};

fn best_rate(rounds: usize, n: usize, mut f: impl FnMut()) -> f64 {
    (0..rounds)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..n {
                f();
            }
            n as f64 / t.elapsed().as_secs_f64()
        })
        .fold(0.0, f64::max)
}

fn main() {
    let mut p = Pcs::example();
    p.d_hat = 1.234_567_891_234;
    p.coh_star = 0.712_345_678_9;
    p.r = 0.318_765_432_1;
    p.budget = 0.456_789_123_4;
    let canon = best_rate(9, 200_000, || {
        black_box(black_box(&p).canonical());
    });
    println!("canonical payload + digest: {canon:.0}/s");
    for (name, key, n) in [
        (
            "hmac digest",
            SigningKey::hmac(b"testsecret", HmacMode::Digest).unwrap(),
            200_000,
        ),
        (
            "hmac payload",
            SigningKey::hmac(b"testsecret", HmacMode::Payload).unwrap(),
            200_000,
        ),
        (
            "ed25519",
            SigningKey::ed25519_seed(&[7u8; 32]).unwrap(),
            10_000,
        ),
    ] {
        let sign = best_rate(9, n, || {
            let c = black_box(&p).canonical();
            let mut buf = [0u8; 88];
            black_box(key.sign(&c).encode_base64(&mut buf).len());
        });
        let sig = key.sign(&p.canonical());
        let vk = key.verifying_key();
        let verify = best_rate(9, n, || {
            black_box(vk.verify(&black_box(&p).canonical(), sig.as_bytes()));
        });
        println!("{name}: sign {sign:.0}/s, verify {verify:.0}/s");
    }
}
