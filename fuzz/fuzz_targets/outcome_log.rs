//! Fuzz target: outcome-log segment files as svc-verify finds them on disk after a crash or
//! damage. The input is written into a temporary log directory (first byte: how), then the
//! directory goes through flk-outcome-log's `verify_dir`, `open` (recovery: torn-tail repair
//! or `Corrupt`), a full read and one append:
//!
//! * mode 0: the input is the whole first segment;
//! * mode 1: a real segment written by flk-outcome-log, with the input appended as its tail;
//! * mode 2: two real segments, the second one overwritten by the input at an offset.
//!
//! Invariants beyond "no panic": a log that `open` accepts reads back every record from seq 1
//! to its last seq without error, takes an append at the next seq, and then passes
//! `verify_dir`.
#![no_main]

use std::sync::OnceLock;

use bytes::Bytes;
use flk_outcome_log::{LogConfig, OutcomeLog, verify_dir};
use libfuzzer_sys::fuzz_target;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let segments = flk_fuzz::outcome_log_segments();
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let write = |name: &str, bytes: &[u8]| std::fs::write(dir.path().join(name), bytes).is_ok();
    let ok = match mode % 3 {
        0 => write(&segments[0].0, rest),
        1 => write(&segments[0].0, &[segments[0].1.as_slice(), rest].concat()),
        _ => {
            let (name, real) = &segments[1];
            let (at, patch) = match rest {
                [a, b, patch @ ..] => (usize::from(u16::from_le_bytes([*a, *b])), patch),
                _ => (0, rest),
            };
            let mut second = real.clone();
            let at = at.min(second.len());
            let end = at + patch.len();
            if end > second.len() {
                second.resize(end, 0);
            }
            second[at..end].copy_from_slice(patch);
            write(&segments[0].0, &segments[0].1) && write(name, &second)
        }
    };
    if !ok {
        return;
    }

    let _ = verify_dir(dir.path());
    let mut cfg = LogConfig::new(dir.path());
    cfg.fsync = false;
    let Ok((log, report)) = OutcomeLog::open(cfg) else {
        return;
    };
    assert_eq!(report.last_seq, log.last_seq());
    let mut expected = 1;
    for rec in log.read_from(1) {
        let (seq, _payload) = rec.expect("a log that open accepted must read back");
        assert_eq!(seq, expected, "records out of sequence");
        expected += 1;
    }
    assert_eq!(
        expected - 1,
        log.last_seq(),
        "fewer records read than recovered"
    );
    let seq = runtime()
        .block_on(log.append(Bytes::from_static(b"after recovery")))
        .expect("append after recovery");
    assert_eq!(seq, expected, "append after recovery took another seq");
    drop(log);
    if let Err(e) = verify_dir(dir.path()) {
        panic!("the recovered log fails verify_dir after an append: {e}");
    }
});
