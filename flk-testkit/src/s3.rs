//! [`S3Server`]: a private `moto_server` (PyPI `moto[server]`), an S3-compatible endpoint
//! for object-store tests, on 127.0.0.1 and an ephemeral port, in its own process.
//!
//! The binary is `$FLK_MOTO_SERVER`, else `moto_server` on `PATH` (`.ci/deps/moto.sh`
//! installs it). Readiness is polled with a real HTTP request until a deadline; `Drop` kills
//! the process. moto keeps everything in memory: a restart starts empty.
//!
//! ```no_run
//! # async fn demo() -> Result<(), flk_testkit::TestkitError> {
//! let s3 = flk_testkit::S3Server::start().await?;
//! s3.create_bucket("flk").await?;
//! // AWS_ENDPOINT_URL = s3.endpoint(), AWS_ALLOW_HTTP = true, any access key
//! # Ok(()) }
//! ```

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::process::{self, LogFile, StartFailure};
use crate::{TestkitError, scratch};

const HOST: &str = "127.0.0.1";
/// Overrides the `moto_server` lookup.
pub const ENV_MOTO_SERVER: &str = "FLK_MOTO_SERVER";
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// A throwaway S3-compatible server.
#[derive(Debug)]
pub struct S3Server {
    port: u16,
    log: LogFile,
    child: Option<Child>,
    // Declared last: removed only after `Drop::drop` has killed the server.
    _dir: TempDir,
}

/// The `moto_server` binary.
pub fn moto_server() -> Result<PathBuf, TestkitError> {
    let not_found = |detail: String| TestkitError::BinaryNotFound {
        what: "moto_server",
        detail,
        package: "moto[server] (pip; .ci/deps/moto.sh)",
        env_var: ENV_MOTO_SERVER,
    };
    if let Some(p) = std::env::var_os(ENV_MOTO_SERVER) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(not_found(format!(
                "{ENV_MOTO_SERVER}={} is not a file",
                p.display()
            )))
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("moto_server"))
        .find(|p| p.is_file())
        .ok_or_else(|| not_found("searched PATH".to_owned()))
}

impl S3Server {
    /// Starts a server on a free port, waiting until it answers HTTP.
    pub async fn start() -> Result<Self, TestkitError> {
        let binary = moto_server()?;
        let dir = scratch::tempdir("flk-moto-")?;
        let mut server = S3Server {
            port: 0,
            log: LogFile::new(dir.path().join("moto.log")),
            child: None,
            _dir: dir,
        };
        let mut last = None;
        for _ in 0..process::PORT_ATTEMPTS {
            server.port = process::free_port()?;
            let offset = server.log.len();
            let mut cmd = Command::new(&binary);
            cmd.args(["-H", HOST, "-p", &server.port.to_string()])
                .current_dir(server._dir.path());
            let mut child = process::spawn(&mut cmd, &server.log, "moto_server")?;
            let port = server.port;
            match process::wait_ready("moto_server", port, &mut child, &server.log, offset, || {
                probe(port)
            })
            .await
            {
                Ok(()) => {
                    server.child = Some(child);
                    return Ok(server);
                }
                Err(StartFailure::Exited { status, log }) => {
                    last = Some(TestkitError::NotReady {
                        server: "moto_server",
                        port,
                        timeout: process::READY_TIMEOUT,
                        reason: format!("server exited ({status})"),
                        log,
                    });
                }
                Err(StartFailure::Error(e)) => {
                    let _ = process::kill_tree(&mut child);
                    return Err(e);
                }
            }
        }
        Err(last.unwrap_or(TestkitError::NotReady {
            server: "moto_server",
            port: server.port,
            timeout: process::READY_TIMEOUT,
            reason: "no port attempt made".into(),
            log: String::new(),
        }))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:N`
    pub fn endpoint(&self) -> String {
        format!("http://{HOST}:{}", self.port)
    }

    /// The server log so far.
    pub fn log(&self) -> String {
        self.log.tail_since(0)
    }

    /// Creates a bucket (`PUT /<bucket>`; moto accepts any credentials).
    pub async fn create_bucket(&self, bucket: &str) -> Result<(), TestkitError> {
        let (status, body) = request(self.port, "PUT", &format!("/{bucket}"))
            .await
            .map_err(|e| TestkitError::io("creating a bucket", std::io::Error::other(e)))?;
        if status == 200 {
            Ok(())
        } else {
            Err(TestkitError::io(
                "creating a bucket",
                std::io::Error::other(format!("status {status}: {body}")),
            ))
        }
    }

    /// Crashes the server (SIGKILL): an outage for the tests.
    pub fn kill(&mut self) -> Result<(), TestkitError> {
        match self.child.take() {
            Some(mut child) => process::kill_tree(&mut child),
            None => Ok(()),
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

async fn probe(port: u16) -> Result<(), String> {
    request(port, "GET", "/").await.map(|_| ())
}

/// One HTTP/1.1 request without a body: status and body.
async fn request(port: u16, method: &str, path: &str) -> Result<(u16, String), String> {
    let exchange = async {
        let mut s = TcpStream::connect((HOST, port))
            .await
            .map_err(|e| e.to_string())?;
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let status = text
            .strip_prefix("HTTP/1.1 ")
            .or_else(|| text.strip_prefix("HTTP/1.0 "))
            .and_then(|s| s.get(..3))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("not an HTTP answer: {:?}", text.get(..40)))?;
        let body = text.split_once("\r\n\r\n").map_or("", |x| x.1).to_owned();
        Ok((status, body))
    };
    tokio::time::timeout(PROBE_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| Err("no answer in time".to_owned()))
}
