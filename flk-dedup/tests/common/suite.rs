//! The conformance suite: the dedup semantics every backend must show, written once.

use std::sync::Arc;
use std::time::Duration;

use flk_dedup::{DEFAULT_TTL, DedupError, DedupKey, DedupStore, PutOutcome};
use tokio::sync::Barrier;

use super::{Fixture, entry, key, pcs};

const TENANT: &str = "default";

pub async fn get_on_missing_key_is_none<S: DedupStore>(f: &Fixture<S>) {
    assert_eq!(f.store.get(&key(TENANT, 1)).await.expect("get"), None);
}

pub async fn insert_then_get<S: DedupStore>(f: &Fixture<S>) {
    let k = key(TENANT, 2);
    let put = f.store.put_if_absent(&k, &entry(7), DEFAULT_TTL).await;
    assert_eq!(put.expect("put"), PutOutcome::Inserted);
    assert_eq!(f.store.get(&k).await.expect("get"), Some(entry(7)));
}

pub async fn first_write_wins<S: DedupStore>(f: &Fixture<S>) {
    let k = key(TENANT, 3);
    let first = f.store.put_if_absent(&k, &entry(1), DEFAULT_TTL).await;
    assert_eq!(first.expect("first put"), PutOutcome::Inserted);
    for later in [2, 3] {
        let put = f.store.put_if_absent(&k, &entry(later), DEFAULT_TTL).await;
        assert_eq!(put.expect("later put"), PutOutcome::Existing(entry(1)));
    }
    assert_eq!(f.store.get(&k).await.expect("get"), Some(entry(1)));
}

pub async fn tenants_are_independent<S: DedupStore>(f: &Fixture<S>) {
    let (a, b) = (key("tenant-a", 4), key("tenant-b", 4));
    assert_eq!(a.pcs_id, b.pcs_id);
    let put_a = f.store.put_if_absent(&a, &entry(10), DEFAULT_TTL).await;
    assert_eq!(put_a.expect("put a"), PutOutcome::Inserted);
    assert_eq!(f.store.get(&b).await.expect("get b"), None);
    let put_b = f.store.put_if_absent(&b, &entry(20), DEFAULT_TTL).await;
    assert_eq!(put_b.expect("put b"), PutOutcome::Inserted);
    assert_eq!(f.store.get(&a).await.expect("get a"), Some(entry(10)));
    assert_eq!(f.store.get(&b).await.expect("get b"), Some(entry(20)));
}

