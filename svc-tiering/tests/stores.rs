//! Tier moves on real stores started by the test: Redis (hot), PostgreSQL (warm) and a moto
//! S3 server (cold), every body read back byte-identical; outages of each store named at
//! start and by the readiness check.

mod common;

use std::sync::Arc;

use common::*;
use flk_testkit::{PgServer, RedisServer, S3Server};
use svc_tiering::{Key, ManualClock, Service, Tier, TieringConfig};

const BUCKET: &str = "flk-cold";

/// The AWS_* variables that point the cold tier at `s3`.
fn s3_vars(s3: &S3Server) -> impl Fn(&str) -> Option<String> + Clone + use<> {
    let endpoint = s3.endpoint();
    move |k: &str| match k {
        "AWS_ENDPOINT_URL" => Some(endpoint.clone()),
        "AWS_ACCESS_KEY_ID" => Some("test".into()),
        "AWS_SECRET_ACCESS_KEY" => Some("test".into()),
        "AWS_REGION" => Some("us-east-1".into()),
        "AWS_ALLOW_HTTP" => Some("true".into()),
        _ => None,
    }
}

fn networked(dir: &std::path::Path, redis: &RedisServer, pg: &PgServer) -> TieringConfig {
    TieringConfig {
        hot: redis.url(),
        warm: pg.url(),
        cold: format!("s3://{BUCKET}/tiering"),
        move_chunk: 16,
        ..config(dir)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moves_across_redis_postgres_and_s3_keep_bodies_identical() {
    let (redis, pg, s3) = tokio::join!(RedisServer::start(), PgServer::start(), S3Server::start());
    let (redis, pg, s3) = (redis.unwrap(), pg.unwrap(), s3.unwrap());
    s3.create_bucket(BUCKET).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let cfg = networked(dir.path(), &redis, &pg);
    let svc = Service::open_with_clock(&cfg, s3_vars(&s3), Arc::new(clock.clone()))
        .await
        .expect("open on redis, postgres, s3");
    let e = svc.engine();
    assert_eq!(e.tiers().hot.name(), "hot (redis)");
    assert_eq!(e.tiers().warm.name(), "warm (postgres)");
    assert_eq!(e.tiers().cold.name(), "cold (s3)");
    let n = 40u64;
    let batch: Vec<_> = (1..=n).map(|i| decision(i, "acme", i, T0)).collect();
    assert_eq!(e.ingest(&batch).await.unwrap(), n);
    // In Redis itself.
    let mut conn = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("flk:tiering:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys.len() as u64, n);

    clock.set(T0 + HOUR);
    assert_eq!(e.cycle().await.unwrap().hot_to_warm, n);
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("flk:tiering:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(keys.is_empty(), "hot copies deleted after the move");
    let pgc = pg.connect().await.unwrap();
    let rows: i64 = pgc
        .query_one("SELECT count(*) FROM flk_tiering_warm", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows as u64, n);

    clock.set(T0 + HOUR + 7 * DAY);
    assert_eq!(e.cycle().await.unwrap().warm_to_cold, n);
    let rows: i64 = pgc
        .query_one("SELECT count(*) FROM flk_tiering_warm", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 0, "warm copies deleted after the move");
    assert_eq!(e.tiers().cold.list_packs().await.unwrap().len(), 3); // 40 / 16

    // Every body byte-identical from cold (one ranged GET each), then from hot.
    for i in 1..=n {
        let r = e.get("acme", &pcs_id(i)).await.unwrap();
        assert_eq!((r.tier, &r.record.body), (Tier::Cold, &body(i)));
    }
    for i in 1..=n {
        let r = e.get("acme", &pcs_id(i)).await.unwrap();
        assert_eq!((r.tier, &r.record.body), (Tier::Hot, &body(i)));
    }
    // Emptied packs are gone from the bucket.
    assert!(e.tiers().cold.list_packs().await.unwrap().is_empty());
    // Down again to warm, and promotion from warm.
    clock.advance(HOUR);
    assert_eq!(e.cycle().await.unwrap().hot_to_warm, n);
    let r = e.get("acme", &pcs_id(3)).await.unwrap();
    assert_eq!((r.tier, r.record.body), (Tier::Warm, body(3)));
    assert!(e.stores_down().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outages_are_named_at_start_and_by_readiness() {
    let (redis, pg, s3) = tokio::join!(RedisServer::start(), PgServer::start(), S3Server::start());
    let (mut redis, mut pg, mut s3) = (redis.unwrap(), pg.unwrap(), s3.unwrap());
    s3.create_bucket(BUCKET).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let cfg = networked(dir.path(), &redis, &pg);
    {
        let svc = Service::open_with_clock(&cfg, s3_vars(&s3), Arc::new(clock.clone()))
            .await
            .unwrap();
        let e = svc.engine();
        e.ingest(&[decision(1, "t", 1, T0)]).await.unwrap();
        // Redis down: readiness names it; the record is still served (hot journal).
        redis.kill().unwrap();
        let down = e.stores_down().await;
        assert_eq!(down.len(), 1, "{down:?}");
        assert_eq!(down[0].store, "hot (redis)");
        let r = e.get("t", &pcs_id(1)).await.unwrap();
        assert_eq!((r.tier, r.record.body), (Tier::Hot, body(1)));
        // PostgreSQL down: a demotion fails, is counted, and loses nothing.
        pg.kill().unwrap();
        clock.set(T0 + HOUR);
        let report = e.cycle().await.unwrap();
        assert_eq!((report.hot_to_warm, report.failures), (0, 1), "{report:?}");
        let m = e.catalog().get(&Key::new("t", pcs_id(1))).unwrap().unwrap();
        assert_eq!((m.tier, m.pending), (Tier::Hot, None));
        assert!(
            e.stores_down()
                .await
                .iter()
                .any(|d| d.store == "warm (postgres)")
        );
        pg.restart().await.unwrap();
        redis.restart().await.unwrap();
        assert_eq!(e.cycle().await.unwrap().hot_to_warm, 1);
        let r = e.get("t", &pcs_id(1)).await.unwrap();
        assert_eq!((r.tier, r.record.body), (Tier::Warm, body(1)));
    }
    // A store down at start: a clear error naming it.
    redis.kill().unwrap();
    let err = Service::open_with_clock(&cfg, s3_vars(&s3), Arc::new(clock.clone()))
        .await
        .err()
        .expect("redis down at start");
    assert!(format!("{err:#}").contains("hot tier (redis)"), "{err:#}");
    redis.restart().await.unwrap();
    s3.kill().unwrap();
    let err = Service::open_with_clock(&cfg, s3_vars(&s3), Arc::new(clock.clone()))
        .await
        .err()
        .expect("s3 down at start");
    assert!(
        format!("{err:#}").contains("cold tier (cold (s3))"),
        "{err:#}"
    );
}
