//! The testkit's error type: every failure says what to do about it.

use std::time::Duration;

/// Why a test server could not be located, started or controlled.
#[derive(Debug, thiserror::Error)]
pub enum TestkitError {
    /// A server binary is not installed (or an override points nowhere).
    #[error(
        "{what} not found ({detail}); install it with `apt-get install -y {package}` or set {env_var}"
    )]
    BinaryNotFound {
        /// Which binary was looked for.
        what: &'static str,
        /// Where it was looked for.
        detail: String,
        /// The Debian package that provides it.
        package: &'static str,
        /// The environment variable that overrides the lookup.
        env_var: &'static str,
    },
    /// Running as root, but the unprivileged user that must own the PostgreSQL cluster is missing.
    #[error(
        "running as root requires the `{user}` system user to own the postgresql cluster ({detail}); install it with `apt-get install -y postgresql`"
    )]
    NoServerUser {
        /// The user that was looked up.
        user: String,
        /// What went wrong.
        detail: String,
    },
    /// An operating-system call failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A helper command (such as `initdb`) exited unsuccessfully.
    #[error("{what} failed ({status}); output:\n{output}")]
    CommandFailed {
        /// The command.
        what: String,
        /// Its exit status.
        status: String,
        /// Its combined output.
        output: String,
    },
    /// A server did not become ready before its deadline, or exited while starting.
    #[error(
        "{server} on port {port} did not become ready within {timeout:?}: {reason}; server log:\n{log}"
    )]
    NotReady {
        /// `postgres` or `redis-server`.
        server: &'static str,
        /// The port it was asked to listen on.
        port: u16,
        /// The deadline.
        timeout: Duration,
        /// The last observed failure.
        reason: String,
        /// The tail of the server log.
        log: String,
    },
}

impl TestkitError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }
}
