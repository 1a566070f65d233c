//! `flk bench` and `flk demo` end to end: the real binary against a `flk up` started by the
//! test (REST and gRPC on the gateway's port, gRPC on svc-verify directly), checking that every
//! kind of the mix got the answer PROTOCOL.md requires; and the errors a user sees for an
//! unreachable server, a bad mix and a wrong key.

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Output};

use serde_json::Value;

fn flk(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flk"))
        .args(args)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs `flk bench --json` with `extra` arguments and returns its report.
fn bench_json(url: &str, extra: &[&str]) -> Value {
    let mut args = vec![
        "bench",
        "--url",
        url,
        "--hmac-key",
        common::SECRET,
        "--json",
        "--quiet",
    ];
    args.extend_from_slice(extra);
    let out = flk(&args);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "flk bench failed\nstdout:\n{stdout}\nstderr:\n{}",
        text(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// Zero mismatches, every kind present with only the answers it must get, every reason code
/// of the verification rules seen.
fn assert_every_kind_right(report: &Value, expected_count: u64) {
    assert_eq!(report["mismatches"], 0, "{report:#}");
    assert_eq!(report["failed"], 0, "{report:#}");
    assert_eq!(
        report["completed"].as_u64().unwrap() + report["skipped"].as_u64().unwrap(),
        expected_count,
        "{report:#}"
    );
    let kinds = report["kinds"].as_object().unwrap();
    let got = |kind: &str| -> BTreeMap<String, u64> {
        let k = &kinds
            .get(kind)
            .unwrap_or_else(|| panic!("no {kind} item: {report:#}"));
        assert!(k["sent"].as_u64().unwrap() > 0, "{report:#}");
        k["got"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(l, n)| (l.clone(), n.as_u64().unwrap()))
            .collect()
    };
    let only = |kind: &str, label: &str| {
        let g = got(kind);
        assert_eq!(g.keys().collect::<Vec<_>>(), vec![label], "{kind}: {g:?}");
    };
    only("accepted", "200 accepted");
    only("escalated", "202 escalated");
    only("rejected", "202 rejected");
    only("tampered", "401 signature_invalid");
    let dup = got("duplicate");
    assert!(
        dup.keys().all(|l| l.ends_with(" duplicate")),
        "duplicates: {dup:?}"
    );
    let reasons = report["reasons"].as_object().unwrap();
    for code in [
        "ok",
        "regime_mismatch",
        "budget_deviation",
        "degraded_agent",
        "pcs_id_mismatch",
        "d_hat_recompute_failed",
        "d_hat_out_of_tolerance",
        "coh_star_out_of_bounds",
        "r_out_of_bounds",
    ] {
        assert!(reasons.contains_key(code), "no {code}: {report:#}");
    }
    assert!(report["latency_ms"]["p99"].as_f64().unwrap() > 0.0);
    assert!(report["throughput_per_sec"].as_f64().unwrap() > 0.0);
}

const MIX: &str = "escalated=0.08,rejected=0.08,duplicate=0.05,tampered=0.04";

#[test]
fn rest_mix_gets_the_expected_answers() {
    let up = common::up();
    let report = bench_json(
        &up.url,
        &["--count", "1200", "--connections", "8", "--mix", MIX],
    );
    assert_eq!(report["protocol"], "rest");
    assert_eq!(report["latency_from"], "send");
    assert_every_kind_right(&report, 1200);
    // Duplicates repeat items of several outcomes.
    let dup = report["kinds"]["duplicate"]["got"].as_object().unwrap();
    assert!(dup.len() >= 2, "{dup:?}");
    // Examples carry the request and the contract's outcome body.
    let ex = &report["examples"]["escalated"];
    assert_eq!(ex["response"]["outcome"], "escalated");
    assert_eq!(ex["response"]["pcs_id"], ex["request"]["pcs_id"]);
}

#[test]
fn grpc_unary_and_stream_on_the_gateway_get_the_expected_answers() {
    let up = common::up();
    let unary = bench_json(
        &up.url,
        &[
            "--protocol",
            "grpc",
            "--count",
            "1000",
            "--connections",
            "8",
            "--mix",
            MIX,
        ],
    );
    assert_eq!(unary["protocol"], "grpc-unary");
    assert_every_kind_right(&unary, 1000);
    let stream = bench_json(
        &up.url,
        &[
            "--protocol",
            "grpc",
            "--grpc-mode",
            "stream",
            "--streams",
            "2",
            "--window",
            "64",
            "--count",
            "1000",
            "--mix",
            MIX,
        ],
    );
    assert_eq!(stream["protocol"], "grpc-stream");
    assert_every_kind_right(&stream, 1000);
}

#[test]
fn grpc_stream_on_svc_verify_directly() {
    let up = common::up();
    let data_dir = up.data_dir.display().to_string();
    let report = bench_json(
        &up.verify_url,
        &[
            "--data-dir",
            &data_dir,
            "--protocol",
            "grpc",
            "--grpc-mode",
            "stream",
            "--count",
            "1000",
            "--mix",
            MIX,
        ],
    );
    assert_every_kind_right(&report, 1000);
}

#[test]
fn target_rate_is_open_loop_for_a_duration() {
    let up = common::up();
    let report = bench_json(
        &up.url,
        &[
            "--rate",
            "400",
            "--duration",
            "1s",
            "--connections",
            "4",
            "--mix",
            MIX,
        ],
    );
    assert_eq!(report["latency_from"], "intended_send");
    assert_eq!(report["rate"], 400.0);
    // 400/s for 1 s: items 0..400 are due before the end.
    assert_every_kind_right(&report, 400);
}

#[test]
fn ed25519_and_hmac_payload_tenants() {
    use base64::Engine as _;
    let seed = [42u8; 32];
    let public = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
    let dir = tempfile::tempdir().unwrap();
    let tenants = dir.path().join("tenants.toml");
    let toml = format!(
        r#"[[tenant]]
id = "acme"
[[tenant.keys]]
id = "e1"
algorithm = "ed25519"
public_key = "{}"

[[tenant]]
id = "beta"
[[tenant.keys]]
id = "h1"
algorithm = "hmac"
mode = "payload"
secret = "beta-secret"
"#,
        base64::engine::general_purpose::STANDARD.encode(public.as_bytes())
    );
    std::fs::write(&tenants, toml).unwrap();
    let up = common::up_with(&["--tenants", tenants.to_str().unwrap()]);
    let run = |extra: &[&str]| {
        let mut args = vec!["bench", "--url", &up.url, "--json", "--quiet"];
        args.extend_from_slice(&["--count", "800", "--mix", MIX]);
        args.extend_from_slice(extra);
        let out = flk(&args);
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
        serde_json::from_str::<Value>(&stdout).unwrap()
    };
    let seed_hex = hex::encode(seed);
    let report = run(&["--tenant", "acme", "--ed25519-seed", &seed_hex]);
    assert_eq!(report["tenant"], "acme");
    assert_every_kind_right(&report, 800);
    let report = run(&[
        "--tenant",
        "beta",
        "--hmac-key",
        "beta-secret",
        "--hmac-mode",
        "payload",
        "--protocol",
        "grpc",
    ]);
    assert_eq!(report["tenant"], "beta");
    assert_every_kind_right(&report, 800);
}

#[test]
fn text_report_and_progress() {
    let up = common::up();
    let out = flk(&[
        "bench",
        "--url",
        &up.url,
        "--hmac-key",
        common::SECRET,
        "--duration",
        "1500ms",
        "--connections",
        "4",
    ]);
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("throughput: "), "{stdout}");
    assert!(
        stdout.contains("latency ms (from send time): p50 "),
        "{stdout}"
    );
    assert!(stdout.contains("mismatches: 0 of"), "{stdout}");
    assert!(stderr.contains("generated "), "{stderr}");
    assert!(
        stderr.contains("answered") && stderr.contains("(done)"),
        "no progress: {stderr}"
    );
}

#[test]
fn wrong_key_fails_with_a_hint() {
    let up = common::up();
    let out = flk(&[
        "bench",
        "--url",
        &up.url,
        "--hmac-key",
        "not-the-key",
        "--count",
        "200",
        "--quiet",
    ]);
    let stdout = text(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.contains("hint: "), "{stdout}");
    assert!(stdout.contains("signing key"), "{stdout}");
    assert!(
        text(&out.stderr).contains("answers differed from the expected outcome"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn unreachable_server_and_bad_arguments_are_clear_errors() {
    // A port nobody listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    for protocol in ["rest", "grpc"] {
        let out = flk(&[
            "bench",
            "--url",
            &url,
            "--protocol",
            protocol,
            "--hmac-key",
            "k",
            "--count",
            "10",
        ]);
        assert!(!out.status.success());
        let err = text(&out.stderr);
        assert!(err.contains(&format!("cannot reach {url}")), "{err}");
    }

    let cases: [(&[&str], &str); 5] = [
        (
            &["--mix", "escalated=0.5,bogus=0.1"],
            "unknown kind \"bogus\"",
        ),
        (&["--mix", "escalated=0.7,rejected=0.6"], "more than 1"),
        (&["--mix", "tampered=1.5"], "outside [0, 1]"),
        (&["--url", "localhost:8080"], "must start with http://"),
        (&["--ed25519-seed", "abcd"], "64 hex characters"),
    ];
    for (extra, want) in cases {
        let mut args = vec!["bench", "--count", "10"];
        if !extra.contains(&"--ed25519-seed") {
            args.extend(["--hmac-key", "k"]);
        }
        args.extend_from_slice(extra);
        let out = flk(&args);
        assert!(!out.status.success(), "{args:?}");
        let err = text(&out.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

#[test]
fn demo_runs_and_summarises() {
    let out = flk(&["demo", "--duration", "1s", "--connections", "4"]);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\nstderr:\n{}",
        text(&out.stderr)
    );
    for want in [
        "flk demo: the whole system in this process",
        "== what happened ==",
        "throughput: ",
        "mismatches: 0 of",
        "== example answers (one of each kind) ==",
        "-- accepted: item",
        "-- escalated: item",
        "-- rejected: item",
        "-- duplicate: item",
        "-- tampered: item",
        "\"signature_invalid\"",
        "== reproduce ==",
        "curl -s -XPOST http://127.0.0.1:8080/v1/pcs/submit",
    ] {
        assert!(stdout.contains(want), "missing {want:?} in:\n{stdout}");
    }
    for kind in ["accepted", "escalated", "rejected", "duplicate", "tampered"] {
        // kind, sent, mismatches, expected, got
        let row = stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(kind))
            .unwrap_or_else(|| panic!("no {kind} row:\n{stdout}"));
        assert_eq!(row.split_whitespace().nth(2), Some("0"), "{row}");
    }
}
