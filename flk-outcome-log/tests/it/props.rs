//! Property tests on the framing: arbitrary payloads round trip; any cut or flipped byte never panics and loses no complete record.

use std::path::Path;

use bytes::Bytes;
use flk_outcome_log::{LogConfig, LogError, OutcomeLog, SEGMENT_HEADER_LEN, verify_dir};
use proptest::prelude::*;

use crate::common::{frame_offsets, read_all, segments};

fn fast_config(dir: &Path, segment_max_bytes: u64) -> LogConfig {
    let mut cfg = LogConfig::new(dir.join("log"));
    // Durability is not what these properties are about.
    cfg.fsync = false;
    cfg.segment_max_bytes = segment_max_bytes;
    cfg
}

/// Writes `batches` (each one `append_many`) and closes the log.
fn write_log(cfg: &LogConfig, batches: &[Vec<Vec<u8>>]) -> Vec<Bytes> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let (log, _) = OutcomeLog::open(cfg.clone()).expect("open");
        let mut written = Vec::new();
        for batch in batches {
            let payloads: Vec<Bytes> = batch.iter().cloned().map(Bytes::from).collect();
            let seqs = log
                .append_many(payloads.clone())
                .await
                .expect("append_many");
            assert_eq!(*seqs.start(), written.len() as u64 + 1);
            written.extend(payloads);
        }
        written
    })
}

fn batches() -> impl Strategy<Value = Vec<Vec<Vec<u8>>>> {
    let payload = prop::collection::vec(any::<u8>(), 0..300);
    prop::collection::vec(prop::collection::vec(payload, 1..6), 1..12)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_payloads_round_trip(batches in batches(), segment_max in 100u64..4000) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let cfg = fast_config(tmp.path(), segment_max);
        let written = write_log(&cfg, &batches);
        let (log, report) = OutcomeLog::open(cfg.clone()).expect("reopen");
        prop_assert_eq!(report.last_seq, written.len() as u64);
        prop_assert_eq!(report.torn_tail, None);
        let expected: Vec<_> = (1u64..).zip(written).collect();
        prop_assert_eq!(read_all(&log, 1), expected);
        drop(log);
        prop_assert_eq!(verify_dir(&cfg.dir).expect("verify").records, report.last_seq);
    }

    #[test]
    fn any_cut_of_the_last_segment_keeps_exactly_the_complete_prefix(
        batches in batches(),
        segment_max in 100u64..4000,
        cut in any::<prop::sample::Index>(),
    ) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let cfg = fast_config(tmp.path(), segment_max);
        let written = write_log(&cfg, &batches);
        let last = segments(&cfg.dir).pop().expect("segment");
        let offsets = frame_offsets(&last);
        let file_len = *offsets.last().expect("end");
        let cut_at = cut.index(file_len as usize + 1) as u64;
        std::fs::OpenOptions::new().write(true).open(&last).and_then(|f| f.set_len(cut_at)).expect("cut");

        let in_last = offsets.len() as u64 - 1;
        let before_last = written.len() as u64 - in_last;
        // Complete frames that end at or before the cut survive.
        let kept_in_last = offsets.windows(2).filter(|w| w[1] <= cut_at).count() as u64;
        let kept = before_last + if cut_at < SEGMENT_HEADER_LEN { 0 } else { kept_in_last };

        let (log, report) = OutcomeLog::open(cfg.clone()).expect("recovery never refuses a cut tail");
        prop_assert_eq!(report.last_seq, kept);
        let expected: Vec<_> = (1u64..).zip(written).take(kept as usize).collect();
        prop_assert_eq!(read_all(&log, 1), expected);
        drop(log);
        prop_assert_eq!(verify_dir(&cfg.dir).expect("verify").last_seq, kept);
    }

    #[test]
    fn a_flipped_byte_anywhere_is_refused_or_cut_but_never_read_back_wrong(
        batches in batches(),
        segment_max in 100u64..4000,
        segment in any::<prop::sample::Index>(),
        byte in any::<prop::sample::Index>(),
        mask in 1u8..=255,
    ) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let cfg = fast_config(tmp.path(), segment_max);
        let written = write_log(&cfg, &batches);
        let files = segments(&cfg.dir);
        let target = &files[segment.index(files.len())];
        let mut data = std::fs::read(target).expect("read");
        let at = byte.index(data.len());
        data[at] ^= mask;
        std::fs::write(target, &data).expect("write");

        prop_assert!(verify_dir(&cfg.dir).is_err(), "verify_dir must notice any flipped byte");
        match OutcomeLog::open(cfg.clone()) {
            Ok((log, report)) => {
                // Only a tail can be cut, and what is left reads back exactly as written.
                prop_assert!(report.torn_tail.is_some());
                let expected: Vec<_> = (1u64..).zip(written).take(report.last_seq as usize).collect();
                prop_assert_eq!(read_all(&log, 1), expected);
            }
            Err(LogError::Corrupt { segment, .. }) => prop_assert_eq!(&segment, target),
            Err(other) => prop_assert!(false, "unexpected error {}", other),
        }
    }
}
