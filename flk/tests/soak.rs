//! `flk soak` for a few seconds with a fast sample interval: it starts its own stack, really
//! samples it (resident memory, descriptors and disk use read from /proc and the data
//! directory, p99 per interval) and passes; and a bound it cannot meet fails the run.

use std::process::Command;

fn soak(extra: &[&str]) -> (bool, String, String) {
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_flk"))
        .args([
            "soak",
            "--duration",
            "4s",
            "--sample-every",
            "1s",
            "--rate",
            "40",
            "--connections",
            "4",
            "--data-dir",
        ])
        .arg(data.path().join("stack"))
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The table rows: (answered, p99 ms, rss MiB, fds, disk MiB).
fn rows(stdout: &str) -> Vec<(u64, f64, f64, i64, f64)> {
    stdout
        .lines()
        .skip_while(|l| !l.starts_with("sample"))
        .skip(1)
        .take_while(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()))
        .map(|l| {
            let c: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(c.len(), 10, "{l}");
            (
                c[2].parse().unwrap(),
                c[6].parse().unwrap(),
                c[7].parse().unwrap(),
                c[8].parse().unwrap(),
                c[9].parse().unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_short_soak_samples_the_stack_and_passes() {
    // A generous latency bound: a few seconds of a debug build on a busy CI machine can have
    // one slow interval; this test is about sampling, the bound check has its own test.
    let (ok, stdout, stderr) = soak(&["--max-p99-factor", "50"]);
    assert!(ok, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let rows = rows(&stdout);
    assert!(rows.len() >= 3, "one row per second: {stdout}");
    for (answered, p99, rss, fds, disk) in &rows {
        assert!(*answered >= 20, "about 40 a second answered: {stdout}");
        assert!(*p99 > 0.0, "{stdout}");
        assert!(*rss > 1.0, "resident memory read from /proc: {stdout}");
        assert!(*fds > 3, "descriptors counted in /proc: {stdout}");
        assert!(*disk > 0.0, "the data directory's disk use: {stdout}");
    }
    assert!(stdout.contains("soak passed"), "{stdout}");
}

#[test]
fn a_crossed_bound_fails_the_soak() {
    // Any p99 is more than 0.001x a baseline floored at 5 ms.
    let (ok, stdout, stderr) = soak(&["--max-p99-factor", "0.001"]);
    assert!(!ok, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("FAIL sample 3: p99"), "{stdout}");
    assert!(stderr.contains("soak failed"), "{stderr}");
}
