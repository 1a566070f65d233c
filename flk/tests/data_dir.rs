//! The commands that read a stack's data take the data directory `flk up` was given: a real
//! `flk up` decides a few golden vectors, then (stopped: its stores are locked while it runs)
//! `flk report kpi --data-dir` reads its KPI store and `flk audit verify --data-dir` its audit
//! log with the key kept beside it, also from the services' own data directories; a flipped
//! byte in the stored log is named; what is missing is said. `flk report kpi --url` against
//! the gateway needs the tenant's API token.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The golden verification vectors are signed with this key (HMAC digest mode).
const VECTOR_SECRET: &str = "testsecret";
/// Decisions the test makes.
const N: usize = 3;

/// The first `n` golden vectors that get a decision (200 or 202), as `(pcs_id, PCS JSON)`.
fn decided_vectors(n: usize) -> Vec<(String, String)> {
    let text = include_str!("../../flk-core/tests/data/verify_vectors.json");
    let doc: Value = serde_json::from_str(text).unwrap();
    doc["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| matches!(v["expect"]["http_status"].as_u64(), Some(200 | 202)))
        .take(n)
        .map(|v| {
            (
                v["pcs"]["pcs_id"].as_str().unwrap().to_owned(),
                serde_json::to_string(&v["pcs"]).unwrap(),
            )
        })
        .collect()
}

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stdout:\n{}\nstderr:\n{}", self.stdout, self.stderr)
    }
}

