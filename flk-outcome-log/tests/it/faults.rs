//! Injected write / fsync / rollback failures: whole batches fail, nothing is acknowledged, no seq is lost.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use flk_outcome_log::{Fault, LogError, OutcomeLog, verify_dir};
use futures::StreamExt;

use crate::common::{CountingObserver, append_range, config, payload, read_all};

#[tokio::test]
async fn failed_write_fails_the_batch_and_leaves_no_gap() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(tmp.path());
    let observer = Arc::new(CountingObserver::default());
    let (log, _) = OutcomeLog::open_with_observer(cfg.clone(), observer.clone()).expect("open");
    append_range(&log, 1..=5).await;

    log.inject_faults(Fault::Write, 1);
    let failed = log
        .append_many(vec![payload(100), payload(101), payload(102)])
        .await;
    assert!(matches!(failed, Err(LogError::Io { .. })), "{failed:?}");
    assert_eq!(log.last_seq(), 5);
    assert!(!log.is_failed());
    assert_eq!(observer.failed_batches.load(Ordering::SeqCst), 1);

    // The torn half-batch was rolled back: seqs continue at 6 and nothing of it is readable.
    append_range(&log, 6..=8).await;
    assert_eq!(
        read_all(&log, 1),
        (1..=8).map(|i| (i, payload(i))).collect::<Vec<_>>()
    );
    drop(log);
    let (_log, report) = OutcomeLog::open(cfg.clone()).expect("reopen");
    assert_eq!((report.last_seq, report.torn_tail), (8, None));
}

#[tokio::test]
async fn failed_fsync_fails_the_batch_and_leaves_no_gap() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(tmp.path());
    let (log, _) = OutcomeLog::open(cfg.clone()).expect("open");
    append_range(&log, 1..=3).await;
    log.inject_faults(Fault::Fsync, 2);
    for _ in 0..2 {
        assert!(matches!(
            log.append(payload(99)).await,
            Err(LogError::Io { .. })
        ));
    }
    append_range(&log, 4..=6).await;
    assert_eq!(
        read_all(&log, 1),
        (1..=6).map(|i| (i, payload(i))).collect::<Vec<_>>()
    );
    drop(log);
    assert_eq!(verify_dir(&cfg.dir).expect("verify").last_seq, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appenders_see_only_whole_batch_failures() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(tmp.path());
    let (log, _) = OutcomeLog::open(cfg.clone()).expect("open");
    log.inject_faults(Fault::Fsync, 3);
    log.inject_faults(Fault::Write, 3);
    let mut tasks = Vec::new();
    for task in 0..16u64 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for i in 0..25u64 {
                let body = payload(task * 1000 + i);
                outcomes.push((log.append(body.clone()).await, body));
            }
            outcomes
        }));
    }
    let mut acked = std::collections::BTreeMap::new();
    let mut failures = 0;
    for task in tasks {
        for (outcome, body) in task.await.expect("task") {
            match outcome {
                Ok(seq) => assert!(acked.insert(seq, body).is_none()),
                Err(LogError::Io { .. }) => failures += 1,
                Err(other) => panic!("unexpected error {other}"),
            }
        }
    }
    assert!(
        failures >= 6,
        "every injected fault fails at least one append"
    );
    let acked_count = acked.len() as u64;
    assert_eq!(acked_count + failures, 16 * 25);
    // Gap-free: the acknowledged records are exactly seqs 1..=n, nothing else is in the log.
    assert_eq!(read_all(&log, 1), acked.into_iter().collect::<Vec<_>>());
    assert_eq!(log.last_seq(), acked_count);
    drop(log);
    assert_eq!(verify_dir(&cfg.dir).expect("verify").records, acked_count);
}

#[tokio::test]
async fn failed_rollback_makes_the_log_unavailable_until_reopened() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(tmp.path());
    let (log, _) = OutcomeLog::open(cfg.clone()).expect("open");
    append_range(&log, 1..=4).await;
    log.inject_faults(Fault::Rollback, 1);
    log.inject_faults(Fault::Write, 1);
    assert!(matches!(
        log.append(payload(50)).await,
        Err(LogError::Io { .. })
    ));
    assert!(log.is_failed());
    for _ in 0..3 {
        assert!(matches!(
            log.append(payload(51)).await,
            Err(LogError::Unavailable)
        ));
    }
    assert_eq!(log.last_seq(), 4);
    drop(log);

    // The half-written batch is still in the file; recovery cuts it.
    let (log, report) = OutcomeLog::open(cfg.clone()).expect("reopen");
    assert!(report.torn_tail.is_some());
    assert_eq!(report.last_seq, 4);
    assert!(!log.is_failed());
    append_range(&log, 5..=6).await;
    drop(log);
    assert_eq!(verify_dir(&cfg.dir).expect("verify").last_seq, 6);
}

#[tokio::test]
async fn failure_right_after_rotation_keeps_segments_consistent() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(tmp.path());
    cfg.segment_max_bytes = 200;
    let (log, _) = OutcomeLog::open(cfg.clone()).expect("open");
    append_range(&log, 1..=3).await;
    // Each of these lands in a new segment, and the first write into it fails.
    for first in [4, 6] {
        log.inject_faults(Fault::Write, 1);
        let failed = log
            .append_many((0..6).map(|i| payload(1000 + i)).collect())
            .await;
        assert!(failed.is_err());
        append_range(&log, first..=first + 1).await;
    }
    assert_eq!(
        read_all(&log, 1),
        (1..=7).map(|i| (i, payload(i))).collect::<Vec<_>>()
    );
    drop(log);
    assert_eq!(verify_dir(&cfg.dir).expect("verify").last_seq, 7);
}

#[tokio::test]
async fn subscribers_never_see_failed_records() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (log, _) = OutcomeLog::open(config(tmp.path())).expect("open");
    let mut feed = log.subscribe(1);
    append_range(&log, 1..=2).await;
    log.inject_faults(Fault::Fsync, 1);
    assert!(log.append(payload(77)).await.is_err());
    append_range(&log, 3..=4).await;
    for i in 1..=4 {
        let (seq, body) = feed.next().await.expect("item").expect("record");
        assert_eq!((seq, body), (i, payload(i)));
    }
}
