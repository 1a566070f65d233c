//! SIEM streaming inside `flk up`, through the real binary: a sink configured in the stack
//! file's `[audit.siem]` receives every decision; the stack killed with SIGKILL in the middle
//! of a request and started again loses nothing and sends again only the batch whose answer
//! it never got.

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use flk_testkit::siem::{Faults, Product, Receiver};
use serde_json::Value;

const HEC_TOKEN: &str = "hec-test-token";
const BATCH: usize = 20;
const COUNT: usize = 300;

fn bench(url: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_flk"))
        .args(["bench", "--url", url, "--hmac-key", common::SECRET])
        .args(["--count", &COUNT.to_string(), "--quiet", "--json"])
        .args(["--mix", "accepted=0.6,escalated=0.25,rejected=0.15"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Decision events per event id.
fn decision_counts(events: &[Value]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for e in events.iter().filter(|e| e["type"] == "decision") {
        *counts
            .entry(e["event_id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_stack_loses_no_event_and_resends_only_the_unacknowledged_batch() {
    // The fourth request is taken in but never answered: the stack dies waiting for it.
    let faults = Faults {
        hold_after: Some(3),
        ..Faults::default()
    };
    let receiver = Receiver::start(Product::Splunk, HEC_TOKEN, faults)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("hec.token");
    std::fs::write(&token, HEC_TOKEN).unwrap();
    let config = dir.path().join("flk.toml");
    std::fs::write(
        &config,
        format!(
            "[audit]\ncheckpoint_interval_ms = 50\n\n[audit.siem]\nspool_max_bytes = 16777216\n\n\
             [[audit.siem.sinks]]\nname = \"hec\"\nkind = \"splunk_hec\"\nurl = \"{}\"\n\
             token_file = \"{}\"\nbatch_max_events = {BATCH}\nflush_interval_ms = 20\n",
            receiver.url(),
            token.display()
        ),
    )
    .unwrap();
    let mut up = common::up_with(&[
        "--hmac-key",
        common::SECRET,
        "--config",
        config.to_str().unwrap(),
    ]);
    bench(&up.url);
    tokio::time::timeout(
        Duration::from_secs(60),
        receiver.wait_for(|seen| seen.accepted_requests >= 4),
    )
    .await
    .expect("the sink sends four requests");
    up.restart();

    tokio::time::timeout(
        Duration::from_secs(60),
        receiver.wait_for(|seen| decision_counts(&seen.events).len() >= COUNT),
    )
    .await
    .expect("every decision reaches the SIEM after the restart");
    let counts = receiver.seen(|seen| decision_counts(&seen.events));
    assert_eq!(counts.len(), COUNT, "one event id per decision");
    let resent: usize = counts.values().map(|n| n - 1).sum();
    assert!(resent <= BATCH, "{resent} decision events sent twice");
    assert!(counts.values().all(|n| *n <= 2));
    // The batch whose answer was lost was sent again, whatever its events were.
    let all_resent: usize = receiver.seen(|seen| {
        let mut ids = std::collections::HashSet::new();
        seen.events
            .iter()
            .filter(|e| !ids.insert(e["event_id"].as_str().unwrap().to_owned()))
            .count()
    });
    assert!(
        (1..=BATCH).contains(&all_resent),
        "{all_resent} events sent twice"
    );
}

#[test]
fn a_sink_without_its_secret_or_with_an_unknown_kind_stops_the_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    for (sink, expect) in [
        (
            "name = \"hec-main\"\nkind = \"splunk_hec\"\nurl = \"http://127.0.0.1:9\"\ntoken_env = \"FLK_TEST_UNSET_HEC_TOKEN\"\n",
            "FLK_TEST_UNSET_HEC_TOKEN",
        ),
        (
            "name = \"kafka-1\"\nkind = \"kafka\"\nurl = \"http://127.0.0.1:9\"\n",
            "unknown kind",
        ),
        (
            "name = \"es-1\"\nkind = \"elasticsearch\"\nurl = \"ftp://127.0.0.1/\"\n",
            "url",
        ),
    ] {
        let config = dir.path().join("flk.toml");
        std::fs::write(&config, format!("[[audit.siem.sinks]]\n{sink}")).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_flk"))
            .args(["up", "--listen", "127.0.0.1:0", "--config"])
            .arg(&config)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .env_remove("FLK_TEST_UNSET_HEC_TOKEN")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let name = sink.split('"').nth(1).unwrap();
        assert!(!out.status.success(), "{sink}: started");
        assert!(
            stderr.contains(name) && stderr.contains(expect),
            "{sink}: {stderr}"
        );
    }
}
