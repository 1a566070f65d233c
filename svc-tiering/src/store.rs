//! The hot and warm tiers: one small key-value trait ([`KvTier`]) and its four backends.
//!
//! | tier | embedded | networked |
//! |---|---|---|
//! | hot | [`MemoryTier`]: a map in process memory | [`RedisTier`]: `SET`/`GET`/`DEL` on `flk:tiering:<tenant len>:<tenant>:<pcs_id>` |
//! | warm | [`RedbTier`]: `<data_dir>/warm.redb`, durable commits | [`PgTier`]: table `flk_tiering_warm` |
//!
//! Values are record blobs (`record::StoredRecord::encode`), stored unchanged. Every call is
//! bounded in time (networked backends) and fails with [`StoreError`], which names the store.
//! The hot tier is volatile (memory, or Redis without persistence): the catalog keeps a
//! durable copy of every hot record (its hot journal, `catalog`), so neither a restart nor a
//! Redis outage loses one.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use redb::{Database, Durability, TableDefinition};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio_postgres::NoTls;

use crate::record::Key;

/// Bound on one networked store call.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(3);

/// A store call failed; `store` names it (`hot (redis)`, `warm (postgres)`, ...).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{store}: {message}")]
pub struct StoreError {
    pub store: &'static str,
    pub message: String,
}

impl StoreError {
    pub fn new(store: &'static str, message: impl std::fmt::Display) -> StoreError {
        StoreError {
            store,
            message: message.to_string(),
        }
    }
}

/// A hot or warm tier.
#[async_trait::async_trait]
pub trait KvTier: Send + Sync + 'static {
    /// The store's name in errors, `/ready` and logs.
    fn name(&self) -> &'static str;
    /// Stores `blob` under `key` (replacing), durably for a durable store.
    async fn put(&self, key: &Key, blob: &[u8]) -> Result<(), StoreError>;
    /// Stores many (one round trip or transaction where the backend allows).
    async fn put_many(&self, items: &[(Key, Arc<Vec<u8>>)]) -> Result<(), StoreError> {
        for (k, b) in items {
            self.put(k, b).await?;
        }
        Ok(())
    }
    async fn get(&self, key: &Key) -> Result<Option<Vec<u8>>, StoreError>;
    /// Removes `key` (absent is fine).
    async fn delete(&self, key: &Key) -> Result<(), StoreError>;
    async fn delete_many(&self, keys: &[Key]) -> Result<(), StoreError> {
        for k in keys {
            self.delete(k).await?;
        }
        Ok(())
    }
    /// Whether the store answers.
    async fn check_ready(&self) -> Result<(), StoreError>;
}

/// The embedded hot tier: a map in memory.
#[derive(Default)]
pub struct MemoryTier {
    map: Mutex<HashMap<Key, Arc<Vec<u8>>>>,
}

