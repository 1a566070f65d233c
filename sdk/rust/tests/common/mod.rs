//! A real `flk up` for the integration tests: the workspace's `flk` binary on a temporary data
//! directory and port 0, its printed addresses and keys parsed from stdout.
//!
//! The binary is `$FLK_BIN`, else `<target dir>/debug/flk` (`$CARGO_TARGET_DIR` or the
//! workspace's `target/`), built with `cargo build -p flk --locked` when it is missing (the
//! workspace's test run builds it anyway; a standalone `cargo test -p flk-sdk` does not).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub const GOLDEN_SEED_HEX: &str =
    "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20";
pub const GOLDEN_PUBLIC_B64: &str = "ebVWLo/mVPlAeLES6KmLp5AfhTrmlb7X4OORC60ElmQ=";

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The `flk` binary, built if needed; panics with what to do when it cannot be had.
pub fn flk_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("FLK_BIN") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "FLK_BIN={} is not a file", p.display());
        return p;
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let bin = target.join("debug").join("flk");
    if !bin.is_file() {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "flk", "--locked"])
            .current_dir(workspace_root())
            .env("CARGO_TARGET_DIR", &target)
            .status()
            .expect("cannot run cargo to build the flk binary");
        assert!(status.success(), "cargo build -p flk failed");
    }
    assert!(
        bin.is_file(),
        "no flk binary at {}: build it (cargo build -p flk) or set FLK_BIN",
        bin.display()
    );
    bin
}

/// A running `flk up`, stopped (SIGKILL) when dropped.
pub struct FlkUp {
    child: Child,
    pub url: String,
    pub verifier_key: String,
    pub default_token: Option<String>,
    pub data_dir: tempfile::TempDir,
}

impl FlkUp {
    /// `flk up --data-dir <tmp> --listen 127.0.0.1:0` plus `args`.
    pub fn start(args: &[&str]) -> FlkUp {
        let data_dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(flk_bin())
            .arg("up")
            .arg("--data-dir")
            .arg(data_dir.path())
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start flk up");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        // Keeps draining stdout for the whole run so that flk never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let (mut url, mut verifier_key, mut token_path) = (None, None, None);
        while url.is_none() {
            let line = match rx.recv_timeout(Duration::from_secs(120)) {
                Ok(l) => l,
                Err(_) => {
                    let _ = child.kill();
                    panic!("flk up did not print its gateway address");
                }
            };
            if let Some(k) = line.strip_prefix("audit log verifier key: ") {
                verifier_key = Some(k.trim().to_string());
            }
            if let Some(p) = line.strip_prefix("api token of tenant default: ") {
                token_path = Some(PathBuf::from(p.trim()));
            }
            if let Some(u) = line.strip_prefix("gateway listening on ") {
                url = Some(u.trim().to_string());
            }
        }
        let default_token =
            token_path.map(|p| std::fs::read_to_string(p).unwrap().trim().to_string());
        FlkUp {
            child,
            url: url.unwrap(),
            verifier_key: verifier_key.expect("flk up printed no audit verifier key"),
            default_token,
            data_dir,
        }
    }
}

impl Drop for FlkUp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The golden signing vectors' PCS (unsigned).
pub fn signing_vectors() -> Vec<flk_sdk::Pcs> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/signing_vectors.json"
    );
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    v["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let mut p = flk_sdk::Pcs::from_value(&v["pcs"]).unwrap();
            p.sig = None;
            p
        })
        .collect()
}

/// A tenants file with one tenant per signing kind, each with an API token `token-<id>`.
pub fn tenants_file(dir: &std::path::Path) -> PathBuf {
    let token =
        |id: &str| flk_sdk::hex::encode(&flk_sdk::canon::sha256(format!("token-{id}").as_bytes()));
    let text = format!(
        r#"
[[tenant]]
id = "digest"
[[tenant.keys]]
id = "k-digest"
algorithm = "hmac"
secret = "testsecret"
mode = "digest"
[[tenant.api_tokens]]
id = "t"
sha256 = "{}"

[[tenant]]
id = "payload"
[[tenant.keys]]
id = "k-payload"
algorithm = "hmac"
secret = "testsecret"
mode = "payload"
[[tenant.api_tokens]]
id = "t"
sha256 = "{}"

[[tenant]]
id = "ed"
[[tenant.keys]]
id = "k-ed"
algorithm = "ed25519"
public_key = "{GOLDEN_PUBLIC_B64}"
[[tenant.api_tokens]]
id = "t"
sha256 = "{}"
"#,
        token("digest"),
        token("payload"),
        token("ed")
    );
    let path = dir.join("tenants.toml");
    std::fs::write(&path, text).unwrap();
    path
}
