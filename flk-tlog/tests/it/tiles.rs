//! The embedded backend's tlog-tiles layout: paths, full and partial tiles, write-once files
//! and the partial-to-full transition.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use flk_tlog::tile::{TileKind, decode_bundle, tile_path};
use flk_tlog::{FsStore, StoreError, TileStore, leaf_hash};

use crate::common::{append_range, entry, fs_log};

fn exists(root: &Path, rel: &str) -> bool {
    root.join(rel).is_file()
}

#[test]
fn paths_follow_the_spec() {
    assert_eq!(
        tile_path(TileKind::Hash(0), 1_234_067, 256),
        "tile/0/x001/x234/067"
    );
    assert_eq!(
        tile_path(TileKind::Hash(1), 1_234_067, 3),
        "tile/1/x001/x234/067.p/3"
    );
    assert_eq!(
        tile_path(TileKind::Entries, 1_234_067, 256),
        "tile/entries/x001/x234/067"
    );
    assert_eq!(tile_path(TileKind::Entries, 2, 17), "tile/entries/002.p/17");
}

#[test]
fn layout_of_a_small_log() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut log = fs_log(root);
    append_range(&mut log, 0, 100, 100);
    assert!(exists(root, "checkpoint"));
    assert!(exists(root, "tile/0/000.p/100"));
    assert!(exists(root, "tile/entries/000.p/100"));
    assert!(!exists(root, "tile/1/000.p/1"));

    append_range(&mut log, 100, 300, 200);
    // Level 0 tile 0 became full: its partials are gone, the full tile and bundle exist.
    assert!(exists(root, "tile/0/000"));
    assert!(exists(root, "tile/entries/000"));
    assert!(!root.join("tile/0/000.p").exists());
    assert!(!root.join("tile/entries/000.p").exists());
    assert!(exists(root, "tile/0/001.p/44"));
    assert!(exists(root, "tile/entries/001.p/44"));
    assert!(exists(root, "tile/1/000.p/1"));

    // Tile contents: level 0 holds leaf hashes, level 1 the full level-0 tile's root.
    let t0 = std::fs::read(root.join("tile/0/000")).unwrap();
    assert_eq!(t0.len(), 8192);
    assert_eq!(&t0[32 * 5..32 * 6], &leaf_hash(&entry(5)));
    let t1 = std::fs::read(root.join("tile/1/000.p/1")).unwrap();
    assert_eq!(t1, log.root_at(256).unwrap());
    let bundle = std::fs::read(root.join("tile/entries/001.p/44")).unwrap();
    let (entries, err) = decode_bundle(&bundle);
    assert_eq!(err, None);
    assert_eq!(entries.len(), 44);
    assert_eq!(entries[0], entry(256).as_slice());
    assert_eq!(&bundle[..2], &(entry(256).len() as u16).to_be_bytes());
}

#[test]
fn full_tiles_are_never_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut log = fs_log(root);
    append_range(&mut log, 0, 256 * 3 + 10, 97);
    let watched = [
        "tile/0/000",
        "tile/0/001",
        "tile/entries/000",
        "tile/entries/002",
    ];
    let before: Vec<(Vec<u8>, u64, i64)> = watched
        .iter()
        .map(|p| {
            let m = std::fs::metadata(root.join(p)).unwrap();
            (
                std::fs::read(root.join(p)).unwrap(),
                m.ino(),
                m.mtime_nsec(),
            )
        })
        .collect();
    append_range(&mut log, 256 * 3 + 10, 65_536 + 10, 4096);
    drop(log);
    let mut log = fs_log(root);
    append_range(&mut log, 65_536 + 10, 65_536 + 17, 7);
    for (p, (bytes, ino, mtime)) in watched.iter().zip(before) {
        let m = std::fs::metadata(root.join(p)).unwrap();
        assert_eq!(std::fs::read(root.join(p)).unwrap(), bytes, "{p} changed");
        assert_eq!((m.ino(), m.mtime_nsec()), (ino, mtime), "{p} was replaced");
    }
    // Level 1 tile 0 is full now; level 2 has a partial.
    assert!(exists(root, "tile/1/000"));
    assert!(exists(root, "tile/2/000.p/1"));
}

