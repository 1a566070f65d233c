//! SIGKILL during demotion loses no record: the svc-tiering binary runs as a child process
//! over the outcome feed of a real svc-verify (in this process), demotes hundreds of records
//! hot -> warm -> cold in small chunks, and is killed with SIGKILL at varied moments of
//! that demotion, then restarted on the same data directory; after every restart the catalog
//! holds every record, and at the end every body reads back byte-identical.

mod common;

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use common::*;
use flk_core::{HmacMode, SigningMaterial, canonicalize, compute_pcs_id, parse_pcs};
use flk_proto::v1::{self, submit_request};
use flk_runtime::client::{VerifyClient, with_token};
use flk_runtime::security::ServerSecurity;
use serde_json::Value;
use svc_verify::VerifyConfig;
use svc_verify::config::{DedupConfig, LogSettings};
use tokio::net::TcpListener;

const SECRET: &str = "testsecret";
const TOKEN: &str = "tiering-test-token";
const RECORDS: usize = 400;

fn vector_ok() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../flk-core/tests/data/verify_vectors.json"
    );
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    doc["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["expect"]["reason_code"] == "ok")
        .expect("an ok vector")["pcs"]
        .clone()
}

/// A copy of `pcs` with another shard (a new, matching pcs_id), signed.
fn with_shard(pcs: &Value, shard: &str) -> Value {
    let mut p = pcs.clone();
    p["shard_id"] = Value::String(shard.to_owned());
    let root = p["merkle_root"].as_str().unwrap();
    let epoch = p["epoch"].as_u64().unwrap();
    p["pcs_id"] = Value::String(compute_pcs_id(root, epoch, shard));
    let parsed = parse_pcs(&serde_json::to_vec(&p).unwrap()).unwrap();
    let signer = SigningMaterial::hmac(SECRET.as_bytes(), HmacMode::Digest).unwrap();
    p["sig"] = Value::String(signer.sign_b64(&canonicalize(&parsed)));
    p
}

struct Child_ {
    child: Child,
    addr: SocketAddr,
}

/// Starts the binary and reads its listening address from stdout.
fn spawn(dir: &std::path::Path, verify: SocketAddr, token_file: &std::path::Path) -> Child_ {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("tiering.log"))
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_svc-tiering"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "info")
        .env("FLK_TIERING_LISTEN", "127.0.0.1:0")
        .env("FLK_TIERING_DATA_DIR", dir.join("tiering"))
        .env("FLK_TIERING_VERIFY_URL", format!("http://{verify}"))
        .env("FLK_TIERING_HOT_TTL", "1s")
        .env("FLK_TIERING_WARM_TTL", "1s")
        .env("FLK_TIERING_DEMOTE_INTERVAL", "20ms")
        .env("FLK_TIERING_MOVE_CHUNK", "8")
        .env("FLK_TIERING_BATCH_INTERVAL_MS", "10")
        .env("FLK_TIERING_AUTH_TOKEN_FILE", token_file)
        .env("FLK_TIERING_PEER_TOKEN_FILE", token_file)
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawn svc-tiering");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines
            .next()
            .unwrap_or_else(|| {
                panic!(
                    "svc-tiering exited: {}",
                    std::fs::read_to_string(dir.join("tiering.log")).unwrap_or_default()
                )
            })
            .unwrap();
        if let Some(rest) = line.strip_prefix("svc-tiering listening on http://") {
            break rest.split_whitespace().next().unwrap().parse().unwrap();
        }
    };
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Child_ { child, addr }
}

fn sigkill(c: &mut Child_) {
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(c.child.id() as i32).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    c.child.wait().unwrap();
}

async fn stats(addr: SocketAddr) -> Option<Value> {
    let (status, _, body) = http_get(addr, "/v1/tiering/stats", TOKEN).await;
    (status == 200).then(|| serde_json::from_slice(&body).unwrap())
}

fn tier_records(s: &Value, tier: &str) -> u64 {
    s["tiers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tier"] == tier)
        .unwrap()["records"]
        .as_u64()
        .unwrap()
}

fn total(s: &Value) -> u64 {
    ["hot", "warm", "cold"]
        .iter()
        .map(|t| tier_records(s, t))
        .sum()
}

