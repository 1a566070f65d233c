//! svc-tiering: keeps every decision of svc-verify's outcome feed (the outcome, and the PCS
//! body exactly as submitted) in the tier it belongs in: hot (memory or Redis), warm (an
//! embedded redb file or PostgreSQL), cold (object storage through `object_store`, records
//! lz4-compressed and packed so one read is one ranged GET). Reads go hot -> warm -> cold and
//! promote; a placement loop demotes by TTL and hot-tier overflow and removes past retention,
//! every move crash-safe (copy, verify, then delete: [`engine`]). Serves
//! `flk.v1.TieringService` over gRPC, the internal REST reads of [`http`], and `/health`,
//! `/ready`, `/metrics`, all on one listener behind the runtime's security.
//!
//! # Library API (what `flk up` and the gateway use)
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use svc_tiering::{Service, TieringConfig};
//! let cfg = TieringConfig::load(None, |k| std::env::var(k).ok())?; // or from_table([tiering])
//! // `vars` supplies AWS_* / GOOGLE_* / AZURE_* for an object-store cold tier.
//! let mut service = Service::open(&cfg, |k| std::env::var(k).ok()).await?;
//! // service.set_security(..); service.set_peer(..);   // as flk up does for svc-kpi
//! let grpc = service.grpc();           // TieringGrpc: call in process, or wrap in
//!                                      // TieringServiceServer::new(grpc)
//! let registry = service.registry().clone(); // export next to the other services' metrics
//! let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
//! service.serve(listener, async { /* shutdown */ }).await?;
//! # Ok(()) }
//! ```
//!
//! * [`Service::open`] / [`Service::open_with_clock`]: opens the catalog and the stores
//!   (fails naming a store that is down or a bad URL) and recovers interrupted moves.
//! * [`Service::serve`]: consumes the feed, runs the placement loop every
//!   `demote_interval` (sooner on overflow), serves the port until `shutdown` resolves.
//! * [`Service::grpc`]: the `TieringService` implementation, callable in process (the
//!   gateway answers `GET /v1/pcs/{pcs_id}` from `Get`, with `X-Flk-Tier` = `tier`, and
//!   `GET /v1/pcs/{pcs_id}/body` from `GetBody`).
//! * [`Service::engine`]: the placement engine (ingest, get, cycle) for tests and tools.
//!
//! # Data directory
//!
//! ```text
//! <data_dir>/catalog.fjall  placement catalog: entries, hot journal (every hot record's
//!                           bytes), pack counts, feed cursor (one fjall keyspace)
//! <data_dir>/catalog.lock   held while the catalog is open
//! <data_dir>/listen.addr    the address a running svc-tiering serves on (ADDR_FILE)
//! <data_dir>/warm.redb      the embedded warm tier (warm = "embedded")
//! <data_dir>/cold/packs/    the default cold tier (cold = file://<data_dir>/cold)
//! <data_dir>/admin.token    generated when neither mTLS nor a token is configured
//! ```
//!
//! # Invariants
//!
//! * **NeverAbsent** — a record is in at least one tier from ingest to removal: every move
//!   copies, verifies, commits the new tier in the catalog, and only then deletes.
//! * **StoredOnce** — one record per `(tenant_id, pcs_id)`; redelivered feed records are
//!   skipped; the cursor commits with the records.
//! * **ByteExact** — bodies are served exactly as they came in the feed (a CRC32C on every
//!   stored copy is checked on every read and move).

pub mod catalog;
pub mod clock;
pub mod cold;
pub mod config;
pub mod engine;
pub mod error;
pub mod feed;
pub mod grpc;
pub mod http;
pub mod metrics;
pub mod prewarm;
pub mod record;
pub mod store;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::Context as _;
use flk_proto::v1::tiering_service_server::TieringServiceServer;
use flk_runtime::client::Peer;
use flk_runtime::feed::{AbortOnDrop, FeedConsumer, FeedSettings, FeedWiring};
use flk_runtime::security::ServerSecurity;
use prometheus::Registry;
use tokio::net::TcpListener;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{Policy, TieringConfig};
pub use engine::{CycleReport, Engine, Read, Stats, Tiers};
pub use error::TieringError;
pub use grpc::TieringGrpc;
pub use record::{Key, Tier};

use crate::config::{HotBackend, WarmBackend};
use crate::metrics::TieringMetrics;
use crate::store::{KvTier, MemoryTier, PgTier, RedbTier, RedisTier};

/// An opened svc-tiering: catalog and stores open, recovered, not yet consuming or serving.
pub struct Service {
    engine: Arc<Engine>,
    cfg: TieringConfig,
    registry: Registry,
    metrics: TieringMetrics,
    security: ServerSecurity,
    peer: Peer,
    /// The feed's source and metrics (`flk up` hands in its in-process fan-out).
    feed_wiring: FeedWiring,
}