impl MemoryTier {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Arc<Vec<u8>>>> {
        // A panic while holding the lock cannot leave the map half-updated (single calls).
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait::async_trait]
impl KvTier for MemoryTier {
    fn name(&self) -> &'static str {
        "hot (memory)"
    }
    async fn put(&self, key: &Key, blob: &[u8]) -> Result<(), StoreError> {
        self.map().insert(key.clone(), Arc::new(blob.to_vec()));
        Ok(())
    }
    async fn put_many(&self, items: &[(Key, Arc<Vec<u8>>)]) -> Result<(), StoreError> {
        let mut m = self.map();
        for (k, b) in items {
            m.insert(k.clone(), b.clone());
        }
        Ok(())
    }
    async fn get(&self, key: &Key) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.map().get(key).map(|b| b.as_ref().clone()))
    }
    async fn delete(&self, key: &Key) -> Result<(), StoreError> {
        self.map().remove(key);
        Ok(())
    }
    async fn check_ready(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// The hot tier in Redis.
pub struct RedisTier {
    conn: ConnectionManager,
}

const REDIS: &str = "hot (redis)";

impl RedisTier {
    /// Connects lazily (fails only on an invalid URL); call inside a tokio runtime.
    pub fn new(url: &str) -> Result<RedisTier, StoreError> {
        let client = redis::Client::open(url)
            .map_err(|e| StoreError::new(REDIS, format!("invalid redis url: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(COMMAND_TIMEOUT))
            .set_response_timeout(Some(COMMAND_TIMEOUT))
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(Duration::from_millis(500))
            .set_number_of_retries(2);
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| StoreError::new(REDIS, e))?;
        Ok(RedisTier { conn })
    }

    fn key(key: &Key) -> String {
        format!(
            "flk:tiering:{}:{}:{}",
            key.tenant_id.len(),
            key.tenant_id,
            key.pcs_id
        )
    }

    async fn run<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
        what: &str,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn.clone();
        match tokio::time::timeout(COMMAND_TIMEOUT, pipe.query_async::<T>(&mut conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(StoreError::new(REDIS, format!("{what}: {e}"))),
            Err(_) => Err(StoreError::new(
                REDIS,
                format!("{what}: no answer within {COMMAND_TIMEOUT:?}"),
            )),
        }
    }
}

#[async_trait::async_trait]
impl KvTier for RedisTier {
    fn name(&self) -> &'static str {
        REDIS
    }
    async fn put(&self, key: &Key, blob: &[u8]) -> Result<(), StoreError> {
        let mut p = redis::pipe();
        p.cmd("SET").arg(Self::key(key)).arg(blob).ignore();
        self.run::<()>(&p, "set").await
    }
    async fn put_many(&self, items: &[(Key, Arc<Vec<u8>>)]) -> Result<(), StoreError> {
        if items.is_empty() {
            return Ok(());
        }
        let mut p = redis::pipe();
        for (k, b) in items {
            p.cmd("SET").arg(Self::key(k)).arg(b.as_slice()).ignore();
        }
        self.run::<()>(&p, "set").await
    }
    async fn get(&self, key: &Key) -> Result<Option<Vec<u8>>, StoreError> {
        let mut p = redis::pipe();
        p.cmd("GET").arg(Self::key(key));
        let (v,): (Option<Vec<u8>>,) = self.run(&p, "get").await?;
        Ok(v)
    }
    async fn delete(&self, key: &Key) -> Result<(), StoreError> {
        self.delete_many(std::slice::from_ref(key)).await
    }
    async fn delete_many(&self, keys: &[Key]) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut p = redis::pipe();
        let mut del = redis::cmd("DEL");
        for k in keys {
            del.arg(Self::key(k));
        }
        p.add_command(del).ignore();
        self.run::<()>(&p, "del").await
    }
    async fn check_ready(&self) -> Result<(), StoreError> {
        let mut p = redis::pipe();
        p.cmd("PING");
        let (_pong,): (String,) = self.run(&p, "ping").await?;
        Ok(())
    }
}

const WARM_TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("warm");
const REDB: &str = "warm (embedded)";

/// The embedded warm tier: a redb file, every write committed durably.
pub struct RedbTier {
    db: Arc<Database>,
}

impl RedbTier {
    pub fn open(path: &Path) -> Result<RedbTier, StoreError> {
        let db = flk_runtime::embedded_db::open(path)
            .map_err(|e| StoreError::new(REDB, format!("open {}: {e}", path.display())))?;
        let txn = db.begin_write().map_err(|e| StoreError::new(REDB, e))?;
        txn.open_table(WARM_TABLE)
            .map_err(|e| StoreError::new(REDB, e))?;
        txn.commit().map_err(|e| StoreError::new(REDB, e))?;
        Ok(RedbTier { db: Arc::new(db) })
    }

    async fn write(
        &self,
        f: impl FnOnce(&mut redb::Table<&[u8], &[u8]>) -> Result<(), redb::StorageError>
        + Send
        + 'static,
    ) -> Result<(), StoreError> {
        let db = self.db.clone();
        let run = move || -> Result<(), StoreError> {
            let mut txn = db.begin_write().map_err(|e| StoreError::new(REDB, e))?;
            txn.set_durability(Durability::Immediate);
            {
                let mut t = txn
                    .open_table(WARM_TABLE)
                    .map_err(|e| StoreError::new(REDB, e))?;
                f(&mut t).map_err(|e| StoreError::new(REDB, e))?;
            }
            txn.commit().map_err(|e| StoreError::new(REDB, e))
        };
        tokio::task::spawn_blocking(run)
            .await
            .map_err(|e| StoreError::new(REDB, e))?
    }
}

#[async_trait::async_trait]
impl KvTier for RedbTier {
    fn name(&self) -> &'static str {
        REDB
    }
    async fn put(&self, key: &Key, blob: &[u8]) -> Result<(), StoreError> {
        let (k, b) = (key.encode(), blob.to_vec());
        self.write(move |t| t.insert(k.as_slice(), b.as_slice()).map(|_| ()))
            .await
    }
    async fn put_many(&self, items: &[(Key, Arc<Vec<u8>>)]) -> Result<(), StoreError> {
        let items: Vec<(Vec<u8>, Arc<Vec<u8>>)> =
            items.iter().map(|(k, b)| (k.encode(), b.clone())).collect();
        self.write(move |t| {
            for (k, b) in &items {
                t.insert(k.as_slice(), b.as_slice())?;
            }
            Ok(())
        })
        .await
    }
    async fn get(&self, key: &Key) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| StoreError::new(REDB, e))?;
        let t = txn
            .open_table(WARM_TABLE)
            .map_err(|e| StoreError::new(REDB, e))?;
        let v = t
            .get(key.encode().as_slice())
            .map_err(|e| StoreError::new(REDB, e))?;
        Ok(v.map(|v| v.value().to_vec()))
    }
    async fn delete(&self, key: &Key) -> Result<(), StoreError> {
        self.delete_many(std::slice::from_ref(key)).await
    }
    async fn delete_many(&self, keys: &[Key]) -> Result<(), StoreError> {
        let keys: Vec<Vec<u8>> = keys.iter().map(Key::encode).collect();
        self.write(move |t| {
            for k in &keys {
                t.remove(k.as_slice())?;
            }
            Ok(())
        })
        .await
    }
    async fn check_ready(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

const PG: &str = "warm (postgres)";

/// The warm tier in PostgreSQL: table `flk_tiering_warm (tenant_id, pcs_id, blob)`.
pub struct PgTier {
    pool: Pool,
}

impl PgTier {
    /// Builds the pool and creates the table if needed.
    pub async fn connect(url: &str) -> Result<PgTier, StoreError> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::new(PG, format!("invalid postgres url: {e}")))?;
        config
            .connect_timeout(COMMAND_TIMEOUT)
            .application_name("svc-tiering");
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(8)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(COMMAND_TIMEOUT))
            .create_timeout(Some(COMMAND_TIMEOUT))
            .recycle_timeout(Some(COMMAND_TIMEOUT))
            .build()
            .map_err(|e| StoreError::new(PG, e))?;
        let tier = PgTier { pool };
        let c = tier.client().await?;
        c.batch_execute(
            "CREATE TABLE IF NOT EXISTS flk_tiering_warm (
                 tenant_id text NOT NULL,
                 pcs_id text NOT NULL,
                 blob bytea NOT NULL,
                 PRIMARY KEY (tenant_id, pcs_id))",
        )
        .await
        .map_err(|e| StoreError::new(PG, format!("creating flk_tiering_warm: {e}")))?;
        Ok(tier)
    }

    async fn client(&self) -> Result<deadpool_postgres::Client, StoreError> {
        self.pool
            .get()
            .await
            .map_err(|e| StoreError::new(PG, format!("connect: {e}")))
    }

    async fn bounded<T>(
        &self,
        what: &str,
        f: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(COMMAND_TIMEOUT, f)
            .await
            .unwrap_or_else(|_| {
                Err(StoreError::new(
                    PG,
                    format!("{what}: no answer within {COMMAND_TIMEOUT:?}"),
                ))
            })
    }
}

