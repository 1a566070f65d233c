//! Store outages: a dead dedup server (Redis, PostgreSQL) or a failing outcome log makes the
//! service fail closed (UNAVAILABLE + `retry-after`, nothing acknowledged, nothing
//! half-recorded) and the SAME running service serves again once the store is back.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use flk_outcome_log::Fault;
use flk_proto::v1;
use serde_json::Value;
use tokio::sync::watch;
use tonic::Code;

/// What one submission got: its outcome, or `None` for UNAVAILABLE.
type Answer = Option<v1::Outcome>;

/// Counts of answers so far, for the test to wait on (no sleeps).
#[derive(Debug, Clone, Copy, Default)]
struct Progress {
    acked: usize,
    unavailable: usize,
}

/// Submits distinct fresh PCS from `tasks` concurrent clients until `stop`; every answer is
/// an outcome or UNAVAILABLE (anything else fails the test).
struct Load {
    stop: Arc<AtomicBool>,
    progress: watch::Receiver<Progress>,
    tasks: Vec<tokio::task::JoinHandle<Vec<(Value, Answer)>>>,
}

impl Load {
    fn start(client: &common::VerifyClient, tasks: usize, tag: &str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, progress) = watch::channel(Progress::default());
        let tx = Arc::new(tx);
        let tasks = (0..tasks)
            .map(|t| {
                let mut client = client.clone();
                let stop = stop.clone();
                let tx = tx.clone();
                let tag = tag.to_owned();
                tokio::spawn(async move {
                    let mut answers = Vec::new();
                    let mut i = 0;
                    while !stop.load(Ordering::SeqCst) {
                        let pcs = fresh_accepted(&format!("{tag}-{t}-{i}"));
                        i += 1;
                        let answer = match client.submit(json_request(TENANT, &pcs)).await {
                            Ok(r) => Some(r.into_inner().outcome.expect("outcome")),
                            Err(s) => {
                                assert_unavailable::<()>(Err(s));
                                None
                            }
                        };
                        tx.send_modify(|p| match answer {
                            Some(_) => p.acked += 1,
                            None => p.unavailable += 1,
                        });
                        answers.push((pcs, answer));
                    }
                    answers
                })
            })
            .collect();
        Load {
            stop,
            progress,
            tasks,
        }
    }

    /// Waits until `cond` holds on the progress counters.
    async fn wait(&mut self, what: &str, cond: impl Fn(&Progress) -> bool) -> Progress {
        let p = tokio::time::timeout(DEADLINE, self.progress.wait_for(|p| cond(p)))
            .await
            .unwrap_or_else(|_| panic!("load: {what} not reached within {DEADLINE:?}"))
            .expect("load tasks alive");
        *p
    }

    async fn finish(self) -> Vec<(Value, Answer)> {
        self.stop.store(true, Ordering::SeqCst);
        let mut all = Vec::new();
        for t in self.tasks {
            all.extend(t.await.expect("load task"));
        }
        all
    }
}

