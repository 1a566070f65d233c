//! Embedded-store specifics: durability across reopen, corrupt data, exclusive file access.

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use flk_dedup::embedded::{DIR_NAME, ENTRIES, EXPIRY, entry_key};
use flk_dedup::{
    DEFAULT_TTL, DedupError, DedupStore, EmbeddedOptions, EmbeddedStore, ManualClock, PutOutcome,
};

use common::{entry, key};

fn open(dir: &std::path::Path, clock: &ManualClock) -> EmbeddedStore {
    EmbeddedStore::open_with(EmbeddedOptions::new(dir).clock(Arc::new(clock.clone())))
        .expect("open embedded store")
}

#[tokio::test]
async fn reopening_after_drop_keeps_entries_and_their_expiry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(SystemTime::now());
    let store = open(dir.path(), &clock);
    let one_hour = Duration::from_secs(3600);
    let put = store.put_if_absent(&key("t", 1), &entry(1), one_hour).await;
    assert_eq!(put.expect("put"), PutOutcome::Inserted);
    let put = store
        .put_if_absent(&key("t", 2), &entry(2), 2 * one_hour)
        .await;
    assert_eq!(put.expect("put"), PutOutcome::Inserted);
    drop(store);

    let store = open(dir.path(), &clock);
    assert_eq!(store.get(&key("t", 1)).await.expect("get"), Some(entry(1)));
    assert_eq!(store.get(&key("t", 2)).await.expect("get"), Some(entry(2)));
    let dup = store.put_if_absent(&key("t", 1), &entry(9), one_hour).await;
    assert_eq!(
        dup.expect("put"),
        PutOutcome::Existing(entry(1)),
        "first write still wins"
    );

    clock.advance(one_hour + Duration::from_secs(60));
    assert_eq!(
        store.get(&key("t", 1)).await.expect("get"),
        None,
        "expiry survived the reopen"
    );
    assert_eq!(store.get(&key("t", 2)).await.expect("get"), Some(entry(2)));
    assert_eq!(store.purge_expired(100).await.expect("purge"), 1);
}

#[tokio::test]
async fn corrupt_records_are_errors_not_panics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(SystemTime::now());
    let store = open(dir.path(), &clock);
    let good = key("t", 1);
    let put = store.put_if_absent(&good, &entry(1), DEFAULT_TTL).await;
    assert_eq!(put.expect("put"), PutOutcome::Inserted);
    drop(store);

    let (short, unknown_format, empty) = (key("t", 2), key("t", 3), key("t", 4));
    {
        // The raw keyspace, as documented in `flk_dedup::embedded`.
        let keyspace = fjall::Config::new(dir.path().join(DIR_NAME))
            .open()
            .expect("open raw keyspace");
        let entries = keyspace
            .open_partition(ENTRIES, fjall::PartitionCreateOptions::default())
            .expect("entries partition");
        for (k, garbage) in [
            (&short, &b"\x01short"[..]),
            (&unknown_format, &[0x7f; 80][..]),
            (&empty, &b""[..]),
        ] {
            entries
                .insert(entry_key(k), garbage)
                .expect("insert garbage");
        }
        keyspace
            .persist(fjall::PersistMode::SyncAll)
            .expect("persist garbage");
    }

    let store = open(dir.path(), &clock);
    for k in [&short, &unknown_format, &empty] {
        let get = store.get(k).await;
        assert!(
            matches!(get, Err(DedupError::Corrupt { .. })),
            "get {k:?}: {get:?}"
        );
        let put = store.put_if_absent(k, &entry(5), DEFAULT_TTL).await;
        assert!(
            matches!(put, Err(DedupError::Corrupt { .. })),
            "put {k:?}: {put:?}"
        );
    }
    // Other keys keep working, in the same write batches as the failures.
    assert_eq!(store.get(&good).await.expect("get"), Some(entry(1)));
    let put = store
        .put_if_absent(&key("t", 5), &entry(5), DEFAULT_TTL)
        .await;
    assert_eq!(put.expect("put"), PutOutcome::Inserted);
    store.check_ready().await.expect("still ready");
}

#[tokio::test]
async fn a_garbage_keyspace_is_refused_at_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(EmbeddedStore::open(dir.path()).expect("create"));
    // fjall's format marker, overwritten.
    std::fs::write(dir.path().join(DIR_NAME).join("version"), vec![0xa5; 64])
        .expect("write garbage");
    let err = EmbeddedStore::open(dir.path()).expect_err("garbage file opened");
    assert!(matches!(err, DedupError::Corrupt { .. }), "{err}");
}

#[tokio::test]
async fn a_directory_is_opened_by_one_store_at_a_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = EmbeddedStore::open(dir.path()).expect("first open");
    let err = EmbeddedStore::open(dir.path()).expect_err("second open of the same file");
    assert!(err.to_string().contains("already open"), "{err}");
    // A clone shares the open database instead.
    let clone = first.clone();
    let put = clone
        .put_if_absent(&key("t", 1), &entry(1), DEFAULT_TTL)
        .await;
    assert_eq!(put.expect("put"), PutOutcome::Inserted);
    assert_eq!(first.get(&key("t", 1)).await.expect("get"), Some(entry(1)));
}

