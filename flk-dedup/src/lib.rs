//! The dedup index of svc-verify: `(tenant_id, pcs_id)` -> first decision, with a TTL.
//!
//! # Semantics (PROTOCOL.md section 4, steps 4 and 6)
//!
//! - **First write wins.** [`DedupStore::put_if_absent`] is an atomic set-if-absent: of any
//!   number of concurrent puts of one key exactly one gets [`PutOutcome::Inserted`]; every other
//!   gets [`PutOutcome::Existing`] carrying the winner's entry, never its own.
//! - **TTL.** Every entry carries a lifetime ([`DEFAULT_TTL`] is 14 days). An expired entry
//!   behaves exactly as an absent one: `get` returns `None` and the next put replaces it and
//!   reports `Inserted`; it is never left blocking its key.
//! - **Fail closed.** A store that cannot be reached returns [`DedupError::Unavailable`]
//!   quickly (every network call is bounded by a timeout); the service answers 503 with
//!   `Retry-After`. The same store object recovers by itself when the server comes back.
//!
//! # Backends
//!
//! | backend | type | atomic put | expiry |
//! |---|---|---|---|
//! | `embedded` | [`EmbeddedStore`] (fjall keyspace) | read-then-insert by the one writer thread, committed as one atomic write batch | per-entry expiry, injectable [`Clock`], [`DedupStore::purge_expired`] |
//! | `redis` | [`RedisStore`] | `SET key value NX GET PX ttl` (Redis >= 7.0) | server-side `PX` |
//! | `postgres` | [`PgStore`] | `INSERT .. ON CONFLICT DO UPDATE .. WHERE expired` + read of the winner | `expires_at` column, database clock, [`DedupStore::purge_expired`] |
//!
//! Each backend module documents its layout: key encoding and the Redis Cluster story in
//! [`redis_store`], the schema, SQL and migrations in [`pg_store`], the file layout and group
//! commit in [`embedded`].

pub mod clock;
mod codec;
pub mod embedded;
mod error;
mod key;
pub mod pg_store;
pub mod redis_store;

use std::time::Duration;

pub use clock::{Clock, ManualClock, SystemClock};
pub use embedded::{EmbeddedOptions, EmbeddedStore};
pub use error::DedupError;
pub use key::{
    DEFAULT_TTL, DedupEntry, DedupKey, MAX_OUTCOME_BYTES, MAX_TENANT_ID_BYTES, MAX_TTL, PCS_ID_LEN,
    PutOutcome,
};
pub use pg_store::{PgOptions, PgStore};
pub use redis_store::{RedisOptions, RedisStore};

/// A dedup index backend. Object safe: the service holds an `Arc<dyn DedupStore>`.
#[async_trait::async_trait]
pub trait DedupStore: Send + Sync + 'static {
    /// The live entry for `key`, or `None` if there is none or it has expired.
    async fn get(&self, key: &DedupKey) -> Result<Option<DedupEntry>, DedupError>;

    /// Stores `entry` for `ttl` unless a live entry exists; atomically either
    /// [`PutOutcome::Inserted`] or [`PutOutcome::Existing`] with the stored (winning) entry.
    ///
    /// `ttl` must be within 1 ms..=[`MAX_TTL`] (sub-millisecond parts round up).
    async fn put_if_absent(
        &self,
        key: &DedupKey,
        entry: &DedupEntry,
        ttl: Duration,
    ) -> Result<PutOutcome, DedupError>;

    /// Stores `entry` for `ttl`, replacing any live entry of `key`: a repair that resolves a
    /// conflict between regions (svc-crr's reconciler), never the submit path.
    async fn replace(
        &self,
        key: &DedupKey,
        entry: &DedupEntry,
        ttl: Duration,
    ) -> Result<(), DedupError>;

    /// Succeeds when the store can serve requests right now (for `/ready`).
    async fn check_ready(&self) -> Result<(), DedupError>;

    /// Deletes up to `limit` expired entries and returns how many it deleted. Expired entries
    /// are already invisible; this only reclaims space. Call it periodically (e.g. every
    /// minute, repeating while it returns `limit`). Redis expires keys itself and returns 0.
    async fn purge_expired(&self, limit: usize) -> Result<usize, DedupError> {
        let _ = limit;
        Ok(0)
    }

    /// `"embedded"`, `"redis"` or `"postgres"` (metrics label, `/ready` body).
    fn backend(&self) -> &'static str;

    /// False when the store has lost entries since [`DedupStore::mark_complete`] was last
    /// called (or it was never called): the caller must replay every decision it still owns
    /// (within their TTL) and then call `mark_complete`. Stores that keep what they
    /// acknowledge (embedded, PostgreSQL) are always complete.
    async fn is_complete(&self) -> Result<bool, DedupError> {
        Ok(true)
    }

    /// Makes every put answered so far durable (a no-op for stores whose puts are durable
    /// when answered; see [`EmbeddedOptions::deferred_sync`]).
    async fn sync(&self) -> Result<(), DedupError> {
        Ok(())
    }

    /// Records that this store again holds every entry its owner decided.
    async fn mark_complete(&self) -> Result<(), DedupError> {
        Ok(())
    }

    /// True when no other process can write this store while this handle is open (the
    /// embedded file is locked by its one process). Then first-write-wins is already decided
    /// by the caller's own serialization, and a caller whose decisions are durable elsewhere
    /// (svc-verify's outcome log) may write the index behind its answers. Shared stores
    /// (Redis, PostgreSQL) return false: their put must run before the answer, since another
    /// replica may have decided the key first.
    fn single_writer(&self) -> bool {
        false
    }
}
