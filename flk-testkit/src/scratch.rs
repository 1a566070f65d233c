//! Where servers keep their files: tmpfs when it has room (much faster than a VM disk for a
//! database's many small writes and for copying a cluster template), else the temp dir.

use std::path::{Path, PathBuf};

use tempfile::TempDir;

use crate::TestkitError;

/// Directory under which server directories are created; overrides the choice below.
pub const ENV_TESTKIT_TMPDIR: &str = "FLK_TESTKIT_TMPDIR";
/// The usual tmpfs mount.
const SHM: &str = "/dev/shm";
/// Free space `/dev/shm` must have to be used (containers often mount a 64 MiB one).
const SHM_MIN_FREE: u64 = 2 * 1024 * 1024 * 1024;

/// `$FLK_TESTKIT_TMPDIR`, else `/dev/shm` if it is a directory with at least 2 GiB free,
/// else the system temp dir.
pub(crate) fn root() -> PathBuf {
    if let Some(dir) = std::env::var_os(ENV_TESTKIT_TMPDIR) {
        return PathBuf::from(dir);
    }
    let shm = Path::new(SHM);
    let roomy = rustix::fs::statvfs(shm)
        .is_ok_and(|s| s.f_bavail.saturating_mul(s.f_frsize) >= SHM_MIN_FREE);
    if shm.is_dir() && roomy {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// A fresh directory under [`root`], removed on drop.
pub(crate) fn tempdir(prefix: &str) -> Result<TempDir, TestkitError> {
    let root = root();
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(&root)
        .map_err(|e| {
            TestkitError::io(
                format!("creating a temporary directory in {}", root.display()),
                e,
            )
        })
}
