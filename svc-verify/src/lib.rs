//! svc-verify: owner of every verification decision. Serves `flk.v1.VerifyService` over gRPC
//! (plus `/health`, `/ready` and `/metrics` over HTTP/1.1 on the same port; all through TLS,
//! optionally mutual, when `[tls]` is configured), records each decision durably in the
//! outcome log before answering, and keeps the dedup index.
//!
//! `main.rs` only parses config and calls [`run`]; tests call [`Service::open`] and
//! [`Service::serve`] with a listener bound to port 0.

pub mod config;
pub mod engine;
pub mod fanout;
pub mod grpc;
pub mod metrics;
pub mod refusals;
pub mod replica_grpc;
pub mod tenants;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use flk_dedup::{
    DedupStore, EmbeddedOptions, EmbeddedStore, PgOptions, PgStore, RedisOptions, RedisStore,
};
use flk_outcome_log::{LogConfig, OutcomeLog};
use flk_proto::v1::verify_service_server::VerifyServiceServer;
use flk_runtime::security::ServerSecurity;
use prometheus::Registry;
use tokio::net::TcpListener;

pub use config::{DedupBackend, VerifyConfig};
pub use engine::{Body, Engine};
use metrics::{LogMetrics, VerifyMetrics};
use tenants::TenantRegistry;

/// The gRPC service over `engine` (requests up to 4 MiB: a 1 MiB PCS with room to spare); its
/// streams end once `closing` turns true.
fn grpc_server(
    engine: &Arc<Engine>,
    closing: tokio::sync::watch::Receiver<bool>,
) -> VerifyServiceServer<grpc::VerifyGrpc> {
    VerifyServiceServer::new(grpc::VerifyGrpc::new(Arc::clone(engine), closing))
        .max_decoding_message_size(4 * 1024 * 1024)
}

/// An opened svc-verify: stores recovered, engine ready, not yet serving.
pub struct Service {
    pub engine: Arc<Engine>,
    pub registry: Registry,
    /// Where the `default` tenant's generated secret was written, if one was generated.
    pub generated_secret: Option<PathBuf>,
    /// The port's TLS and credentials (`[tls]`, `[auth]`), loaded at open so bad files fail
    /// early.
    security: ServerSecurity,
    /// Turned true when [`Service::serve`]'s shutdown begins: the long-lived streams
    /// (`SubmitStream`, `Subscribe`) then end, so that the graceful shutdown, which waits for
    /// every open call, does not wait on callers that never hang up (the gateway's submission
    /// lanes, the feed consumers).
    closing: tokio::sync::watch::Sender<bool>,
    /// The in-process fan-out of the outcome feed, started by the first
    /// [`Service::feed_source`] call.
    feed_hub: std::sync::OnceLock<Arc<fanout::FeedHub>>,
}

impl Service {
    /// Opens the outcome log (recovering a torn tail), the dedup store, and the engine.
    pub async fn open(cfg: &VerifyConfig) -> anyhow::Result<Service> {
        std::fs::create_dir_all(&cfg.data_dir)
            .with_context(|| format!("cannot create data dir {}", cfg.data_dir.display()))?;
        let security = ServerSecurity::resolve(&cfg.tls, &cfg.auth, &cfg.data_dir, |k| {
            std::env::var(k).ok()
        })?;
        let (tenants, generated_secret) = load_tenants(cfg)?;
        let registry = Registry::new();
        let metrics = VerifyMetrics::register(&registry)?;

        let mut log_cfg = LogConfig::new(cfg.data_dir.join("outcome-log"));
        log_cfg.segment_max_bytes = cfg.log.segment_max_bytes;
        log_cfg.fsync = cfg.log.fsync;
        let observer = Arc::new(LogMetrics(metrics.clone()));
        let (log, report) =
            tokio::task::spawn_blocking(move || OutcomeLog::open_with_observer(log_cfg, observer))
                .await??;
        tracing::info!(?report, "outcome log opened");

        let dedup = open_dedup(cfg).await?;
        let engine = Engine::start(
            Arc::new(tenants),
            log,
            dedup,
            metrics,
            cfg.region.clone(),
            cfg.max_body_bytes,
            &cfg.data_dir,
        )
        .await?;
        let refusals_dir = cfg.data_dir.clone();
        let refusals =
            tokio::task::spawn_blocking(move || refusals::Refusals::open(&refusals_dir)).await??;
        engine.set_refusals(Arc::new(refusals));
        Ok(Service {
            engine,
            registry,
            generated_secret,
            security,
            closing: tokio::sync::watch::Sender::new(false),
            feed_hub: std::sync::OnceLock::new(),
        })
    }

