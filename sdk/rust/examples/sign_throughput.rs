//! A plain throughput probe (no criterion): per signing kind, signatures and verifications per
//! second, over wall-clock time and over this thread's CPU time (Linux
//! `/proc/thread-self/schedstat`; the per-core figure when other processes share the machine),
//! medians of 7 rounds; and a PCS built from a 10,000-point cloud.
//! `cargo run --release -p flk-sdk --example sign_throughput`.

use std::hint::black_box;
use std::time::Instant;

use flk_sdk::construct::{self, BuildParams};
use flk_sdk::{HmacMode, Pcs, SigningKey};

/// Nanoseconds this thread has run on a CPU (0 where the file does not exist).
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// (operations per wall second, per CPU second), medians of 7 rounds of `n`.
fn rates(n: usize, mut f: impl FnMut()) -> (f64, f64) {
    let (mut wall, mut cpu) = (Vec::new(), Vec::new());
    for _ in 0..7 {
        let (t, c) = (Instant::now(), cpu_ns());
        for _ in 0..n {
            f();
        }
        wall.push(n as f64 / t.elapsed().as_secs_f64());
        cpu.push(n as f64 / ((cpu_ns() - c).max(1) as f64 / 1e9));
    }
    (median(wall), median(cpu))
}

fn main() {
    let mut p = Pcs::example();
    p.d_hat = 1.234_567_891_234;
    p.coh_star = 0.712_345_678_9;
    p.r = 0.318_765_432_1;
    p.budget = 0.456_789_123_4;
    let (w, c) = rates(200_000, || {
        black_box(black_box(&p).canonical());
    });
    println!("canonical payload + digest: {w:.0}/s wall, {c:.0}/s cpu");
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
            5_000,
        ),
    ] {
        let (sw, sc) = rates(n, || {
            let c = black_box(&p).canonical();
            let mut buf = [0u8; 88];
            black_box(key.sign(&c).encode_base64(&mut buf).len());
        });
        let sig = key.sign(&p.canonical());
        let vk = key.verifying_key();
        let (vw, vc) = rates(n, || {
            black_box(vk.verify(&black_box(&p).canonical(), sig.as_bytes()));
        });
        println!("{name}: sign {sw:.0}/s wall {sc:.0}/s cpu; verify {vw:.0}/s wall {vc:.0}/s cpu");
    }
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
    let (w, c) = rates(3, || {
        let raw = construct::raw_rows(
            points
                .iter()
                .enumerate()
                .map(|(i, p)| (1_700_000_000.0 + 0.25 * i as f64, p)),
        );
        black_box(construct::build_pcs(&points, &raw, &params).unwrap());
    });
    println!(
        "pcs from 10,000 points: {:.1} ms wall, {:.1} ms cpu",
        1e3 / w,
        1e3 / c
    );
}
