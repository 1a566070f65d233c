//! [`PgStore`]: the dedup index in PostgreSQL (deadpool-postgres + tokio-postgres).
//!
//! # Schema
//!
//! ```sql
//! CREATE TABLE dedup (
//!     tenant_id  text        NOT NULL,
//!     pcs_id     text        NOT NULL,
//!     seq        bigint      NOT NULL CHECK (seq >= 0),
//!     digest     bytea       NOT NULL CHECK (octet_length(digest) = 32),
//!     outcome    bytea       NOT NULL,
//!     expires_at timestamptz NOT NULL,
//!     PRIMARY KEY (tenant_id, pcs_id)
//! );
//! CREATE INDEX dedup_expires_at_idx ON dedup (expires_at);
//! ```
//!
//! Time is the database's: a row is live while `expires_at > now()`, so every replica of the
//! service agrees on expiry whatever its own clock says.
//!
//! # Migrations
//!
//! Applied by [`PgStore::connect`], in one transaction that first takes
//! `pg_advisory_xact_lock(MIGRATION_LOCK)`: two processes starting at once serialize, the
//! second finds everything applied. Applied versions are rows of
//! `schema_migrations (component, version, name, applied_at)` with `component = 'flk-dedup'`
//! (the table is shareable by other components). A database whose schema is newer than this
//! binary knows is refused rather than used.
//!
//! # Put (set-if-absent that replaces expired rows)
//!
//! ```sql
//! WITH ins AS (
//!     INSERT INTO dedup AS d (tenant_id, pcs_id, seq, digest, outcome, expires_at)
//!     VALUES ($1, $2, $3, $4, $5, now() + $6 * interval '1 millisecond')
//!     ON CONFLICT (tenant_id, pcs_id) DO UPDATE
//!         SET seq = EXCLUDED.seq, digest = EXCLUDED.digest,
//!             outcome = EXCLUDED.outcome, expires_at = EXCLUDED.expires_at
//!         WHERE d.expires_at <= now()
//!     RETURNING 1
//! )
//! SELECT true, NULL::bigint, NULL::bytea, NULL::bytea FROM ins
//! UNION ALL
//! SELECT false, seq, digest, outcome FROM dedup
//!  WHERE tenant_id = $1 AND pcs_id = $2 AND expires_at > now()
//!    AND NOT EXISTS (SELECT 1 FROM ins)
//! ```
//!
//! A row from `ins` means this call inserted (or replaced an expired row): `Inserted`. When a
//! live row conflicts, `ON CONFLICT` locks it and the `SELECT` returns it: `Existing`. One
//! race remains: if the conflicting row was committed by a concurrent transaction *after* this
//! statement's snapshot, the conflict check sees it (it waits for that transaction) but the
//! `SELECT` does not, and the statement returns no row. The store then simply runs the
//! statement again (a new snapshot sees the winner); the retry is bounded.
//!
//! get: `SELECT seq, digest, outcome FROM dedup WHERE tenant_id = $1 AND pcs_id = $2 AND
//! expires_at > now()`. purge: deletes up to `limit` rows with `expires_at <= now()`, oldest
//! first, skipping rows locked by a concurrent put.
//!
//! # Outages
//!
//! A deadpool pool (fast recycling: closed connections are dropped, a new one is made on
//! demand). Connecting is bounded by [`PgOptions::connect_timeout`], every statement by
//! `statement_timeout` on the server and by [`PgOptions::command_timeout`] on the client
//! (which also bounds waiting for a pooled connection). A dead server therefore yields
//! [`DedupError::Unavailable`] within those bounds, and the pool reconnects by itself once the
//! server is back.

use std::time::Duration;

use bytes::Bytes;
use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use crate::key::validate_put;
use crate::{DedupEntry, DedupError, DedupKey, DedupStore, PutOutcome};

const BACKEND: &str = "postgres";
/// `component` value of this crate's rows in `schema_migrations`.
pub const MIGRATION_COMPONENT: &str = "flk-dedup";
/// Advisory lock key held while migrating (`"FLKDEDUP"` as a big-endian integer).
pub const MIGRATION_LOCK: i64 = 0x464C_4B44_4544_5550;
/// Statement timeout inside the migration transaction: migrations (and waiting for another
/// process's migration) may legitimately take longer than one dedup operation.
const MIGRATION_STATEMENT_TIMEOUT: &str = "10min";
/// Runs of the put statement before giving up on the snapshot race (see the module docs).
const PUT_ATTEMPTS: usize = 5;

