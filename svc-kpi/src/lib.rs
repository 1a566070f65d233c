//! svc-kpi: the KPIs buyers of AI agents ask for, per tenant and rolling window (1h, 24h,
//! 7d): hallucination containment, escalation and false-alarm rates, regime and signal
//! distributions, cost per trusted task with its breakdown, audit coverage and verification
//! latency, with SLO compliance. It consumes svc-verify's outcome feed (`Subscribe` from a
//! persisted cursor) and takes reviewers' verdicts on decisions (feedback), keeps everything
//! in one redb file, and serves `flk.v1.KpiService` over gRPC, the REST routes of [`http`],
//! and `/health`, `/ready`, `/metrics`, all on one listener.
//!
//! `main.rs` only parses config and calls [`run`]; tests call [`Service::open`] and
//! [`Service::serve`] with a listener bound to port 0. [`report::compute_report`] is the one
//! report function, used by REST, gRPC, the metrics refresher and `flk report kpi`, which
//! renders reports with [`render`].
//!
//! # Modules
//!
//! * [`model`]: outcomes, verdicts, windows, per-minute buckets and their encodings;
//! * [`store`]: the redb tables and the transactions that keep counts exact;
//! * [`report`]: the KPI definitions; [`render`]: JSON and self-contained HTML;
//! * [`feed`]: the consumer; [`audit`]: svc-audit's checkpoint and anchor poller;
//! * [`grpc`], [`http`]: the thin handlers; [`config`], [`metrics`], [`error`], [`clock`].
//!
//! # Data directory
//!
//! ```text
//! <data_dir>/kpi.redb   decisions, per-minute buckets, cursor (tables in `store`)
//! ```
//!
//! # Invariants
//!
//! * **CountedOnce** — a decision `(tenant_id, pcs_id)` is counted in exactly one bucket, once,
//!   however often the feed delivers it; records, buckets and cursor commit together.
//! * **OneVerdict** — a decision carries at most one verdict, the latest; its bucket counts
//!   that verdict and no other.
//! * **WindowByDecisionTime** — buckets are keyed by the decision's minute, so late feedback
//!   changes the window its decision is in, never the window of the feedback's arrival.

pub mod audit;
pub mod clock;
pub mod config;
pub mod error;
pub mod feed;
pub mod grpc;
pub mod http;
pub mod metrics;
pub mod model;
pub mod render;
pub mod report;
pub mod rows;
pub mod store;

use std::borrow::Borrow;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use flk_proto::v1;
use flk_proto::v1::kpi_service_server::KpiServiceServer;
use flk_runtime::client::Peer;
use flk_runtime::feed::{AbortOnDrop, FeedConsumer, FeedSettings, FeedWiring};
use flk_runtime::security::ServerSecurity;
use prometheus::Registry;
use tokio::net::TcpListener;
use tokio::sync::Notify;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::KpiConfig;
pub use error::KpiError;
use metrics::{Event, KpiMetrics};
pub use model::{Outcome, Verdict, Window};
pub use report::{
    AuditView, DecisionSeries, KpiReport, ReportSettings, compute_report, compute_reports,
};
pub use store::Store;
use store::{ApplyReport, FeedbackReport};

/// Client facade for svc-kpi.
pub use flk_runtime::client::KpiClient;

/// Sentinel of "no audit size known".
const NO_AUDIT: u64 = u64::MAX;
/// Shortest gap between two event-driven metric refreshes.
const REFRESH_MIN_GAP: Duration = Duration::from_millis(250);

/// The KPI core the handlers share: the store, the clock, prices and objectives, metrics,
/// and the latest audit log size. Its methods block (redb): call them off the async runtime.
pub struct Kpi {
    store: Store,
    clock: Arc<dyn Clock>,
    settings: ReportSettings,
    metrics: KpiMetrics,
    registry: Registry,
    audit_logged: AtomicU64,
    pub(crate) feed_connected: Arc<AtomicBool>,
    refresh: Notify,
}

