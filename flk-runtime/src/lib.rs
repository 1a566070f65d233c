//! The one skeleton every FLK service (svc-verify, svc-audit, svc-kpi, the gateway, and `flk
//! up`, which runs them all in one process) is built on, so that each service crate keeps only
//! its own logic:
//!
//! * [`config`]: typed configuration from a TOML file (or a section of `flk up`'s stack file)
//!   plus environment overrides, unknown keys refused, errors naming the key;
//! * [`telemetry`]: the `tracing` subscriber; [`shutdown`]: Ctrl-C / SIGTERM;
//! * [`lock`]: the exclusive lock of a data directory (the only part without the `service`
//!   feature, for library crates);
//! * [`tls`], [`security`]: TLS and mTLS for every listener and client, the mesh bearer token
//!   for ports without mTLS, tenants' API tokens;
//! * [`server`], [`client`]: serving gRPC and HTTP on one bound listener with those settings,
//!   and gRPC channels to peers with them;
//! * [`http`]: the JSON and error responses of every REST route;
//! * [`embedded_db`]: the services' embedded redb databases, opened with a bounded page cache;
//! * [`memory`]: process-wide memory settings (transparent huge pages off);
//! * [`tenants`]: the tenants file, parsed once, strictly, for svc-verify and the gateway;
//! * [`key_filter`]: an in-memory filter over a fjall partition's keys, so that reads of keys
//!   it does not hold skip the partition;
//! * [`feed`]: the outcome-feed consumer (persisted cursor, batching, backoff, resubscribe)
//!   shared by svc-audit, svc-kpi and later consumers.
//!
//! Services depend on this crate and on the contracts (`flk-proto`), never on each other.

pub mod key_filter;
pub mod lock;

#[cfg(feature = "service")]
pub mod client;
#[cfg(feature = "service")]
pub mod config;
#[cfg(feature = "service")]
pub mod embedded_db;
#[cfg(feature = "service")]
pub mod feed;
#[cfg(feature = "service")]
pub mod http;
#[cfg(feature = "service")]
pub mod memory;
#[cfg(feature = "service")]
pub mod security;
#[cfg(feature = "service")]
pub mod server;
#[cfg(feature = "service")]
pub mod shutdown;
#[cfg(feature = "service")]
pub mod telemetry;
#[cfg(feature = "service")]
pub mod tenants;
#[cfg(feature = "service")]
pub mod tls;

#[cfg(feature = "service")]
pub use config::ConfigError;
