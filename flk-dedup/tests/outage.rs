//! Outages: killing the server makes operations fail fast with `Unavailable`; restarting it on
//! the same port makes the SAME store object work again, with no restart of the process.

mod common;

use std::fmt::Debug;
use std::future::Future;
use std::time::{Duration, Instant};

use flk_dedup::{
    DEFAULT_TTL, DedupError, DedupStore, PgOptions, PgStore, PutOutcome, RedisOptions, RedisStore,
};
use flk_testkit::{PgServer, RedisServer};

use common::{entry, key, wait_ready};

/// How fast a dead server must be reported, with the stores' default timeouts.
const UNAVAILABLE_WITHIN: Duration = Duration::from_secs(3);
/// How long a store may take to notice that its server is back.
const RECOVERY_WITHIN: Duration = Duration::from_secs(10);

async fn assert_unavailable<T: Debug>(what: &str, op: impl Future<Output = Result<T, DedupError>>) {
    let started = Instant::now();
    let result = op.await;
    let took = started.elapsed();
    match result {
        Err(e) if e.is_unavailable() => {}
        other => panic!("{what}: expected unavailable, got {other:?}"),
    }
    assert!(took < UNAVAILABLE_WITHIN, "{what}: took {took:?}");
}

/// Every operation, several times (first failure, reconnect attempts, backoff), fails fast.
async fn assert_down<S: DedupStore>(store: &S) {
    for _ in 0..3 {
        assert_unavailable("get", store.get(&key("t", 1))).await;
        assert_unavailable(
            "put",
            store.put_if_absent(&key("t", 2), &entry(2), DEFAULT_TTL),
        )
        .await;
        assert_unavailable("check_ready", store.check_ready()).await;
    }
}

#[tokio::test]
async fn redis_outage_is_unavailable_and_the_same_store_recovers() {
    let mut server = RedisServer::start().await.expect("start redis");
    let store = RedisStore::connect(&RedisOptions::new(server.url()))
        .await
        .expect("connect");
    assert!(!store.is_complete().await.expect("marker check"));
    store.mark_complete().await.expect("mark complete");
    let put = store
        .put_if_absent(&key("t", 1), &entry(1), DEFAULT_TTL)
        .await;
    assert_eq!(put.expect("put"), PutOutcome::Inserted);
    assert_eq!(store.get(&key("t", 1)).await.expect("get"), Some(entry(1)));

    server.kill().expect("kill redis");
    assert_down(&store).await;

    server.restart().await.expect("restart redis");
    wait_ready(&store, RECOVERY_WITHIN).await;
    // Nothing is persisted in the test configuration: the key is gone, and so is the
    // completeness marker, so a miss is reported as lost data, not as "absent".
    let lost = store.get(&key("t", 1)).await;
    assert!(matches!(lost, Err(DedupError::Lost { .. })), "{lost:?}");
    assert!(!store.is_complete().await.expect("marker check"));
    // The owner replays (here: nothing to replay) and marks the store complete again.
    store.mark_complete().await.expect("mark complete");
    assert_eq!(store.get(&key("t", 1)).await.expect("get"), None);
    let put = store
        .put_if_absent(&key("t", 1), &entry(3), DEFAULT_TTL)
        .await;
    assert_eq!(put.expect("put"), PutOutcome::Inserted);
    let dup = store
        .put_if_absent(&key("t", 1), &entry(4), DEFAULT_TTL)
        .await;
    assert_eq!(dup.expect("put"), PutOutcome::Existing(entry(3)));
}

#[tokio::test]
async fn postgres_outage_is_unavailable_and_the_same_store_recovers_with_its_data() {
    let mut server = PgServer::start().await.expect("start postgres");
    let store = PgStore::connect(&PgOptions::new(server.config()))
        .await
        .expect("connect");
    let put = store
        .put_if_absent(&key("t", 1), &entry(1), DEFAULT_TTL)
        .await;
    assert_eq!(put.expect("put"), PutOutcome::Inserted);

    server.kill().expect("kill postgres");
    assert_down(&store).await;

    server.restart().await.expect("restart postgres");
    wait_ready(&store, RECOVERY_WITHIN).await;
    assert_eq!(
        store.get(&key("t", 1)).await.expect("get"),
        Some(entry(1)),
        "data persisted"
    );
    let dup = store
        .put_if_absent(&key("t", 1), &entry(9), DEFAULT_TTL)
        .await;
    assert_eq!(dup.expect("put"), PutOutcome::Existing(entry(1)));
    let put = store
        .put_if_absent(&key("t", 2), &entry(2), DEFAULT_TTL)
        .await;
    assert_eq!(put.expect("put"), PutOutcome::Inserted);
}

/// A Redis store created while the server is down (a service starting during an outage)
/// reports unavailable and starts working once the server appears.
#[tokio::test]
async fn redis_store_created_during_an_outage_recovers() {
    let mut server = RedisServer::start().await.expect("start redis");
    server.kill().expect("kill redis");
    let store = RedisStore::new(&RedisOptions::new(server.url())).expect("lazy store");
    assert_down(&store).await;
    server.restart().await.expect("restart redis");
    wait_ready(&store, RECOVERY_WITHIN).await;
    let put = store
        .put_if_absent(&key("t", 1), &entry(1), DEFAULT_TTL)
        .await;
    assert_eq!(put.expect("put"), PutOutcome::Inserted);
}

/// Connecting to PostgreSQL while it is down fails fast with `Unavailable`.
#[tokio::test]
async fn postgres_connect_during_an_outage_is_unavailable() {
    let mut server = PgServer::start().await.expect("start postgres");
    let options = PgOptions::new(server.config());
    server.kill().expect("kill postgres");
    assert_unavailable("connect", PgStore::connect(&options)).await;
    server.restart().await.expect("restart postgres");
    let store = PgStore::connect(&options)
        .await
        .expect("connect after restart");
    store.check_ready().await.expect("ready");
}
