//! Disk full under `flk up`: its data directory on a small private tmpfs (mounted by the test:
//! CI runs as root, and the test asserts it rather than skipping), two REST clients
//! submitting, then the file system filled to the last byte by a filler file. Measured: the
//! time from the disk being full to the first 503 and from space returning (the filler
//! deleted) to the first 2xx, with the same stack process throughout. Checked: only 2xx or 503
//! with `Retry-After` (no 500, no hang: every request has a 10 s client timeout); every
//! acknowledged decision reads back and is answered again on resubmission; the outcome log
//! passes `flk_outcome_log::verify_dir` afterwards; and a restart over the same directory
//! still reads every acknowledged decision.

mod common;
mod fault_common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use fault_common::*;

const TO_503: Duration = Duration::from_secs(5);
const TO_RECOVERY: Duration = Duration::from_secs(10);
/// Room for a fresh stack's stores (about 15 MiB at start) and a few hundred decisions.
const TMPFS_MIB: u64 = 96;

/// A tmpfs of `TMPFS_MIB` mounted on a temporary directory, unmounted on drop.
struct Tmpfs {
    mnt: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount() -> Tmpfs {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let uid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|v| v.split_whitespace().next())
            .unwrap_or("?")
            .to_owned();
        assert_eq!(
            uid, "0",
            "the disk-full test mounts a tmpfs and must run as root (CI does); it does not skip"
        );
        let dir = tempfile::tempdir().unwrap();
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={TMPFS_MIB}m"), "tmpfs"])
            .arg(&mnt)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mount -t tmpfs failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { mnt, _dir: dir }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
    }
}

/// Writes `path` until the file system refuses with ENOSPC, in 1 MiB then 4 KiB steps, so
/// not a block is left. Returns the bytes written.
fn fill(path: &Path) -> u64 {
    let mut f = std::fs::File::create(path).unwrap();
    let mut written = 0u64;
    for chunk in [1 << 20, 4096, 512] {
        let buf = vec![0xa5u8; chunk];
        loop {
            match f.write(&buf) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(28) => break,
                Err(e) => panic!("filling {}: {e}", path.display()),
            }
        }
    }
    written
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn disk_full_fails_closed_and_recovers_when_space_returns() {
    let fs = Tmpfs::mount();
    let data = fs.mnt.join("data");
    let mut stack = Stack::start(&data, &["--hmac-key", common::SECRET], &[]);
    let token = stack.token("default.token");

    let mut load = Load::start(&stack.url, "default", accepted_workload(common::SECRET), 2);
    load.wait("first acks", |p| p.acked >= 30).await;

    let filler = fs.mnt.join("filler");
    let filled = fill(&filler);
    let full = load.mark();
    load.wait("503s on a full disk", |p| p.unavailable_since_mark >= 8)
        .await;
    assert!(stack.is_running(), "a full disk does not stop the stack");

    std::fs::remove_file(&filler).unwrap();
    let freed = load.mark();
    load.wait("acks after space returned", |p| p.acked_since_mark >= 30)
        .await;
    assert!(stack.is_running());
    let answers = load.finish().await;

    for a in &answers {
        match &a.status {
            Ok(200 | 202) => {}
            Ok(503) => assert!(a.retry_after.is_some(), "503 without Retry-After: {a:?}"),
            other => panic!("{other:?} {} for {}", a.code, a.pcs_id),
        }
    }
    let first_503 = answers
        .iter()
        .filter(|a| a.sent >= full && a.status == Ok(503))
        .map(|a| a.done)
        .min()
        .unwrap();
    let first_ack = answers
        .iter()
        .filter(|a| a.sent >= freed && a.acked())
        .map(|a| a.done)
        .min()
        .unwrap();
    let codes: std::collections::BTreeMap<&str, usize> = answers
        .iter()
        .filter(|a| a.status == Ok(503))
        .fold(Default::default(), |mut m, a| {
            *m.entry(a.code.as_str()).or_default() += 1;
            m
        });
    let acked_while_full = answers
        .iter()
        .filter(|a| a.sent >= full && a.sent < freed && a.acked())
        .count();
    let (to_503, to_recovery) = (first_503 - full, first_ack - freed);
    eprintln!(
        "[disk full] filler {} MiB; full -> first 503: {:.1} ms; space back -> first 2xx: {:.1} ms; \
         {} acked, {} refused {codes:?}, {acked_while_full} acked while full",
        filled >> 20,
        to_503.as_secs_f64() * 1000.0,
        to_recovery.as_secs_f64() * 1000.0,
        answers.iter().filter(|a| a.acked()).count(),
        answers.iter().filter(|a| a.status == Ok(503)).count(),
    );
    assert!(
        to_503 < TO_503,
        "first 503 {to_503:?} after the disk filled"
    );
    assert!(
        to_recovery < TO_RECOVERY,
        "first 2xx {to_recovery:?} after space returned"
    );

    let read = assert_acked_read_back(&stack.url, &token, &answers).await;
    let (refused, acked) = assert_resubmissions_consistent(&stack.url, "default", &answers).await;
    assert!(refused >= 8);

    // The outcome log on disk: every record framed, checksummed and in sequence.
    stack.stop();
    let log = flk_outcome_log::verify_dir(&data.join("verify").join("outcome-log"))
        .expect("the outcome log verifies after the disk-full episode");
    assert!(log.records >= read as u64, "{log:?}");
    eprintln!(
        "[disk full] {read} acknowledged decisions read back, 0 lost; {acked} acks and {refused} \
         refusals resubmitted consistently; outcome log verified: {} records in {} segments",
        log.records, log.segments
    );

    // And a restart over the same directory serves them all.
    let stack = Stack::start(&data, &["--hmac-key", common::SECRET], &[]);
    assert_eq!(
        assert_acked_read_back(&stack.url, &token, &answers).await,
        read
    );
}
