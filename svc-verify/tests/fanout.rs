//! The in-process fan-out of the outcome feed (`svc_verify::fanout`): history from a cursor,
//! then live batches, without gap or repeat, for a consumer that keeps up and for one that
//! falls far behind (it reads what it missed from the log) — and the writer never waits on
//! either.

use std::time::Duration;

use bytes::Bytes;
use flk_outcome_log::{LogConfig, OutcomeLog};
use flk_proto::v1;
use flk_runtime::feed::{BatchStream, FeedSource};
use futures::StreamExt as _;
use prost::Message as _;
use svc_verify::fanout::{FeedHub, LIVE_BATCHES};

fn record(n: u64) -> Bytes {
    Bytes::from(
        v1::FeedRecord {
            tenant_id: "default".into(),
            pcs_id: format!("{n:064x}"),
            decided_at_unix_ms: 1_700_000_000_000 + n as i64,
            ..Default::default()
        }
        .encode_to_vec(),
    )
}

fn open(dir: &std::path::Path) -> OutcomeLog {
    let mut cfg = LogConfig::new(dir.join("log"));
    // Durability is not what this test is about; fsync would only slow it down.
    cfg.fsync = false;
    OutcomeLog::open(cfg).expect("open the log").0
}

/// Reads `stream` until it has delivered seq `last`; checks order, no gap, no repeat (a batch
/// may start before the next wanted seq: the consumer skips that part).
async fn read_until(stream: &mut BatchStream, mut next: u64, last: u64) -> usize {
    let mut batches = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while next <= last {
        let batch = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("records in time")
            .expect("the stream goes on")
            .expect("no error");
        batches += 1;
        assert!(!batch.is_empty());
        let start = batch.partition_point(|r| r.seq < next);
        for rec in &batch[start..] {
            assert_eq!(rec.seq, next, "no gap");
            assert_eq!(rec.pcs_id, format!("{:064x}", rec.seq), "the right record");
            assert_eq!(rec.outcome.as_ref().map_or(rec.seq, |o| o.seq), rec.seq);
            next += 1;
        }
    }
    batches
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_then_live_without_gap_for_fast_and_slow_consumers() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    // History before the fan-out starts.
    log.append_many((1..=50).map(record).collect())
        .await
        .unwrap();
    let (closing_tx, closing) = tokio::sync::watch::channel(false);
    let hub = FeedHub::start(log.clone(), closing);
    assert_eq!(hub.head(), Some(50));

    let mut fast = hub.subscribe(10).await.unwrap();
    let mut slow = hub.subscribe(1).await.unwrap();
    read_until(&mut fast, 10, 50).await;

    // Live: many small commits, each its own batch, far more than the live buffer holds, so
    // the slow consumer (not reading meanwhile) is dropped from the live batches.
    let total = 50 + 2 * LIVE_BATCHES as u64;
    for n in 51..=total {
        log.append(record(n)).await.unwrap();
    }
    read_until(&mut fast, 51, total).await;
    assert_eq!(hub.head(), Some(total));
    // The slow one gets everything from the log, then joins the live batches again.
    read_until(&mut slow, 1, total).await;
    log.append_many((total + 1..=total + 10).map(record).collect())
        .await
        .unwrap();
    read_until(&mut slow, total + 1, total + 10).await;
    read_until(&mut fast, total + 1, total + 10).await;

    // Shutting down ends the streams (consumers resubscribe elsewhere or later).
    closing_tx.send_replace(true);
    let end = tokio::time::timeout(Duration::from_secs(10), fast.next())
        .await
        .expect("ends in time");
    assert!(end.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_from_the_future_waits_for_its_records() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let (_closing_tx, closing) = tokio::sync::watch::channel(false);
    let hub = FeedHub::start(log.clone(), closing);
    let mut stream = hub.subscribe(3).await.unwrap();
    log.append_many((1..=5).map(record).collect())
        .await
        .unwrap();
    read_until(&mut stream, 3, 5).await;
}
