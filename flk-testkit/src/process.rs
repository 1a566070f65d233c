//! Process plumbing shared by the servers: ports, users, logs, readiness polling, killing.

use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

use crate::TestkitError;

/// How long a server may take to accept its first query.
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How often readiness is probed while waiting.
const POLL_INTERVAL: Duration = Duration::from_millis(15);
/// How long a graceful stop may take before it becomes a kill.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How many fresh ports `start` tries when the chosen one is taken.
pub(crate) const PORT_ATTEMPTS: usize = 5;
/// Bytes of server log quoted in errors.
const LOG_TAIL_BYTES: u64 = 8 * 1024;

/// A port that was free a moment ago: bind 127.0.0.1:0, read the port, release it.
///
/// Another process may take it before the server binds; callers retry on collision.
pub(crate) fn free_port() -> Result<u16, TestkitError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| TestkitError::io("binding 127.0.0.1:0 to find a free port", e))?;
    let port = listener
        .local_addr()
        .map_err(|e| TestkitError::io("reading the local address of a probe socket", e))?
        .port();
    Ok(port)
}

/// The identity a server process runs under.
#[derive(Clone, Debug)]
pub(crate) enum RunAs {
    /// The current user (we are not root).
    Current,
    /// An unprivileged system user (we are root and the server refuses root).
    User { name: String, uid: u32, gid: u32 },
}

impl RunAs {
    /// `Current` unless we are root, in which case the named system user.
    pub(crate) fn unprivileged(user: &str) -> Result<Self, TestkitError> {
        if !rustix::process::geteuid().is_root() {
            return Ok(Self::Current);
        }
        let passwd =
            std::fs::read_to_string("/etc/passwd").map_err(|e| TestkitError::NoServerUser {
                user: user.to_owned(),
                detail: format!("cannot read /etc/passwd: {e}"),
            })?;
        passwd
            .lines()
            .find_map(|line| {
                let mut fields = line.split(':');
                let name = fields.next()?;
                if name != user {
                    return None;
                }
                let _password = fields.next()?;
                let uid = fields.next()?.parse().ok()?;
                let gid = fields.next()?.parse().ok()?;
                Some(Self::User {
                    name: name.to_owned(),
                    uid,
                    gid,
                })
            })
            .ok_or_else(|| TestkitError::NoServerUser {
                user: user.to_owned(),
                detail: "no such entry in /etc/passwd".to_owned(),
            })
    }

    /// The uid processes run as.
    pub(crate) fn uid(&self) -> u32 {
        match self {
            Self::Current => rustix::process::geteuid().as_raw(),
            Self::User { uid, .. } => *uid,
        }
    }

    /// Makes `cmd` run under this identity (setgid + setuid in the child before exec; std drops
    /// supplementary groups when a root parent sets a uid).
    pub(crate) fn apply(&self, cmd: &mut Command) {
        if let Self::User { uid, gid, .. } = self {
            cmd.uid(*uid).gid(*gid);
        }
    }

    /// Gives `path` to this identity (a no-op for `Current`).
    pub(crate) fn chown(&self, path: &Path) -> Result<(), TestkitError> {
        if let Self::User { uid, gid, name } = self {
            std::os::unix::fs::chown(path, Some(*uid), Some(*gid))
                .map_err(|e| TestkitError::io(format!("chown {} to {name}", path.display()), e))?;
        }
        Ok(())
    }
}

/// A server's log file: the child's stdout and stderr are appended to it.
#[derive(Debug)]
pub(crate) struct LogFile {
    path: PathBuf,
}

impl LogFile {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self { path }
    }

    /// Current length: remember it before a spawn to quote only that run's output.
    pub(crate) fn len(&self) -> u64 {
        std::fs::metadata(&self.path).map_or(0, |m| m.len())
    }

    /// Stdout and stderr handles for a child, appending.
    pub(crate) fn stdio(&self) -> Result<(Stdio, Stdio), TestkitError> {
        let open = || {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .map_err(|e| TestkitError::io(format!("opening {}", self.path.display()), e))
        };
        Ok((Stdio::from(open()?), Stdio::from(open()?)))
    }

    /// The log written since `offset`, at most the last few KiB.
    pub(crate) fn tail_since(&self, offset: u64) -> String {
        let read = || -> std::io::Result<String> {
            let mut file = File::open(&self.path)?;
            let len = file.metadata()?.len();
            let start = offset.max(len.saturating_sub(LOG_TAIL_BYTES)).min(len);
            file.seek(SeekFrom::Start(start))?;
            let mut buf = Vec::new();
            file.read_to_end(&mut buf)?;
            Ok(String::from_utf8_lossy(&buf).into_owned())
        };
        read().unwrap_or_else(|e| format!("<cannot read {}: {e}>", self.path.display()))
    }
}