/// 32 tasks race on one key: exactly one `Inserted`, every other sees the winner's entry.
pub async fn concurrent_puts_have_exactly_one_winner<S: DedupStore>(f: &Fixture<S>) {
    const TASKS: u64 = 32;
    let k = key(TENANT, 5);
    let barrier = Arc::new(Barrier::new(TASKS as usize));
    let tasks: Vec<_> = (0..TASKS)
        .map(|i| {
            let (store, k, barrier) = (Arc::clone(&f.store), k.clone(), Arc::clone(&barrier));
            tokio::spawn(async move {
                barrier.wait().await;
                (i, store.put_if_absent(&k, &entry(i), DEFAULT_TTL).await)
            })
        })
        .collect();
    let mut winners = Vec::new();
    let mut seen = Vec::new();
    for task in futures::future::join_all(tasks).await {
        match task.expect("task") {
            (i, Ok(PutOutcome::Inserted)) => winners.push(i),
            (_, Ok(PutOutcome::Existing(e))) => seen.push(e),
            (i, Err(e)) => panic!("task {i}: {e}"),
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    let winner = entry(winners[0]);
    assert_eq!(seen.len(), TASKS as usize - 1);
    assert!(
        seen.iter().all(|e| *e == winner),
        "a loser saw a non-winning entry"
    );
    assert_eq!(f.store.get(&k).await.expect("get"), Some(winner));
}

/// Many distinct keys at once (the embedded store commits them in groups): all inserted.
pub async fn concurrent_distinct_keys_all_insert<S: DedupStore>(f: &Fixture<S>) {
    let tasks: Vec<_> = (100..164u64)
        .map(|n| {
            let store = Arc::clone(&f.store);
            tokio::spawn(async move {
                store
                    .put_if_absent(&key(TENANT, n), &entry(n), DEFAULT_TTL)
                    .await
            })
        })
        .collect();
    for task in futures::future::join_all(tasks).await {
        assert_eq!(task.expect("task").expect("put"), PutOutcome::Inserted);
    }
    for n in 100..164u64 {
        assert_eq!(
            f.store.get(&key(TENANT, n)).await.expect("get"),
            Some(entry(n))
        );
    }
}

/// An expired entry reads as absent and is replaced by the next put (never left blocking).
pub async fn expired_entry_is_absent_and_replaced<S: DedupStore>(f: &Fixture<S>) {
    let k = key(TENANT, 6);
    let put = f.store.put_if_absent(&k, &entry(1), f.short_ttl()).await;
    assert_eq!(put.expect("put"), PutOutcome::Inserted);
    assert_eq!(
        f.store.get(&k).await.expect("get before expiry"),
        Some(entry(1))
    );
    f.expire(&k).await;
    assert_eq!(f.store.get(&k).await.expect("get after expiry"), None);
    let again = f.store.put_if_absent(&k, &entry(2), DEFAULT_TTL).await;
    assert_eq!(again.expect("put after expiry"), PutOutcome::Inserted);
    assert_eq!(f.store.get(&k).await.expect("get"), Some(entry(2)));
    let dup = f.store.put_if_absent(&k, &entry(3), DEFAULT_TTL).await;
    assert_eq!(dup.expect("duplicate"), PutOutcome::Existing(entry(2)));
}

/// Purging deletes expired entries only, at most `limit` per call (Redis expires by itself).
pub async fn purge_removes_only_expired_entries<S: DedupStore>(f: &Fixture<S>) {
    let short: Vec<DedupKey> = (200..203).map(|n| key(TENANT, n)).collect();
    let long = key(TENANT, 210);
    for (i, k) in short.iter().enumerate() {
        let put = f
            .store
            .put_if_absent(k, &entry(i as u64), f.short_ttl())
            .await;
        assert_eq!(put.expect("put"), PutOutcome::Inserted);
    }
    let put = f.store.put_if_absent(&long, &entry(9), DEFAULT_TTL).await;
    assert_eq!(put.expect("put"), PutOutcome::Inserted);
    for k in &short {
        f.expire(k).await;
    }
    let purged = [
        f.store.purge_expired(2).await.expect("purge"),
        f.store.purge_expired(10).await.expect("purge"),
        f.store.purge_expired(10).await.expect("purge"),
    ];
    if f.store.backend() == "redis" {
        assert_eq!(purged, [0, 0, 0], "redis expires keys itself");
    } else {
        assert_eq!(purged, [2, 1, 0]);
    }
    assert_eq!(f.store.get(&long).await.expect("get"), Some(entry(9)));
    let put = f
        .store
        .put_if_absent(&short[0], &entry(5), DEFAULT_TTL)
        .await;
    assert_eq!(put.expect("put after purge"), PutOutcome::Inserted);
}

/// Tenant ids with separators, hash-tag braces, spaces, percent signs and non-ASCII text are
/// distinct keys (no escaping collision); invalid ones are refused.
pub async fn odd_tenant_ids_work<S: DedupStore>(f: &Fixture<S>) {
    let long = "t".repeat(flk_dedup::MAX_TENANT_ID_BYTES);
    let tenants = [
        "a:b",
        "a",
        "b",
        "a%3Ab",
        "{tenant}",
        "{",
        "}",
        "with space",
        "with  space",
        "%41",
        "A",
        "ü-ñ-日本-😀",
        "'; DROP TABLE dedup; --",
        "back\\slash",
        long.as_str(),
    ];
    for (i, tenant) in tenants.iter().enumerate() {
        let k = DedupKey::new(*tenant, pcs(7)).expect("valid key");
        let put = f
            .store
            .put_if_absent(&k, &entry(i as u64), DEFAULT_TTL)
            .await;
        assert_eq!(put.expect("put"), PutOutcome::Inserted, "tenant {tenant:?}");
    }
    for (i, tenant) in tenants.iter().enumerate() {
        let k = DedupKey::new(*tenant, pcs(7)).expect("valid key");
        assert_eq!(
            f.store.get(&k).await.expect("get"),
            Some(entry(i as u64)),
            "tenant {tenant:?}"
        );
    }
    for bad in ["", "nul\0byte", "new\nline"] {
        let k = DedupKey {
            tenant_id: bad.to_owned(),
            pcs_id: pcs(7),
        };
        let get = f
            .store
            .get(&k)
            .await
            .expect_err("invalid tenant accepted by get");
        assert!(matches!(get, DedupError::InvalidKey { .. }), "{get}");
        let put = f.store.put_if_absent(&k, &entry(1), DEFAULT_TTL).await;
        assert!(matches!(put, Err(DedupError::InvalidKey { .. })), "{put:?}");
    }
    let upper = DedupKey {
        tenant_id: TENANT.to_owned(),
        pcs_id: pcs(7).to_uppercase().replace('0', "A"),
    };
    assert!(matches!(
        f.store.get(&upper).await,
        Err(DedupError::InvalidKey { .. })
    ));
}

/// Bad arguments are refused before touching the store.
pub async fn invalid_arguments_are_refused<S: DedupStore>(f: &Fixture<S>) {
    let k = key(TENANT, 8);
    let zero = f.store.put_if_absent(&k, &entry(1), Duration::ZERO).await;
    assert!(
        matches!(zero, Err(DedupError::InvalidInput { .. })),
        "{zero:?}"
    );
    let huge_seq = f
        .store
        .put_if_absent(&k, &entry(u64::MAX), DEFAULT_TTL)
        .await;
    assert!(
        matches!(huge_seq, Err(DedupError::InvalidInput { .. })),
        "{huge_seq:?}"
    );
    assert_eq!(f.store.get(&k).await.expect("get"), None);
}

pub async fn ready_and_named<S: DedupStore>(f: &Fixture<S>, name: &str) {
    f.store.check_ready().await.expect("ready");
    assert_eq!(f.store.backend(), name);
}