/// The migrations, in order; `(version, name, sql)`.
const MIGRATIONS: &[(i32, &str, &str)] = &[(
    1,
    "create dedup",
    "CREATE TABLE dedup (
        tenant_id  text        NOT NULL,
        pcs_id     text        NOT NULL,
        seq        bigint      NOT NULL CHECK (seq >= 0),
        digest     bytea       NOT NULL CHECK (octet_length(digest) = 32),
        outcome    bytea       NOT NULL,
        expires_at timestamptz NOT NULL,
        PRIMARY KEY (tenant_id, pcs_id)
    );
    CREATE INDEX dedup_expires_at_idx ON dedup (expires_at);",
)];

const CREATE_MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    component  text        NOT NULL,
    version    integer     NOT NULL,
    name       text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (component, version)
)";

const PUT_SQL: &str = "WITH ins AS (
    INSERT INTO dedup AS d (tenant_id, pcs_id, seq, digest, outcome, expires_at)
    VALUES ($1, $2, $3, $4, $5, now() + $6::bigint * interval '1 millisecond')
    ON CONFLICT (tenant_id, pcs_id) DO UPDATE
        SET seq = EXCLUDED.seq, digest = EXCLUDED.digest,
            outcome = EXCLUDED.outcome, expires_at = EXCLUDED.expires_at
        WHERE d.expires_at <= now()
    RETURNING 1
)
SELECT true AS inserted, NULL::bigint AS seq, NULL::bytea AS digest, NULL::bytea AS outcome
  FROM ins
UNION ALL
SELECT false, seq, digest, outcome FROM dedup
 WHERE tenant_id = $1 AND pcs_id = $2 AND expires_at > now()
   AND NOT EXISTS (SELECT 1 FROM ins)";

const REPLACE_SQL: &str = "INSERT INTO dedup (tenant_id, pcs_id, seq, digest, outcome, expires_at)
    VALUES ($1, $2, $3, $4, $5, now() + $6::bigint * interval '1 millisecond')
    ON CONFLICT (tenant_id, pcs_id) DO UPDATE
        SET seq = EXCLUDED.seq, digest = EXCLUDED.digest,
            outcome = EXCLUDED.outcome, expires_at = EXCLUDED.expires_at";

const GET_SQL: &str = "SELECT seq, digest, outcome FROM dedup
 WHERE tenant_id = $1 AND pcs_id = $2 AND expires_at > now()";

const PURGE_SQL: &str = "DELETE FROM dedup d
 USING (SELECT tenant_id, pcs_id FROM dedup
         WHERE expires_at <= now()
         ORDER BY expires_at
         LIMIT $1
         FOR UPDATE SKIP LOCKED) due
 WHERE d.tenant_id = due.tenant_id AND d.pcs_id = due.pcs_id AND d.expires_at <= now()";

/// How to reach PostgreSQL and how long to wait for it.
#[derive(Clone, Debug)]
pub struct PgOptions {
    /// Host, port, user, database, password. Timeouts below are applied on top.
    pub config: tokio_postgres::Config,
    /// Most pooled connections; default 16.
    pub pool_size: usize,
    /// Bound on opening a connection; default 2 s.
    pub connect_timeout: Duration,
    /// Bound on one operation (waiting for a pooled connection plus the statement); also the
    /// server-side `statement_timeout`; default 2 s.
    pub command_timeout: Duration,
}

impl PgOptions {
    /// Defaults for `config`.
    pub fn new(config: tokio_postgres::Config) -> Self {
        Self {
            config,
            pool_size: 16,
            connect_timeout: Duration::from_secs(2),
            command_timeout: Duration::from_secs(2),
        }
    }
}

/// The PostgreSQL-backed dedup index. Cheap to clone (clones share the pool).
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    command_timeout: Duration,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("pool", &self.pool.status())
            .field("command_timeout", &self.command_timeout)
            .finish()
    }
}