    /// The outcome feed for consumers in this process (`flk up`): decoded once, shared in
    /// batches, never holding up the submit path (see [`fanout`]). Call it inside the tokio
    /// runtime; every call returns the same fan-out. Its streams end when the service shuts
    /// down.
    pub fn feed_source(&self) -> Arc<dyn flk_runtime::feed::FeedSource> {
        self.feed_hub
            .get_or_init(|| {
                Arc::new(fanout::FeedHub::start(
                    self.engine.log().clone(),
                    self.closing.subscribe(),
                ))
            })
            .clone()
    }

    /// The `flk.v1.VerifyService` gRPC service as [`Service::serve`] serves it, for a caller in
    /// the same process (the gateway of `flk up`). Its submissions need the background tasks
    /// of [`Service::serve`] (the index flusher among them), so serve the service too.
    pub fn grpc_server(&self) -> VerifyServiceServer<grpc::VerifyGrpc> {
        grpc_server(&self.engine, self.closing.subscribe())
    }

    /// The checks behind `/ready` (outcome log, dedup store), for a caller in the same process:
    /// the gateway of `flk up` reports them in its own `/ready`.
    pub fn readiness_probe(
        &self,
    ) -> impl Fn() -> futures::future::BoxFuture<'static, Vec<(String, Result<(), String>)>>
    + Send
    + Sync
    + 'static
    + use<> {
        let engine = self.engine.clone();
        move || {
            let engine = engine.clone();
            Box::pin(async move { dependencies(&engine).await })
        }
    }

    /// Whether [`Service::serve`] terminates TLS.
    pub fn tls_enabled(&self) -> bool {
        self.security.tls.is_some()
    }

    /// The port's security, as resolved at open.
    pub fn security(&self) -> &ServerSecurity {
        &self.security
    }

    /// Replaces the port's security (`flk up` and tests, which configure it in code).
    pub fn set_security(&mut self, security: ServerSecurity) {
        self.security = security;
    }

    /// Serves gRPC and the HTTP endpoints on `listener` until `shutdown` resolves (through TLS
    /// when configured); runs the background maintenance (repair queue, watermark, expiry
    /// purge) meanwhile.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let engine = self.engine.clone();
        let maintenance = tokio::spawn(maintenance(engine.clone()));
        let flusher = tokio::spawn(flusher(engine.clone()));
        let refusal_flusher = tokio::spawn(refusal_flusher(engine.clone()));
        let registry = self.registry.clone();
        let ready_engine = engine.clone();
        let http = axum::Router::new()
            .route("/health", get(|| async { "OK" }))
            .route(
                "/metrics",
                get(move || {
                    let registry = registry.clone();
                    async move {
                        (
                            [("content-type", "text/plain; version=0.0.4")],
                            metrics::render(&registry),
                        )
                    }
                }),
            )
            .route(
                "/ready",
                get(move || {
                    let engine = ready_engine.clone();
                    async move { readiness(&engine).await }
                }),
            );
        let grpc = tonic::service::Routes::new(grpc_server(&engine, self.closing.subscribe()))
            .add_service(
                flk_proto::v1::replica_apply_service_server::ReplicaApplyServiceServer::new(
                    replica_grpc::ReplicaGrpc::new(engine.clone()),
                )
                .max_decoding_message_size(64 * 1024 * 1024),
            );
        let closing = self.closing;
        let shutdown = async move {
            shutdown.await;
            closing.send_replace(true);
        };
        let router = grpc.into_axum_router().merge(http);
        let result = flk_runtime::server::serve(listener, router, &self.security, shutdown).await;
        maintenance.abort();
        flusher.abort();
        refusal_flusher.abort();
        let _ = refusal_flusher.await;
        flush_refusals(&engine).await;
        // Wait until the tasks are really gone: they hold the engine (and so the stores), and
        // a checkpoint one was running must not race the final one below.
        let _ = maintenance.await;
        let _ = flusher.await;
        // Best effort: leave a fresh watermark so the next start replays little.
        let _ = engine.flush_pending().await;
        let _ = engine.checkpoint_watermark().await;
        result.context("grpc server failed")
    }
}

