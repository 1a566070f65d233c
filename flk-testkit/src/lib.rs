//! Private, throwaway PostgreSQL and Redis server processes for FLK tests and benches.
//!
//! Every FLK crate that needs a real database in its tests takes this crate as a
//! dev-dependency and starts its own server:
//!
//! ```no_run
//! # async fn demo() -> Result<(), flk_testkit::TestkitError> {
//! let mut pg = flk_testkit::PgServer::start().await?;
//! let client = pg.connect().await?;
//! client.simple_query("SELECT 1").await.ok();
//! pg.kill()?; // simulate a crash (SIGKILL of the postmaster and its backends)
//! pg.restart().await?; // same port, same data directory
//!
//! let redis = flk_testkit::RedisServer::start().await?;
//! println!("{}", redis.url());
//! # Ok(()) }
//! ```
//!
//! Guarantees:
//! - each server gets a fresh temporary directory and an ephemeral port on 127.0.0.1
//!   (never a shared instance, never a fixed port); a port collision is retried;
//! - directories live on `/dev/shm` (tmpfs) when it has 2 GiB free, else in the system temp
//!   dir; `FLK_TESTKIT_TMPDIR` overrides. A PostgreSQL cluster is a copy of a template
//!   cluster that is `initdb`-ed once and cached there (`flk-testkit-pg-template-<hash>`,
//!   ~40 MB; safe to delete at any time);
//! - readiness is polled (a real query / `PING`) until a deadline, never slept for; a server
//!   that does not come up yields [`TestkitError::NotReady`] carrying the server's log;
//! - `Drop` kills the process and removes the directory;
//! - under root, PostgreSQL (which refuses to run as root) runs as the `postgres` system user
//!   via `setuid` on spawn, so the pid we hold is the postmaster itself; as any other user the
//!   binaries run directly.
//!
//! Binaries are found by [`locate`]: `FLK_PG_BIN_DIR`, else the newest
//! `/usr/lib/postgresql/*/bin`, else `initdb` on `PATH`; `FLK_REDIS_SERVER`, else
//! `redis-server` on `PATH`.

mod error;
pub mod locate;
mod pg_template;
mod postgres;
mod process;
mod redis;
#[cfg(feature = "s3")]
pub mod s3;
mod scratch;
#[cfg(feature = "siem")]
pub mod siem;

pub use error::TestkitError;
pub use postgres::PgServer;
pub use redis::RedisServer;
#[cfg(feature = "s3")]
pub use s3::S3Server;
pub use scratch::ENV_TESTKIT_TMPDIR;
