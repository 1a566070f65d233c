//! svc-audit inside `flk up`, end to end through the real binary: decisions submitted to the
//! gateway reach the audit log through svc-verify's feed; the gateway's `/v1/audit/*` answers
//! exactly what svc-audit answers itself; the inclusion proof checks out against the signed
//! checkpoint with flk-tlog's verifier; `flk audit verify` accepts the bundle and, once the
//! stack is stopped, the whole stored log; and the gateway's `/metrics` exports every service's
//! metrics.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const SECRET: &str = "testsecret";

struct Up {
    child: Child,
    /// The gateway, `http://HOST:PORT`.
    url: String,
    /// svc-audit's own address, `http://HOST:PORT`.
    audit_url: String,
    /// The audit log's verifier key, as `flk up` prints it.
    verifier_key: String,
    /// A client with the `default` tenant's API token, for the gateway.
    client: reqwest::Client,
    /// A client with the mesh certificate, for svc-audit's own port.
    mesh: reqwest::Client,
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `flk up --listen 127.0.0.1:0 --hmac-key SECRET --data-dir DATA`, its addresses read from
/// its output.
fn up(data: &Path) -> Up {
    let mut child = Command::new(env!("CARGO_BIN_EXE_flk"))
        .args(["up", "--listen", "127.0.0.1:0", "--hmac-key", SECRET])
        .arg("--data-dir")
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let (mut audit_url, mut verifier_key) = (None, None);
    let url = loop {
        let line = lines
            .next()
            .expect("flk up exited before listening")
            .unwrap();
        if let Some(rest) = line.strip_prefix("svc-audit (grpc, REST /v1/audit/*) on ") {
            audit_url = rest.split(',').next().map(str::to_owned);
        }
        if let Some(rest) = line.strip_prefix("audit log verifier key: ") {
            verifier_key = Some(rest.trim().to_owned());
        }
        if let Some(url) = line.strip_prefix("gateway listening on ") {
            break url.trim().to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Up {
        child,
        url,
        audit_url: audit_url.expect("flk up prints svc-audit's address"),
        verifier_key: verifier_key.expect("flk up prints the audit verifier key"),
        client: common::token_client(
            std::fs::read_to_string(data.join("default.token"))
                .expect("flk up writes the default tenant's token")
                .trim(),
        ),
        mesh: common::mesh_client(data),
    }
}

/// The first `n` golden vectors that get a decision (200 or 202), as `(pcs_id, pcs json)`.
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

async fn get(client: &reqwest::Client, url: &str) -> (u16, Value, String) {
    let resp = client.get(url).send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, json, text)
}

/// Polls `url` until it answers 200 (or the deadline passes) and returns the body.
async fn wait_for_200(client: &reqwest::Client, url: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, _, text) = get(client, url).await;
        if status == 200 {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{url} still answers {status} after 30 s: {text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn flk(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_flk"))
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test]
async fn decisions_reach_the_audit_log_and_prove_through_the_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let up = up(&data);
    let client = up.client.clone();
    let vectors = decided_vectors(8);
    for (pcs_id, pcs) in &vectors {
        let resp = client
            .post(format!("{}/v1/pcs/submit", up.url))
            .header("content-type", "application/json")
            .body(pcs.clone())
            .send()
            .await
            .unwrap();
        assert!(
            matches!(resp.status().as_u16(), 200 | 202),
            "{pcs_id}: {}",
            resp.status()
        );
    }

    let verifier = flk_tlog::LogVerifier::from_key_string(&up.verifier_key).unwrap();
    let mut leaves = std::collections::BTreeSet::new();
    let mut last_bundle = String::new();
    for (pcs_id, _) in &vectors {
        let text = wait_for_200(&client, &format!("{}/v1/audit/proof/{pcs_id}", up.url)).await;
        let bundle: Value = serde_json::from_str(&text).unwrap();
        let proof = flk_proto::audit::inclusion_from_json(&bundle).unwrap();
        let cp = proof.checkpoint.as_ref().unwrap();
        assert_eq!(cp.verifier_key, up.verifier_key);
        let hashes: Vec<flk_tlog::Hash> = proof
            .proof
            .iter()
            .map(|h| h.as_slice().try_into().unwrap())
            .collect();
        let checked = flk_tlog::verify_inclusion_bundle(
            &proof.entry,
            proof.leaf_index,
            proof.tree_size,
            &hashes,
            &cp.note,
            &verifier,
        )
        .unwrap_or_else(|e| panic!("{pcs_id}: proof does not verify: {e}"));
        assert_eq!(checked.size, proof.tree_size);
        let entry = flk_tlog::AuditEntry::decode(&proof.entry).unwrap();
        assert_eq!(entry.tenant_id, "default");
        assert_eq!(hex::encode(entry.pcs_id), *pcs_id);
        assert!(
            leaves.insert(proof.leaf_index),
            "two decisions share a leaf"
        );
        last_bundle = text;
    }
    assert_eq!(leaves.len(), vectors.len());

    // The gateway serves exactly svc-audit's own JSON (the log no longer grows).
    let (pcs_id, _) = &vectors[0];
    let n = vectors.len();
    for path in [
        "/v1/audit/checkpoint".to_owned(),
        format!("/v1/audit/proof/{pcs_id}"),
        format!("/v1/audit/consistency?from=1&to={n}"),
        format!("/v1/audit/consistency?from=3&to={n}"),
    ] {
        let via_gateway = get(&client, &format!("{}{path}", up.url)).await;
        let direct = get(&up.mesh, &format!("{}{path}", up.audit_url)).await;
        assert_eq!(via_gateway.0, 200, "{path}: {}", via_gateway.2);
        assert_eq!(via_gateway.2, direct.2, "{path}");
    }
    let (_, cp, _) = get(&client, &format!("{}/v1/audit/checkpoint", up.url)).await;
    assert_eq!(cp["size"], n as u64);

    // Errors map like svc-audit's: unknown 404, malformed 400, bad sizes 400; a tenant header
    // that disagrees with the token 403.
    let unknown = "ab".repeat(32);
    for (path, tenant, status, code) in [
        (
            format!("/v1/audit/proof/{unknown}"),
            "default",
            404,
            "not_found",
        ),
        (
            "/v1/audit/proof/XYZ".to_owned(),
            "default",
            400,
            "invalid_pcs_id",
        ),
        (
            format!("/v1/audit/proof/{pcs_id}"),
            "acme",
            403,
            "tenant_mismatch",
        ),
        (
            format!("/v1/audit/consistency?from=2&to={}", n + 1),
            "default",
            400,
            "invalid_range",
        ),
        (
            "/v1/audit/consistency?from=0&to=1".to_owned(),
            "default",
            400,
            "invalid_range",
        ),
        (
            "/v1/audit/consistency?to=1".to_owned(),
            "default",
            400,
            "invalid_range",
        ),
    ] {
        let resp = client
            .get(format!("{}{path}", up.url))
            .header("x-tenant-id", tenant)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), status, "{path}");
        let body: Value = resp.json_or_null().await;
        assert_eq!(body["error"]["code"], code, "{path}: {body}");
    }

    // The bundle verifies offline with `flk audit verify --bundle`.
    let bundle_file = dir.path().join("bundle.json");
    std::fs::write(&bundle_file, &last_bundle).unwrap();
    let out = flk(&[
        "audit",
        "verify",
        "--bundle",
        bundle_file.to_str().unwrap(),
        "--key",
        &up.verifier_key,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("tenant default"), "{stdout}");

    // And so does the whole stored log, against the checkpoint the gateway served.
    let (_, cp_text_json, cp_text) = get(&client, &format!("{}/v1/audit/checkpoint", up.url)).await;
    let cp_file = dir.path().join("checkpoint.json");
    std::fs::write(&cp_file, &cp_text).unwrap();
    drop(up);
    let out = flk(&[
        "audit",
        "verify",
        "--log",
        data.join("audit/tlog").to_str().unwrap(),
        "--checkpoint",
        cp_file.to_str().unwrap(),
        "--key",
        cp_text_json["verifier_key"].as_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(&format!("{n} entries")), "{stdout}");
}

#[tokio::test]
async fn gateway_metrics_export_every_service() {
    let dir = tempfile::tempdir().unwrap();
    let up = up(&dir.path().join("data"));
    let client = up.client.clone();
    let (pcs_id, pcs) = decided_vectors(1).remove(0);
    let resp = client
        .post(format!("{}/v1/pcs/submit", up.url))
        .header("content-type", "application/json")
        .body(pcs)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    wait_for_200(&client, &format!("{}/v1/audit/proof/{pcs_id}", up.url)).await;
    let (status, _, text) = get(&client, &format!("{}/metrics", up.url)).await;
    assert_eq!(status, 200);
    for name in [
        "flk_gateway_responses_total",      // the gateway's
        "flk_verify_outcomes_total",        // svc-verify's
        "flk_audit_entries_appended_total", // svc-audit's
        "flk_audit_tree_size",
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "{name} missing from /metrics:\n{text}"
        );
    }
    // A family both the gateway and svc-verify register appears once.
    assert_eq!(
        text.matches("# TYPE flk_ingest_total ").count(),
        1,
        "{text}"
    );
}

trait JsonOrNull {
    async fn json_or_null(self) -> Value;
}

impl JsonOrNull for reqwest::Response {
    async fn json_or_null(self) -> Value {
        let bytes = self.bytes().await.unwrap_or_default();
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    }
}
