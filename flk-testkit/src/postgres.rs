//! [`PgServer`]: a private PostgreSQL cluster in a temporary directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use rustix::process::Signal;
use tempfile::TempDir;
use tokio_postgres::NoTls;

use crate::pg_template::{self, SUPERUSER};
use crate::process::{self, LogFile, RunAs, StartFailure};
use crate::{TestkitError, locate, scratch};

/// The database every cluster has.
const DATABASE: &str = "postgres";
/// The system user that owns the cluster when the tests run as root.
const SERVER_USER: &str = "postgres";
const HOST: &str = "127.0.0.1";
/// How long `restart` keeps retrying while the killed cluster's resources are released.
const RESTART_TIMEOUT: Duration = Duration::from_secs(15);
/// Per-attempt connect timeout of the readiness probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// A throwaway PostgreSQL server: a fresh cluster (a copy of a cached `initdb` template), 127.0.0.1 on an ephemeral port, unix
/// socket inside its temporary directory, `fsync=off`.
///
/// Dropping it kills the server and removes the directory.
#[derive(Debug)]
pub struct PgServer {
    bin_dir: PathBuf,
    run_as: RunAs,
    port: u16,
    data_dir: PathBuf,
    log: LogFile,
    child: Option<Child>,
    // Declared last: removed only after `Drop::drop` has killed the server.
    dir: TempDir,
}

impl PgServer {
    /// Creates a cluster and starts a server on a free port, waiting until it answers a query.
    pub async fn start() -> Result<Self, TestkitError> {
        let bin_dir = locate::pg_bin_dir()?;
        let run_as = RunAs::unprivileged(SERVER_USER)?;
        let dir = scratch::tempdir("flk-pg-")?;
        run_as.chown(dir.path())?;
        let data_dir = dir.path().join("data");
        let template = pg_template::get(&bin_dir, &run_as)?;
        pg_template::copy_tree(template.data_dir(), &data_dir, &run_as)?;
        let mut server = Self {
            bin_dir,
            run_as,
            port: 0,
            data_dir,
            log: LogFile::new(dir.path().join("postgres.log")),
            child: None,
            dir,
        };
        let mut last_error = None;
        for _ in 0..process::PORT_ATTEMPTS {
            server.port = process::free_port()?;
            match server.spawn_and_wait().await {
                Ok(()) => return Ok(server),
                Err(StartFailure::Exited { status, log }) if log.contains("already in use") => {
                    // Someone took the port between our probe and the server's bind.
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

    /// The superuser name (trust authentication).
    pub fn user(&self) -> &'static str {
        SUPERUSER
    }

    /// The default database name.
    pub fn dbname(&self) -> &'static str {
        DATABASE
    }

    /// A libpq-style connection string: `host=127.0.0.1 port=N user=postgres dbname=postgres`.
    pub fn connection_string(&self) -> String {
        format!(
            "host={HOST} port={} user={SUPERUSER} dbname={DATABASE}",
            self.port
        )
    }

    /// A URL form: `postgres://postgres@127.0.0.1:N/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://{SUPERUSER}@{HOST}:{}/{DATABASE}", self.port)
    }

    /// A `tokio_postgres` configuration for this server (add timeouts as needed).
    pub fn config(&self) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host(HOST)
            .port(self.port)
            .user(SUPERUSER)
            .dbname(DATABASE);
        config
    }

    /// A connected client; its connection task is spawned on the current tokio runtime.
    pub async fn connect(&self) -> Result<tokio_postgres::Client, TestkitError> {
        let (client, connection) = self.config().connect(NoTls).await.map_err(|e| {
            TestkitError::io(
                format!("connecting to postgres on port {}", self.port),
                std::io::Error::other(e),
            )
        })?;
        tokio::spawn(connection);
        Ok(client)
    }

    /// The cluster's data directory (kept across `restart`).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
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