impl Kpi {
    /// Opens the store in `cfg.data_dir` with the given clock.
    pub fn open(cfg: &KpiConfig, clock: Arc<dyn Clock>) -> anyhow::Result<Kpi> {
        cfg.validate()?;
        let registry = Registry::new();
        let metrics = KpiMetrics::register(&registry, &cfg.tenants)?;
        let store = Store::open(&cfg.data_dir, cfg.retention_days)
            .with_context(|| format!("cannot open the kpi store in {}", cfg.data_dir.display()))?;
        metrics.applied_up_to(store.cursor()?);
        Ok(Kpi {
            store,
            clock,
            settings: ReportSettings {
                prices: cfg.prices.clone(),
                slo: cfg.slo.clone(),
            },
            metrics,
            registry,
            audit_logged: AtomicU64::new(NO_AUDIT),
            feed_connected: Arc::new(AtomicBool::new(false)),
            refresh: Notify::new(),
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn metrics(&self) -> &KpiMetrics {
        &self.metrics
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Applies a batch of feed records (one transaction) and updates the counters.
    pub fn apply<R: Borrow<v1::FeedRecord>>(&self, records: &[R]) -> Result<ApplyReport, KpiError> {
        let r = self.store.apply(records, self.clock.now_ms())?;
        self.metrics.count(Event::Decision, r.decisions);
        self.metrics.count(Event::Replicated, r.replicated);
        self.metrics.count(Event::Redelivered, r.redelivered);
        self.metrics.count(Event::Skipped, r.skipped);
        for (index, s) in &r.signals {
            self.metrics.observe(&records[*index].borrow().tenant_id, s);
        }
        self.metrics.applied_up_to(r.cursor);
        if r.decisions > 0 || r.replicated > 0 {
            self.refresh.notify_one();
        }
        Ok(r)
    }

    /// Records a reviewer's verdict (`verdict` as sent: validated here).
    pub fn feedback(
        &self,
        tenant: &str,
        pcs_id: &str,
        verdict: &str,
    ) -> Result<FeedbackReport, KpiError> {
        let verdict = Verdict::parse(verdict).ok_or(KpiError::InvalidVerdict)?;
        if pcs_id.is_empty() {
            return Err(KpiError::InvalidRequest("`pcs_id` is required".into()));
        }
        let r = self.store.feedback(tenant, pcs_id, verdict)?;
        self.metrics.count(Event::Feedback, 1);
        self.refresh.notify_one();
        Ok(r)
    }

    /// Records anchor batches; the strategy must have a configured price.
    pub fn record_anchor_batches(
        &self,
        strategy: &str,
        batches: u64,
        at_ms: Option<i64>,
    ) -> Result<(), KpiError> {
        if !self
            .settings
            .prices
            .anchoring_usd_per_batch
            .contains_key(strategy)
        {
            return Err(KpiError::InvalidRequest(format!(
                "anchoring strategy {strategy:?} has no configured price"
            )));
        }
        let at = at_ms.unwrap_or_else(|| self.clock.now_ms());
        self.store.record_anchor_batches(strategy, batches, at)?;
        self.refresh.notify_one();
        Ok(())
    }

    /// Imports anchors listed by svc-audit (see [`Store::import_anchors`]); returns the
    /// batches counted.
    pub fn import_anchors(&self, anchors: &[store::AnchorSeen]) -> Result<u64, KpiError> {
        let counted = self.store.import_anchors(anchors)?;
        if counted > 0 {
            self.refresh.notify_one();
        }
        Ok(counted)
    }

    /// The latest audit log size, when an audit upstream answered.
    pub fn audit_view(&self) -> Option<AuditView> {
        match self.audit_logged.load(Ordering::Acquire) {
            NO_AUDIT => None,
            logged => Some(AuditView { logged }),
        }
    }

    /// Sets the audit log size (the poller, or tests).
    pub fn set_audit_logged(&self, logged: Option<u64>) {
        self.audit_logged.store(
            logged.unwrap_or(NO_AUDIT).min(NO_AUDIT - 1),
            Ordering::Release,
        );
        self.refresh.notify_one();
    }

    /// The report of `tenant` over `window`, now.
    pub fn report(&self, tenant: &str, window: Window) -> Result<KpiReport, KpiError> {
        compute_report(
            &self.store,
            tenant,
            window,
            self.clock.now_ms(),
            &self.settings,
            self.audit_view(),
        )
    }

    /// The reports of `tenant` over every window ([`Window::ALL`], in order): what
    /// [`Kpi::report`] gives for each, computed together (one audit-coverage scan).
    pub fn reports(&self, tenant: &str) -> Result<Vec<KpiReport>, KpiError> {
        compute_reports(
            &self.store,
            tenant,
            &Window::ALL,
            self.clock.now_ms(),
            &self.settings,
            self.audit_view(),
        )
    }

    /// Recomputes the gauges of every configured tenant and window.
    pub fn refresh_metrics(&self) -> Result<(), KpiError> {
        for tenant in self.metrics.tenants() {
            for r in &self.reports(tenant)? {
                self.metrics.set_report(r);
            }
        }
        Ok(())
    }

    fn feed_connected(&self) -> bool {
        self.feed_connected.load(Ordering::Acquire)
    }
}

/// Runs a blocking [`Kpi`] operation off the runtime.
pub(crate) async fn blocking<T: Send + 'static>(
    kpi: &Arc<Kpi>,
    f: impl FnOnce(&Kpi) -> Result<T, KpiError> + Send + 'static,
) -> Result<T, KpiError> {
    let kpi = kpi.clone();
    match tokio::task::spawn_blocking(move || f(&kpi)).await {
        Ok(r) => r,
        Err(e) => Err(KpiError::Task(e.to_string())),
    }
}

/// An opened svc-kpi: store open, not yet consuming or serving.
pub struct Service {
    kpi: Arc<Kpi>,
    cfg: KpiConfig,
    security: ServerSecurity,
    peer: Peer,
    /// The feed's source and metrics (`flk up` hands in its in-process fan-out).
    feed_wiring: FeedWiring,
}

impl Service {
    /// Opens the store in the data directory, with the system clock.
    pub async fn open(cfg: &KpiConfig) -> anyhow::Result<Service> {
        Service::open_with_clock(cfg, Arc::new(SystemClock)).await
    }

    /// Opens with an injected clock (tests roll windows with a [`ManualClock`]).
    pub async fn open_with_clock(
        cfg: &KpiConfig,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Service> {
        let c = cfg.clone();
        let kpi = tokio::task::spawn_blocking(move || Kpi::open(&c, clock)).await??;
        let peer = Peer::resolve(&cfg.peer, |k| std::env::var(k).ok()).context("peer settings")?;
        let security = ServerSecurity::resolve(&cfg.tls, &cfg.auth, &cfg.data_dir, |k| {
            std::env::var(k).ok()
        })?;
        Ok(Service {
            kpi: Arc::new(kpi),
            cfg: cfg.clone(),
            security,
            peer,
            feed_wiring: FeedWiring::default(),
        })
    }

    /// The port's security, as resolved at open.
    pub fn security(&self) -> &ServerSecurity {
        &self.security
    }

    /// Replaces the port's security (`flk up` and tests, which configure it in code).
    pub fn set_security(&mut self, security: ServerSecurity) {
        self.security = security;
    }

    /// Replaces the credentials towards svc-verify and svc-audit.
    pub fn set_peer(&mut self, peer: Peer) {
        self.peer = peer;
    }

    /// Where the outcome feed comes from and where its metrics go (`flk up`: its in-process
    /// fan-out and shared metrics; by default svc-verify's `Subscribe` and this registry).
    pub fn set_feed(&mut self, wiring: FeedWiring) {
        self.feed_wiring = wiring;
    }

    /// The KPI core (for tests, embedding and the REST router).
    pub fn kpi(&self) -> &Arc<Kpi> {
        &self.kpi
    }

    /// The REST API routes alone (`/v1/feedback`, `/v1/kpi/report`, `/v1/kpi/anchors`), for a
    /// front that mounts them.
    pub fn api_router(&self) -> axum::Router {
        http::api_routes(self.kpi.clone())
    }

    /// Consumes the feed, polls svc-audit (when configured), refreshes the gauges, and serves
    /// gRPC and HTTP on `listener` until `shutdown` resolves.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let cursor = {
            let k = self.kpi.clone();
            tokio::task::spawn_blocking(move || k.store.cursor()).await??
        };
        let (retry_initial, retry_max) = self.cfg.reconnect();
        let wiring = self
            .feed_wiring
            .clone()
            .or_metrics_in(self.kpi.registry())?;
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
            "kpi",
            Arc::new(feed::KpiSink(self.kpi.clone())),
        );
        let _audit = self.cfg.audit_url.clone().map(|url| {
            AbortOnDrop(tokio::spawn(audit::poll(
                url,
                self.peer.clone(),
                Duration::from_millis(self.cfg.audit_poll_ms),
                self.kpi.clone(),
            )))
        });
        let _refresher = AbortOnDrop(tokio::spawn(refresh_loop(
            self.kpi.clone(),
            Duration::from_millis(self.cfg.metrics_refresh_ms),
        )));
        let grpc = tonic::service::Routes::new(KpiServiceServer::new(grpc::KpiGrpc::new(
            self.kpi.clone(),
        )));
        let router = grpc
            .into_axum_router()
            .merge(http::routes(self.kpi.clone()));
        let _flusher = AbortOnDrop(tokio::spawn(flush_loop(self.kpi.clone())));
        let result = flk_runtime::server::serve(listener, router, &self.security, shutdown).await;
        drop(feed);
        if let Err(e) = blocking(&self.kpi, |k| k.store.flush()).await {
            tracing::error!(error = %e, "svc-kpi could not make its last batches durable");
        }
        result.context("kpi server failed")
    }
}

/// Makes the applied batches durable every
/// [`FLUSH_INTERVAL`](flk_runtime::embedded_db::FLUSH_INTERVAL) (the store's module docs).
async fn flush_loop(kpi: Arc<Kpi>) {
    flk_runtime::embedded_db::flush_every_interval("svc-kpi store", || {
        blocking(&kpi, |k| k.store.flush())
    })
    .await;
}

/// Recomputes the gauges when events arrive (at most every [`REFRESH_MIN_GAP`]) and at least
/// every `interval` (windows roll).
async fn refresh_loop(kpi: Arc<Kpi>, interval: Duration) {
    loop {
        if let Err(e) = blocking(&kpi, |k| k.refresh_metrics()).await {
            tracing::warn!(error = %e, "cannot refresh the kpi gauges");
        }
        tokio::select! {
            () = kpi.refresh.notified() => {}
            () = tokio::time::sleep(interval) => {}
        }
        tokio::time::sleep(REFRESH_MIN_GAP).await;
    }
}

/// Opens and serves until Ctrl-C / SIGTERM (the binary's whole job).
pub async fn run(cfg: KpiConfig) -> anyhow::Result<()> {
    let service = Service::open(&cfg).await?;
    let listener = TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    println!(
        "svc-kpi listening on http://{addr} (grpc; REST /v1/feedback /v1/kpi/report; /health /ready /metrics)"
    );
    println!("data dir: {}", cfg.data_dir.display());
    println!("outcome feed: {}", cfg.verify_url);
    if service.security.mutual {
        println!("clients: mTLS (certificates signed by tls.client_ca)");
    } else if let Some(path) = &service.security.generated_token {
        println!("clients: bearer token in {}", path.display());
    }
    match &cfg.audit_url {
        Some(a) => println!("audit coverage from: {a}"),
        None => println!("audit coverage: not configured (null)"),
    }
    service.serve(listener, shutdown_signal()).await
}

/// Resolves on Ctrl-C or SIGTERM.
pub use flk_runtime::shutdown::signal as shutdown_signal;