async fn moves(addr: SocketAddr) -> f64 {
    let (_, _, body) = http_get(addr, "/metrics", TOKEN).await;
    let text = String::from_utf8(body).unwrap();
    metric(&text, r#"flk_tiering_moves_total{from="hot",to="warm"}"#).unwrap_or(0.0)
        + metric(&text, r#"flk_tiering_moves_total{from="warm",to="cold"}"#).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_demotion_loses_no_record() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, TOKEN).unwrap();
    // svc-verify, in process.
    let tenants = dir.path().join("tenants.toml");
    std::fs::write(
        &tenants,
        "[[tenant]]\nid = \"default\"\n[[tenant.keys]]\nid = \"k1\"\nalgorithm = \"hmac\"\nsecret = \"testsecret\"\n",
    )
    .unwrap();
    let vcfg = VerifyConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: dir.path().join("verify"),
        region: "test".to_owned(),
        tenants_file: Some(tenants),
        dedup: DedupConfig {
            backend: svc_verify::DedupBackend::Embedded,
            url: None,
        },
        log: LogSettings {
            fsync: false,
            ..LogSettings::default()
        },
        ..VerifyConfig::default()
    };
    let mut verify = svc_verify::Service::open(&vcfg)
        .await
        .expect("open svc-verify");
    verify.set_security(ServerSecurity::token(TOKEN));
    let listener = TcpListener::bind(vcfg.listen).await.unwrap();
    let vaddr = listener.local_addr().unwrap();
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let vtask = tokio::spawn(verify.serve(listener, async {
        let _ = rx.await;
    }));
    let mut vc = VerifyClient::new(with_token(&format!("http://{vaddr}"), TOKEN).await.unwrap());
    let base = vector_ok();
    let mut submitted = Vec::with_capacity(RECORDS);
    for i in 0..RECORDS {
        let p = with_shard(&base, &format!("kill-{i}"));
        let bytes = serde_json::to_vec(&p).unwrap();
        let outcome = vc
            .submit(v1::SubmitRequest {
                tenant_id: "default".to_owned(),
                body: Some(submit_request::Body::PcsJson(bytes.clone().into())),
            })
            .await
            .expect("submit")
            .into_inner()
            .outcome
            .unwrap();
        assert!(!outcome.duplicate);
        submitted.push((p["pcs_id"].as_str().unwrap().to_owned(), bytes));
    }

    let mut child = spawn(dir.path(), vaddr, &token_file);
    // Every record ingested before the first kill.
    poll_until("all records ingested", || async {
        let s = stats(child.addr).await?;
        (total(&s) == RECORDS as u64).then_some(())
    })
    .await;
    // Kill at varied points of the demotion (moves made by this run of the process).
    let thresholds = [5.0, 23.0, 61.0, 14.0, 97.0, 40.0, 150.0, 8.0];
    for (round, at) in thresholds.iter().enumerate() {
        poll_until("the demotion reached the kill point", || async {
            let m = moves(child.addr).await;
            let s = stats(child.addr).await?;
            (m >= *at || tier_records(&s, "cold") == RECORDS as u64).then_some(())
        })
        .await;
        sigkill(&mut child);
        child = spawn(dir.path(), vaddr, &token_file);
        let s = stats(child.addr).await.expect("stats after restart");
        assert_eq!(total(&s), RECORDS as u64, "round {round}: {s}");
    }
    // Let the demotion finish, then every record reads back byte-identical.
    poll_until("all records cold", || async {
        let s = stats(child.addr).await?;
        (tier_records(&s, "cold") == RECORDS as u64).then_some(())
    })
    .await;
    for (pcs_id, bytes) in &submitted {
        let (status, headers, body) = http_get(
            child.addr,
            &format!("/v1/tiering/default/{pcs_id}/body"),
            TOKEN,
        )
        .await;
        assert_eq!(status, 200, "{pcs_id}");
        assert!(headers.contains(&("x-flk-tier".to_owned(), "cold".to_owned())));
        assert_eq!(&body, bytes, "{pcs_id}");
    }
    let (status, headers, body) = http_get(
        child.addr,
        &format!("/v1/tiering/default/{}", submitted[0].0),
        TOKEN,
    )
    .await;
    assert_eq!(status, 200);
    // Promoted by the body read, unless hot_ttl (1s) has already demoted it again.
    let tier = headers
        .iter()
        .find(|(k, _)| k == "x-flk-tier")
        .map(|(_, v)| v.as_str());
    assert!(matches!(tier, Some("hot" | "warm" | "cold")), "{headers:?}");
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["outcome"]["pcs_id"], submitted[0].0.as_str());
    assert_eq!(v["outcome"]["outcome"], "accepted");
    // Another tenant does not see it.
    let (status, _, _) = http_get(
        child.addr,
        &format!("/v1/tiering/other/{}", submitted[0].0),
        TOKEN,
    )
    .await;
    assert_eq!(status, 404);
    sigkill(&mut child);
    let log = std::fs::read_to_string(dir.path().join("tiering.log")).unwrap();
    let recovered = log.matches("recovered the placement catalog").count();
    eprintln!(
        "restarts that recovered interrupted moves: {recovered} of {}",
        thresholds.len()
    );
    assert!(recovered >= 1, "no kill landed inside a move:\n{log}");
    let _ = stop.send(());
    let _ = vtask.await;
}
