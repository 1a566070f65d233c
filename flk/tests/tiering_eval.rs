//! `flk tiering gen-trace` and `flk tiering eval` as a user runs them: the JSON report's
//! fields, and exit code 1 with a message naming the problem on bad input.

use std::process::Command;

fn flk(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_flk"))
        .args(args)
        .output()
        .expect("run flk")
}

fn gen_trace(dir: &std::path::Path, format: &str) -> String {
    let out = dir.join(format!("trace.{format}"));
    let o = flk(&[
        "tiering",
        "gen-trace",
        "--seed",
        "3",
        "--requests",
        "4000",
        "--objects-per-tenant",
        "500",
        "--tenants",
        "3",
        "--out",
        out.to_str().unwrap(),
        "--format",
        format,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    out.to_str().unwrap().to_owned()
}

#[test]
fn eval_reports_every_policy_as_json() {
    let dir = tempfile::tempdir().unwrap();
    for format in ["csv", "oracle-general"] {
        let trace = gen_trace(dir.path(), format);
        let o = flk(&[
            "tiering",
            "eval",
            "--trace",
            &trace,
            "--format",
            format,
            "--hot-capacity-bytes",
            "500000",
            "--holdout",
            "0.3",
            "--json",
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let names: Vec<&str> = v["policies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "lru",
                "sieve",
                "w_tinylfu",
                "predictive_ses",
                "predictive_logreg"
            ],
            "{format}: {v}"
        );
        for p in v["policies"].as_array().unwrap() {
            for field in [
                "hit_ratio",
                "byte_hit_ratio",
                "p95_read_ms",
                "monthly_cost_usd",
            ] {
                assert!(p[field].as_f64().is_some(), "{format}: {field} in {p}");
            }
        }
        assert!(v["best_baseline"].is_string());
        assert!(v["predictive_beats_best_baseline"].is_boolean());
        assert_eq!(v["evaluated_requests"], 1200);
    }
}

#[test]
fn bad_input_exits_1_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "timestamp,tenant_id,key,size_bytes\n1,a,k,10\n2,a,k,lots\n",
    )
    .unwrap();
    let bad = bad.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "--trace",
                bad,
                "--format",
                "csv",
                "--hot-capacity-bytes",
                "100",
            ],
            "line 3",
        ),
        (
            vec![
                "--trace",
                "/nonexistent/t.csv",
                "--format",
                "csv",
                "--hot-capacity-bytes",
                "1",
            ],
            "cannot read trace",
        ),
    ];
    let good = gen_trace(dir.path(), "csv");
    let truncated = dir.path().join("t.bin");
    std::fs::write(&truncated, [0u8; 30]).unwrap();
    let truncated = truncated.to_str().unwrap();
    let more: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "--trace",
                &good,
                "--format",
                "csv",
                "--hot-capacity-bytes",
                "0",
            ],
            "capacity",
        ),
        (
            vec![
                "--trace",
                &good,
                "--format",
                "csv",
                "--hot-capacity-bytes",
                "9",
                "--holdout",
                "1",
            ],
            "holdout",
        ),
        (
            vec![
                "--trace",
                truncated,
                "--format",
                "oracle-general",
                "--hot-capacity-bytes",
                "9",
            ],
            "byte offset 24",
        ),
    ];
    for (args, want) in cases.into_iter().chain(more) {
        let mut all = vec!["tiering", "eval"];
        all.extend(&args);
        let o = flk(&all);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
        if want == "line 3" {
            assert!(stderr.contains("size_bytes"), "{stderr}");
        }
    }
}