/// Opens the three tiers of `cfg`.
pub async fn open_tiers(
    cfg: &TieringConfig,
    vars: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<Tiers> {
    let hot: Arc<dyn KvTier> = match cfg.hot_backend()? {
        HotBackend::Memory => Arc::new(MemoryTier::default()),
        HotBackend::Redis(url) => {
            let t = RedisTier::new(&url)?;
            t.check_ready()
                .await
                .context("the hot tier (redis) does not answer")?;
            Arc::new(t)
        }
    };
    let warm: Arc<dyn KvTier> = match cfg.warm_backend()? {
        WarmBackend::Embedded => {
            let path = cfg.data_dir.join("warm.redb");
            Arc::new(tokio::task::spawn_blocking(move || RedbTier::open(&path)).await??)
        }
        WarmBackend::Postgres(url) => Arc::new(
            PgTier::connect(&url)
                .await
                .context("the warm tier (postgres) does not answer")?,
        ),
    };
    let cold = cold::ColdStore::open(&cfg.cold_url()?, vars)?;
    cold.check_ready()
        .await
        .with_context(|| format!("the cold tier ({}) does not answer", cold.name()))?;
    Ok(Tiers {
        hot,
        warm,
        cold: Arc::new(cold),
    })
}

impl Service {
    /// Opens with the system clock. `vars` supplies the object store's credentials
    /// (`AWS_*`, `GOOGLE_*`, `AZURE_*`) and the token files' variables.
    pub async fn open(
        cfg: &TieringConfig,
        vars: impl Fn(&str) -> Option<String> + Clone,
    ) -> anyhow::Result<Service> {
        Service::open_with_clock(cfg, vars, Arc::new(SystemClock)).await
    }

    /// Opens with an injected clock (tests move a [`ManualClock`]).
    pub async fn open_with_clock(
        cfg: &TieringConfig,
        vars: impl Fn(&str) -> Option<String> + Clone,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Service> {
        cfg.validate()?;
        let policy = cfg.policy()?;
        cfg.prewarm_kind()?;
        std::fs::create_dir_all(&cfg.data_dir)
            .with_context(|| format!("cannot create {}", cfg.data_dir.display()))?;
        let registry = Registry::new();
        let metrics = TieringMetrics::register(&registry)?;
        let dir = cfg.data_dir.clone();
        let catalog = tokio::task::spawn_blocking(move || catalog::Catalog::open(&dir))
            .await?
            .context("cannot open the placement catalog")?;
        // The catalog's lock is ours: an address file left by an earlier process is stale.
        let addr_file = cfg.data_dir.join(ADDR_FILE);
        if let Err(e) = std::fs::remove_file(&addr_file)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            anyhow::bail!("cannot remove {}: {e}", addr_file.display());
        }
        let tiers = open_tiers(cfg, vars.clone()).await?;
        let prewarm: Arc<dyn prewarm::Prewarm> = match cfg.prewarm_kind()? {
            config::PrewarmKind::None => Arc::new(prewarm::Lru),
            config::PrewarmKind::Model(name) => {
                let model = prewarm::Predictive::new(&name, cfg.prewarm_retrain_ms()?)
                    .ok_or_else(|| anyhow::anyhow!("`prewarm` = {name:?} has no model"))?;
                metrics.register_prewarm(&registry)?;
                Arc::new(model)
            }
        };
        metrics
            .prewarm
            .with_label_values(&[prewarm.name()])
            .set(1.0);
        metrics.applied(catalog.cursor()?);
        let engine = Arc::new(Engine::new(
            catalog,
            tiers,
            clock,
            policy,
            cfg.prices,
            prewarm,
            cfg.move_chunk,
            cfg.prewarm_max_per_cycle,
            metrics.clone(),
        ));
        engine
            .recover()
            .await
            .context("cannot recover the placement catalog")?;
        let peer = Peer::resolve(&cfg.peer, vars.clone()).context("peer settings")?;
        let security = ServerSecurity::resolve(&cfg.tls, &cfg.auth, &cfg.data_dir, vars)?;
        Ok(Service {
            engine,
            cfg: cfg.clone(),
            registry,
            metrics,
            security,
            peer,
            feed_wiring: FeedWiring::default(),
        })
    }

    pub fn security(&self) -> &ServerSecurity {
        &self.security
    }

    /// Replaces the port's security (`flk up` and tests configure it in code).
    pub fn set_security(&mut self, security: ServerSecurity) {
        self.security = security;
    }

    /// Replaces the credentials towards svc-verify.
    pub fn set_peer(&mut self, peer: Peer) {
        self.peer = peer;
    }

    /// Where the outcome feed comes from and where its metrics go (`flk up`: its in-process
    /// fan-out and shared metrics; by default svc-verify's `Subscribe` and this registry).
    pub fn set_feed(&mut self, wiring: FeedWiring) {
        self.feed_wiring = wiring;
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The metrics registry (`/metrics`; `flk up` exports it with the others).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The gRPC service, callable in process.
    pub fn grpc(&self) -> TieringGrpc {
        TieringGrpc::new(self.engine.clone())
    }

    /// Consumes the feed, runs the placement loop, and serves gRPC and HTTP on `listener`
    /// until `shutdown` resolves.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let cursor = self.engine.catalog().cursor()?;
        write_addr_file(&self.cfg.data_dir, listener.local_addr()?)?;
        let (retry_initial, retry_max) = self.cfg.reconnect();
        let connected = Arc::new(AtomicBool::new(false));
        let wiring = self.feed_wiring.clone().or_metrics_in(&self.registry)?;
        let feed = FeedConsumer::start_with(
            FeedSettings {
                verify_url: self.cfg.verify_url.clone(),
                peer: self.peer.clone(),
                from_seq: cursor.saturating_add(1),
                batch_interval: Duration::from_millis(self.cfg.batch_interval_ms),
                batch_max: self.cfg.batch_max_records,
                retry_initial,
                retry_max,
            },
            wiring,
            "tiering",
            Arc::new(feed::TieringSink {
                engine: self.engine.clone(),
                metrics: self.metrics.clone(),
                connected: connected.clone(),
                runtime: tokio::runtime::Handle::current(),
            }),
        );
        let _placement = AbortOnDrop(tokio::spawn(placement_loop(self.engine.clone())));
        let grpc = tonic::service::Routes::new(TieringServiceServer::new(self.grpc()));
        let router = grpc.into_axum_router().merge(http::routes(http::HttpState {
            engine: self.engine.clone(),
            registry: self.registry.clone(),
            feed_connected: connected,
        }));
        let _flusher = AbortOnDrop(tokio::spawn(flush_loop(self.engine.clone())));
        let result = flk_runtime::server::serve(listener, router, &self.security, shutdown).await;
        drop(feed);
        if let Err(e) = self.engine.flush().await {
            tracing::error!(error = %e, "svc-tiering could not make its last feed batches durable");
        }
        result.context("tiering server failed")
    }
}

/// The file in the data directory naming the address a running svc-tiering serves on
/// (`HOST:PORT`): how a reader of the data directory that finds the catalog locked
/// (`flk report compliance`) reaches the process holding it. Written when serving starts,
/// removed when the catalog is next opened.
pub const ADDR_FILE: &str = "listen.addr";

/// Writes [`ADDR_FILE`] atomically (a temporary file renamed over it); an unspecified
/// address is written as loopback, which reaches it from this machine.
fn write_addr_file(dir: &std::path::Path, addr: std::net::SocketAddr) -> anyhow::Result<()> {
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let path = dir.join(ADDR_FILE);
    let tmp = dir.join(format!("{ADDR_FILE}.tmp"));
    std::fs::write(&tmp, format!("{addr}\n"))
        .and_then(|()| std::fs::rename(&tmp, &path))
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The address a running svc-tiering over `dir` serves on ([`ADDR_FILE`]), `None` when
/// the file is missing.
pub fn read_addr_file(dir: &std::path::Path) -> anyhow::Result<Option<std::net::SocketAddr>> {
    let path = dir.join(ADDR_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(text.trim().parse().with_context(|| {
            format!("{} does not hold an address", path.display())
        })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
    }
}

/// Makes the catalog's lazy commits (feed batches, read times) durable every
/// [`FLUSH_INTERVAL`](flk_runtime::embedded_db::FLUSH_INTERVAL) (the catalog's module docs).
async fn flush_loop(engine: Arc<Engine>) {
    flk_runtime::embedded_db::flush_every_interval("svc-tiering catalog", || engine.flush()).await;
}

/// Runs a placement cycle every `demote_interval` (read again each time: `SetPolicy` applies
/// without a restart) and whenever the engine asks (hot-tier overflow, policy change).
async fn placement_loop(engine: Arc<Engine>) {
    loop {
        let interval = Duration::from_millis(engine.policy().demote_interval_ms);
        tokio::select! {
            () = engine.kick.notified() => {}
            () = tokio::time::sleep(interval) => {}
        }
        match engine.cycle().await {
            Ok(r) if r != CycleReport::default() => tracing::info!(?r, "placement cycle"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "placement cycle failed; retried next interval"),
        }
    }
}

/// Opens and serves until Ctrl-C / SIGTERM (the binary's whole job).
pub async fn run(cfg: TieringConfig) -> anyhow::Result<()> {
    let service = Service::open(&cfg, |k| std::env::var(k).ok()).await?;
    let listener = TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    println!(
        "svc-tiering listening on http://{addr} (grpc; REST /v1/tiering/*; /health /ready /metrics)"
    );
    println!("data dir: {}", cfg.data_dir.display());
    println!("outcome feed: {}", cfg.verify_url);
    let t = service.engine.tiers();
    println!(
        "tiers: {}, {}, {}",
        t.hot.name(),
        t.warm.name(),
        t.cold.name()
    );
    if service.security.mutual {
        println!("clients: mTLS (certificates signed by tls.client_ca)");
    } else if let Some(path) = &service.security.generated_token {
        println!("clients: bearer token in {}", path.display());
    }
    service.serve(listener, shutdown_signal()).await
}

/// Resolves on Ctrl-C or SIGTERM.
pub use flk_runtime::shutdown::signal as shutdown_signal;