/// Kill the dedup server under load and with single calls, then restart it.
async fn dedup_outage_fails_closed_and_the_same_service_recovers(backend: Backend) {
    let mut h = Harness::start(backend).await;
    let mut client = h.client().await;
    let before = fresh_accepted("before-outage");
    let decided = submit_ok(&mut client, json_request(TENANT, &before)).await;
    assert_eq!(h.ready_status().await, 200);

    // Kill the server while 8 clients submit.
    let mut load = Load::start(&client, 8, "load");
    load.wait("first acks", |p| p.acked >= 16).await;
    h.store.kill();
    let at_kill = load.wait("refusals", |p| p.unavailable >= 8).await;

    // Single calls during the outage: refused, never acknowledged, nothing recorded.
    let log_len = h.log_records().await.len();
    let during = fresh_accepted("during-outage");
    let status = assert_unavailable(client.submit(json_request(TENANT, &during)).await);
    assert_eq!(
        status
            .metadata()
            .get(flk_proto::error::ERROR_CODE_METADATA)
            .and_then(|v| v.to_str().ok()),
        Some("dedup_unavailable")
    );
    assert_unavailable(client.submit(json_request(TENANT, &before)).await);
    assert_unavailable(
        client
            .get_outcome(get_request(TENANT, &pcs_id_of(&before)))
            .await,
    );
    assert_eq!(h.ready_status().await, 503, "/ready names the dead store");
    let records = h.log_records().await;
    assert!(
        decisions(&records, TENANT, &pcs_id_of(&during)).is_empty(),
        "a refused submission is not recorded"
    );
    assert!(
        records.len() <= log_len + 8,
        "at most the in-flight submissions of the load got recorded during the outage"
    );

    // Restart: the same running service serves again.
    h.store.restart().await;
    let answer = poll_until("svc-verify serving after the store restart", || {
        let mut client = client.clone();
        let req = json_request(TENANT, &during);
        async move {
            match client.submit(req).await {
                Ok(r) => Some(r.into_inner().outcome.expect("outcome")),
                Err(s) if s.code() == Code::Unavailable => None,
                Err(s) => panic!("unexpected status while recovering: {s:?}"),
            }
        }
    })
    .await;
    assert!(!answer.duplicate, "the refused submission is decided now");
    load.wait("acks after the restart", |p| p.acked >= at_kill.acked + 16)
        .await;
    let answers = load.finish().await;
    assert_eq!(h.ready_status().await, 200);

    // Nothing half-recorded, nothing decided twice, every ack in the log as answered.
    let records = h.log_records().await;
    assert_log_consistent(&records);
    let logged: HashMap<&str, &v1::FeedRecord> = records
        .iter()
        .filter(|r| r.kind() == v1::RecordKind::Decision)
        .map(|r| (r.pcs_id.as_str(), r))
        .collect();
    let mut unavailable = 0;
    for (pcs, answer) in &answers {
        let id = pcs_id_of(pcs);
        match answer {
            Some(o) => {
                let rec = logged.get(id.as_str()).expect("every ack is in the log");
                assert_eq!(rec.outcome.as_ref(), Some(&without_duplicate(o)));
            }
            None => {
                unavailable += 1;
                // Resubmitting it answers the logged decision if there is one, else decides.
                let again = submit_ok(&mut client, json_request(TENANT, pcs)).await;
                match logged.get(id.as_str()) {
                    Some(rec) => {
                        assert!(again.duplicate);
                        assert_eq!(rec.outcome.as_ref(), Some(&without_duplicate(&again)));
                    }
                    None => assert!(!again.duplicate),
                }
            }
        }
    }
    assert!(unavailable >= 8);
    assert_eq!(
        decisions(&h.log_records().await, TENANT, &pcs_id_of(&during)).len(),
        1
    );
    assert_log_consistent(&h.log_records().await);

    {
        // PostgreSQL keeps its data across the crash. Redis (no persistence in the tests)
        // loses it, and with it the replica's completeness marker: the service refuses misses
        // until it has replayed its log into Redis. Either way the index answers earlier keys
        // with their first decision, never a second one.
        let again = submit_ok(&mut client, json_request(TENANT, &before)).await;
        assert!(again.duplicate);
        assert_eq!(without_duplicate(&again), decided);
        for (pcs, answer) in &answers {
            if let Some(o) = answer {
                let stored = client
                    .get_outcome(get_request(TENANT, &pcs_id_of(pcs)))
                    .await
                    .expect("acked key is in the index")
                    .into_inner();
                assert_eq!(without_duplicate(&stored), without_duplicate(o));
            }
        }
    }
    drop(client);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_fails_closed_and_the_same_service_recovers() {
    dedup_outage_fails_closed_and_the_same_service_recovers(Backend::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_fails_closed_and_the_same_service_recovers() {
    dedup_outage_fails_closed_and_the_same_service_recovers(Backend::Postgres).await;
}

/// A failing outcome-log write or fsync: UNAVAILABLE, nothing recorded, the next submission
/// is decided with the next seq (no gap). A failed rollback keeps the log refusing until the
/// service is reopened, which then serves from a log that verifies end to end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcome_log_failure_fails_closed_and_recovers() {
    let mut h = Harness::start_with(
        Backend::Embedded,
        Options {
            fsync: true,
            ..Options::default()
        },
    )
    .await;
    let mut client = h.client().await;
    let first = submit_ok(&mut client, json_request(TENANT, &fresh_accepted("a"))).await;
    assert_eq!(first.seq, 1);
    let mut last = first.seq;

    for (i, fault) in [Fault::Write, Fault::Fsync].into_iter().enumerate() {
        let pcs = fresh_accepted(&format!("fault-{i}"));
        h.engine().log().inject_faults(fault, 1);
        let status = assert_unavailable(client.submit(json_request(TENANT, &pcs)).await);
        assert_eq!(
            status
                .metadata()
                .get(flk_proto::error::ERROR_CODE_METADATA)
                .and_then(|v| v.to_str().ok()),
            Some("log_unavailable"),
            "{fault:?}"
        );
        assert_status(
            client
                .get_outcome(get_request(TENANT, &pcs_id_of(&pcs)))
                .await,
            Code::NotFound,
            "not_found",
        );
        let o = submit_ok(&mut client, json_request(TENANT, &pcs)).await;
        assert!(!o.duplicate, "{fault:?}: the retry is the first decision");
        assert_eq!(o.seq, last + 1, "{fault:?}: the failed batch left no gap");
        last = o.seq;
    }
    let records = h.log_records().await;
    assert_eq!(records.len() as u64, last);
    assert_log_consistent(&records);

    // The rollback of a failed write fails too: the log refuses until reopened.
    let pcs = fresh_accepted("failed-log");
    h.engine().log().inject_faults(Fault::Write, 1);
    h.engine().log().inject_faults(Fault::Rollback, 1);
    assert_unavailable(client.submit(json_request(TENANT, &pcs)).await);
    assert!(h.engine().log().is_failed());
    assert_unavailable(client.submit(json_request(TENANT, &pcs)).await);
    assert_eq!(h.ready_status().await, 503);
    drop(client);
    h.restart().await;
    let mut client = h.client().await;
    let o = submit_ok(&mut client, json_request(TENANT, &pcs)).await;
    assert!(!o.duplicate);
    assert_eq!(o.seq, last + 1, "the torn batch was cut on reopen");
    assert_eq!(h.ready_status().await, 200);
    let records = h.log_records().await;
    assert_log_consistent(&records);
    drop(client);
    h.stop().await;
    let report = flk_outcome_log::verify_dir(&h.log_dir()).expect("log verifies");
    assert_eq!(report.last_seq, last + 1);
    assert_eq!(report.records, last + 1);
}