fn pg_err(what: &str) -> impl Fn(tokio_postgres::Error) -> StoreError + '_ {
    move |e| StoreError::new(PG, format!("{what}: {e}"))
}

const PG_UPSERT: &str = "INSERT INTO flk_tiering_warm (tenant_id, pcs_id, blob) VALUES ($1, $2, $3)
     ON CONFLICT (tenant_id, pcs_id) DO UPDATE SET blob = EXCLUDED.blob";

#[async_trait::async_trait]
impl KvTier for PgTier {
    fn name(&self) -> &'static str {
        PG
    }
    async fn put(&self, key: &Key, blob: &[u8]) -> Result<(), StoreError> {
        self.bounded("insert", async {
            let c = self.client().await?;
            c.execute(PG_UPSERT, &[&key.tenant_id, &key.pcs_id, &blob])
                .await
                .map_err(pg_err("insert"))?;
            Ok(())
        })
        .await
    }
    async fn put_many(&self, items: &[(Key, Arc<Vec<u8>>)]) -> Result<(), StoreError> {
        if items.is_empty() {
            return Ok(());
        }
        self.bounded("insert", async {
            let mut c = self.client().await?;
            let txn = c.transaction().await.map_err(pg_err("begin"))?;
            let stmt = txn.prepare(PG_UPSERT).await.map_err(pg_err("prepare"))?;
            for (k, b) in items {
                txn.execute(&stmt, &[&k.tenant_id, &k.pcs_id, &b.as_slice()])
                    .await
                    .map_err(pg_err("insert"))?;
            }
            txn.commit().await.map_err(pg_err("commit"))
        })
        .await
    }
    async fn get(&self, key: &Key) -> Result<Option<Vec<u8>>, StoreError> {
        self.bounded("select", async {
            let c = self.client().await?;
            let row = c
                .query_opt(
                    "SELECT blob FROM flk_tiering_warm WHERE tenant_id = $1 AND pcs_id = $2",
                    &[&key.tenant_id, &key.pcs_id],
                )
                .await
                .map_err(pg_err("select"))?;
            row.map(|r| r.try_get::<_, Vec<u8>>(0))
                .transpose()
                .map_err(pg_err("select"))
        })
        .await
    }
    async fn delete(&self, key: &Key) -> Result<(), StoreError> {
        self.delete_many(std::slice::from_ref(key)).await
    }
    async fn delete_many(&self, keys: &[Key]) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        let tenants: Vec<&str> = keys.iter().map(|k| k.tenant_id.as_str()).collect();
        let ids: Vec<&str> = keys.iter().map(|k| k.pcs_id.as_str()).collect();
        self.bounded("delete", async {
            let c = self.client().await?;
            c.execute(
                "DELETE FROM flk_tiering_warm w USING unnest($1::text[], $2::text[]) AS d(t, p)
                 WHERE w.tenant_id = d.t AND w.pcs_id = d.p",
                &[&tenants, &ids],
            )
            .await
            .map_err(pg_err("delete"))?;
            Ok(())
        })
        .await
    }
    async fn check_ready(&self) -> Result<(), StoreError> {
        self.bounded("ping", async {
            let c = self.client().await?;
            c.simple_query("SELECT 1").await.map_err(pg_err("ping"))?;
            Ok(())
        })
        .await
    }
}