impl PgStore {
    /// Builds the pool and applies pending migrations. Fails with [`DedupError::Unavailable`]
    /// if the database cannot be reached.
    pub async fn connect(options: &PgOptions) -> Result<Self, DedupError> {
        let mut config = options.config.clone();
        let statement_ms = options.command_timeout.as_millis();
        config
            .connect_timeout(options.connect_timeout)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30))
            .application_name("flk-dedup")
            .options(format!("-c statement_timeout={statement_ms}"));
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.command_timeout))
            .create_timeout(Some(options.connect_timeout))
            .recycle_timeout(Some(options.connect_timeout))
            .build()
            .map_err(|e| DedupError::backend_failure(BACKEND, format!("building the pool: {e}")))?;
        let store = Self {
            pool,
            // Slightly above the server-side bound, so the server normally cancels first and
            // the connection stays usable.
            command_timeout: options.command_timeout + Duration::from_millis(500),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Applies pending migrations (see the module docs). Idempotent; safe to run concurrently.
    async fn migrate(&self) -> Result<(), DedupError> {
        let what = "migrating";
        let mut client = self.client(what).await?;
        let txn = client.transaction().await.map_err(|e| classify(&e, what))?;
        txn.batch_execute(&format!(
            "SET LOCAL statement_timeout = '{MIGRATION_STATEMENT_TIMEOUT}'"
        ))
        .await
        .map_err(|e| classify(&e, what))?;
        txn.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(|e| classify(&e, what))?;
        txn.batch_execute(CREATE_MIGRATIONS_TABLE)
            .await
            .map_err(|e| classify(&e, what))?;
        let applied: Vec<i32> = txn
            .query(
                "SELECT version FROM schema_migrations WHERE component = $1 ORDER BY version",
                &[&MIGRATION_COMPONENT],
            )
            .await
            .map_err(|e| classify(&e, what))?
            .iter()
            .map(|row| row.try_get(0))
            .collect::<Result<_, _>>()
            .map_err(|e| classify(&e, what))?;
        let known = MIGRATIONS.last().map_or(0, |m| m.0);
        if let Some(newer) = applied.iter().find(|v| **v > known) {
            return Err(DedupError::backend_failure(
                BACKEND,
                format!(
                    "database schema version {newer} is newer than this binary supports ({known})"
                ),
            ));
        }
        for (version, name, sql) in MIGRATIONS {
            if applied.contains(version) {
                continue;
            }
            txn.batch_execute(sql)
                .await
                .map_err(|e| classify(&e, what))?;
            txn.execute(
                "INSERT INTO schema_migrations (component, version, name) VALUES ($1, $2, $3)",
                &[&MIGRATION_COMPONENT, version, name],
            )
            .await
            .map_err(|e| classify(&e, what))?;
            tracing::info!(version, name, "applied flk-dedup schema migration");
        }
        txn.commit().await.map_err(|e| classify(&e, what))
    }

    async fn client(&self, what: &str) -> Result<deadpool_postgres::Client, DedupError> {
        self.pool.get().await.map_err(|e| match e {
            PoolError::Backend(e) => classify(&e, what),
            PoolError::Timeout(kind) => {
                DedupError::unavailable(BACKEND, format!("{what}: pool {kind:?} timeout"))
            }
            PoolError::Closed => DedupError::unavailable(BACKEND, format!("{what}: pool closed")),
            other => DedupError::backend_failure(BACKEND, format!("{what}: {other}")),
        })
    }

    /// Runs `op` with a pooled client, the whole thing bounded by the command timeout.
    async fn bounded<T, F, Fut>(&self, what: &'static str, op: F) -> Result<T, DedupError>
    where
        F: FnOnce(deadpool_postgres::Client) -> Fut,
        Fut: Future<Output = Result<T, DedupError>>,
    {
        let run = async {
            let client = self.client(what).await?;
            op(client).await
        };
        tokio::time::timeout(self.command_timeout, run)
            .await
            .unwrap_or_else(|_| {
                Err(DedupError::unavailable(
                    BACKEND,
                    format!("{what}: no answer within {:?}", self.command_timeout),
                ))
            })
    }
}

#[async_trait::async_trait]
impl DedupStore for PgStore {
    async fn get(&self, key: &DedupKey) -> Result<Option<DedupEntry>, DedupError> {
        key.validate()?;
        self.bounded("get", |client| async move {
            let stmt = client
                .prepare_cached(GET_SQL)
                .await
                .map_err(|e| classify(&e, "get"))?;
            let row = client
                .query_opt(&stmt, &[&key.tenant_id, &key.pcs_id])
                .await
                .map_err(|e| classify(&e, "get"))?;
            row.map(|row| entry_from_row(key, &row, 0)).transpose()
        })
        .await
    }

    async fn put_if_absent(
        &self,
        key: &DedupKey,
        entry: &DedupEntry,
        ttl: Duration,
    ) -> Result<PutOutcome, DedupError> {
        let ttl_ms = i64::try_from(validate_put(key, entry, ttl)?).map_err(|_| {
            DedupError::InvalidInput {
                reason: format!("ttl {ttl:?} is out of range"),
            }
        })?;
        let seq = i64::try_from(entry.seq).map_err(|_| DedupError::InvalidInput {
            reason: format!("seq {} exceeds {}", entry.seq, i64::MAX),
        })?;
        self.bounded("put", |client| async move {
            let stmt = client
                .prepare_cached(PUT_SQL)
                .await
                .map_err(|e| classify(&e, "put"))?;
            for _ in 0..PUT_ATTEMPTS {
                let row = client
                    .query_opt(
                        &stmt,
                        &[
                            &key.tenant_id,
                            &key.pcs_id,
                            &seq,
                            &entry.digest.as_slice(),
                            &entry.outcome.as_ref(),
                            &ttl_ms,
                        ],
                    )
                    .await
                    .map_err(|e| classify(&e, "put"))?;
                let Some(row) = row else {
                    // The winner committed after our snapshot: look again with a new one.
                    tracing::debug!("dedup put raced a concurrent insert; retrying");
                    continue;
                };
                let inserted: bool = row.try_get(0).map_err(|e| classify(&e, "put"))?;
                return if inserted {
                    Ok(PutOutcome::Inserted)
                } else {
                    entry_from_row(key, &row, 1).map(PutOutcome::Existing)
                };
            }
            Err(DedupError::unavailable(
                BACKEND,
                format!("put: no stable answer after {PUT_ATTEMPTS} attempts under contention"),
            ))
        })
        .await
    }

    async fn replace(
        &self,
        key: &DedupKey,
        entry: &DedupEntry,
        ttl: Duration,
    ) -> Result<(), DedupError> {
        let ttl_ms = i64::try_from(validate_put(key, entry, ttl)?).map_err(|_| {
            DedupError::InvalidInput {
                reason: format!("ttl {ttl:?} is out of range"),
            }
        })?;
        let seq = i64::try_from(entry.seq).map_err(|_| DedupError::InvalidInput {
            reason: format!("seq {} exceeds {}", entry.seq, i64::MAX),
        })?;
        self.bounded("replace", |client| async move {
            client
                .execute(
                    REPLACE_SQL,
                    &[
                        &key.tenant_id,
                        &key.pcs_id,
                        &seq,
                        &entry.digest.as_slice(),
                        &entry.outcome.as_ref(),
                        &ttl_ms,
                    ],
                )
                .await
                .map_err(|e| classify(&e, "replace"))?;
            Ok(())
        })
        .await
    }

    async fn check_ready(&self) -> Result<(), DedupError> {
        self.bounded("ready check", |client| async move {
            client
                .simple_query("SELECT 1")
                .await
                .map(|_| ())
                .map_err(|e| classify(&e, "ready check"))
        })
        .await
    }

    async fn purge_expired(&self, limit: usize) -> Result<usize, DedupError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        if limit == 0 {
            return Ok(0);
        }
        self.bounded("purge", |client| async move {
            let stmt = client
                .prepare_cached(PURGE_SQL)
                .await
                .map_err(|e| classify(&e, "purge"))?;
            let deleted = client
                .execute(&stmt, &[&limit])
                .await
                .map_err(|e| classify(&e, "purge"))?;
            Ok(usize::try_from(deleted).unwrap_or(usize::MAX))
        })
        .await
    }

    fn backend(&self) -> &'static str {
        BACKEND
    }
}

