//! [`RedisStore`]: the dedup index in Redis (>= 7.0), one key per entry, expiry by the server.
//!
//! # Key layout
//!
//! `flk:dedup:<escaped tenant_id>:<pcs_id>` (the prefix is [`RedisOptions::key_prefix`]).
//! The tenant id is percent-escaped: bytes outside `[A-Za-z0-9._-]` become `%XX` (upper-case
//! hex). The encoding is injective (so `a:b` + `c` never meets `a` + `b:c`), keeps ordinary
//! tenant ids readable, and can never produce `:`, `{` or `}`; with the length limit on tenant
//! ids a key is at most ~850 bytes.
//!
//! Value: `0x01 | seq: u64 BE | digest: 32 bytes | outcome bytes`.
//!
//! # Operations
//!
//! - put: `SET key value NX GET PX ttl_ms` (NX together with GET needs Redis 7.0). One atomic
//!   command: a nil reply means this call set the key ([`PutOutcome::Inserted`]); otherwise the
//!   reply is the stored value, i.e. the winner's entry, which is returned unchanged. An expired
//!   key no longer exists in Redis, so a put after expiry is simply an insert.
//! - get: `GET key` pipelined with `EXISTS <marker>`; a miss while the marker is absent is
//!   [`DedupError::Lost`] (see below). check_ready: `PING`.
//!
//! # Lost data
//!
//! Redis acknowledges a write before it is on disk, and without persistence a restart empties
//! it; a miss would then decide a known PCS a second time. The owner (one svc-verify replica)
//! sets a completeness marker, [`RedisOptions::marker_key`] (one per replica, e.g.
//! `flk:dedup:complete:<16 hex>`; it cannot collide with an entry key, whose last part is 64
//! hex characters), after replaying its outcome log into the index. A restart that lost data
//! loses the marker with it, so every later miss is refused as [`DedupError::Lost`] until the
//! owner has replayed again. The check is ordered after the `GET` in one pipeline: if the
//! marker is still there after the miss, the miss was read from a complete index. For
//! production, run Redis with `appendonly yes` and `appendfsync always` anyway: the marker turns
//! silent double decisions into a replay and 503s, it does not make an empty Redis fast.
//!
//! # Redis Cluster
//!
//! No hash tag. Every operation touches exactly one key, so nothing needs two keys in one
//! slot, and keys spread over the cluster by the CRC16 of the whole key (the `pcs_id` is a
//! SHA-256, so placement is uniform). Tagging by tenant (`{tenant}`) would pin a tenant's whole
//! dedup set to one slot and make the largest tenant a hot shard, for no gain. The escaping
//! above guarantees a tenant id containing `{...}` cannot create an accidental hash tag.
//! Per-tenant maintenance (offboarding, a ShardMigration copy) runs `SCAN MATCH
//! flk:dedup:<escaped tenant>:*` on each primary. This store talks to one endpoint (a single
//! node or a primary behind Sentinel/a proxy); the layout needs no change for a cluster client.
//!
//! # Outages
//!
//! One multiplexed connection behind a `ConnectionManager`, created lazily: it reconnects in
//! the background after the connection drops (short exponential backoff). Every command is
//! bounded by [`RedisOptions::command_timeout`], so a dead or hung server yields
//! [`DedupError::Unavailable`] quickly, and the same store works again once the server is back.

use std::time::Duration;

use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind, RedisError, ServerErrorKind};

use crate::key::validate_put;
use crate::{DedupEntry, DedupError, DedupKey, DedupStore, PutOutcome, codec};

const BACKEND: &str = "redis";
/// Default key prefix.
pub const DEFAULT_KEY_PREFIX: &str = "flk:dedup:";

/// How to reach Redis and how long to wait for it. `Debug` hides any password in the URL.
#[derive(Clone)]
pub struct RedisOptions {
    /// `redis://host:port/db` (or `rediss://`, `redis+unix://`).
    pub url: String,
    /// Prepended to every key; default `flk:dedup:`.
    pub key_prefix: String,
    /// Bound on each command, including waiting for a (re)connection; default 1 s.
    pub command_timeout: Duration,
    /// Bound on each connection attempt; default 1 s.
    pub connect_timeout: Duration,
    /// The owner's completeness marker (see "Lost data"); default `flk:dedup:complete`.
    pub marker_key: String,
}

impl RedisOptions {
    /// Defaults for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            key_prefix: DEFAULT_KEY_PREFIX.to_owned(),
            command_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            marker_key: format!("{DEFAULT_KEY_PREFIX}complete"),
        }
    }
}

