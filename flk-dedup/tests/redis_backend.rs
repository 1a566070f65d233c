//! Redis-specific behaviour: key layout, server-side TTL, corrupt values.

mod common;

use std::time::Duration;

use flk_dedup::{
    DEFAULT_TTL, DedupError, DedupKey, DedupStore, PutOutcome, RedisOptions, RedisStore,
};
use flk_testkit::RedisServer;

use common::{entry, pcs};

async fn raw(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("raw connection")
}

#[tokio::test]
async fn keys_follow_the_documented_layout_with_a_server_side_ttl() {
    let server = RedisServer::start().await.expect("start redis");
    let store = RedisStore::connect(&RedisOptions::new(server.url()))
        .await
        .expect("connect");
    let k = DedupKey::new("acme:{eu} 1", pcs(1)).expect("key");
    let expected = format!("flk:dedup:acme%3A%7Beu%7D%201:{}", pcs(1));
    assert_eq!(store.redis_key(&k), expected);

    let ttl = Duration::from_secs(600);
    assert_eq!(
        store.put_if_absent(&k, &entry(1), ttl).await.expect("put"),
        PutOutcome::Inserted
    );
    let mut conn = raw(&server).await;
    let pttl: i64 = redis::cmd("PTTL")
        .arg(&expected)
        .query_async(&mut conn)
        .await
        .expect("pttl");
    assert!(pttl > 0 && pttl <= 600_000, "pttl {pttl}");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .expect("keys");
    assert_eq!(keys, vec![expected]);
}

#[tokio::test]
async fn the_key_prefix_is_configurable() {
    let server = RedisServer::start().await.expect("start redis");
    let mut options = RedisOptions::new(server.url());
    options.key_prefix = "blue:dedup:".to_owned();
    let store = RedisStore::connect(&options).await.expect("connect");
    let k = DedupKey::new("t", pcs(2)).expect("key");
    store
        .put_if_absent(&k, &entry(1), DEFAULT_TTL)
        .await
        .expect("put");
    let mut conn = raw(&server).await;
    let exists: bool = redis::cmd("EXISTS")
        .arg(format!("blue:dedup:t:{}", pcs(2)))
        .query_async(&mut conn)
        .await
        .expect("exists");
    assert!(exists);
}

#[tokio::test]
async fn a_corrupt_value_is_an_error_not_a_panic() {
    let server = RedisServer::start().await.expect("start redis");
    let store = RedisStore::connect(&RedisOptions::new(server.url()))
        .await
        .expect("connect");
    let k = DedupKey::new("t", pcs(3)).expect("key");
    let mut conn = raw(&server).await;
    let () = redis::cmd("SET")
        .arg(store.redis_key(&k))
        .arg("not an entry")
        .query_async(&mut conn)
        .await
        .expect("set garbage");
    let get = store.get(&k).await;
    assert!(matches!(get, Err(DedupError::Corrupt { .. })), "{get:?}");
    let put = store.put_if_absent(&k, &entry(1), DEFAULT_TTL).await;
    assert!(matches!(put, Err(DedupError::Corrupt { .. })), "{put:?}");
    let value: Vec<u8> = redis::cmd("GET")
        .arg(store.redis_key(&k))
        .query_async(&mut conn)
        .await
        .expect("get");
    assert_eq!(value, b"not an entry", "a failed put must not overwrite");
}
