//! The exclusive lock of a data directory (or of one store inside it): a lock file held with
//! `flock(2)` for as long as the [`DirLock`] lives, so that two processes (or two stores in
//! one process) never open the same files for writing. The kernel drops the lock when the
//! process dies, so a crash never leaves a stale lock behind.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

/// A held lock; dropping it releases the lock.
#[derive(Debug)]
pub struct DirLock {
    path: PathBuf,
    _file: File,
}

/// Why a lock could not be taken.
#[derive(Debug)]
pub enum LockError {
    /// Another holder has it (another process, or another store in this one).
    Held { path: PathBuf },
    /// The lock file cannot be opened or locked.
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl std::fmt::Display for LockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::Held { path } => write!(
                f,
                "{} is held by another process or store using the same directory",
                path.display()
            ),
            LockError::Io { path, source } => write!(f, "cannot lock {}: {source}", path.display()),
        }
    }
}

impl std::error::Error for LockError {}

impl DirLock {
    /// Takes the lock file `path` (created if missing) without waiting.
    pub fn acquire(path: impl Into<PathBuf>) -> Result<DirLock, LockError> {
        let path = path.into();
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| LockError::Io {
                path: path.clone(),
                source,
            })?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(DirLock { path, _file: file }),
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => Err(LockError::Held { path }),
            Err(e) => Err(LockError::Io {
                source: e.into(),
                path,
            }),
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_drops() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".lock");
        let first = DirLock::acquire(&path).unwrap();
        let err = DirLock::acquire(&path).unwrap_err();
        assert!(matches!(err, LockError::Held { .. }), "{err}");
        assert!(err.to_string().contains(".lock"), "{err}");
        drop(first);
        DirLock::acquire(&path).unwrap();
        let missing = dir.path().join("no/such/dir/.lock");
        assert!(matches!(
            DirLock::acquire(missing).unwrap_err(),
            LockError::Io { .. }
        ));
    }
}
