//! The embedded backend: a directory in the C2SP tlog-tiles layout, servable as static files.
//!
//! ```text
//! <root>/checkpoint                 latest signed checkpoint (replaced by rename)
//! <root>/tile/<L>/<N>[.p/<W>]       hash tiles
//! <root>/tile/entries/<N>[.p/<W>]   entry bundles
//! <root>/.lock                      exclusive writer lock (flock)
//! <root>/.tmp/                      staging area, emptied on open
//! ```
//!
//! [`TileStore::write_batch`] writes each resource to a fresh file in `.tmp/`, makes the staged
//! files durable, then hard-links each to its final path and makes the directories durable.
//! `link(2)` fails if the target exists, so a stored file is never replaced: an existing file
//! with identical bytes is accepted, different bytes are a [`StoreError::Conflict`]. The
//! checkpoint is written to a temporary file, fsynced, renamed over `checkpoint`, and the root
//! directory fsynced.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::{StoreError, TileStore, TileWrite};
use crate::tile::{TILE_WIDTH, TileKind, tile_path};

/// How [`FsStore`]'s `write_batch` makes staged files durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// `fsync` every staged file, then every directory that gained an entry. Portable; one
    /// flush per file.
    #[default]
    PerFile,
    /// One `syncfs(2)` for all staged files and one after linking them (Linux). Far fewer
    /// device flushes per batch, but also flushes other dirty data on the same filesystem.
    Filesystem,
}

/// A staged write: the open temporary file, its path, and the final path.
struct Staged {
    file: File,
    tmp: PathBuf,
    dest: PathBuf,
    rel: String,
}

impl Drop for Staged {
    fn drop(&mut self) {
        // After publishing, the data lives on under its final name; on failure paths this
        // removes the leftover (best effort: `.tmp/` is emptied on open anyway).
        let _ = fs::remove_file(&self.tmp);
    }
}

/// The on-disk tile store. See the module docs for the layout and write protocol.
pub struct FsStore {
    root: PathBuf,
    tmp_dir: PathBuf,
    mode: SyncMode,
    counter: AtomicU64,
    // Held for the store's lifetime: the flock is released when the file is closed.
    _lock: flk_runtime::lock::DirLock,
}

impl std::fmt::Debug for FsStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FsStore")
            .field("root", &self.root)
            .field("mode", &self.mode)
            .finish()
    }
}

fn fsync_dir(path: &Path) -> Result<(), StoreError> {
    let dir = File::open(path).map_err(|e| StoreError::io("open dir", path, e))?;
    dir.sync_all()
        .map_err(|e| StoreError::io("fsync dir", path, e))
}

impl FsStore {
    /// Opens (creating if needed) a store rooted at `root` with [`SyncMode::PerFile`].
    pub fn open(root: impl AsRef<Path>) -> Result<FsStore, StoreError> {
        FsStore::open_with(root, SyncMode::default())
    }

    /// Opens (creating if needed) a store rooted at `root`. Fails with [`StoreError::Locked`]
    /// if another `FsStore` holds it.
    pub fn open_with(root: impl AsRef<Path>, mode: SyncMode) -> Result<FsStore, StoreError> {
        let root = root.as_ref().to_path_buf();
        fs::create_dir_all(root.join("tile")).map_err(|e| StoreError::io("mkdir", &root, e))?;
        let lock_path = root.join(".lock");
        let lock = flk_runtime::lock::DirLock::acquire(&lock_path).map_err(|e| match e {
            flk_runtime::lock::LockError::Held { path } => StoreError::Locked { path },
            flk_runtime::lock::LockError::Io { path, source } => {
                StoreError::io("lock", &path, source)
            }
        })?;
        let tmp_dir = root.join(".tmp");
        if tmp_dir.exists() {
            fs::remove_dir_all(&tmp_dir).map_err(|e| StoreError::io("clean", &tmp_dir, e))?;
        }
        fs::create_dir_all(&tmp_dir).map_err(|e| StoreError::io("mkdir", &tmp_dir, e))?;
        Ok(FsStore {
            root,
            tmp_dir,
            mode,
            counter: AtomicU64::new(0),
            _lock: lock,
        })
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The filesystem path of a tile resource.
    pub fn path_of(&self, kind: TileKind, index: u64, width: u16) -> PathBuf {
        self.root.join(tile_path(kind, index, width))
    }

    /// Creates the missing ancestors of `dir`, recording each parent that gained an entry.
    fn make_dirs(&self, dir: &Path, dirty: &mut BTreeSet<PathBuf>) -> Result<(), StoreError> {
        if dir.is_dir() {
            return Ok(());
        }
        if let Some(parent) = dir.parent() {
            self.make_dirs(parent, dirty)?;
            match fs::create_dir(dir) {
                Ok(()) => {
                    dirty.insert(parent.to_path_buf());
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(StoreError::io("mkdir", dir, e)),
            }
        }
        Ok(())
    }

    /// Links a durable staged file to its destination without ever replacing one.
    fn publish(&self, s: &Staged) -> Result<(), StoreError> {
        match fs::hard_link(&s.tmp, &s.dest) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                let existing = fs::read(&s.dest).map_err(|e| StoreError::io("read", &s.dest, e))?;
                let staged = fs::read(&s.tmp).map_err(|e| StoreError::io("read", &s.tmp, e))?;
                if existing != staged {
                    return Err(StoreError::Conflict {
                        path: s.rel.clone(),
                    });
                }
            }
            Err(e) => return Err(StoreError::io("link", &s.dest, e)),
        }
        // The temporary name is unlinked when `s` drops.
        Ok(())
    }

