//! The PostgreSQL backend (feature `postgres`): tiles, entry bundles and checkpoints in tables
//! that the database itself keeps append-only.
//!
//! ```text
//! tlog_tiles        (kind, idx, width) -> data, needs_size   committed resources: INSERT only
//! tlog_checkpoints  seq -> size, note, created_at            every checkpoint ever published: INSERT only
//! tlog_pending      (kind, idx, width) -> data, needs_size   written, not yet covered by a checkpoint
//! ```
//!
//! `kind` is `-1` for entry bundles and the level for hash tiles. `needs_size` is the smallest
//! tree size whose checkpoint covers the resource (`(idx * 256 + width) * 256^level`).
//!
//! **Append-only, enforced by the database.** A trigger on `tlog_tiles` and `tlog_checkpoints`
//! refuses every UPDATE, DELETE and TRUNCATE, for every role (a superuser must first disable
//! it, which is what the tamper tests do); and the schema migration revokes those privileges
//! from `PUBLIC` and from the role that runs it (the tables' owner, normally the service's
//! role), so the service's role is also refused by the privilege system.
//!
//! **Write protocol.** [`TileStore::write_batch`] inserts into `tlog_pending` in one
//! transaction (durable at commit; write-once: a resource already in either table must hold
//! the same bytes, else [`StoreError::Conflict`]). [`TileStore::put_checkpoint`] moves, in one
//! transaction, the pending rows the new checkpoint covers into `tlog_tiles` and appends the
//! checkpoint. So everything a checkpoint refers to is in the protected tables, and what a
//! crash left beyond the latest checkpoint is only ever in `tlog_pending`, which is the one
//! table recovery ([`TileStore::discard_uncommitted`]) deletes from.
//! [`TileStore::remove_partials`] keeps the partial tiles (C2SP allows keeping them; deleting
//! would need DELETE on the protected table).
//!
//! **Single writer.** A writable store holds a session advisory lock for its lifetime; a
//! second writer gets [`StoreError::Locked`]. [`PgStore::open_read_only`] takes no lock and
//! changes nothing (for `flk audit verify`).
//!
//! **Sync bridge.** flk-tlog is synchronous, so the store owns a current-thread tokio runtime
//! and drives `tokio-postgres` with `block_on` (the connection task runs inside those calls).
//! This is what the sync `postgres` crate does too; doing it here avoids a second client crate
//! next to the `tokio-postgres` the workspace already uses. Like every `TileStore` method, the
//! methods must be called from a blocking thread (e.g. `spawn_blocking`), never from an async
//! task.

use std::path::PathBuf;
use std::sync::Mutex;

use tokio_postgres::{Client, NoTls};

use super::{StoreError, TileStore, TileWrite};
use crate::tile::{TileKind, tile_path};

/// Advisory lock key of the single writer ("flk-tlog" in ASCII).
const WRITER_LOCK: i64 = 0x666c_6b2d_746c_6f67;