    /// Crashes the server: SIGKILL to the postmaster and its backends (no shutdown checkpoint;
    /// the next start runs crash recovery). Clients see their connections reset at once.
    pub fn kill(&mut self) -> Result<(), TestkitError> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        process::kill_tree(&mut child)?;
        self.remove_sysv_segment();
        Ok(())
    }

    /// A killed postmaster leaves its small System V interlock segment behind (a restart
    /// would reuse and later remove it, a dropped server never would). Its id is in this
    /// cluster's own `postmaster.pid`; best effort via `ipcrm`.
    fn remove_sysv_segment(&self) {
        let Ok(pidfile) = std::fs::read_to_string(self.data_dir.join("postmaster.pid")) else {
            return;
        };
        // Line 7: "<shmem key> <shmem id>".
        let Some(id) = pidfile
            .lines()
            .nth(6)
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|id| id.parse::<u64>().ok())
        else {
            return;
        };
        let _ = Command::new("ipcrm")
            .args(["-m", &id.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }

    /// Stops the server cleanly (fast shutdown: SIGINT), killing it if that takes too long.
    pub fn stop(&mut self) -> Result<(), TestkitError> {
        match self.child.take() {
            Some(mut child) => process::stop_gracefully(&mut child, Signal::INT),
            None => Ok(()),
        }
    }

    /// Starts the server again on the same port and data directory (stopping it first if it
    /// is running), waiting until it answers a query.
    pub async fn restart(&mut self) -> Result<(), TestkitError> {
        self.stop()?;
        let deadline = Instant::now() + RESTART_TIMEOUT;
        loop {
            match self.spawn_and_wait().await {
                Ok(()) => return Ok(()),
                // A killed cluster's backends may still hold the shared memory for a moment.
                Err(StartFailure::Exited { .. }) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(failure) => return Err(self.failure_to_error(failure)),
            }
        }
    }

    async fn spawn_and_wait(&mut self) -> Result<(), StartFailure> {
        let offset = self.log.len();
        let mut cmd = Command::new(self.bin_dir.join("postgres"));
        cmd.arg("-D")
            .arg(&self.data_dir)
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(self.dir.path())
            .args(["-c", &format!("listen_addresses={HOST}")])
            .args(["-c", "fsync=off"])
            .args(["-c", "full_page_writes=off"])
            .args(["-c", "max_connections=200"])
            // Dynamic shared memory as files under the data directory, so a killed server
            // leaves nothing behind in /dev/shm once the directory is removed.
            .args(["-c", "dynamic_shared_memory_type=mmap"])
            .current_dir(self.dir.path())
            .env_remove("PGDATA");
        self.run_as.apply(&mut cmd);
        let mut child =
            process::spawn(&mut cmd, &self.log, "postgres").map_err(StartFailure::Error)?;
        let config = self.config();
        let result =
            process::wait_ready("postgres", self.port, &mut child, &self.log, offset, || {
                probe(config.clone())
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
            server: "postgres",
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

impl Drop for PgServer {
    fn drop(&mut self) {
        // Immediate shutdown (SIGQUIT): no checkpoint, but the postmaster still releases its
        // shared memory, unlike a SIGKILL. Best effort: errors cannot be reported from drop.
        if let Some(mut child) = self.child.take() {
            if process::stop_gracefully(&mut child, Signal::QUIT).is_err() {
                let _ = process::kill_tree(&mut child);
            }
            // A clean exit removes postmaster.pid; if it is still there the server was killed.
            if self.data_dir.join("postmaster.pid").exists() {
                self.remove_sysv_segment();
            }
        }
    }
}

async fn probe(config: tokio_postgres::Config) -> Result<(), String> {
    let connect = tokio::time::timeout(PROBE_TIMEOUT, config.connect(NoTls));
    let (client, connection) = match connect.await {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => return Err("connect timed out".to_owned()),
    };
    let task = tokio::spawn(connection);
    let result = client
        .simple_query("SELECT 1")
        .await
        .map(|_| ())
        .map_err(|e| e.to_string());
    drop(client);
    let _ = task.await;
    result
}