impl std::fmt::Debug for RedisOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisOptions")
            .field("url", &redact_url(&self.url))
            .field("key_prefix", &self.key_prefix)
            .field("command_timeout", &self.command_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("marker_key", &self.marker_key)
            .finish()
    }
}

/// `redis://user:secret@host/` -> `redis://user:***@host/`.
fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let authority_end = url[scheme_end..]
        .find('/')
        .map_or(url.len(), |i| scheme_end + i);
    let Some(at) = url[scheme_end..authority_end]
        .rfind('@')
        .map(|i| scheme_end + i)
    else {
        return url.to_owned();
    };
    let userinfo = &url[scheme_end..at];
    let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
    format!("{}{user}:***{}", &url[..scheme_end], &url[at..])
}

/// The Redis-backed dedup index. Cheap to clone (clones share the connection).
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    key_prefix: String,
    marker_key: String,
    command_timeout: Duration,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("key_prefix", &self.key_prefix)
            .field("command_timeout", &self.command_timeout)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A store that connects lazily (fails only on an invalid URL). Must be called inside a
    /// tokio runtime. Use [`DedupStore::check_ready`] to see whether Redis answers.
    pub fn new(options: &RedisOptions) -> Result<Self, DedupError> {
        let client = redis::Client::open(options.url.as_str())
            .map_err(|e| DedupError::backend_failure(BACKEND, format!("invalid redis url: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.connect_timeout))
            .set_response_timeout(Some(options.command_timeout))
            // Reconnect quickly once the server is back; commands never wait longer than
            // `command_timeout` for it anyway.
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(Duration::from_millis(500))
            .set_number_of_retries(3);
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| classify(&e, "creating the connection manager"))?;
        Ok(Self {
            conn,
            key_prefix: options.key_prefix.clone(),
            marker_key: options.marker_key.clone(),
            command_timeout: options.command_timeout,
        })
    }

    /// [`Self::new`], then a `PING`: fails with [`DedupError::Unavailable`] if Redis is down.
    pub async fn connect(options: &RedisOptions) -> Result<Self, DedupError> {
        let store = Self::new(options)?;
        store.check_ready().await?;
        Ok(store)
    }

    /// The Redis key of `key` (see the module docs for the layout).
    pub fn redis_key(&self, key: &DedupKey) -> String {
        let mut out = String::with_capacity(
            self.key_prefix.len() + key.tenant_id.len() + 1 + key.pcs_id.len(),
        );
        out.push_str(&self.key_prefix);
        escape_tenant(&key.tenant_id, &mut out);
        out.push(':');
        out.push_str(&key.pcs_id);
        out
    }

    async fn query<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
        what: &'static str,
    ) -> Result<T, DedupError> {
        let mut conn = self.conn.clone();
        self.bounded(cmd.query_async::<T>(&mut conn), what).await
    }

    async fn bounded<T>(
        &self,
        call: impl Future<Output = Result<T, RedisError>>,
        what: &'static str,
    ) -> Result<T, DedupError> {
        match tokio::time::timeout(self.command_timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(classify(&e, what)),
            Err(_) => Err(DedupError::unavailable(
                BACKEND,
                format!("{what}: no answer within {:?}", self.command_timeout),
            )),
        }
    }
}

#[async_trait::async_trait]
impl DedupStore for RedisStore {
    async fn get(&self, key: &DedupKey) -> Result<Option<DedupEntry>, DedupError> {
        key.validate()?;
        let mut pipe = redis::pipe();
        pipe.cmd("GET")
            .arg(self.redis_key(key))
            .cmd("EXISTS")
            .arg(&self.marker_key);
        let mut conn = self.conn.clone();
        let (value, complete): (Option<Vec<u8>>, bool) =
            self.bounded(pipe.query_async(&mut conn), "get").await?;
        match value {
            Some(v) => decode(key, v).map(Some),
            None if complete => Ok(None),
            None => Err(DedupError::Lost {
                backend: BACKEND,
                message: format!(
                    "the completeness marker {:?} is gone (restarted without persistence?)",
                    self.marker_key
                ),
            }),
        }
    }

    async fn is_complete(&self) -> Result<bool, DedupError> {
        let mut cmd = redis::cmd("EXISTS");
        cmd.arg(&self.marker_key);
        self.query(&cmd, "marker check").await
    }