fn flk(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_flk"))
        .args(args)
        .output()
        .unwrap();
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Polls `url` (JSON) until `done` holds for the body (30 s at most).
async fn wait_for(client: &reqwest::Client, url: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let resp = client.get(url).send().await.unwrap();
        let status = resp.status().as_u16();
        let body: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap_or_default();
        if status == 200 && done(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "{url}: {status} {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The 1h report of tenant `default` in `flk report kpi`'s JSON.
fn hour_report(json: &str) -> Value {
    let doc: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"));
    doc["reports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["tenant_id"] == "default" && r["window"] == "1h")
        .cloned()
        .unwrap_or_else(|| panic!("no 1h report of tenant default: {json}"))
}

/// The entry bundle files under a log directory.
fn bundles(tlog: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![tlog.join("tile/entries")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[tokio::test]
async fn report_and_audit_verify_read_a_stopped_stack_by_its_data_dir() {
    let mut up = common::up_with(&["--hmac-key", VECTOR_SECRET]);
    let data = up.data_dir.clone();
    let token_file = data.join("default.token");
    let client = common::token_client(&up.token("default.token"));
    let vectors = decided_vectors(N);
    for (_, body) in &vectors {
        let resp = client
            .post(format!("{}/v1/pcs/submit", up.url))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{}", resp.status());
    }
    // Both consumers read the feed asynchronously: wait until they hold every decision.
    let report_url = format!("{}/v1/kpi/report?window=1h", up.url);
    wait_for(&client, &report_url, |r| r["decisions"] == N).await;
    for (pcs_id, _) in &vectors {
        let url = format!("{}/v1/audit/proof/{pcs_id}", up.url);
        wait_for(&client, &url, |_| true).await;
    }
    let cp_url = format!("{}/v1/audit/checkpoint", up.url);
    let checkpoint = wait_for(&client, &cp_url, |_| true).await;
    let published_key = checkpoint["verifier_key"].as_str().unwrap().to_owned();

    // --url through the gateway: the tenant's token, or an error that says to pass one.
    let run = flk(&["report", "kpi", "--url", &up.url]);
    assert!(!run.ok, "{run}");
    assert!(
        run.stderr.contains("401") && run.stderr.contains("--token-file"),
        "{run}"
    );
    let run = flk(&[
        "report",
        "kpi",
        "--url",
        &up.url,
        "--token",
        "not-the-token",
    ]);
    assert!(!run.ok && run.stderr.contains("not valid"), "{run}");
    let run = flk(&[
        "report",
        "kpi",
        "--url",
        &up.url,
        "--token-file",
        s(&token_file),
    ]);
    assert!(run.ok, "{run}");
    assert_eq!(hour_report(&run.stdout)["decisions"], N, "{run}");
    let run = flk(&[
        "report",
        "kpi",
        "--url",
        &up.url,
        "--token",
        &up.token("default.token"),
    ]);
    assert!(run.ok, "{run}");

    up.stop();

    // flk report kpi: the stack's data dir, or svc-kpi's own.
    let run = flk(&["report", "kpi", "--data-dir", s(&data)]);
    assert!(run.ok, "{run}");
    let r = hour_report(&run.stdout);
    assert_eq!(r["decisions"], N, "{r}");
    let series = &r["decisions_over_time"];
    let sum = |k: &str| -> u64 {
        series[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .sum()
    };
    assert_eq!(
        sum("accepted") + sum("escalated") + sum("rejected"),
        N as u64
    );
    let html = data.join("kpi.html");
    let run = flk(&[
        "report",
        "kpi",
        "--data-dir",
        s(&data.join("kpi")),
        "--format",
        "html",
        "--out",
        s(&html),
    ]);
    assert!(run.ok, "{run}");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("Tenant default") && page.contains("decisions over 1h"));
    let run = flk(&["report", "kpi", "--data-dir", s(&data.join("verify"))]);
    assert!(!run.ok, "{run}");
    for looked_at in [
        data.join("verify/kpi/kpi.redb"),
        data.join("verify/kpi.redb"),
    ] {
        assert!(
            run.stderr.contains(s(&looked_at)),
            "{looked_at:?} not named: {run}"
        );
    }

    // flk audit verify: the stored checkpoint and the key kept beside the log.
    let run = flk(&["audit", "verify", "--data-dir", s(&data)]);
    assert!(run.ok, "{run}");
    let verified: u64 = run
        .stdout
        .split("log ok: ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no entry count: {run}"));
    assert!(verified >= N as u64, "{run}");
    assert!(
        run.stdout
            .contains(&format!("verifier key: {published_key} ")),
        "{run}"
    );
    let run = flk(&["audit", "verify", "--data-dir", s(&data.join("audit"))]);
    assert!(run.ok, "{run}");
    // Pinned to the published key; a key of another log is refused.
    let run = flk(&[
        "audit",
        "verify",
        "--data-dir",
        s(&data),
        "--key",
        &published_key,
    ]);
    assert!(run.ok && !run.stdout.contains("verifier key:"), "{run}");
    let other = flk_tlog::LogSigner::from_seed("other.example/log", &[3; 32]).unwrap();
    let run = flk(&[
        "audit",
        "verify",
        "--data-dir",
        s(&data),
        "--key",
        &other.verifier_key_string(),
    ]);
    assert!(!run.ok && run.stdout.contains("FAILED"), "{run}");
    let run = flk(&["audit", "verify", "--data-dir", s(&data.join("verify"))]);
    assert!(!run.ok, "{run}");
    for looked_at in [data.join("verify/audit/tlog"), data.join("verify/tlog")] {
        assert!(
            run.stderr.contains(s(&looked_at)),
            "{looked_at:?} not named: {run}"
        );
    }

    // One flipped byte inside the first entry is named with its bundle file.
    let tlog = data.join("audit/tlog");
    let bundle = bundles(&tlog)
        .into_iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .expect("an entry bundle");
    let original = std::fs::read(&bundle).unwrap();
    let mut tampered = original.clone();
    tampered[12] ^= 0x01;
    std::fs::write(&bundle, &tampered).unwrap();
    let run = flk(&["audit", "verify", "--data-dir", s(&data)]);
    assert!(!run.ok, "{run}");
    assert!(run.stdout.contains("FAILED: entry 0 in "), "{run}");
    assert!(run.stdout.contains(s(&bundle)), "{run}");
    std::fs::write(&bundle, &original).unwrap();

    // Without the stored key, or without a stored checkpoint, it says so.
    let key = data.join("audit/log.key");
    let key_text = std::fs::read(&key).unwrap();
    std::fs::remove_file(&key).unwrap();
    let run = flk(&["audit", "verify", "--data-dir", s(&data)]);
    assert!(!run.ok && run.stderr.contains("--key"), "{run}");
    assert!(run.stderr.contains(s(&key)), "{run}");
    std::fs::write(&key, &key_text).unwrap();
    std::fs::remove_file(tlog.join("checkpoint")).unwrap();
    let run = flk(&["audit", "verify", "--data-dir", s(&data)]);
    assert!(!run.ok && run.stderr.contains("has no checkpoint"), "{run}");
}