/// The schema (version 1), created in one transaction under an advisory lock when
/// `tlog_schema_version` is absent.
const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS tlog_tiles (
    kind SMALLINT NOT NULL,
    idx BIGINT NOT NULL,
    width SMALLINT NOT NULL CHECK (width BETWEEN 1 AND 256),
    needs_size BIGINT NOT NULL,
    data BYTEA NOT NULL,
    PRIMARY KEY (kind, idx, width)
);
CREATE TABLE IF NOT EXISTS tlog_pending (
    kind SMALLINT NOT NULL,
    idx BIGINT NOT NULL,
    width SMALLINT NOT NULL CHECK (width BETWEEN 1 AND 256),
    needs_size BIGINT NOT NULL,
    data BYTEA NOT NULL,
    PRIMARY KEY (kind, idx, width)
);
CREATE TABLE IF NOT EXISTS tlog_checkpoints (
    seq BIGSERIAL PRIMARY KEY,
    size BIGINT NOT NULL,
    note TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE OR REPLACE FUNCTION tlog_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'flk-tlog: % on % refused: the table is append-only', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE OR REPLACE TRIGGER tlog_tiles_append_only
    BEFORE UPDATE OR DELETE ON tlog_tiles FOR EACH ROW EXECUTE FUNCTION tlog_refuse_change();
CREATE OR REPLACE TRIGGER tlog_tiles_no_truncate
    BEFORE TRUNCATE ON tlog_tiles FOR EACH STATEMENT EXECUTE FUNCTION tlog_refuse_change();
CREATE OR REPLACE TRIGGER tlog_checkpoints_append_only
    BEFORE UPDATE OR DELETE ON tlog_checkpoints FOR EACH ROW EXECUTE FUNCTION tlog_refuse_change();
CREATE OR REPLACE TRIGGER tlog_checkpoints_no_truncate
    BEFORE TRUNCATE ON tlog_checkpoints FOR EACH STATEMENT EXECUTE FUNCTION tlog_refuse_change();
REVOKE UPDATE, DELETE, TRUNCATE ON tlog_tiles, tlog_checkpoints FROM PUBLIC;
REVOKE UPDATE, DELETE, TRUNCATE ON tlog_tiles, tlog_checkpoints FROM CURRENT_USER;
CREATE TABLE tlog_schema_version (version INT NOT NULL);
INSERT INTO tlog_schema_version VALUES (1);
"#;

/// The PostgreSQL tile store. See the module docs.
pub struct PgStore {
    /// Always `Some` until dropped (taken by `Drop`, which shuts it down without blocking, so
    /// that dropping the store inside an async context is safe).
    rt: Option<tokio::runtime::Runtime>,
    client: Mutex<Client>,
    /// Where the data lives, for error reports (no password).
    name: String,
}

impl Drop for PgStore {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").field("db", &self.name).finish()
    }
}

fn db_err(name: &str, op: &'static str, e: tokio_postgres::Error) -> StoreError {
    StoreError::Io {
        op,
        path: PathBuf::from(name),
        source: std::io::Error::other(e),
    }
}

fn kind_code(kind: TileKind) -> i16 {
    match kind {
        TileKind::Entries => -1,
        TileKind::Hash(l) => i16::from(l),
    }
}

/// The smallest tree size whose checkpoint covers the resource.
fn needs_size(kind: TileKind, index: u64, width: u16) -> i64 {
    let level = match kind {
        TileKind::Entries => 0,
        TileKind::Hash(l) => u32::from(l),
    };
    let leaves = (u128::from(index) * 256 + u128::from(width))
        .saturating_mul(256u128.checked_pow(level).unwrap_or(u128::MAX));
    i64::try_from(leaves).unwrap_or(i64::MAX)
}

fn index_param(index: u64) -> Result<i64, StoreError> {
    i64::try_from(index).map_err(|_| StoreError::Corrupt(format!("tile index {index} too large")))
}

impl PgStore {
    /// Connects, creates or migrates the schema and takes the single-writer lock.
    /// `url` is a libpq connection string or `postgres://` URL.
    pub fn open(url: &str) -> Result<PgStore, StoreError> {
        let store = PgStore::connect(url)?;
        let mut client = store.lock();
        let locked = store
            .runtime()
            .block_on(async {
                let locked: bool = client
                    .query_one("SELECT pg_try_advisory_lock($1)", &[&WRITER_LOCK])
                    .await?
                    .get(0);
                if !locked {
                    return Ok(false);
                }
                // Concurrent first opens serialize here; an existing schema is left alone
                // (its objects may belong to another role than this one).
                let tx = client.transaction().await?;
                tx.execute("SELECT pg_advisory_xact_lock($1)", &[&(WRITER_LOCK + 1)])
                    .await?;
                let present: bool = tx
                    .query_one("SELECT to_regclass('tlog_schema_version') IS NOT NULL", &[])
                    .await?
                    .get(0);
                if !present {
                    tx.batch_execute(SCHEMA).await?;
                }
                tx.commit().await?;
                Ok::<_, tokio_postgres::Error>(true)
            })
            .map_err(|e| db_err(&store.name, "open", e))?;
        drop(client);
        if !locked {
            return Err(StoreError::Locked {
                path: PathBuf::from(format!("{} (advisory lock {WRITER_LOCK})", store.name)),
            });
        }
        Ok(store)
    }