/// Why a freshly spawned server is not serving.
pub(crate) enum StartFailure {
    /// The process exited; `log` is its output from this run.
    Exited { status: ExitStatus, log: String },
    /// Still running (or unobservable) at the deadline, or waiting failed.
    Error(TestkitError),
}

/// Spawns `cmd` with its output appended to `log`.
pub(crate) fn spawn(cmd: &mut Command, log: &LogFile, what: &str) -> Result<Child, TestkitError> {
    let (out, err) = log.stdio()?;
    cmd.stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| TestkitError::io(format!("spawning {what}"), e))
}

/// Polls `probe` until it succeeds, the child exits, or [`READY_TIMEOUT`] passes.
pub(crate) async fn wait_ready<F, Fut>(
    server: &'static str,
    port: u16,
    child: &mut Child,
    log: &LogFile,
    log_offset: u64,
    mut probe: F,
) -> Result<(), StartFailure>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                return Err(StartFailure::Exited {
                    status,
                    log: log.tail_since(log_offset),
                });
            }
            Ok(None) => {}
            Err(e) => {
                return Err(StartFailure::Error(TestkitError::io(
                    format!("waiting for {server}"),
                    e,
                )));
            }
        }
        let Err(reason) = probe().await else {
            return Ok(());
        };
        if Instant::now() >= deadline {
            return Err(StartFailure::Error(TestkitError::NotReady {
                server,
                port,
                timeout: READY_TIMEOUT,
                reason,
                log: log.tail_since(log_offset),
            }));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

fn pid_of(child: &Child) -> Option<Pid> {
    i32::try_from(child.id()).ok().and_then(Pid::from_raw)
}

/// Sends `sig` to the child, ignoring "no such process".
fn signal(child: &Child, sig: Signal) -> Result<(), TestkitError> {
    let Some(pid) = pid_of(child) else {
        return Ok(());
    };
    match rustix::process::kill_process(pid, sig) {
        Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
        Err(e) => Err(TestkitError::io(
            format!("sending {sig:?} to pid {}", child.id()),
            e.into(),
        )),
    }
}

/// Direct children of `parent`, read from `/proc/*/stat`.
fn children_of(parent: u32) -> Vec<Pid> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // `pid (comm) state ppid ...`; comm may contain spaces and parentheses.
            let after_comm = &stat[stat.rfind(')')? + 1..];
            let ppid: u32 = after_comm.split_whitespace().nth(1)?.parse().ok()?;
            (ppid == parent).then_some(pid)
        })
        .filter_map(Pid::from_raw)
        .collect()
}

/// True while `pid` exists and is not a zombie.
fn is_alive(pid: Pid) -> bool {
    std::fs::read_to_string(format!("/proc/{}/stat", pid.as_raw_nonzero()))
        .ok()
        .and_then(|stat| {
            let state = stat[stat.rfind(')')? + 1..].split_whitespace().next()?;
            Some(state != "Z" && state != "X")
        })
        .unwrap_or(false)
}

/// Simulates a crash of a process tree: freeze the parent (no new forks), SIGKILL it and each
/// of its direct children, reap the parent and wait (bounded) until the children are gone.
pub(crate) fn kill_tree(child: &mut Child) -> Result<(), TestkitError> {
    if child
        .try_wait()
        .map_err(|e| TestkitError::io("checking a server process", e))?
        .is_some()
    {
        return Ok(());
    }
    signal(child, Signal::STOP)?;
    let children = children_of(child.id());
    signal(child, Signal::KILL)?;
    for pid in &children {
        // Already gone is fine; anything else would leave a stray we cannot reach either.
        let _ = rustix::process::kill_process(*pid, Signal::KILL);
    }
    child
        .wait()
        .map_err(|e| TestkitError::io("reaping a killed server process", e))?;
    let deadline = Instant::now() + STOP_TIMEOUT;
    while children.iter().any(|pid| is_alive(*pid)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

/// Asks the child to shut down with `sig`, waits up to [`STOP_TIMEOUT`], then kills the tree.
pub(crate) fn stop_gracefully(child: &mut Child, sig: Signal) -> Result<(), TestkitError> {
    signal(child, sig)?;
    let deadline = Instant::now() + STOP_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return Ok(()),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => return kill_tree(child),
            Err(e) => return Err(TestkitError::io("waiting for a server to stop", e)),
        }
    }
}