/// Writes the owed dedup index entries: every few milliseconds, or at once when many are
/// owed (see `engine` on write-behind). A periodic timer, not a synchronisation device.
async fn flusher(engine: Arc<Engine>) {
    loop {
        tokio::select! {
            () = engine.flush_wanted() => {}
            () = tokio::time::sleep(Duration::from_millis(25)) => {}
        }
        engine.flush_pending().await;
    }
}

/// Adds the signature refusals counted in memory to their store every
/// [`refusals::FLUSH_INTERVAL`] (a periodic timer, not a synchronisation device).
async fn refusal_flusher(engine: Arc<Engine>) {
    let mut tick = tokio::time::interval(refusals::FLUSH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        flush_refusals(&engine).await;
    }
}

async fn flush_refusals(engine: &Arc<Engine>) {
    let Some(refusals) = engine.refusals().cloned() else {
        return;
    };
    match tokio::task::spawn_blocking(move || refusals.flush()).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot persist the signature refusal counts; will retry")
        }
        Err(e) => tracing::warn!(error = %e, "refusal flush task failed"),
    }
}

/// Background upkeep: persist the watermark, purge expired entries. A periodic timer, not a
/// synchronisation device.
async fn maintenance(engine: Arc<Engine>) {
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut n: u64 = 0;
    loop {
        tick.tick().await;
        n += 1;
        engine.rebuild_if_needed().await;
        if n.is_multiple_of(5)
            && let Err(e) = engine.checkpoint_watermark().await
        {
            tracing::warn!(error = %e, "cannot persist the dedup watermark");
        }
        if n.is_multiple_of(300)
            && let Err(e) = engine.dedup().purge_expired(10_000).await
        {
            tracing::warn!(error = %e, "dedup purge failed");
        }
    }
}

/// What `/ready` checks: the outcome log and the dedup store, each named with its error.
async fn dependencies(engine: &Engine) -> Vec<(String, Result<(), String>)> {
    let dedup = engine.dedup().check_ready().await;
    let log = if engine.log().is_failed() {
        Err("failed: reopen needed".to_owned())
    } else {
        Ok(())
    };
    vec![
        ("outcome_log".to_owned(), log),
        (
            format!("dedup_{}", engine.dedup().backend()),
            dedup.map_err(|e| e.to_string()),
        ),
    ]
}

async fn readiness(engine: &Engine) -> axum::response::Response {
    let deps = dependencies(engine).await;
    let ok = deps.iter().all(|(_, r)| r.is_ok());
    let named: serde_json::Map<String, serde_json::Value> = deps
        .into_iter()
        .map(|(name, r)| (name, r.err().unwrap_or_else(|| "ok".to_owned()).into()))
        .collect();
    let body = serde_json::json!({ "ready": ok, "dependencies": named });
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

fn load_tenants(cfg: &VerifyConfig) -> anyhow::Result<(TenantRegistry, Option<PathBuf>)> {
    if let Some(path) = &cfg.tenants_file {
        return Ok((TenantRegistry::from_file(path)?, None));
    }
    if let Some(secret) = &cfg.hmac_key {
        return Ok((TenantRegistry::single_hmac(secret)?, None));
    }
    let (secret, path) = default_secret(&cfg.data_dir)?;
    Ok((TenantRegistry::single_hmac(&secret)?, Some(path)))
}

/// The `default` tenant's secret when nothing is configured: generated once, kept in the
/// data directory so restarts keep accepting what agents signed.
fn default_secret(data_dir: &Path) -> anyhow::Result<(String, PathBuf)> {
    use rand::RngCore;
    let path = data_dir.join("default-hmac.key");
    if let Ok(s) = std::fs::read_to_string(&path) {
        let s = s.trim().to_owned();
        if !s.is_empty() {
            return Ok((s, path));
        }
    }
    let mut raw = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut raw);
    let secret = hex::encode(raw);
    std::fs::write(&path, format!("{secret}\n"))
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok((secret, path))
}