#[tokio::test]
async fn deferred_sync_puts_are_visible_at_once_and_durable_after_sync() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open_with(EmbeddedOptions::new(dir.path()).deferred_sync(true))
        .expect("open");
    let k = key("t", 7);
    assert_eq!(
        store
            .put_if_absent(&k, &entry(7), Duration::from_secs(600))
            .await
            .expect("put"),
        PutOutcome::Inserted
    );
    // Committed (without fsync): readers and later puts see it.
    assert_eq!(store.get(&k).await.expect("get"), Some(entry(7)));
    assert_eq!(
        store
            .put_if_absent(&k, &entry(8), Duration::from_secs(600))
            .await
            .expect("put"),
        PutOutcome::Existing(entry(7))
    );
    store.sync().await.expect("sync");
    drop(store);
    let reopened = EmbeddedStore::open(dir.path()).expect("reopen");
    assert_eq!(reopened.get(&k).await.expect("get"), Some(entry(7)));
}

#[tokio::test]
async fn a_purge_queued_with_replacing_puts_keeps_the_new_entries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(SystemTime::now());
    let store = open(dir.path(), &clock);
    let minute = Duration::from_secs(60);
    let keys: Vec<_> = (0..64).map(|n| key("t", n)).collect();
    for k in &keys {
        let put = store.put_if_absent(k, &entry(1), minute).await;
        assert_eq!(put.expect("put"), PutOutcome::Inserted);
    }
    clock.advance(2 * minute);
    // Replacing puts of the expired keys and purges, queued together so that the writer
    // takes them into the same request batches in either order.
    let replacement = entry(2);
    let puts = keys
        .iter()
        .map(|k| store.put_if_absent(k, &replacement, DEFAULT_TTL));
    let purges = (0..8).map(|_| store.purge_expired(16));
    let (puts, purges) = tokio::join!(
        futures::future::join_all(puts),
        futures::future::join_all(purges)
    );
    for put in puts {
        assert_eq!(put.expect("put"), PutOutcome::Inserted);
    }
    let purged: usize = purges.into_iter().map(|p| p.expect("purge")).sum();
    assert!(purged <= keys.len(), "purged {purged}");
    for k in &keys {
        assert_eq!(store.get(k).await.expect("get"), Some(entry(2)), "{k:?}");
    }
    assert_eq!(store.purge_expired(1000).await.expect("purge"), 0);
}

/// The expiry index as stored: (key, value) pairs of the raw partition.
fn raw_expiry_index(dir: &std::path::Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let keyspace = fjall::Config::new(dir.join(DIR_NAME))
        .open()
        .expect("open raw keyspace");
    let expiry = keyspace
        .open_partition(EXPIRY, fjall::PartitionCreateOptions::default())
        .expect("expiry partition");
    expiry
        .iter()
        .map(|kv| {
            let (k, v) = kv.expect("read index");
            (k.to_vec(), v.to_vec())
        })
        .collect()
}

/// The entry keys a group of the index names (`length: u16 BE | key`, repeated).
fn group_references(mut value: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Some((len, rest)) = value.split_first_chunk::<2>() {
        let (k, rest) = rest.split_at(usize::from(u16::from_be_bytes(*len)));
        out.push(k.to_vec());
        value = rest;
    }
    out
}

/// Puts written together share one index entry per expiry time: every put is named once,
/// under a 16-byte group key, and the index holds no more entries than write batches.
#[tokio::test]
async fn puts_of_one_write_batch_share_an_expiry_group() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(SystemTime::now());
    let store = open(dir.path(), &clock);
    let keys: Vec<_> = (0..200).map(|n| key("t", n)).collect();
    let one = entry(1);
    let puts = keys
        .iter()
        .map(|k| store.put_if_absent(k, &one, DEFAULT_TTL));
    for put in futures::future::join_all(puts).await {
        assert_eq!(put.expect("put"), PutOutcome::Inserted);
    }
    drop(store);
    let index = raw_expiry_index(dir.path());
    assert!(
        index.len() < keys.len(),
        "{} index entries for {} puts queued together",
        index.len(),
        keys.len()
    );
    let mut named: Vec<Vec<u8>> = Vec::new();
    for (k, v) in &index {
        assert_eq!(k.len(), 16, "group key");
        named.extend(group_references(v));
    }
    named.sort();
    let mut expected: Vec<Vec<u8>> = keys.iter().map(entry_key).collect();
    expected.sort();
    assert_eq!(named, expected);
}

