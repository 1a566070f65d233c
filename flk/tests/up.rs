//! `flk up` as operators' scripts use it: start the binary on port 0, read the
//! `gateway listening on http://HOST:PORT` line, submit with `flk submit`, restart on the same
//! data directory and see the decision kept.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

struct Up {
    child: Child,
    url: String,
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn up(data_dir: &std::path::Path) -> Up {
    let mut child = Command::new(env!("CARGO_BIN_EXE_flk"))
        .args([
            "up",
            "--listen",
            "127.0.0.1:0",
            "--hmac-key",
            "testsecret",
            "--data-dir",
        ])
        .arg(data_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("flk up exited before listening")
            .unwrap();
        if let Some(url) = line.strip_prefix("gateway listening on ") {
            break url.trim().to_owned();
        }
    };
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Up { child, url }
}

fn submit(url: &str, file: &std::path::Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_flk"))
        .args(["submit", "--url", url])
        .arg(file)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn up_submit_restart_keeps_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let text = include_str!("../../flk-core/tests/data/verify_vectors.json");
    let doc: serde_json::Value = serde_json::from_str(text).unwrap();
    let vectors = doc["vectors"].as_array().unwrap();
    let ndjson: String = vectors
        .iter()
        .take(12)
        .map(|v| format!("{}\n", serde_json::to_string(&v["pcs"]).unwrap()))
        .collect();
    let file = dir.path().join("pcs.ndjson");
    std::fs::write(&file, &ndjson).unwrap();

    let data = dir.path().join("data");
    let first = up(&data);
    let (ok, out) = submit(&first.url, &file);
    assert!(ok, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 12, "{out}");
    for (line, v) in lines.iter().zip(vectors) {
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!(cols[1], v["expect"]["http_status"].to_string(), "{line}");
        assert_eq!(cols[2], v["expect"]["outcome"].as_str().unwrap(), "{line}");
        assert_eq!(
            cols[3],
            v["expect"]["reason_code"].as_str().unwrap(),
            "{line}"
        );
        assert!(!line.ends_with("duplicate"), "{line}");
    }
    drop(first);

    // Same data directory after a hard stop: every decision is still there.
    let second = up(&data);
    let (ok, out) = submit(&second.url, &file);
    assert!(ok, "{out}");
    assert_eq!(
        out.lines().filter(|l| l.ends_with("\tduplicate")).count(),
        12,
        "{out}"
    );
}

#[test]
fn submit_reports_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let up = up(&dir.path().join("data"));
    let file = dir.path().join("bad.json");
    std::fs::write(&file, "{\"pcs_id\": 1}").unwrap();
    let (ok, out) = submit(&up.url, &file);
    assert!(!ok);
    assert!(out.contains("\t400\terror\tinvalid_pcs"), "{out}");
}
