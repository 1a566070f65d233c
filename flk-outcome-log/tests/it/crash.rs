//! A real process appending in a loop is killed with SIGKILL; every acknowledged record must survive, over several kill cycles.
//!
//! The test re-runs its own binary (this same test, with `CHILD_DIR_ENV` set) as the appender.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use bytes::Bytes;
use flk_outcome_log::{LogConfig, OutcomeLog, verify_dir};

use crate::common::read_all;

const CHILD_DIR_ENV: &str = "FLK_OUTCOME_LOG_CRASH_CHILD_DIR";
const CHILD_CYCLE_ENV: &str = "FLK_OUTCOME_LOG_CRASH_CHILD_CYCLE";
const TEST_NAME: &str = "crash::acknowledged_records_survive_sigkill";
const CYCLES: u64 = 5;
const CHILD_TASKS: u64 = 8;
/// Bound on a child's appends per task, should the parent never kill it.
const CHILD_MAX_PER_TASK: u64 = 50_000;

fn child_config(dir: PathBuf) -> LogConfig {
    let mut cfg = LogConfig::new(dir);
    // Small segments, so kills also land around rotations.
    cfg.segment_max_bytes = 8 * 1024;
    cfg
}

/// The payload the child appends for `id`; the parent rebuilds it from the printed id.
fn child_payload(id: &str) -> Bytes {
    let pad = id.bytes().map(usize::from).sum::<usize>() % 200;
    Bytes::from(format!("{id}:{}", "p".repeat(pad)))
}

#[test]
fn acknowledged_records_survive_sigkill() {
    if let Some(dir) = std::env::var_os(CHILD_DIR_ENV) {
        run_child(PathBuf::from(dir));
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("log");
    let exe = std::env::current_exe().expect("current_exe");
    let mut acked: BTreeMap<u64, Bytes> = BTreeMap::new();

    for cycle in 0..CYCLES {
        let mut child = Command::new(&exe)
            .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR_ENV, &dir)
            .env(CHILD_CYCLE_ENV, cycle.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("child stdout");
        let mut lines = BufReader::new(stdout).lines();
        let kill_after = 150 + cycle * 97;
        let mut this_cycle = 0;
        while this_cycle < kill_after {
            let line = lines
                .next()
                .expect("child exited before being killed")
                .expect("read child stdout");
            if record_ack(&line, &mut acked) {
                this_cycle += 1;
            }
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("wait");
        // Acks printed before the kill count too.
        for line in lines {
            record_ack(&line.expect("read child stdout"), &mut acked);
        }

        let (log, report) = OutcomeLog::open(child_config(dir.clone())).expect("reopen");
        let records: BTreeMap<u64, Bytes> = read_all(&log, 1).into_iter().collect();
        assert_eq!(report.last_seq, log.last_seq());
        for (seq, payload) in &acked {
            assert_eq!(
                records.get(seq),
                Some(payload),
                "cycle {cycle}: acknowledged seq {seq} lost or changed"
            );
        }
        drop(log);
        let verified = verify_dir(&dir).expect("verify_dir after recovery");
        assert_eq!(verified.last_seq, records.len() as u64);
    }
    assert!(acked.len() as u64 >= (0..CYCLES).map(|c| 150 + c * 97).sum::<u64>());
}

/// Parses an `acked <seq> <id>` line into `acked`; false for other output.
fn record_ack(line: &str, acked: &mut BTreeMap<u64, Bytes>) -> bool {
    let mut parts = line.split(' ');
    let (Some("acked"), Some(seq), Some(id)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let seq: u64 = seq.parse().expect("seq");
    assert!(
        acked.insert(seq, child_payload(id)).is_none(),
        "seq {seq} acknowledged twice"
    );
    true
}

/// The appender: several tasks append forever, printing each acknowledged seq.
fn run_child(dir: PathBuf) {
    let cycle = std::env::var(CHILD_CYCLE_ENV).expect("cycle");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let (log, _) = OutcomeLog::open(child_config(dir)).expect("child open");
        let mut tasks = Vec::new();
        for task in 0..CHILD_TASKS {
            let log = log.clone();
            let cycle = cycle.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..CHILD_MAX_PER_TASK {
                    let id = format!("c{cycle}t{task}i{i}");
                    let seq = log.append(child_payload(&id)).await.expect("child append");
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "acked {seq} {id}").expect("stdout");
                }
            }));
        }
        for task in tasks {
            task.await.expect("child task");
        }
    });
}