/// A purge follows at most `limit` references, so a group larger than that is purged over
/// several calls, and what is left of it stays in the index.
#[tokio::test]
async fn a_group_larger_than_the_limit_is_purged_over_several_calls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(SystemTime::now());
    let store = open(dir.path(), &clock);
    let minute = Duration::from_secs(60);
    let keys: Vec<_> = (0..64).map(|n| key("t", n)).collect();
    let one = entry(1);
    let puts = keys.iter().map(|k| store.put_if_absent(k, &one, minute));
    for put in futures::future::join_all(puts).await {
        assert_eq!(put.expect("put"), PutOutcome::Inserted);
    }
    clock.advance(2 * minute);
    let mut purged = Vec::new();
    for _ in 0..8 {
        purged.push(store.purge_expired(10).await.expect("purge"));
    }
    assert_eq!(purged, [10, 10, 10, 10, 10, 10, 4, 0]);
    for k in &keys {
        assert_eq!(store.get(k).await.expect("get"), None);
    }
    drop(store);
    assert_eq!(raw_expiry_index(dir.path()), Vec::new());
}

/// A put over an expired entry, or a replace with a longer lifetime, leaves the old reference
/// in the index: when it falls due the purge sees the entry's own expiry and keeps it.
#[tokio::test]
async fn a_stale_reference_does_not_purge_a_renewed_entry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(SystemTime::now());
    let store = open(dir.path(), &clock);
    let minute = Duration::from_secs(60);
    let (renewed, replaced) = (key("t", 1), key("t", 2));
    for k in [&renewed, &replaced] {
        let put = store.put_if_absent(k, &entry(1), minute).await;
        assert_eq!(put.expect("put"), PutOutcome::Inserted);
    }
    store
        .replace(&replaced, &entry(3), 60 * minute)
        .await
        .expect("replace");
    clock.advance(2 * minute);
    let put = store.put_if_absent(&renewed, &entry(2), 60 * minute).await;
    assert_eq!(
        put.expect("put over an expired entry"),
        PutOutcome::Inserted
    );
    assert_eq!(store.purge_expired(100).await.expect("purge"), 0);
    assert_eq!(store.get(&renewed).await.expect("get"), Some(entry(2)));
    assert_eq!(store.get(&replaced).await.expect("get"), Some(entry(3)));
    clock.advance(60 * minute);
    assert_eq!(store.purge_expired(100).await.expect("purge"), 2);
    assert_eq!(store.purge_expired(100).await.expect("purge"), 0);
}

/// A store written with the older index layout (one `expires_at | entry key` entry per put)
/// is purged all the same.
#[tokio::test]
async fn an_index_of_the_older_layout_is_still_purged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let start = SystemTime::UNIX_EPOCH + Duration::from_millis(1_800_000_000_000);
    let clock = ManualClock::new(start);
    let store = open(dir.path(), &clock);
    let minute = Duration::from_secs(60);
    let (old, kept) = (key("t", 1), key("t", 2));
    let put = store.put_if_absent(&old, &entry(1), minute).await;
    assert_eq!(put.expect("put"), PutOutcome::Inserted);
    let put = store.put_if_absent(&kept, &entry(2), DEFAULT_TTL).await;
    assert_eq!(put.expect("put"), PutOutcome::Inserted);
    drop(store);
    {
        // Rewrite `old`'s reference as the older layout did.
        let keyspace = fjall::Config::new(dir.path().join(DIR_NAME))
            .open()
            .expect("open raw keyspace");
        let expiry = keyspace
            .open_partition(EXPIRY, fjall::PartitionCreateOptions::default())
            .expect("expiry partition");
        let expires_at: u64 = 1_800_000_000_000 + 60_000;
        for kv in expiry.prefix(expires_at.to_be_bytes()) {
            let (k, _) = kv.expect("read index");
            expiry.remove(k).expect("remove group");
        }
        let mut old_layout = expires_at.to_be_bytes().to_vec();
        old_layout.extend(entry_key(&old));
        expiry.insert(old_layout, []).expect("insert");
        keyspace
            .persist(fjall::PersistMode::SyncAll)
            .expect("persist");
    }
    let store = open(dir.path(), &clock);
    clock.advance(2 * minute);
    assert_eq!(store.purge_expired(100).await.expect("purge"), 1);
    assert_eq!(store.get(&old).await.expect("get"), None);
    assert_eq!(store.get(&kept).await.expect("get"), Some(entry(2)));
    drop(store);
    let index = raw_expiry_index(dir.path());
    assert_eq!(index.len(), 1, "only the kept entry's group is left");
    assert_eq!(group_references(&index[0].1), vec![entry_key(&kept)]);
}

/// Batches with the same expiry time get groups of their own, across a reopen too: none
/// overwrites another's references, so the purge finds every entry.
#[tokio::test]
async fn batches_with_one_expiry_time_keep_groups_of_their_own() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(SystemTime::now());
    let minute = Duration::from_secs(60);
    for n in 0..3 {
        let store = open(dir.path(), &clock);
        for k in [key("t", 2 * n), key("t", 2 * n + 1)] {
            let put = store.put_if_absent(&k, &entry(n), minute).await;
            assert_eq!(put.expect("put"), PutOutcome::Inserted);
        }
    }
    assert_eq!(raw_expiry_index(dir.path()).len(), 6, "one group per batch");
    let store = open(dir.path(), &clock);
    clock.advance(2 * minute);
    assert_eq!(store.purge_expired(100).await.expect("purge"), 6);
}
