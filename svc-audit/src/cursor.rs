//! The feed cursor: the last outcome-feed sequence number whose records are integrated,
//! persisted in `<data_dir>/feed.cursor` as one decimal line.
//!
//! It is replaced atomically and durably: written to `feed.cursor.tmp`, fsync'd, renamed over
//! the old file, and the directory fsync'd. It is written after the index commit that covers
//! its records, so on restart the feed resumes at `cursor + 1` and may only redeliver records
//! already integrated (which the index turns into no-ops).
//!
//! An unreadable cursor is not fatal: it is reported and the feed restarts from sequence 1.
//! That is safe because integration is idempotent; it only costs a re-read of the feed.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::error::AuditError;

/// File name of the cursor inside the data directory.
pub const FILE_NAME: &str = "feed.cursor";

/// The cursor file.
#[derive(Debug)]
pub struct Cursor {
    path: PathBuf,
    tmp: PathBuf,
    dir: PathBuf,
}

impl Cursor {
    pub fn new(data_dir: &Path) -> Cursor {
        Cursor {
            path: data_dir.join(FILE_NAME),
            tmp: data_dir.join(format!("{FILE_NAME}.tmp")),
            dir: data_dir.to_path_buf(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored cursor: `Ok(0)` when there is none, `Err` when the file is unreadable or
    /// does not hold one canonical decimal line.
    pub fn load(&self) -> Result<u64, AuditError> {
        let text = match fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(self.error(e.to_string())),
        };
        let line = text.strip_suffix('\n').unwrap_or(&text);
        let canonical = !line.is_empty()
            && line.bytes().all(|b| b.is_ascii_digit())
            && (line == "0" || !line.starts_with('0'));
        if !canonical {
            return Err(self.error(format!("holds {line:?}, not a sequence number")));
        }
        line.parse()
            .map_err(|_| self.error(format!("{line:?} does not fit 64 bits")))
    }

    /// Durably replaces the stored cursor with `seq`.
    pub fn store(&self, seq: u64) -> Result<(), AuditError> {
        let write = || -> std::io::Result<()> {
            let mut f = fs::File::create(&self.tmp)?;
            f.write_all(format!("{seq}\n").as_bytes())?;
            f.sync_all()?;
            drop(f);
            fs::rename(&self.tmp, &self.path)?;
            fs::File::open(&self.dir)?.sync_all()
        };
        write().map_err(|e| self.error(e.to_string()))
    }

    fn error(&self, message: String) -> AuditError {
        AuditError::Cursor {
            path: self.path.display().to_string(),
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_and_loads_strictly() {
        let dir = tempfile::tempdir().unwrap();
        let c = Cursor::new(dir.path());
        assert_eq!(c.load().unwrap(), 0);
        c.store(42).unwrap();
        assert_eq!(c.load().unwrap(), 42);
        c.store(7).unwrap();
        assert_eq!(c.load().unwrap(), 7);
        assert!(!dir.path().join("feed.cursor.tmp").exists());
        for bad in [
            "",
            "\n",
            "07\n",
            "-1\n",
            "1 \n",
            "99999999999999999999\n",
            "x",
        ] {
            fs::write(c.path(), bad).unwrap();
            assert!(c.load().is_err(), "{bad:?}");
        }
        fs::write(c.path(), "12").unwrap();
        assert_eq!(c.load().unwrap(), 12);
    }
}
