//! File-system steps shared by recovery, the writer and readers: create a segment, sync a directory, read a file.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::LogError;
use crate::format::{encode_segment_header, segment_file_name};

/// Creates (or recreates, empty) the segment starting at `first_seq` and writes its header.
/// With `fsync`, the file and then the directory entry are made durable before returning.
pub(crate) fn create_segment(
    dir: &Path,
    first_seq: u64,
    fsync: bool,
) -> Result<(File, PathBuf), LogError> {
    let path = dir.join(segment_file_name(first_seq));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(|e| LogError::io("create segment", &path, e))?;
    file.write_all_at(&encode_segment_header(first_seq), 0)
        .map_err(|e| LogError::io("write segment header", &path, e))?;
    if fsync {
        file.sync_all()
            .map_err(|e| LogError::io("fsync new segment", &path, e))?;
        sync_dir(dir)?;
    }
    Ok((file, path))
}

/// Makes the directory's entries (a created segment) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| LogError::io("fsync directory", dir, e))
}

/// Opens a segment for reading and writing (recovery may truncate it; the writer appends to it).
pub(crate) fn open_segment_rw(path: &Path) -> Result<File, LogError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| LogError::io("open segment", path, e))
}

pub(crate) fn read_all(file: &mut File, path: &Path) -> Result<Vec<u8>, LogError> {
    let mut data = Vec::new();
    file.read_to_end(&mut data)
        .map_err(|e| LogError::io("read segment", path, e))?;
    Ok(data)
}

/// Cuts `file` back to `len` bytes and makes the new length durable (with `fsync`).
pub(crate) fn truncate(file: &File, path: &Path, len: u64, fsync: bool) -> Result<(), LogError> {
    file.set_len(len)
        .map_err(|e| LogError::io("truncate segment", path, e))?;
    if fsync {
        file.sync_all()
            .map_err(|e| LogError::io("fsync truncated segment", path, e))?;
    }
    Ok(())
}
