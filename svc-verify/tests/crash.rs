//! Real process crashes: the `svc-verify` binary is SIGKILLed under concurrent load (unary
//! and streaming submissions) several times and restarted on the same data directory.
//!
//! Proves `LogDurability` (every answered submission is in the log, as answered),
//! `IndexCoversLog` (every logged decision is answered by the dedup index after restart) and
//! `Idempotency` (no key has two decision records), and that the log verifies end to end.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use flk_outcome_log::{LogConfig, OutcomeLog};
use flk_proto::v1::{self, submit_stream_response};
use flk_runtime::client::VerifyClient;
use futures::StreamExt as _;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

const CYCLES: usize = 4;
const UNARY_TASKS: usize = 14;
const STREAM_TASKS: usize = 2;
/// Acknowledged submissions per cycle before the kill.
const ACKS_BEFORE_KILL: usize = 48;

/// A running `svc-verify` process.
/// The bearer token the process requires (configured by its digest).
const TOKEN: &str = "crash-test-token";

struct Process {
    child: Child,
    addr: SocketAddr,
}

impl Process {
    /// Starts the binary and reads its address from the `listening on` line.
    async fn start(config: &Path, stderr: &Path) -> Process {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_svc-verify"));
        cmd.arg("--config")
            .arg(config)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(stderr)
                    .expect("stderr file"),
            )
            .kill_on_drop(true);
        for var in [
            svc_verify::config::env::CONFIG,
            svc_verify::config::env::LISTEN,
            svc_verify::config::env::DATA_DIR,
            svc_verify::config::env::REGION,
            svc_verify::config::env::TENANTS_FILE,
            svc_verify::config::env::HMAC_KEY,
            svc_verify::config::env::DEDUP_BACKEND,
            svc_verify::config::env::DEDUP_URL,
            svc_verify::config::env::FSYNC,
            svc_verify::config::env::AUTH_TOKEN_FILE,
            svc_verify::config::env::AUTH_TOKEN_SHA256,
        ] {
            cmd.env_remove(var);
        }
        let mut child = cmd.spawn().expect("spawn svc-verify");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let addr = tokio::time::timeout(DEADLINE, async {
            while let Some(line) = lines.next_line().await.expect("read stdout") {
                if let Some(rest) = line.strip_prefix("svc-verify listening on http://") {
                    let addr = rest.split_whitespace().next().expect("address");
                    return addr.parse::<SocketAddr>().expect("socket address");
                }
            }
            let log = std::fs::read_to_string(stderr).unwrap_or_default();
            panic!("svc-verify exited before listening:\n{log}");
        })
        .await
        .expect("svc-verify listens within the deadline");
        // Keep draining stdout so the process never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Process { child, addr }
    }

    async fn client(&self) -> VerifyClient {
        common::client_of(self.addr, TOKEN).await
    }

    /// SIGKILL, and check that it was the signal that ended it.
    async fn kill(mut self) {
        self.child.start_kill().expect("SIGKILL svc-verify");
        let status = self.child.wait().await.expect("wait for svc-verify");
        assert_eq!(
            status.signal(),
            Some(9),
            "svc-verify died of SIGKILL: {status:?}"
        );
    }
}

/// Everything the clients were told: pcs -> outcome.
type Acks = Vec<(Value, v1::Outcome)>;

