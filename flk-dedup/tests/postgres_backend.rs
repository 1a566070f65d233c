//! PostgreSQL-specific behaviour: migrations, contention on the put statement.

mod common;

use std::sync::Arc;

use flk_dedup::{DEFAULT_TTL, DedupStore, PutOutcome};
use tokio::sync::Barrier;

use common::{entry, key};

/// Many rounds of many-way races: every round has exactly one winner and every loser gets the
/// winner's entry, including when the winner commits after a loser's snapshot (the retry path).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn contended_puts_always_return_the_winner() {
    const ROUNDS: u64 = 60;
    const TASKS: u64 = 16;
    let f = common::postgres().await;
    for round in 0..ROUNDS {
        let k = key("contention", round);
        let barrier = Arc::new(Barrier::new(TASKS as usize));
        let tasks: Vec<_> = (0..TASKS)
            .map(|i| {
                let (store, k, barrier) = (Arc::clone(&f.store), k.clone(), Arc::clone(&barrier));
                tokio::spawn(async move {
                    barrier.wait().await;
                    (
                        i,
                        store
                            .put_if_absent(&k, &entry(round * 100 + i), DEFAULT_TTL)
                            .await,
                    )
                })
            })
            .collect();
        let mut winners = Vec::new();
        let mut losers = Vec::new();
        for task in futures::future::join_all(tasks).await {
            match task.expect("task") {
                (i, Ok(PutOutcome::Inserted)) => winners.push(round * 100 + i),
                (_, Ok(PutOutcome::Existing(e))) => losers.push(e),
                (i, Err(e)) => panic!("round {round} task {i}: {e}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        assert!(
            losers.iter().all(|e| *e == entry(winners[0])),
            "round {round}"
        );
        assert_eq!(f.store.get(&k).await.expect("get"), Some(entry(winners[0])));
    }
}

/// Several processes starting at once: the advisory lock serializes the migration, every
/// store comes up, and each migration is recorded once.
#[tokio::test]
async fn concurrent_startups_migrate_exactly_once() {
    let server = flk_testkit::PgServer::start()
        .await
        .expect("start postgres");
    let options = flk_dedup::PgOptions::new(server.config());
    let (a, b, c) = tokio::join!(
        flk_dedup::PgStore::connect(&options),
        flk_dedup::PgStore::connect(&options),
        flk_dedup::PgStore::connect(&options),
    );
    for store in [a, b, c] {
        store.expect("connect").check_ready().await.expect("ready");
    }
    let again = flk_dedup::PgStore::connect(&options)
        .await
        .expect("reconnect is idempotent");
    assert_eq!(
        again
            .put_if_absent(&key("t", 1), &entry(1), DEFAULT_TTL)
            .await
            .expect("put"),
        PutOutcome::Inserted
    );
    let client = server.connect().await.expect("connect");
    let rows = client
        .query(
            "SELECT version, name FROM schema_migrations WHERE component = $1",
            &[&flk_dedup::pg_store::MIGRATION_COMPONENT],
        )
        .await
        .expect("read schema_migrations");
    let versions: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(versions, vec![1]);
}

/// A database migrated by a newer binary is refused, not used with the wrong schema.
#[tokio::test]
async fn a_newer_schema_is_refused() {
    let server = flk_testkit::PgServer::start()
        .await
        .expect("start postgres");
    let options = flk_dedup::PgOptions::new(server.config());
    flk_dedup::PgStore::connect(&options)
        .await
        .expect("first connect");
    let client = server.connect().await.expect("connect");
    client
        .execute(
            "INSERT INTO schema_migrations (component, version, name) VALUES ($1, 99, 'future')",
            &[&flk_dedup::pg_store::MIGRATION_COMPONENT],
        )
        .await
        .expect("insert future version");
    let err = flk_dedup::PgStore::connect(&options)
        .await
        .expect_err("newer schema accepted");
    assert!(
        matches!(err, flk_dedup::DedupError::Backend { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("newer"), "{err}");
}

/// Expiry uses the database clock: a row whose `expires_at` has passed is invisible to `get`
/// and replaced by `put`, even though it is still physically present.
#[tokio::test]
async fn rows_past_expires_at_are_ignored_and_replaced() {
    let f = common::postgres().await;
    let server_key = key("t", 2);
    assert_eq!(
        f.store
            .put_if_absent(&server_key, &entry(1), DEFAULT_TTL)
            .await
            .expect("put"),
        PutOutcome::Inserted
    );
    // Age the row directly instead of waiting (the store has no clock of its own).
    let pg = f.resource::<flk_testkit::PgServer>();
    let client = pg.connect().await.expect("connect");
    let aged = client
        .execute(
            "UPDATE dedup SET expires_at = now() - interval '1 second' WHERE pcs_id = $1",
            &[&server_key.pcs_id],
        )
        .await
        .expect("age row");
    assert_eq!(aged, 1);
    assert_eq!(f.store.get(&server_key).await.expect("get"), None);
    assert_eq!(
        f.store
            .put_if_absent(&server_key, &entry(2), DEFAULT_TTL)
            .await
            .expect("put"),
        PutOutcome::Inserted
    );
    assert_eq!(f.store.get(&server_key).await.expect("get"), Some(entry(2)));
    let count: i64 = client
        .query_one("SELECT count(*) FROM dedup", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(count, 1, "the expired row was replaced in place");
}
