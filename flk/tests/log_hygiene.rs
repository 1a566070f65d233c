//! Secrets and PCS payloads never reach the logs, even at `RUST_LOG=trace`: `flk up` runs with
//! every crate at trace level while a tenant submits over REST and gRPC, reads with its API
//! token, gives feedback and fetches a proof, and the admin reads the feed; then every line
//! the process wrote is searched for the HMAC secret, the API and admin tokens, the mesh's
//! private keys and the PCS's signature and Merkle root.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use flk_proto::v1;
use flk_runtime::client::{EndpointOptions, Peer, VerifyClient};
use flk_runtime::security::TokenHash;
use serde_json::Value;

/// The golden vectors are signed with this secret.
const SECRET: &str = "testsecret";
const API_TOKEN: &str = "tok-7c1e9d2a5b8f4e3d9a6c0b1f2e5d8a7c";

fn accepted() -> Value {
    let text = include_str!("../../flk-core/tests/data/verify_vectors.json");
    let doc: Value = serde_json::from_str(text).unwrap();
    doc["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["expect"]["outcome"] == "accepted")
        .unwrap()["pcs"]
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_secret_is_logged_at_trace_level() {
    let tmp = tempfile::tempdir().unwrap();
    let tenants = tmp.path().join("tenants.toml");
    std::fs::write(
        &tenants,
        format!(
            "[[tenant]]\nid = \"acme\"\n[[tenant.keys]]\nid = \"k1\"\nalgorithm = \"hmac\"\nsecret = \"{SECRET}\"\n\
             [[tenant.api_tokens]]\nid = \"reader\"\nsha256 = \"{}\"\n",
            TokenHash::of(API_TOKEN).hex()
        ),
    )
    .unwrap();
    let data = tmp.path().join("data");
    let log_path = tmp.path().join("stderr.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_flk"))
        .args(["up", "--listen", "127.0.0.1:0", "--tenants"])
        .arg(&tenants)
        .arg("--data-dir")
        .arg(&data)
        .env("RUST_LOG", "trace")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("flk up exited").unwrap();
        if let Some(u) = line.strip_prefix("gateway listening on ") {
            break u.trim().to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let admin = std::fs::read_to_string(data.join("admin.token"))
        .unwrap()
        .trim()
        .to_owned();

    let pcs = accepted();
    let pcs_id = pcs["pcs_id"].as_str().unwrap().to_owned();
    let http = reqwest::Client::new();
    // REST: submit, read, feedback, proof, body.
    let r = http
        .post(format!("{url}/v1/pcs/submit"))
        .header("x-tenant-id", "acme")
        .header("content-type", "application/json")
        .body(pcs.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let auth = format!("Bearer {API_TOKEN}");
    let get = |path: String| {
        let req = http
            .get(format!("{url}{path}"))
            .header("authorization", &auth);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(get(format!("/v1/pcs/{pcs_id}")).await, 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(format!("/v1/audit/proof/{pcs_id}")).await != 200
        || get(format!("/v1/pcs/{pcs_id}/body")).await != 200
    {
        assert!(
            Instant::now() < deadline,
            "proof and body not served in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = http
        .post(format!("{url}/v1/feedback"))
        .header("authorization", &auth)
        .header("content-type", "application/json")
        .body(serde_json::json!({"pcs_id": pcs_id, "verdict": "correct"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);

    // gRPC through the gateway: a submission (a duplicate), a read with the token, the feed
    // with the admin token.
    let channel = Peer::plain()
        .connect(&url, EndpointOptions::default())
        .await
        .unwrap();
    let mut grpc = VerifyClient::new(channel);
    let answer = grpc
        .submit(v1::SubmitRequest {
            tenant_id: "acme".into(),
            body: Some(v1::submit_request::Body::PcsJson(pcs.to_string().into())),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(answer.outcome.is_some());
    let channel = Peer::with_token(API_TOKEN)
        .unwrap()
        .connect(&url, EndpointOptions::default())
        .await
        .unwrap();
    VerifyClient::new(channel)
        .get_outcome(v1::GetOutcomeRequest {
            tenant_id: String::new(),
            pcs_id: pcs_id.clone(),
        })
        .await
        .unwrap();
    let channel = Peer::with_token(&admin)
        .unwrap()
        .connect(&url, EndpointOptions::default())
        .await
        .unwrap();
    let mut feed = VerifyClient::new(channel)
        .subscribe(v1::SubscribeRequest { from_seq: 1 })
        .await
        .unwrap()
        .into_inner();
    assert!(feed.message().await.unwrap().is_some());
    drop(feed);

    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.lines().count() > 100,
        "trace level logged only {} lines",
        log.lines().count()
    );
    let mut secrets = vec![
        ("the HMAC secret", SECRET.to_owned()),
        ("the API token", API_TOKEN.to_owned()),
        ("the admin token", admin.clone()),
        ("the PCS signature", pcs["sig"].as_str().unwrap().to_owned()),
        (
            "the PCS Merkle root",
            pcs["merkle_root"].as_str().unwrap().to_owned(),
        ),
        ("a private key", "PRIVATE KEY".to_owned()),
    ];
    for f in ["server.key", "client.key"] {
        if let Ok(pem) = std::fs::read_to_string(data.join("tls").join(f)) {
            // A line of the key's base64 body.
            if let Some(line) = pem.lines().nth(1) {
                secrets.push(("a mesh private key", line.to_owned()));
            }
        }
    }
    for (what, secret) in &secrets {
        if let Some((n, line)) = log
            .lines()
            .enumerate()
            .find(|(_, l)| l.contains(secret.as_str()))
        {
            panic!("{what} is in log line {}: {line}", n + 1);
        }
    }
}
