//! The outbox across a crash: an agent process (this test binary re-run as a child) writes
//! every golden vector ahead to its outbox and starts sending; it is killed with SIGKILL
//! mid-send; a restarted agent delivers the rest. Every PCS ends up decided exactly once:
//! at most one non-duplicate answer per `pcs_id` across both runs, copies answered as
//! duplicates, nothing left pending or dead-lettered, and a final resubmission of everything
//! answered as duplicates with an outcome stored for each.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write as _};
use std::process::{Command, Stdio};
use std::time::Duration;

use flk_sdk::client::{Client, ClientConfig, Outbox};
use flk_sdk::{HmacMode, SigningKey};

const CHILD: &str = "FLK_SDK_OUTBOX_CHILD_DIR";

/// The agent (runs only as the child): `FLK_SDK_OUTBOX_CHILD_DIR`, `..._URL`, `..._ENQUEUE`,
/// `..._DELAY_MS`. Prints `answer <seq> <pcs_id> <duplicate>` per final answer.
#[test]
fn outbox_agent_child() {
    let Some(dir) = std::env::var_os(CHILD) else {
        return; // not the child: nothing to do
    };
    let url = std::env::var("FLK_SDK_OUTBOX_CHILD_URL").unwrap();
    let delay = Duration::from_millis(
        std::env::var("FLK_SDK_OUTBOX_CHILD_DELAY_MS")
            .ok()
            .and_then(|d| d.parse().ok())
            .unwrap_or(0),
    );
    let mut outbox = Outbox::open(&dir).unwrap();
    if std::env::var_os("FLK_SDK_OUTBOX_CHILD_ENQUEUE").is_some() {
        let key = SigningKey::hmac(b"testsecret", HmacMode::Digest).unwrap();
        for mut p in common::signing_vectors() {
            p.sign(&key);
            outbox.enqueue(p.to_json()).unwrap();
        }
        println!("enqueued {}", outbox.len());
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = Client::new(ClientConfig::new(url, "default")).unwrap();
    rt.block_on(outbox.deliver(&client, |seq, a| {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "answer {seq} {} {}",
            a.pcs_id.as_deref().unwrap_or("-"),
            a.duplicate
        )
        .unwrap();
        out.flush().unwrap();
        std::thread::sleep(delay); // a slow agent, so that the kill lands mid-send
    }))
    .unwrap();
    println!("delivered");
}

/// Runs the child agent; with `kill_after = Some(n)`, SIGKILLs it after its n-th answer.
fn run_agent(
    dir: &std::path::Path,
    url: &str,
    enqueue: bool,
    kill_after: Option<usize>,
) -> Vec<(String, bool)> {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "outbox_agent_child",
        "--exact",
        "--nocapture",
        "--test-threads",
        "1",
    ])
    .env(CHILD, dir)
    .env("FLK_SDK_OUTBOX_CHILD_URL", url)
    .env(
        "FLK_SDK_OUTBOX_CHILD_DELAY_MS",
        if kill_after.is_some() { "25" } else { "0" },
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    if enqueue {
        cmd.env("FLK_SDK_OUTBOX_CHILD_ENQUEUE", "1");
    }
    let mut child = cmd.spawn().unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut answers = Vec::new();
    let mut delivered = false;
    for line in stdout.lines() {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("answer ") {
            let mut f = rest.split(' ');
            let (_seq, id, dup) = (f.next(), f.next().unwrap(), f.next().unwrap());
            answers.push((id.to_string(), dup == "true"));
            if Some(answers.len()) == kill_after {
                child.kill().unwrap(); // SIGKILL on Unix
                break;
            }
        }
        delivered |= line == "delivered";
    }
    let status = child.wait().unwrap();
    match kill_after {
        Some(_) => assert!(!status.success(), "the agent finished before it was killed"),
        None => assert!(
            status.success() && delivered,
            "the restarted agent failed: {status}"
        ),
    }
    answers
}

#[test]
fn sigkill_mid_send_then_restart_delivers_everything_once() {
    if std::env::var_os(CHILD).is_some() {
        return;
    }
    let flk = common::FlkUp::start(&["--hmac-key", "testsecret"]);
    let outbox_dir = tempfile::tempdir().unwrap();
    let vectors = common::signing_vectors();

    let first = run_agent(outbox_dir.path(), &flk.url, true, Some(10));
    assert_eq!(first.len(), 10);
    let pending = Outbox::open(outbox_dir.path()).unwrap().len();
    assert!(
        (vectors.len() - 11..=vectors.len() - 9).contains(&pending),
        "{pending} pending after the kill"
    );

    let second = run_agent(outbox_dir.path(), &flk.url, false, None);
    let mut fresh: HashMap<String, usize> = HashMap::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (id, dup) in first.iter().chain(&second) {
        *seen.entry(id.clone()).or_default() += 1;
        if !dup {
            *fresh.entry(id.clone()).or_default() += 1;
        }
    }
    for p in &vectors {
        assert!(seen.contains_key(&p.pcs_id), "{} never answered", p.pcs_id);
        assert!(
            fresh.get(&p.pcs_id).copied().unwrap_or(0) <= 1,
            "{} decided twice",
            p.pcs_id
        );
    }
    // Whatever the killed agent had sent but not acknowledged came back as a duplicate.
    for (id, dup) in &second {
        if first.iter().any(|(f, _)| f == id) {
            assert!(dup, "{id} answered as new after it was decided");
        }
    }
    let outbox = Outbox::open(outbox_dir.path()).unwrap();
    assert!(
        outbox.is_empty(),
        "{} entries left in the outbox",
        outbox.len()
    );
    assert!(
        !outbox.dead_letter_path().exists(),
        "something was dead-lettered"
    );

    // The server holds exactly one decision per PCS: every copy now is a duplicate.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let token = flk.default_token.clone().unwrap();
    let client = Client::new(ClientConfig::new(&flk.url, "default").with_token(token)).unwrap();
    let key = SigningKey::hmac(b"testsecret", HmacMode::Digest).unwrap();
    rt.block_on(async {
        for mut p in vectors {
            p.sign(&key);
            let a = client.submit(&p).await.unwrap();
            assert!(a.duplicate, "{}: {a:?}", p.pcs_id);
            assert!(client.outcome(&p.pcs_id).await.unwrap().is_some());
        }
    });
}
