//! [`RedisServer`]: a private, non-persistent `redis-server` in a temporary directory.

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

use rustix::process::Signal;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::process::{self, LogFile, StartFailure};
use crate::{TestkitError, locate, scratch};

const HOST: &str = "127.0.0.1";
/// Per-attempt timeout of the readiness probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// A throwaway Redis server: 127.0.0.1 on an ephemeral port, no RDB snapshots, no AOF, its
/// working directory a temporary directory.
///
/// Dropping it kills the server and removes the directory.
#[derive(Debug)]
pub struct RedisServer {
    binary: PathBuf,
    port: u16,
    log: LogFile,
    child: Option<Child>,
    // Declared last: removed only after `Drop::drop` has killed the server.
    dir: TempDir,
}

impl RedisServer {
    /// Starts a server on a free port, waiting until it answers `PING`.
    pub async fn start() -> Result<Self, TestkitError> {
        let binary = locate::redis_server()?;
        let dir = scratch::tempdir("flk-redis-")?;
        let mut server = Self {
            binary,
            port: 0,
            log: LogFile::new(dir.path().join("redis.log")),
            child: None,
            dir,
        };
        let mut last_error = None;
        for _ in 0..process::PORT_ATTEMPTS {
            server.port = process::free_port()?;
            match server.spawn_and_wait().await {
                Ok(()) => return Ok(server),
                Err(StartFailure::Exited { status, log }) if log.contains("already in use") => {
                    last_error = Some(server.not_ready(format!("port collision ({status})"), log));
                }
                Err(failure) => return Err(server.failure_to_error(failure)),
            }
        }
        Err(last_error
            .unwrap_or_else(|| server.not_ready("no port attempt made".into(), String::new())))
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:N/`
    pub fn url(&self) -> String {
        format!("redis://{HOST}:{}/", self.port)
    }

    /// The server log so far (all runs).
    pub fn log(&self) -> String {
        self.log.tail_since(0)
    }

    /// True while the server process is running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// Crashes the server (SIGKILL). Nothing is persisted in this configuration.
    pub fn kill(&mut self) -> Result<(), TestkitError> {
        match self.child.take() {
            Some(mut child) => process::kill_tree(&mut child),
            None => Ok(()),
        }
    }

    /// Stops the server cleanly (SIGTERM), killing it if that takes too long.
    pub fn stop(&mut self) -> Result<(), TestkitError> {
        match self.child.take() {
            Some(mut child) => process::stop_gracefully(&mut child, Signal::TERM),
            None => Ok(()),
        }
    }

    /// Starts the server again on the same port (stopping it first if it is running), waiting
    /// until it answers `PING`.
    pub async fn restart(&mut self) -> Result<(), TestkitError> {
        self.stop()?;
        self.spawn_and_wait()
            .await
            .map_err(|failure| self.failure_to_error(failure))
    }

    async fn spawn_and_wait(&mut self) -> Result<(), StartFailure> {
        let offset = self.log.len();
        let mut cmd = Command::new(&self.binary);
        cmd.args(["--port", &self.port.to_string()])
            .args(["--bind", HOST])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--daemonize", "no"])
            .args(["--protected-mode", "no"])
            .args(["--logfile", ""])
            .current_dir(self.dir.path());
        let mut child =
            process::spawn(&mut cmd, &self.log, "redis-server").map_err(StartFailure::Error)?;
        let port = self.port;
        let result =
            process::wait_ready("redis-server", port, &mut child, &self.log, offset, || {
                ping(port)
            })
            .await;
        match result {
            Ok(()) => {
                self.child = Some(child);
                Ok(())
            }
            Err(failure) => {
                let _ = process::kill_tree(&mut child);
                Err(failure)
            }
        }
    }

    fn not_ready(&self, reason: String, log: String) -> TestkitError {
        TestkitError::NotReady {
            server: "redis-server",
            port: self.port,
            timeout: process::READY_TIMEOUT,
            reason,
            log,
        }
    }

    fn failure_to_error(&self, failure: StartFailure) -> TestkitError {
        match failure {
            StartFailure::Exited { status, log } => {
                self.not_ready(format!("server exited ({status})"), log)
            }
            StartFailure::Error(e) => e,
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // Best effort: nothing useful can be done with an error while dropping.
        let _ = self.kill();
    }
}

/// One inline `PING`, expecting `+PONG` (a `-LOADING` reply means not ready yet).
async fn ping(port: u16) -> Result<(), String> {
    let exchange = async {
        let mut stream = TcpStream::connect((HOST, port))
            .await
            .map_err(|e| e.to_string())?;
        stream
            .write_all(b"PING\r\n")
            .await
            .map_err(|e| e.to_string())?;
        let mut reply = Vec::new();
        let mut buf = [0u8; 64];
        while !reply.ends_with(b"\r\n") {
            let n = stream.read(&mut buf).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("connection closed before a reply".to_owned());
            }
            reply.extend_from_slice(&buf[..n]);
        }
        if reply.starts_with(b"+PONG") {
            Ok(())
        } else {
            Err(format!(
                "unexpected reply {:?}",
                String::from_utf8_lossy(&reply)
            ))
        }
    };
    tokio::time::timeout(PROBE_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| Err("ping timed out".to_owned()))
}
