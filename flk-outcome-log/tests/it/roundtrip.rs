//! Append / read round trips, reopen, and argument checks.

use bytes::Bytes;
use flk_outcome_log::{LogConfig, LogError, MAX_PAYLOAD_LEN, OutcomeLog, verify_dir};

use crate::common::{append_range, config, payload, read_all};

#[tokio::test]
async fn appended_records_read_back_with_contiguous_seqs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(tmp.path());
    let (log, report) = OutcomeLog::open(cfg.clone()).expect("open");
    assert!(report.created);
    assert_eq!((report.last_seq, log.last_seq()), (0, 0));
    assert!(read_all(&log, 1).is_empty());

    append_range(&log, 1..=10).await;
    let seqs = log
        .append_many(vec![payload(11), payload(12), payload(13)])
        .await
        .expect("append_many");
    assert_eq!(seqs, 11..=13);
    assert_eq!(log.last_seq(), 13);

    let expected: Vec<_> = (1..=13).map(|i| (i, payload(i))).collect();
    assert_eq!(read_all(&log, 1), expected);
    assert_eq!(read_all(&log, 0), expected, "from_seq 0 reads like 1");
    assert_eq!(read_all(&log, 5), expected[4..]);
    assert!(read_all(&log, 14).is_empty());
    drop(log);

    let (log, report) = OutcomeLog::open(cfg.clone()).expect("reopen");
    assert!(!report.created);
    assert_eq!(report.last_seq, 13);
    assert_eq!(report.records_checked, 13);
    assert_eq!(report.torn_tail, None);
    assert_eq!(read_all(&log, 1), expected);
    assert_eq!(log.append(payload(14)).await.expect("append"), 14);
    drop(log);

    let verified = verify_dir(&cfg.dir).expect("verify_dir");
    assert_eq!(
        (verified.segments, verified.records, verified.last_seq),
        (1, 14, 14)
    );
}

#[tokio::test]
async fn empty_and_empty_payload_records() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (log, _) = OutcomeLog::open(config(tmp.path())).expect("open");
    assert!(matches!(
        log.append_many(Vec::new()).await,
        Err(LogError::EmptyBatch)
    ));
    // An empty payload is a valid record.
    assert_eq!(log.append(Bytes::new()).await.expect("append"), 1);
    assert_eq!(read_all(&log, 1), vec![(1, Bytes::new())]);
}

#[tokio::test]
async fn oversized_payload_is_refused_without_using_a_seq() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (log, _) = OutcomeLog::open(config(tmp.path())).expect("open");
    let big = Bytes::from(vec![0u8; MAX_PAYLOAD_LEN + 1]);
    assert!(matches!(
        log.append_many(vec![payload(1), big]).await,
        Err(LogError::PayloadTooLarge { len, max }) if len == MAX_PAYLOAD_LEN + 1 && max == MAX_PAYLOAD_LEN
    ));
    assert_eq!(log.append(payload(1)).await.expect("append"), 1);
}

#[test]
fn unusable_configs_are_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    assert!(matches!(
        OutcomeLog::open(LogConfig::default()),
        Err(LogError::InvalidConfig(_))
    ));
    let mut cfg = config(tmp.path());
    cfg.segment_max_bytes = 10;
    assert!(matches!(
        OutcomeLog::open(cfg),
        Err(LogError::InvalidConfig(_))
    ));
    let mut cfg = config(tmp.path());
    cfg.max_batch_records = 0;
    assert!(matches!(
        OutcomeLog::open(cfg),
        Err(LogError::InvalidConfig(_))
    ));
}

#[test]
fn error_messages_are_lowercase_without_trailing_period() {
    let errors = [
        LogError::Unavailable,
        LogError::Closed,
        LogError::EmptyBatch,
        LogError::PayloadTooLarge { len: 2, max: 1 },
        LogError::InvalidConfig("dir must be set"),
    ];
    for error in errors {
        let text = error.to_string();
        assert!(text.starts_with(|c: char| c.is_lowercase()), "{text}");
        assert!(!text.ends_with('.'), "{text}");
    }
}
