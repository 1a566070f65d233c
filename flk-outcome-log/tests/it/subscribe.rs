//! Subscriptions: history then live, resume from last seen + 1 without gap or duplicate, end on close.

use std::collections::BTreeMap;

use bytes::Bytes;
use flk_outcome_log::OutcomeLog;
use futures::StreamExt;

use crate::common::{append_range, config, payload};

#[tokio::test]
async fn history_then_live_records() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (log, _) = OutcomeLog::open(config(tmp.path())).expect("open");
    append_range(&log, 1..=50).await;
    let mut feed = log.subscribe(1);
    for i in 1..=50 {
        assert_eq!(
            feed.next().await.expect("item").expect("record"),
            (i, payload(i))
        );
    }
    let writer = {
        let log = log.clone();
        tokio::spawn(async move { append_range(&log, 51..=100).await })
    };
    for i in 51..=100 {
        assert_eq!(
            feed.next().await.expect("item").expect("record"),
            (i, payload(i))
        );
    }
    writer.await.expect("writer");
}

#[tokio::test]
async fn subscription_from_a_future_seq_waits_for_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (log, _) = OutcomeLog::open(config(tmp.path())).expect("open");
    append_range(&log, 1..=5).await;
    let mut feed = log.subscribe(20);
    append_range(&log, 6..=25).await;
    for i in 20..=25 {
        assert_eq!(
            feed.next().await.expect("item").expect("record"),
            (i, payload(i))
        );
    }
}

#[tokio::test]
async fn subscription_ends_after_the_log_closes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (log, _) = OutcomeLog::open(config(tmp.path())).expect("open");
    append_range(&log, 1..=3).await;
    let feed = log.subscribe(2);
    drop(log);
    let rest: Vec<_> = feed.map(|r| r.expect("record")).collect().await;
    assert_eq!(rest, vec![(2, payload(2)), (3, payload(3))]);
}

#[tokio::test]
async fn an_idle_subscriber_does_not_hold_up_writers() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (log, _) = OutcomeLog::open(config(tmp.path())).expect("open");
    let mut idle = log.subscribe(1);
    // Far more than any buffer between the writer and a subscriber could hold.
    let payloads: Vec<Bytes> = (1..=20_000).map(payload).collect();
    for chunk in payloads.chunks(1000) {
        log.append_many(chunk.to_vec()).await.expect("append_many");
    }
    assert_eq!(log.last_seq(), 20_000);
    assert_eq!(
        idle.next().await.expect("item").expect("record"),
        (1, payload(1))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resubscribing_from_last_seen_plus_one_has_no_gap_or_duplicate() {
    const WRITERS: u64 = 4;
    const PER_WRITER: u64 = 300;
    const TOTAL: u64 = WRITERS * PER_WRITER;
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(tmp.path());
    cfg.segment_max_bytes = 4096;
    let (log, _) = OutcomeLog::open(cfg).expect("open");

    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let log = log.clone();
        writers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..PER_WRITER {
                let body = Bytes::from(format!("writer {writer} record {i}"));
                acked.push((log.append(body.clone()).await.expect("append"), body));
            }
            acked
        }));
    }

    // Read a few records, drop the subscription, resume from last seen + 1; repeat while the
    // writers keep going.
    let mut seen: Vec<(u64, Bytes)> = Vec::new();
    let mut session = 0u64;
    while seen.len() < TOTAL as usize {
        let from = seen.last().map_or(1, |(seq, _)| seq + 1);
        let take = 1 + (session * 37 % 113) as usize;
        let mut feed = log
            .subscribe(from)
            .take(take.min(TOTAL as usize - seen.len()));
        while let Some(record) = feed.next().await {
            seen.push(record.expect("record"));
        }
        session += 1;
    }
    assert!(session > 5);

    let mut acked = BTreeMap::new();
    for writer in writers {
        acked.extend(writer.await.expect("writer"));
    }
    assert_eq!(
        seen.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
        (1..=TOTAL).collect::<Vec<_>>()
    );
    assert_eq!(seen, acked.into_iter().collect::<Vec<_>>());
}
