//! A wall clock jumping backwards (NTP step, VM restore) never frees a dedup key: entries are
//! keyed on (tenant, pcs_id) and expire at the absolute time stored with them, so a clock set
//! back (even to the epoch) reads every entry as live and the first decision keeps winning.
//! The embedded store is the one whose expiry follows this process's clock; Redis and
//! PostgreSQL expire by their server's clock (PX, now()), which `flk up` does not move.

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{entry, key};
use flk_dedup::{DEFAULT_TTL, DedupStore, EmbeddedOptions, EmbeddedStore, ManualClock, PutOutcome};

const DAY: Duration = Duration::from_secs(86_400);

fn open(dir: &std::path::Path, clock: &ManualClock) -> EmbeddedStore {
    EmbeddedStore::open_with(EmbeddedOptions::new(dir).clock(Arc::new(clock.clone())))
        .expect("open embedded store")
}

#[tokio::test]
async fn a_clock_set_back_never_frees_a_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let now = SystemTime::now();
    let clock = ManualClock::new(now);
    let store = open(dir.path(), &clock);
    for n in 0..100 {
        let put = store
            .put_if_absent(&key("t", n), &entry(n), DEFAULT_TTL)
            .await;
        assert_eq!(put.expect("put"), PutOutcome::Inserted);
    }

    // Back one hour, one day, and to the epoch: every key is still taken by its first
    // decision, nothing purges, a second decision is never stored.
    for back_to in [now - Duration::from_secs(3600), now - DAY, UNIX_EPOCH] {
        clock.set(back_to);
        for n in 0..100 {
            let again = store
                .put_if_absent(&key("t", n), &entry(1000 + n), DEFAULT_TTL)
                .await;
            assert_eq!(
                again.expect("put"),
                PutOutcome::Existing(entry(n)),
                "key {n} at {back_to:?}"
            );
        }
        assert_eq!(store.purge_expired(1000).await.expect("purge"), 0);
    }

    // The clock returns to the right time: still the first decisions, across a reopen too.
    clock.set(now);
    drop(store);
    let store = open(dir.path(), &clock);
    for n in 0..100 {
        assert_eq!(store.get(&key("t", n)).await.expect("get"), Some(entry(n)));
    }
}

#[tokio::test]
async fn a_key_decided_while_the_clock_was_behind_keeps_the_rest_of_its_ttl() {
    // Decided while the clock read one day behind, then the clock is corrected forward: the
    // entry's expiry was computed from the wrong time, so it loses that day of its 14 and no
    // more; within the rest a resubmission is still a duplicate.
    let dir = tempfile::tempdir().expect("tempdir");
    let now = SystemTime::now();
    let clock = ManualClock::new(now - DAY);
    let store = open(dir.path(), &clock);
    let put = store
        .put_if_absent(&key("t", 1), &entry(1), DEFAULT_TTL)
        .await;
    assert_eq!(put.expect("put"), PutOutcome::Inserted);
    clock.set(now);
    let again = store
        .put_if_absent(&key("t", 1), &entry(2), DEFAULT_TTL)
        .await;
    assert_eq!(again.expect("put"), PutOutcome::Existing(entry(1)));
    clock.set(now + DEFAULT_TTL - DAY - Duration::from_secs(60));
    assert_eq!(store.get(&key("t", 1)).await.expect("get"), Some(entry(1)));
    clock.set(now + DEFAULT_TTL - DAY + Duration::from_secs(60));
    assert_eq!(
        store.get(&key("t", 1)).await.expect("get"),
        None,
        "expired one day early: the documented cost of a forward correction"
    );
}
