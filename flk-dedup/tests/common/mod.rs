//! Fixtures shared by the integration tests: a store per backend on its own private server.
#![allow(dead_code)] // each test binary uses a different subset

pub mod suite;

use std::any::Any;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use flk_dedup::{
    DedupEntry, DedupKey, DedupStore, EmbeddedOptions, EmbeddedStore, ManualClock, PgOptions,
    PgStore, RedisOptions, RedisStore,
};
use flk_testkit::{PgServer, RedisServer};

/// TTL used where the server's clock decides expiry: long enough to read the entry back
/// right after writing it, short enough to wait out.
pub const SERVER_SHORT_TTL: Duration = Duration::from_millis(400);
/// Upper bound on waiting for a server-side expiry to become visible.
pub const EXPIRY_DEADLINE: Duration = Duration::from_secs(10);

/// A 64-hex `pcs_id` derived from `n`.
pub fn pcs(n: u64) -> String {
    format!("{n:064x}")
}

pub fn key(tenant: &str, n: u64) -> DedupKey {
    DedupKey::new(tenant, pcs(n)).expect("valid test key")
}

/// A distinct entry per `seq`.
pub fn entry(seq: u64) -> DedupEntry {
    let mut digest = [0u8; 32];
    digest[..8].copy_from_slice(&seq.to_be_bytes());
    digest[31] = 0xd1;
    DedupEntry {
        seq,
        digest,
        outcome: Bytes::from(format!(r#"{{"outcome":"accepted","seq":{seq}}}"#)),
    }
}

/// Who decides when an entry expires.
pub enum Expiry {
    /// The test's clock (embedded): advance it.
    Manual(ManualClock),
    /// The server's clock (Redis PX, PostgreSQL now()): wait for it, bounded.
    Server,
}

/// A store plus whatever keeps it alive (server process, temporary directory).
pub struct Fixture<S> {
    pub store: Arc<S>,
    pub expiry: Expiry,
    resources: Box<dyn Any>,
}

impl<S: DedupStore> Fixture<S> {
    /// The server (or directory) behind the store, for direct inspection.
    pub fn resource<T: 'static>(&self) -> &T {
        self.resources
            .downcast_ref()
            .expect("fixture resource of that type")
    }

    /// A TTL that the fixture can make pass during a test.
    pub fn short_ttl(&self) -> Duration {
        match self.expiry {
            Expiry::Manual(_) => Duration::from_secs(3600),
            Expiry::Server => SERVER_SHORT_TTL,
        }
    }

    /// Makes an entry put with [`Self::short_ttl`] expire: advances the manual clock, or polls
    /// `get` (bounded) until the server's clock has passed it.
    pub async fn expire(&self, key: &DedupKey) {
        match &self.expiry {
            Expiry::Manual(clock) => clock.advance(self.short_ttl() + Duration::from_millis(1)),
            Expiry::Server => {
                let deadline = Instant::now() + EXPIRY_DEADLINE;
                while self
                    .store
                    .get(key)
                    .await
                    .expect("get while expiring")
                    .is_some()
                {
                    assert!(Instant::now() < deadline, "entry did not expire in time");
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
            }
        }
    }
}

pub async fn embedded() -> Fixture<EmbeddedStore> {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(SystemTime::now());
    let store =
        EmbeddedStore::open_with(EmbeddedOptions::new(dir.path()).clock(Arc::new(clock.clone())))
            .expect("open embedded store");
    Fixture {
        store: Arc::new(store),
        expiry: Expiry::Manual(clock),
        resources: Box::new(dir),
    }
}

pub async fn redis() -> Fixture<RedisStore> {
    let server = RedisServer::start().await.expect("start redis-server");
    let store = RedisStore::connect(&RedisOptions::new(server.url()))
        .await
        .expect("connect to redis");
    // A fresh server: complete by definition (the owner has nothing to replay).
    store.mark_complete().await.expect("mark complete");
    Fixture {
        store: Arc::new(store),
        expiry: Expiry::Server,
        resources: Box::new(server),
    }
}

pub async fn postgres() -> Fixture<PgStore> {
    let server = PgServer::start().await.expect("start postgres");
    let store = PgStore::connect(&PgOptions::new(server.config()))
        .await
        .expect("connect to postgres");
    Fixture {
        store: Arc::new(store),
        expiry: Expiry::Server,
        resources: Box::new(server),
    }
}

/// Polls `check_ready` until it succeeds (a restarted server is being reconnected to).
pub async fn wait_ready<S: DedupStore>(store: &S, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        match store.check_ready().await {
            Ok(()) => return,
            Err(e) if Instant::now() < deadline => {
                assert!(e.is_unavailable(), "unexpected error while recovering: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("store did not recover within {within:?}: {e}"),
        }
    }
}
