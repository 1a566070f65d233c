//! Crashes between writing tiles and publishing the checkpoint: the log recovers to its last
//! checkpoint, and appending again gives the same tree as building from scratch.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use flk_tlog::tile::TileKind;
use flk_tlog::{
    Checkpoint, FsStore, Log, StoreError, TileStore, TileWrite, VerifyOptions, verify_log,
};

use crate::common::{ORIGIN, append_range, entries, fs_log, mem_log, signer};

/// A store that fails on demand: the checkpoint write, or a tile batch after half its writes.
struct Crashy<S> {
    inner: S,
    fail_checkpoint: AtomicBool,
    fail_half_batch: AtomicBool,
}

impl<S> Crashy<S> {
    fn new(inner: S) -> Self {
        Crashy {
            inner,
            fail_checkpoint: AtomicBool::new(false),
            fail_half_batch: AtomicBool::new(false),
        }
    }
}

fn injected() -> StoreError {
    StoreError::Io {
        op: "inject",
        path: "crash".into(),
        source: std::io::Error::other("injected crash"),
    }
}

impl<S: TileStore> TileStore for Crashy<S> {
    fn write_batch(&self, writes: &[TileWrite]) -> Result<(), StoreError> {
        if self.fail_half_batch.load(Ordering::SeqCst) {
            self.inner.write_batch(&writes[..writes.len() / 2])?;
            return Err(injected());
        }
        self.inner.write_batch(writes)
    }
    fn get(&self, kind: TileKind, index: u64, width: u16) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(kind, index, width)
    }
    fn put_checkpoint(&self, note: &str) -> Result<(), StoreError> {
        if self.fail_checkpoint.load(Ordering::SeqCst) {
            return Err(injected());
        }
        self.inner.put_checkpoint(note)
    }
    fn latest_checkpoint(&self) -> Result<Option<String>, StoreError> {
        self.inner.latest_checkpoint()
    }
    fn remove_partials(&self, kind: TileKind, index: u64) -> Result<(), StoreError> {
        self.inner.remove_partials(kind, index)
    }
    fn discard_uncommitted(&self, kind: TileKind, index: u64, w: u16) -> Result<(), StoreError> {
        self.inner.discard_uncommitted(kind, index, w)
    }
}

fn crashy_log(dir: &Path) -> Log<Crashy<FsStore>> {
    Log::open(Crashy::new(FsStore::open(dir).unwrap()), signer(), ORIGIN).unwrap()
}

/// Entries `range` with a marker so that they differ from `common::entry`.
fn other_entries(range: std::ops::Range<u64>) -> Vec<Vec<u8>> {
    range
        .map(|i| format!("replacement {i}").into_bytes())
        .collect()
}

/// The checkpoint of a from-scratch log of `first` then `then`.
fn scratch(first: &[Vec<u8>], then: &[Vec<u8>]) -> Checkpoint {
    let mut log = mem_log(0, 1);
    log.append_batch(first).unwrap();
    log.append_batch(then).unwrap();
    log.checkpoint().clone()
}

fn assert_verifies(dir: &Path) {
    let store = FsStore::open(dir).unwrap();
    verify_log(&store, &signer().verifier(), &VerifyOptions::default()).unwrap();
}

#[test]
fn crash_before_the_checkpoint_recovers_to_the_last_checkpoint() {
    for replay_same in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mut log = crashy_log(root);
        append_range(&mut log, 0, 700, 350);
        let committed = log.checkpoint().clone();
        log.store().fail_checkpoint.store(true, Ordering::SeqCst);
        assert!(log.append_batch(&entries(700..1500)).is_err());
        // The crashed batch's tiles reached the disk, but no checkpoint covers them.
        assert!(root.join("tile/0/004").is_file());
        assert!(root.join("tile/0/002").is_file());
        assert!(root.join("tile/entries/005.p/220").is_file());
        drop(log);

        let mut log = fs_log(root);
        assert_eq!(log.checkpoint(), &committed);
        assert_eq!(log.size(), 700);
        assert!(!root.join("tile/0/004").exists());
        assert!(!root.join("tile/0/002").exists());
        assert!(!root.join("tile/entries/005.p/220").exists());
        assert!(
            root.join("tile/0/002.p/188").is_file(),
            "committed partial kept"
        );

        let next = if replay_same {
            entries(700..1500)
        } else {
            other_entries(700..1500)
        };
        log.append_batch(&next).unwrap();
        assert_eq!(log.checkpoint(), &scratch(&entries(0..700), &next));
        drop(log);
        assert_verifies(root);
    }
}

#[test]
fn a_failed_append_is_retried_by_the_same_instance() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = crashy_log(dir.path());
    append_range(&mut log, 0, 300, 300);
    log.store().fail_half_batch.store(true, Ordering::SeqCst);
    assert!(log.append_batch(&entries(300..1100)).is_err());
    assert_eq!(log.size(), 300);
    log.store().fail_half_batch.store(false, Ordering::SeqCst);
    log.store().fail_checkpoint.store(true, Ordering::SeqCst);
    assert!(log.append_batch(&entries(300..900)).is_err());
    log.store().fail_checkpoint.store(false, Ordering::SeqCst);
    let next = other_entries(300..1100);
    assert_eq!(log.append_batch(&next).unwrap(), (300, 1100));
    assert_eq!(log.checkpoint(), &scratch(&entries(0..300), &next));
    assert_eq!(log.entry(1099).unwrap(), next[799]);
    drop(log);
    assert_verifies(dir.path());
}

#[test]
fn leftovers_beyond_the_checkpoint_are_discarded_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    {
        let mut log = fs_log(root);
        append_range(&mut log, 0, 300, 300);
    }
    // Junk a crashed batch could have left: fuller partials, full tiles at and past the edge.
    let junk = [
        "tile/0/001",
        "tile/0/001.p/200",
        "tile/0/002.p/9",
        "tile/0/257", // the far end of one maximal batch past size 300
        "tile/entries/001",
        "tile/entries/001.p/45",
        "tile/1/000.p/2",
    ];
    for p in junk {
        let path = root.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, vec![0xee; 64]).unwrap();
    }
    let mut log = fs_log(root);
    assert_eq!(log.size(), 300);
    for p in junk {
        assert!(!root.join(p).exists(), "{p} survived recovery");
    }
    assert!(root.join("tile/0/001.p/44").is_file());
    assert!(root.join("tile/1/000.p/1").is_file());
    let next = other_entries(300..1300);
    log.append_batch(&next).unwrap();
    assert_eq!(log.checkpoint(), &scratch(&entries(0..300), &next));
    drop(log);
    assert_verifies(root);
}

#[test]
fn open_refuses_a_store_that_disagrees_with_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = fs_log(dir.path());
        append_range(&mut log, 0, 300, 300);
    }
    let t = dir.path().join("tile/0/001.p/44");
    let mut b = std::fs::read(&t).unwrap();
    b[0] ^= 1;
    std::fs::write(&t, b).unwrap();
    let store = FsStore::open(dir.path()).unwrap();
    assert!(matches!(
        Log::open(store, signer(), ORIGIN),
        Err(flk_tlog::Error::Corrupt(_))
    ));
    let store = FsStore::open(dir.path()).unwrap();
    assert!(matches!(
        Log::open(store, signer(), "other.origin/log"),
        Err(flk_tlog::Error::OriginMismatch { .. })
    ));
}