async fn open_dedup(cfg: &VerifyConfig) -> anyhow::Result<Arc<dyn DedupStore>> {
    Ok(match cfg.dedup.backend {
        DedupBackend::Embedded => {
            let dir = cfg.data_dir.join("dedup");
            // A new (or deleted) index holds nothing: the old index's watermark must not limit
            // the startup replay, or every decision below it would be decided again.
            if !dir.join(flk_dedup::embedded::DIR_NAME).exists() {
                let mark = cfg.data_dir.join(engine::WATERMARK_FILE);
                match std::fs::remove_file(&mark) {
                    Ok(()) => tracing::warn!("new dedup index: replaying the whole outcome log"),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(e).with_context(|| format!("cannot remove {}", mark.display()));
                    }
                }
            }
            // Index commits skip fsync; `Engine::checkpoint_watermark` syncs before it
            // persists the watermark, and the log above it is replayed after a crash.
            let store = tokio::task::spawn_blocking(move || {
                EmbeddedStore::open_with(EmbeddedOptions::new(dir).deferred_sync(true))
            })
            .await??;
            Arc::new(store)
        }
        DedupBackend::Redis => {
            let url = cfg.dedup.url.clone().unwrap_or_default();
            let mut options = RedisOptions::new(url);
            // Each replica marks the index complete for its own log (flk_dedup::redis_store,
            // "Lost data").
            options.marker_key = format!(
                "{}complete:{}",
                options.key_prefix,
                replica_id(&cfg.data_dir)?
            );
            Arc::new(RedisStore::new(&options)?)
        }
        DedupBackend::Postgres => {
            let url = cfg.dedup.url.clone().unwrap_or_default();
            let pg: tokio_postgres::Config = url
                .parse()
                .context("dedup.url is not a postgres connection string")?;
            Arc::new(PgStore::connect(&PgOptions::new(pg)).await?)
        }
    })
}

/// This data directory's replica id (16 hex characters, made on first start).
fn replica_id(data_dir: &std::path::Path) -> anyhow::Result<String> {
    let path = data_dir.join("replica.id");
    match std::fs::read_to_string(&path) {
        Ok(s) if s.trim().len() == 16 && s.trim().bytes().all(|b| b.is_ascii_hexdigit()) => {
            return Ok(s.trim().to_ascii_lowercase());
        }
        Ok(s) => anyhow::bail!("{} holds {:?}, not a replica id", path.display(), s.trim()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    let id = format!("{:016x}", rand::random::<u64>());
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{id}\n"))
        .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
        .and_then(|()| std::fs::rename(&tmp, &path))
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(id)
}

/// Opens and serves until Ctrl-C / SIGTERM (the binary's whole job).
pub async fn run(cfg: VerifyConfig) -> anyhow::Result<()> {
    let service = Service::open(&cfg).await?;
    let listener = TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    let scheme = if service.tls_enabled() {
        "https"
    } else {
        "http"
    };
    println!("svc-verify listening on {scheme}://{addr} (grpc; /health /ready /metrics)");
    println!("data dir: {}", cfg.data_dir.display());
    if service.security.mutual {
        println!("clients: mTLS (certificates signed by tls.client_ca)");
    } else if let Some(path) = &service.security.generated_token {
        println!("clients: bearer token in {}", path.display());
    } else {
        println!("clients: bearer token (auth)");
    }
    println!("dedup backend: {}", service.engine.dedup().backend());
    for id in service.engine.tenants().ids() {
        println!("tenant: {id}");
    }
    if let Some(path) = &service.generated_secret {
        println!(
            "default tenant hmac secret (digest mode): see {}",
            path.display()
        );
    }
    service.serve(listener, shutdown_signal()).await
}

/// Resolves on Ctrl-C or SIGTERM.
pub use flk_runtime::shutdown::signal as shutdown_signal;
