//! Embedded-store specifics: durability across reopen, corrupt data, exclusive file access.

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use flk_dedup::embedded::FILE_NAME;
use flk_dedup::{
    DEFAULT_TTL, DedupError, DedupStore, EmbeddedOptions, EmbeddedStore, ManualClock, PutOutcome,
};
use redb::{Database, TableDefinition};

use common::{entry, key};

/// The on-disk table, as documented in `flk_dedup::embedded`.
const ENTRIES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("dedup_entries");

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
        let db = Database::create(dir.path().join(FILE_NAME)).expect("open raw database");
        let txn = db.begin_write().expect("write txn");
        {
            let mut table = txn.open_table(ENTRIES).expect("entries table");
            for (k, garbage) in [
                (&short, &b"\x01short"[..]),
                (&unknown_format, &[0x7f; 80][..]),
                (&empty, &b""[..]),
            ] {
                table
                    .insert((k.tenant_id.as_str(), k.pcs_id.as_str()), garbage)
                    .expect("insert garbage");
            }
        }
        txn.commit().expect("commit garbage");
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
async fn a_garbage_file_is_refused_at_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join(FILE_NAME), vec![0xa5; 64 * 1024]).expect("write garbage");
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
