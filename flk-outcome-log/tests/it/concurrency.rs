//! Many concurrent appenders: every record durable, seqs distinct and contiguous, and group commit batching them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use flk_outcome_log::{OutcomeLog, verify_dir};

use crate::common::{CountingObserver, config, read_all};

const TASKS: u64 = 64;
const PER_TASK: u64 = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_are_durable_contiguous_and_group_committed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(tmp.path());
    let observer = Arc::new(CountingObserver::default());
    let (log, _) = OutcomeLog::open_with_observer(cfg.clone(), observer.clone()).expect("open");

    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..PER_TASK {
                let payload = Bytes::from(format!("task {task} record {i}"));
                let seq = log.append(payload.clone()).await.expect("append");
                acked.push((seq, payload));
            }
            acked
        }));
    }
    let mut acked = BTreeMap::new();
    for task in tasks {
        for (seq, payload) in task.await.expect("task") {
            assert!(
                acked.insert(seq, payload).is_none(),
                "seq {seq} given twice"
            );
        }
    }
    let total = TASKS * PER_TASK;
    assert_eq!(
        acked.keys().copied().collect::<Vec<_>>(),
        (1..=total).collect::<Vec<_>>()
    );
    assert_eq!(log.last_seq(), total);
    assert_eq!(
        read_all(&log, 1),
        acked.clone().into_iter().collect::<Vec<_>>()
    );

    assert_eq!(observer.records.load(Ordering::SeqCst), total as usize);
    let batches = observer.batches.load(Ordering::SeqCst);
    assert!(
        observer.max_batch.load(Ordering::SeqCst) > 1 && batches < total as usize,
        "no group commit: {batches} batches for {total} records"
    );
    drop(log);

    let (log, report) = OutcomeLog::open(cfg.clone()).expect("reopen");
    assert_eq!(report.last_seq, total);
    assert_eq!(read_all(&log, 1).len(), total as usize);
    drop(log);
    assert_eq!(verify_dir(&cfg.dir).expect("verify").records, total);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_append_many_keeps_each_call_contiguous() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (log, _) = OutcomeLog::open(config(tmp.path())).expect("open");
    let mut tasks = Vec::new();
    for task in 0..16u64 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut calls = Vec::new();
            for call in 0..20u64 {
                let payloads: Vec<Bytes> = (0..5)
                    .map(|k| Bytes::from(format!("{task}/{call}/{k}")))
                    .collect();
                let seqs = log
                    .append_many(payloads.clone())
                    .await
                    .expect("append_many");
                assert_eq!(seqs.end() - seqs.start() + 1, 5);
                calls.push((seqs, payloads));
            }
            calls
        }));
    }
    let mut by_seq = BTreeMap::new();
    for task in tasks {
        for (seqs, payloads) in task.await.expect("task") {
            for (seq, payload) in seqs.zip(payloads) {
                assert!(by_seq.insert(seq, payload).is_none());
            }
        }
    }
    assert_eq!(by_seq.len(), 16 * 20 * 5);
    assert_eq!(read_all(&log, 1), by_seq.into_iter().collect::<Vec<_>>());
}
