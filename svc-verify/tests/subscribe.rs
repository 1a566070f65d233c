//! The outcome feed (`Subscribe`): a consumer that is dropped mid-way while submissions go on
//! and resumes from its persisted cursor sees every record exactly once, in seq order, history
//! first and then live records, across segment rotations.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use flk_proto::v1;

/// The consumer's durable cursor: the last seq it processed, in a file.
struct Cursor(std::path::PathBuf);

impl Cursor {
    fn save(&self, seq: u64) {
        std::fs::write(&self.0, seq.to_string()).expect("persist cursor");
    }

    fn load(&self) -> u64 {
        std::fs::read_to_string(&self.0)
            .expect("read cursor")
            .parse()
            .expect("cursor is a seq")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_resuming_from_its_cursor_sees_every_record_once() {
    // Small segments: the feed must follow several rotations.
    let mut h = Harness::start_with(
        Backend::Embedded,
        Options {
            segment_max_bytes: 16 * 1024,
            ..Options::default()
        },
    )
    .await;
    let mut client = h.client().await;
    const HISTORY: u64 = 20;
    for i in 0..HISTORY {
        submit_ok(
            &mut client,
            json_request(TENANT, &fresh_accepted(&format!("history-{i}"))),
        )
        .await;
    }
    // `from_seq = 0` means from the start.
    let mut feed = subscribe(&mut client, 0).await;
    assert_eq!(next_feed(&mut feed).await.seq, 1);
    drop(feed);

    // A producer keeps submitting until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let mut client = client.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut last = 0;
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let o = submit_ok(
                    &mut client,
                    json_request(TENANT, &fresh_accepted(&format!("live-{i}"))),
                )
                .await;
                i += 1;
                last = o.seq;
            }
            last
        })
    };

    let dir = tempfile::tempdir().expect("tempdir");
    let cursor = Cursor(dir.path().join("cursor"));
    let mut seen: Vec<v1::FeedRecord> = Vec::new();

    // First consumer: history plus some live records, then it goes away mid-stream.
    {
        let mut consumer = h.client().await;
        let mut feed = subscribe(&mut consumer, 1).await;
        while seen.len() < (HISTORY as usize) + 60 {
            let rec = next_feed(&mut feed).await;
            cursor.save(rec.seq);
            seen.push(rec);
        }
        // Dropped here while the producer is still submitting.
    }
    assert!(!producer.is_finished(), "the producer is still running");

    // Second consumer: a new connection, resuming after the persisted cursor.
    let mut consumer = h.client().await;
    let resume_from = cursor.load() + 1;
    let mut feed = subscribe(&mut consumer, resume_from).await;
    let resumed_at = seen.len();
    while seen.len() < resumed_at + 60 {
        seen.push(next_feed(&mut feed).await);
    }
    stop.store(true, Ordering::SeqCst);
    let last = producer.await.expect("producer");
    while seen.last().map(|r| r.seq) < Some(last) {
        seen.push(next_feed(&mut feed).await);
    }

    // No gap, no duplicate: exactly 1..=last, each record as stored in the log.
    let seqs: Vec<u64> = seen.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=last).collect::<Vec<_>>());
    assert_eq!(seen, h.log_records().await, "the feed delivers the log");
    assert_log_consistent(&seen);

    // Caught up: a new decision arrives live on the same stream.
    let live = submit_ok(
        &mut client,
        json_request(TENANT, &fresh_accepted("after-catch-up")),
    )
    .await;
    let rec = next_feed(&mut feed).await;
    assert_eq!(rec.seq, last + 1);
    assert_eq!(rec.seq, live.seq);
    assert_eq!(rec.outcome.as_ref(), Some(&live));
    assert!(
        std::fs::read_dir(h.log_dir()).expect("log dir").count() > 2,
        "the feed crossed segment rotations"
    );
    drop(feed);
    drop((client, consumer));
    h.stop().await;
}
