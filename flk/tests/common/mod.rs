//! A `flk up` child process for the CLI tests: started on port 0 over a temporary data
//! directory, its addresses read from its output (never a sleep), killed on drop.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

pub const SECRET: &str = "bench-test-secret";

pub struct Up {
    child: Child,
    /// The gateway, `http://HOST:PORT`.
    pub url: String,
    /// svc-verify's internal gRPC address, `http://HOST:PORT`.
    pub verify_url: String,
    _data: tempfile::TempDir,
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `flk up --listen 127.0.0.1:0 --hmac-key SECRET --data-dir TMP`.
pub fn up() -> Up {
    up_with(&["--hmac-key", SECRET])
}

/// `flk up --listen 127.0.0.1:0 --data-dir TMP` plus `args`.
pub fn up_with(args: &[&str]) -> Up {
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_flk"))
        .args(["up", "--listen", "127.0.0.1:0"])
        .args(args)
        .arg("--data-dir")
        .arg(data.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut verify_url = None;
    let url = loop {
        let line = lines
            .next()
            .expect("flk up exited before listening")
            .unwrap();
        if let Some(rest) = line.strip_prefix("svc-verify (grpc) on ") {
            verify_url = rest.split(',').next().map(str::to_owned);
        }
        if let Some(url) = line.strip_prefix("gateway listening on ") {
            break url.trim().to_owned();
        }
    };
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Up {
        child,
        url,
        verify_url: verify_url.expect("flk up prints the svc-verify address"),
        _data: data,
    }
}