/// One cycle of load: unary and streaming clients submit distinct PCS until the connection
/// breaks; returns what was acknowledged.
async fn load_until_killed(proc: Process, cycle: usize) -> Acks {
    let client = proc.client().await;
    let (tx, mut acked) = watch::channel(0usize);
    let tx = Arc::new(tx);
    let broken = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for t in 0..UNARY_TASKS {
        let mut client = client.clone();
        let tx = tx.clone();
        tasks.push(tokio::spawn(async move {
            let mut acks = Acks::new();
            for i in 0.. {
                let pcs = fresh_accepted(&format!("c{cycle}-u{t}-{i}"));
                match client.submit(json_request(TENANT, &pcs)).await {
                    Ok(r) => {
                        let o = r.into_inner().outcome.expect("outcome");
                        acks.push((pcs, o));
                        tx.send_modify(|n| *n += 1);
                    }
                    // The process was killed (or is dying): nothing more is answered.
                    Err(_) => break,
                }
            }
            acks
        }));
    }
    for t in 0..STREAM_TASKS {
        let mut client = client.clone();
        let tx = tx.clone();
        let broken = broken.clone();
        tasks.push(tokio::spawn(async move {
            let name = move |i: usize| format!("c{cycle}-s{t}-{i}");
            let requests = futures::stream::iter(0..)
                .map(move |i| json_request(TENANT, &fresh_accepted(&name(i))));
            let mut acks = Acks::new();
            let Ok(response) = client.submit_stream(requests).await else {
                return acks;
            };
            let mut responses = response.into_inner();
            while let Ok(Some(r)) = responses.message().await {
                let pcs = fresh_accepted(&name(r.index as usize));
                match r.result {
                    Some(submit_stream_response::Result::Outcome(o)) => {
                        acks.push((pcs, o));
                        tx.send_modify(|n| *n += 1);
                    }
                    // Per-item errors before the kill would be a bug.
                    other => {
                        if !broken.load(Ordering::SeqCst) {
                            panic!("stream item {}: {other:?}", r.index);
                        }
                    }
                }
            }
            acks
        }));
    }
    tokio::time::timeout(DEADLINE, acked.wait_for(|n| *n >= ACKS_BEFORE_KILL))
        .await
        .expect("load acknowledged within the deadline")
        .expect("load running");
    broken.store(true, Ordering::SeqCst);
    proc.kill().await;
    let mut acks = Acks::new();
    for t in tasks {
        acks.extend(t.await.expect("load task"));
    }
    acks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_no_acknowledged_decision() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    let config = dir.path().join("verify.toml");
    let stderr = dir.path().join("svc-verify.stderr");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\nhmac_key = \"{SECRET}\"\n[log]\nfsync = true\n[auth]\ntoken_sha256 = \"{}\"\n",
            data_dir.display().to_string(),
            flk_runtime::security::TokenHash::of(TOKEN).hex()
        ),
    )
    .expect("write config");

    let mut acks = Acks::new();
    for cycle in 0..CYCLES {
        let proc = Process::start(&config, &stderr).await;
        let got = load_until_killed(proc, cycle).await;
        assert!(got.len() >= ACKS_BEFORE_KILL, "cycle {cycle}");
        acks.extend(got);
    }

    // Restart once more: every acknowledgement is answered by the index, as it was told.
    let proc = Process::start(&config, &stderr).await;
    let mut client = proc.client().await;
    for (pcs, told) in &acks {
        assert!(!told.duplicate, "every load submission was a first one");
        let stored = client
            .get_outcome(get_request(TENANT, &pcs_id_of(pcs)))
            .await
            .unwrap_or_else(|s| panic!("acknowledged {} lost: {s:?}", pcs_id_of(pcs)))
            .into_inner();
        assert_eq!(stored.outcome, told.outcome);
        assert_eq!(stored.reason_code, told.reason_code);
        assert_eq!(without_duplicate(&stored), *told);
    }

    // The whole log over Subscribe, up to a sentinel decided now.
    let sentinel = submit_ok(
        &mut client,
        json_request(TENANT, &fresh_accepted("sentinel")),
    )
    .await;
    let mut feed = subscribe(&mut client, 1).await;
    let mut records = Vec::new();
    while records.len() < sentinel.seq as usize {
        records.push(next_feed(&mut feed).await);
    }
    drop(feed);
    assert_log_consistent(&records);
    let logged: HashMap<&str, &v1::FeedRecord> =
        records.iter().map(|r| (r.pcs_id.as_str(), r)).collect();
    for (pcs, told) in &acks {
        let rec = logged
            .get(pcs_id_of(pcs).as_str())
            .expect("every acknowledged submission is in the log");
        assert_eq!(rec.outcome.as_ref(), Some(told));
    }
    // Decisions logged but never acknowledged (killed before the answer) are indexed too.
    for rec in &records {
        let stored = client
            .get_outcome(get_request(TENANT, &rec.pcs_id))
            .await
            .unwrap_or_else(|s| panic!("logged decision {} not indexed: {s:?}", rec.seq))
            .into_inner();
        assert_eq!(Some(without_duplicate(&stored)), rec.outcome);
    }
    drop(client);
    // Killed while idle: nothing torn, so the log verifies as it is.
    proc.kill().await;

    let log_dir = data_dir.join("outcome-log");
    let report = flk_outcome_log::verify_dir(&log_dir).expect("log verifies end to end");
    assert_eq!(report.last_seq, sentinel.seq);
    let (log, _) = OutcomeLog::open(LogConfig::new(&log_dir)).expect("open log");
    let offline: Vec<_> = log
        .read_from(1)
        .map(|r| {
            let (seq, payload) = r.expect("read log");
            decode_feed(seq, &payload)
        })
        .collect();
    assert_eq!(offline, records, "the feed is the log");
}
