//! Segment rotation: naming, size bound, and reads and subscriptions that cross segments.

use bytes::Bytes;
use flk_outcome_log::{OutcomeLog, segment_file_name, verify_dir};
use futures::StreamExt;

use crate::common::{append_range, config, frame_offsets, payload, read_all, segments};

const SEGMENT_MAX: u64 = 512;

#[tokio::test]
async fn records_spread_over_segments_named_by_first_seq() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(tmp.path());
    cfg.segment_max_bytes = SEGMENT_MAX;
    let (log, _) = OutcomeLog::open(cfg.clone()).expect("open");
    append_range(&log, 1..=120).await;

    let files = segments(&cfg.dir);
    assert!(files.len() >= 5, "only {} segments", files.len());
    let mut next_first = 1;
    for file in &files {
        let name = file.file_name().and_then(|n| n.to_str()).expect("name");
        assert_eq!(name, segment_file_name(next_first));
        let len = std::fs::metadata(file).expect("metadata").len();
        assert!(len <= SEGMENT_MAX, "{name} is {len} bytes");
        next_first += (frame_offsets(file).len() - 1) as u64;
    }
    assert_eq!(next_first, 121);

    let expected: Vec<_> = (1..=120).map(|i| (i, payload(i))).collect();
    assert_eq!(read_all(&log, 1), expected);
    // Start in the middle of a later segment.
    assert_eq!(read_all(&log, 77), expected[76..]);

    let history: Vec<_> = log
        .subscribe(30)
        .take(91)
        .map(|r| r.expect("subscribe"))
        .collect()
        .await;
    assert_eq!(history, expected[29..]);
    drop(log);

    let report = verify_dir(&cfg.dir).expect("verify");
    assert_eq!((report.segments, report.records), (files.len(), 120));
    let (log, report) = OutcomeLog::open(cfg).expect("reopen");
    assert_eq!(report.segments, files.len());
    assert_eq!(log.append(payload(121)).await.expect("append"), 121);
}

#[tokio::test]
async fn live_subscriber_follows_rotation() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(tmp.path());
    cfg.segment_max_bytes = SEGMENT_MAX;
    let (log, _) = OutcomeLog::open(cfg.clone()).expect("open");
    let live = log.subscribe(1).take(80);
    let writer = {
        let log = log.clone();
        tokio::spawn(async move { append_range(&log, 1..=80).await })
    };
    let seen: Vec<_> = live.map(|r| r.expect("subscribe")).collect().await;
    writer.await.expect("writer");
    assert_eq!(seen, (1..=80).map(|i| (i, payload(i))).collect::<Vec<_>>());
    assert!(segments(&cfg.dir).len() > 3);
}

#[tokio::test]
async fn a_batch_bigger_than_a_segment_gets_its_own_segment() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(tmp.path());
    cfg.segment_max_bytes = SEGMENT_MAX;
    let (log, _) = OutcomeLog::open(cfg.clone()).expect("open");
    append_range(&log, 1..=2).await;
    let big: Vec<Bytes> = (3..=12).map(|i| Bytes::from(vec![i as u8; 100])).collect();
    assert_eq!(
        log.append_many(big.clone()).await.expect("append_many"),
        3..=12
    );
    append_range(&log, 13..=13).await;

    let files = segments(&cfg.dir);
    let names: Vec<_> = files
        .iter()
        .map(|f| {
            f.file_name()
                .and_then(|n| n.to_str())
                .expect("name")
                .to_owned()
        })
        .collect();
    assert_eq!(
        names,
        [
            segment_file_name(1),
            segment_file_name(3),
            segment_file_name(13)
        ]
    );
    let records = read_all(&log, 3);
    assert_eq!(
        records[..10]
            .iter()
            .map(|r| r.1.clone())
            .collect::<Vec<_>>(),
        big
    );
    drop(log);
    verify_dir(&cfg.dir).expect("verify");
}
