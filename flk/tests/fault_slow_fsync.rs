//! Slow fsync under `flk up`: an LD_PRELOAD shim, compiled by the test with `cc`, delays every
//! `fsync`/`fdatasync` of the stack process (the outcome log's commit, the stores' flushes) by
//! a fixed time. The same paced REST load runs against a stack without the shim and one with
//! it; measured: p50 and p99 of both. Checked: with the shim every submission is still
//! answered 2xx (no 503, no 504 from a deadline, no client timeout), its latency rises by at
//! least the delay (so the shim really sits under the commit path), and every acknowledged
//! decision reads back.

mod common;
mod fault_common;

use std::process::Command;
use std::time::Duration;

use fault_common::*;

/// The injected delay per call.
const DELAY: Duration = Duration::from_millis(50);
/// Answers collected per stack.
const ANSWERS: usize = 200;

const SHIM: &str = r#"
/* Delays fsync and fdatasync by FLK_TEST_FSYNC_DELAY_US microseconds. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <time.h>

static void delay(void) {
    const char *s = getenv("FLK_TEST_FSYNC_DELAY_US");
    long us = s ? atol(s) : 0;
    struct timespec ts = { us / 1000000, (us % 1000000) * 1000 };
    while (nanosleep(&ts, &ts) != 0) {}
}

int fsync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    delay();
    return real(fd);
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    delay();
    return real(fd);
}
"#;

/// Builds the shim in `dir` and returns its path.
fn build_shim(dir: &std::path::Path) -> std::path::PathBuf {
    let src = dir.join("slow_fsync.c");
    let lib = dir.join("libslow_fsync.so");
    std::fs::write(&src, SHIM).unwrap();
    let out = Command::new("cc")
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&lib)
        .arg(&src)
        .arg("-ldl")
        .output()
        .expect("cc (the C compiler Rust links with) runs");
    assert!(
        out.status.success(),
        "cc failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    lib
}

/// `ANSWERS` answers of 4 clients pausing 10 ms between requests; (p50, p99, answers).
async fn measure(stack: &Stack) -> (f64, f64, Vec<Answer>) {
    let mut load = Load::start_paced(
        &stack.url,
        "default",
        accepted_workload(common::SECRET),
        4,
        Some(Duration::from_millis(10)),
    );
    load.wait("answers", |p| p.acked + p.unavailable + p.other >= ANSWERS)
        .await;
    let answers = load.finish().await;
    for a in &answers {
        assert!(
            a.acked(),
            "every submission acknowledged: {:?} {} for {}",
            a.status,
            a.code,
            a.pcs_id
        );
    }
    let all: Vec<&Answer> = answers.iter().collect();
    (quantile_ms(&all, 0.5), quantile_ms(&all, 0.99), answers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_fsync_raises_latency_and_nothing_fails() {
    let dir = tempfile::tempdir().unwrap();
    let shim = build_shim(dir.path());

    let (base_p50, base_p99) = {
        let stack = Stack::start(
            &dir.path().join("fast"),
            &["--hmac-key", common::SECRET],
            &[],
        );
        let (p50, p99, _) = measure(&stack).await;
        (p50, p99)
    };

    let delay_us = DELAY.as_micros().to_string();
    let mut stack = Stack::start(
        &dir.path().join("slow"),
        &["--hmac-key", common::SECRET],
        &[
            ("LD_PRELOAD", shim.to_str().unwrap()),
            ("FLK_TEST_FSYNC_DELAY_US", &delay_us),
        ],
    );
    let (p50, p99, answers) = measure(&stack).await;
    assert!(stack.is_running());
    eprintln!(
        "[slow fsync] {ANSWERS} submissions, 4 clients: without the shim p50 {base_p50:.1} ms \
         p99 {base_p99:.1} ms; with {DELAY:?} per fsync/fdatasync p50 {p50:.1} ms p99 {p99:.1} ms"
    );
    let delay_ms = DELAY.as_secs_f64() * 1000.0;
    assert!(
        p50 >= delay_ms,
        "an acknowledgement waits for the log's fsync: p50 {p50:.1} ms < {delay_ms} ms"
    );
    assert!(p99 < 5_000.0, "p99 {p99:.1} ms");
    let token = stack.token("default.token");
    assert_acked_read_back(&stack.url, &token, &answers).await;
}