    fn stage(&self, w: &TileWrite) -> Result<Staged, StoreError> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let tmp = self.tmp_dir.join(format!("{n}"));
        let mut file = File::create(&tmp).map_err(|e| StoreError::io("create", &tmp, e))?;
        let staged = Staged {
            file: file
                .try_clone()
                .map_err(|e| StoreError::io("dup", &tmp, e))?,
            tmp,
            dest: self.path_of(w.kind, w.index, w.width),
            rel: tile_path(w.kind, w.index, w.width),
        };
        file.write_all(&w.data)
            .map_err(|e| StoreError::io("write", &staged.tmp, e))?;
        Ok(staged)
    }

    fn commit_staged(&self, staged: &[Staged]) -> Result<(), StoreError> {
        if staged.is_empty() {
            return Ok(());
        }
        match self.mode {
            SyncMode::PerFile => {
                for s in staged.iter() {
                    s.file
                        .sync_all()
                        .map_err(|e| StoreError::io("fsync", &s.tmp, e))?;
                }
            }
            SyncMode::Filesystem => self.syncfs()?,
        }
        let mut dirty = BTreeSet::new();
        for s in staged.iter() {
            let parent = s.dest.parent().unwrap_or(&self.root).to_path_buf();
            self.make_dirs(&parent, &mut dirty)?;
            self.publish(s)?;
            dirty.insert(parent);
        }
        match self.mode {
            SyncMode::PerFile => dirty.iter().try_for_each(|d| fsync_dir(d)),
            SyncMode::Filesystem => self.syncfs(),
        }
    }

    fn syncfs(&self) -> Result<(), StoreError> {
        let dir = File::open(&self.root).map_err(|e| StoreError::io("open dir", &self.root, e))?;
        rustix::fs::syncfs(&dir).map_err(|e| StoreError::io("syncfs", &self.root, e.into()))
    }

    /// Removes a file; `Ok(false)` if it was not there.
    fn remove_file_if_present(path: &Path) -> Result<bool, StoreError> {
        match fs::remove_file(path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(StoreError::io("unlink", path, e)),
        }
    }

    /// The `<N>.p` directory holding a tile's partial versions.
    fn partial_dir(&self, kind: TileKind, index: u64) -> PathBuf {
        let full = self.path_of(kind, index, TILE_WIDTH);
        let mut name = full.into_os_string();
        name.push(".p");
        PathBuf::from(name)
    }
}

impl TileStore for FsStore {
    fn write_batch(&self, writes: &[TileWrite]) -> Result<(), StoreError> {
        let staged = writes
            .iter()
            .map(|w| self.stage(w))
            .collect::<Result<Vec<_>, _>>()?;
        self.commit_staged(&staged)
    }

    fn get(&self, kind: TileKind, index: u64, width: u16) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.path_of(kind, index, width);
        match fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io("read", path, e)),
        }
    }

    fn put_checkpoint(&self, note: &str) -> Result<(), StoreError> {
        let tmp = self.root.join(".checkpoint.tmp");
        let dest = self.root.join("checkpoint");
        let mut file = File::create(&tmp).map_err(|e| StoreError::io("create", &tmp, e))?;
        file.write_all(note.as_bytes())
            .map_err(|e| StoreError::io("write", &tmp, e))?;
        file.sync_all()
            .map_err(|e| StoreError::io("fsync", &tmp, e))?;
        fs::rename(&tmp, &dest).map_err(|e| StoreError::io("rename", &dest, e))?;
        fsync_dir(&self.root)
    }

    fn latest_checkpoint(&self) -> Result<Option<String>, StoreError> {
        let path = self.root.join("checkpoint");
        match fs::read(&path) {
            Ok(b) => String::from_utf8(b)
                .map(Some)
                .map_err(|_| StoreError::Corrupt(format!("{} is not UTF-8", path.display()))),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io("read", path, e)),
        }
    }

    fn remove_partials(&self, kind: TileKind, index: u64) -> Result<(), StoreError> {
        let dir = self.partial_dir(kind, index);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io("remove", dir, e)),
        }
    }

    fn discard_uncommitted(
        &self,
        kind: TileKind,
        index: u64,
        committed_width: u16,
    ) -> Result<(), StoreError> {
        // Removals are made durable so that a later crash cannot resurrect a file that a new,
        // different batch has since been linked next to.
        let full = self.path_of(kind, index, TILE_WIDTH);
        if committed_width < TILE_WIDTH && FsStore::remove_file_if_present(&full)? {
            fsync_dir(full.parent().unwrap_or(&self.root))?;
        }
        let dir = self.partial_dir(kind, index);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(StoreError::io("list", dir, e)),
        };
        let mut removed = false;
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::io("list", &dir, e))?;
            let width = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u16>().ok());
            // Names that are not widths are not ours; widths at or below the committed one are
            // published partials and stay.
            if width.is_some_and(|w| w > committed_width) {
                removed |= FsStore::remove_file_if_present(&entry.path())?;
            }
        }
        if removed {
            fsync_dir(&dir)?;
        }
        Ok(())
    }

    fn locate(&self, kind: TileKind, index: u64, width: u16) -> String {
        tile_path(kind, index, width)
    }
}