#[test]
fn the_store_refuses_to_replace_a_tile() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(dir.path()).unwrap();
    store.put_tile(0, 5, 256, &[1; 8192]).unwrap();
    // Identical bytes: an idempotent retry.
    store.put_tile(0, 5, 256, &[1; 8192]).unwrap();
    assert!(matches!(
        store.put_tile(0, 5, 256, &[2; 8192]),
        Err(StoreError::Conflict { path }) if path == "tile/0/005"
    ));
    assert_eq!(store.get_tile(0, 5, 256).unwrap().unwrap(), vec![1; 8192]);
    assert!(store.get_bundle(5, 256).unwrap().is_none());
    // A second writer is refused.
    assert!(matches!(
        FsStore::open(dir.path()),
        Err(StoreError::Locked { .. })
    ));
    drop(store);
    assert!(FsStore::open(dir.path()).is_ok());
}

#[test]
fn reopen_serves_the_same_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = fs_log(dir.path());
    append_range(&mut log, 0, 1000, 333);
    let cp = log.checkpoint().clone();
    let proof = log.inclusion_proof(700, 1000).unwrap();
    drop(log);
    let log = fs_log(dir.path());
    assert_eq!(log.checkpoint(), &cp);
    assert_eq!(log.cached_tiles(), 0);
    assert_eq!(log.inclusion_proof(700, 1000).unwrap(), proof);
    assert_eq!(log.entry(999).unwrap(), entry(999));
    assert_eq!(log.entry(3).unwrap(), entry(3));
    assert!(log.cached_tiles() > 0);
}

#[test]
fn syncfs_mode_writes_the_same_files() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let mut per_file = fs_log(a.path());
    let store = FsStore::open_with(b.path(), flk_tlog::SyncMode::Filesystem).unwrap();
    let mut syncfs =
        flk_tlog::Log::open(store, crate::common::signer(), crate::common::ORIGIN).unwrap();
    append_range(&mut per_file, 0, 600, 250);
    append_range(&mut syncfs, 0, 600, 250);
    assert_eq!(per_file.checkpoint_note(), syncfs.checkpoint_note());
    for p in [
        "tile/0/001",
        "tile/entries/002.p/88",
        "tile/1/000.p/2",
        "checkpoint",
    ] {
        assert_eq!(
            std::fs::read(a.path().join(p)).unwrap(),
            std::fs::read(b.path().join(p)).unwrap(),
            "{p}"
        );
    }
}

#[test]
fn a_log_can_be_shared_between_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<flk_tlog::Log<FsStore>>();
    shareable::<flk_tlog::Log<Box<dyn TileStore>>>();
}

#[test]
fn a_tiny_tile_cache_serves_the_same_proofs() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = fs_log(dir.path());
        append_range(&mut log, 0, 3000, 1000);
    }
    let full = crate::common::mem_log(3000, 1000);
    let store = FsStore::open(dir.path()).unwrap();
    let opts = flk_tlog::LogOptions { cache_tiles: 2 };
    let log = flk_tlog::Log::open_with(store, crate::common::signer(), crate::common::ORIGIN, opts)
        .unwrap();
    for (i, s) in [(0, 3000), (2999, 3000), (1500, 2000), (17, 257), (700, 701)] {
        assert_eq!(
            log.inclusion_proof(i, s).unwrap(),
            full.inclusion_proof(i, s).unwrap()
        );
        assert_eq!(
            log.consistency_proof(s / 3 + 1, s).unwrap(),
            full.consistency_proof(s / 3 + 1, s).unwrap()
        );
        assert!(log.cached_tiles() <= 2);
    }
}