/// Reads `seq, digest, outcome` starting at column `first`.
fn entry_from_row(
    key: &DedupKey,
    row: &tokio_postgres::Row,
    first: usize,
) -> Result<DedupEntry, DedupError> {
    let corrupt = |m: String| {
        DedupError::corrupt(
            BACKEND,
            format!(
                "row for tenant {:?} pcs_id {}: {m}",
                key.tenant_id, key.pcs_id
            ),
        )
    };
    let seq: i64 = row
        .try_get(first)
        .map_err(|e| corrupt(format!("seq: {e}")))?;
    let digest: &[u8] = row
        .try_get(first + 1)
        .map_err(|e| corrupt(format!("digest: {e}")))?;
    let outcome: &[u8] = row
        .try_get(first + 2)
        .map_err(|e| corrupt(format!("outcome: {e}")))?;
    Ok(DedupEntry {
        seq: u64::try_from(seq).map_err(|_| corrupt(format!("negative seq {seq}")))?,
        digest: <[u8; 32]>::try_from(digest)
            .map_err(|_| corrupt(format!("digest is {} bytes, not 32", digest.len())))?,
        outcome: Bytes::copy_from_slice(outcome),
    })
}

/// Connection-level failures and the SQLSTATE classes of an unavailable server are
/// `Unavailable`; any other database error is `Backend`.
fn classify(error: &tokio_postgres::Error, what: &str) -> DedupError {
    let Some(db) = error.as_db_error() else {
        // No SQLSTATE: I/O, closed connection, connect failure, timeout.
        return DedupError::unavailable(BACKEND, format!("{what}: {error}"));
    };
    let code = db.code().code();
    // 08 connection exception, 53 insufficient resources, 57 operator intervention (incl.
    // admin shutdown, cannot connect now, statement timeout), 58 system error, 40001/40P01
    // serialization failure / deadlock (retryable).
    let transient = ["08", "53", "57", "58"]
        .iter()
        .any(|class| code.starts_with(class))
        || code == "40001"
        || code == "40P01";
    let message = format!("{what}: {} (sqlstate {code})", db.message());
    if transient {
        DedupError::unavailable(BACKEND, message)
    } else {
        DedupError::backend_failure(BACKEND, message)
    }
}