    /// Connects without migrating or locking: for reading a log another process writes.
    pub fn open_read_only(url: &str) -> Result<PgStore, StoreError> {
        PgStore::connect(url)
    }

    fn connect(url: &str) -> Result<PgStore, StoreError> {
        let name = url_name(url);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::io("start runtime", &name, e))?;
        let client = rt.block_on(async {
            let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
            // Driven whenever the runtime runs, i.e. inside every `block_on` below.
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!(error = %e, "postgres tile store connection closed");
                }
            });
            Ok::<_, tokio_postgres::Error>(client)
        });
        let client = match client {
            Ok(c) => c,
            Err(e) => {
                rt.shutdown_background();
                return Err(db_err(&name, "connect", e));
            }
        };
        Ok(PgStore {
            rt: Some(rt),
            client: Mutex::new(client),
            name,
        })
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.rt
            .as_ref()
            .expect("the runtime lives as long as the store")
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Client> {
        self.client.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `host:port/db` of a URL or connection string, without credentials.
fn url_name(url: &str) -> String {
    match url.parse::<tokio_postgres::Config>() {
        Ok(c) => {
            let host = c
                .get_hosts()
                .first()
                .map(|h| match h {
                    tokio_postgres::config::Host::Tcp(s) => s.clone(),
                    tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
                })
                .unwrap_or_default();
            let port = c.get_ports().first().copied().unwrap_or(5432);
            format!(
                "postgres://{host}:{port}/{}",
                c.get_dbname().unwrap_or_default()
            )
        }
        Err(_) => "postgres".to_owned(),
    }
}

impl TileStore for PgStore {
    fn write_batch(&self, writes: &[TileWrite]) -> Result<(), StoreError> {
        if writes.is_empty() {
            return Ok(());
        }
        let mut params = Vec::with_capacity(writes.len());
        for w in writes {
            params.push((
                kind_code(w.kind),
                index_param(w.index)?,
                w.width as i16,
                needs_size(w.kind, w.index, w.width),
                w.data.as_slice(),
            ));
        }
        let mut client = self.lock();
        let conflict: Option<(i16, i64, i16)> = self
            .runtime()
            .block_on(async {
                let tx = client.transaction().await?;
                let insert = tx
                    .prepare(
                        "INSERT INTO tlog_pending (kind, idx, width, needs_size, data) \
                         SELECT $1, $2, $3, $4, $5 WHERE NOT EXISTS \
                         (SELECT 1 FROM tlog_tiles WHERE kind = $1 AND idx = $2 AND width = $3) \
                         ON CONFLICT DO NOTHING",
                    )
                    .await?;
                let existing = tx
                    .prepare(
                        "SELECT data FROM tlog_tiles WHERE kind = $1 AND idx = $2 AND width = $3 \
                         UNION ALL \
                         SELECT data FROM tlog_pending WHERE kind = $1 AND idx = $2 AND width = $3",
                    )
                    .await?;
                for (kind, idx, width, needs, data) in &params {
                    let n = tx
                        .execute(&insert, &[kind, idx, width, needs, data])
                        .await?;
                    if n == 0 {
                        // Already stored: write-once allows only the same bytes.
                        let rows = tx.query(&existing, &[kind, idx, width]).await?;
                        if rows.iter().any(|r| r.get::<_, &[u8]>(0) != *data) {
                            return Ok(Some((*kind, *idx, *width)));
                        }
                    }
                }
                tx.commit().await?;
                Ok::<_, tokio_postgres::Error>(None)
            })
            .map_err(|e| db_err(&self.name, "write batch", e))?;
        match conflict {
            Some((kind, idx, width)) => Err(StoreError::Conflict {
                path: tile_path(
                    if kind < 0 {
                        TileKind::Entries
                    } else {
                        TileKind::Hash(kind as u8)
                    },
                    idx as u64,
                    width as u16,
                ),
            }),
            None => Ok(()),
        }
    }

    fn get(&self, kind: TileKind, index: u64, width: u16) -> Result<Option<Vec<u8>>, StoreError> {
        let (k, i, w) = (kind_code(kind), index_param(index)?, width as i16);
        let c = self.lock();
        self.runtime()
            .block_on(async {
                let row = c
                    .query_opt(
                        "SELECT data FROM tlog_tiles WHERE kind = $1 AND idx = $2 AND width = $3 \
                         UNION ALL \
                         SELECT data FROM tlog_pending WHERE kind = $1 AND idx = $2 AND width = $3 \
                         LIMIT 1",
                        &[&k, &i, &w],
                    )
                    .await?;
                Ok::<_, tokio_postgres::Error>(row.map(|r| r.get::<_, Vec<u8>>(0)))
            })
            .map_err(|e| db_err(&self.name, "read tile", e))
    }

    fn put_checkpoint(&self, note: &str) -> Result<(), StoreError> {
        // The body is the text up to the blank line, with its final newline.
        let body = note.find("\n\n").map_or(note, |i| &note[..=i]);
        let size = crate::checkpoint::Checkpoint::parse_body(body)
            .map(|cp| cp.size)
            .ok()
            .and_then(|s| i64::try_from(s).ok())
            .ok_or_else(|| StoreError::Corrupt("checkpoint note has no valid body".into()))?;
        let mut client = self.lock();
        self.runtime()
            .block_on(async {
                let tx = client.transaction().await?;
                tx.execute(
                    "INSERT INTO tlog_tiles (kind, idx, width, needs_size, data) \
                     SELECT kind, idx, width, needs_size, data FROM tlog_pending \
                     WHERE needs_size <= $1 ON CONFLICT DO NOTHING",
                    &[&size],
                )
                .await?;
                tx.execute("DELETE FROM tlog_pending WHERE needs_size <= $1", &[&size])
                    .await?;
                tx.execute(
                    "INSERT INTO tlog_checkpoints (size, note) VALUES ($1, $2)",
                    &[&size, &note],
                )
                .await?;
                tx.commit().await
            })
            .map_err(|e| db_err(&self.name, "publish checkpoint", e))
    }

    fn latest_checkpoint(&self) -> Result<Option<String>, StoreError> {
        let c = self.lock();
        self.runtime()
            .block_on(async {
                let row = c
                    .query_opt(
                        "SELECT note FROM tlog_checkpoints ORDER BY seq DESC LIMIT 1",
                        &[],
                    )
                    .await?;
                Ok::<_, tokio_postgres::Error>(row.map(|r| r.get::<_, String>(0)))
            })
            .map_err(|e| db_err(&self.name, "read checkpoint", e))
    }

    fn remove_partials(&self, _kind: TileKind, _index: u64) -> Result<(), StoreError> {
        // Kept: the protected table refuses deletes (see the module docs).
        Ok(())
    }

    fn discard_uncommitted(
        &self,
        kind: TileKind,
        index: u64,
        committed_width: u16,
    ) -> Result<(), StoreError> {
        let (k, i, w) = (kind_code(kind), index_param(index)?, committed_width as i16);
        let c = self.lock();
        self.runtime()
            .block_on(c.execute(
                "DELETE FROM tlog_pending WHERE kind = $1 AND idx = $2 AND width > $3",
                &[&k, &i, &w],
            ))
            .map(|_| ())
            .map_err(|e| db_err(&self.name, "discard uncommitted", e))
    }

    fn locate(&self, kind: TileKind, index: u64, width: u16) -> String {
        format!(
            "{} table tlog_tiles row (kind={}, idx={index}, width={width}) [{}]",
            self.name,
            kind_code(kind),
            tile_path(kind, index, width)
        )
    }
}
