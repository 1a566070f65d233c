//! Cross-check with an independent verifier in another language:
//! `tests/python/verify_proofs.py` (standard library only) recomputes roots from the entries
//! and verifies the proofs this crate generates, and rejects corrupted ones.

use std::path::Path;
use std::process::Command;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::common::{entries, mem_log};

const N: u64 = 1024;

fn hexes(proof: &[flk_tlog::Hash]) -> Vec<String> {
    proof.iter().map(hex::encode).collect()
}

fn proofs_json() -> Value {
    let log = mem_log(N, 300);
    let mut rng = StdRng::seed_from_u64(9162);
    let roots: Vec<Value> = (1..=N)
        .map(|s| json!({"size": s, "root": hex::encode(log.root_at(s).unwrap())}))
        .collect();
    let mut inclusion = Vec::new();
    let mut pairs: Vec<(u64, u64)> = (1..=16).flat_map(|s| (0..s).map(move |i| (i, s))).collect();
    pairs.extend([(0, N), (N - 1, N), (255, 256), (256, 257), (511, 1000)]);
    for _ in 0..3000 {
        let s = rng.gen_range(1..=N);
        pairs.push((rng.gen_range(0..s), s));
    }
    for (i, s) in pairs {
        inclusion.push(
            json!({"index": i, "size": s, "proof": hexes(&log.inclusion_proof(i, s).unwrap())}),
        );
    }
    let mut consistency = Vec::new();
    let mut pairs: Vec<(u64, u64)> = (1..=16)
        .flat_map(|s| (1..=s).map(move |m| (m, s)))
        .collect();
    pairs.extend([(1, N), (N - 1, N), (256, 257), (255, 1000), (512, 1024)]);
    for _ in 0..3000 {
        let (a, b) = (rng.gen_range(1..=N), rng.gen_range(1..=N));
        pairs.push((a.min(b), a.max(b)));
    }
    for (m, s) in pairs {
        consistency.push(
            json!({"first": m, "second": s, "proof": hexes(&log.consistency_proof(m, s).unwrap())}),
        );
    }
    json!({
        "entries": entries(0..N).iter().map(hex::encode).collect::<Vec<_>>(),
        "roots": roots,
        "inclusion": inclusion,
        "consistency": consistency,
        "checkpoint_body": log.checkpoint().body(),
    })
}

fn run_python(data: &Value, dir: &Path, name: &str) -> std::process::Output {
    let file = dir.join(name);
    std::fs::write(&file, serde_json::to_vec(data).unwrap()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/verify_proofs.py");
    Command::new("python3")
        .arg(script)
        .arg(&file)
        .output()
        .expect("python3 must be installed to run the cross-language check")
}

/// Flips the first hex digit of a hash string.
fn corrupt(h: &mut Value) {
    let s = h.as_str().unwrap();
    let first = if s.starts_with('0') { "1" } else { "0" };
    *h = Value::String(format!("{first}{}", &s[1..]));
}

#[test]
fn python_verifies_our_proofs_and_rejects_corrupted_ones() {
    let dir = tempfile::tempdir().unwrap();
    let data = proofs_json();
    let out = run_python(&data, dir.path(), "good.json");
    assert!(
        out.status.success(),
        "python rejected valid proofs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ok:"));

    let mut bad = data.clone();
    corrupt(&mut bad["inclusion"][3000]["proof"][2]);
    let out = run_python(&bad, dir.path(), "bad_inclusion.json");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("inclusion"));

    let mut bad = data.clone();
    let last = bad["consistency"].as_array().unwrap().len() - 1;
    let proof_len = bad["consistency"][last]["proof"].as_array().unwrap().len();
    assert!(proof_len > 0);
    corrupt(&mut bad["consistency"][last]["proof"][proof_len - 1]);
    let out = run_python(&bad, dir.path(), "bad_consistency.json");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("consistency"));

    let mut bad = data.clone();
    let mut body = bad["checkpoint_body"].as_str().unwrap().to_owned();
    body = body.replacen("\n1024\n", "\n1023\n", 1);
    bad["checkpoint_body"] = Value::String(body);
    let out = run_python(&bad, dir.path(), "bad_checkpoint.json");
    assert!(!out.status.success());

    let mut bad = data;
    bad["inclusion"][0]["proof"]
        .as_array_mut()
        .unwrap()
        .push(json!(hex::encode([0u8; 32])));
    let out = run_python(&bad, dir.path(), "long_inclusion.json");
    assert!(!out.status.success());
}