    async fn mark_complete(&self) -> Result<(), DedupError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(&self.marker_key).arg(1);
        let _: () = self.query(&cmd, "marker set").await?;
        Ok(())
    }

    async fn put_if_absent(
        &self,
        key: &DedupKey,
        entry: &DedupEntry,
        ttl: Duration,
    ) -> Result<PutOutcome, DedupError> {
        let ttl_ms = validate_put(key, entry, ttl)?;
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.redis_key(key))
            .arg(codec::encode_entry(entry))
            .arg("NX")
            .arg("GET")
            .arg("PX")
            .arg(ttl_ms);
        let previous: Option<Vec<u8>> = self.query(&cmd, "put").await?;
        match previous {
            None => Ok(PutOutcome::Inserted),
            Some(v) => decode(key, v).map(PutOutcome::Existing),
        }
    }

    async fn replace(
        &self,
        key: &DedupKey,
        entry: &DedupEntry,
        ttl: Duration,
    ) -> Result<(), DedupError> {
        let ttl_ms = validate_put(key, entry, ttl)?;
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.redis_key(key))
            .arg(codec::encode_entry(entry))
            .arg("PX")
            .arg(ttl_ms);
        let _: Option<String> = self.query(&cmd, "replace").await?;
        Ok(())
    }

    async fn check_ready(&self) -> Result<(), DedupError> {
        let pong: String = self.query(&redis::cmd("PING"), "ping").await?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(DedupError::backend_failure(
                BACKEND,
                format!("ping answered {pong:?}"),
            ))
        }
    }

    fn backend(&self) -> &'static str {
        BACKEND
    }
}

fn decode(key: &DedupKey, value: Vec<u8>) -> Result<DedupEntry, DedupError> {
    codec::decode_entry(Bytes::from(value)).map_err(|m| {
        DedupError::corrupt(
            BACKEND,
            format!(
                "value for tenant {:?} pcs_id {}: {m}",
                key.tenant_id, key.pcs_id
            ),
        )
    })
}

/// Outage-like errors are `Unavailable`; the rest (syntax, type, permission) are `Backend`.
fn classify(error: &RedisError, what: &str) -> DedupError {
    let outage = error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_cluster_error()
        || matches!(
            error.kind(),
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::ReadOnly
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::ClusterDown
            ) | ErrorKind::ClusterConnectionNotFound
        );
    if outage {
        DedupError::unavailable(BACKEND, format!("{what}: {error}"))
    } else if error.kind() == ErrorKind::Server(ServerErrorKind::ResponseError)
        && error.to_string().contains("syntax")
    {
        DedupError::backend_failure(
            BACKEND,
            format!("{what}: {error} (SET with NX and GET needs redis >= 7.0)"),
        )
    } else {
        DedupError::backend_failure(BACKEND, format!("{what}: {error}"))
    }
}

/// Appends `tenant` with every byte outside `[A-Za-z0-9._-]` written as `%XX`.
fn escape_tenant(tenant: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in tenant.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{RedisOptions, escape_tenant, redact_url};

    #[test]
    fn debug_output_hides_passwords() {
        assert_eq!(redact_url("redis://:hunter2@h:1/0"), "redis://:***@h:1/0");
        assert_eq!(redact_url("rediss://u:p@w@h/"), "rediss://u:***@h/");
        assert_eq!(redact_url("redis://h:6379/"), "redis://h:6379/");
        let debug = format!("{:?}", RedisOptions::new("redis://app:s3cret@cache:6379/2"));
        assert!(!debug.contains("s3cret"), "{debug}");
        assert!(debug.contains("app:***@cache"), "{debug}");
    }

    fn escaped(tenant: &str) -> String {
        let mut out = String::new();
        escape_tenant(tenant, &mut out);
        out
    }

    #[test]
    fn tenant_escaping_is_readable_injective_and_tag_free() {
        assert_eq!(escaped("acme-prod_1.eu"), "acme-prod_1.eu");
        assert_eq!(escaped("a:b"), "a%3Ab");
        assert_eq!(escaped("{x} y"), "%7Bx%7D%20y");
        assert_eq!(escaped("ü"), "%C3%BC");
        assert_eq!(escaped("%41"), "%2541");
        assert_ne!(escaped("%41"), escaped("A"));
        for tenant in ["a:b", "{t}", "ü 😀", "%", "x}{y"] {
            let e = escaped(tenant);
            assert!(!e.contains([':', '{', '}', ' ']), "{e}");
        }
    }
}
