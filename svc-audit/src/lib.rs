//! svc-audit: the tamper-evident record of every verification decision. It consumes
//! svc-verify's outcome feed, appends one entry per decision to an RFC 9162 Merkle log in the
//! C2SP tlog-tiles layout (`flk-tlog`), publishes Ed25519-signed checkpoints, and serves
//! inclusion and consistency proofs over gRPC (`flk.v1.AuditService`) and REST, plus
//! `/health`, `/ready` and `/metrics`, all on one listener.
//!
//! `main.rs` only parses config and calls [`run`]; tests call [`Service::open`] and
//! [`Service::serve`] with a listener bound to port 0.
//!
//! # Modules
//!
//! * [`feed`]: the consumer (Subscribe with reconnection, batching, retry);
//! * [`ledger`]: the Merkle log, the `(tenant_id, pcs_id)` index and the cursor, and the
//!   order in which a batch is made durable;
//! * [`mapping`]: feed record to audit entry; [`index`], [`cursor`], [`keys`]: the files;
//! * [`anchoring`]: anchors the latest checkpoint to RFC 3161 / OpenTimestamps / EVM
//!   (`flk-anchor`) on an interval and on demand, keeps the anchor journal, and records the
//!   anchoring strategy (and every change of it) as an event entry of the log;
//! * [`siem`]: streams the log's entries, checkpoints and anchors to Splunk HEC, Datadog,
//!   Elasticsearch and Sumo Logic, at least once, from a spool and a cursor per sink;
//! * [`grpc`], [`http`]: the thin handlers; [`config`], [`metrics`], [`error`].
//!
//! # Data directory
//!
//! ```text
//! <data_dir>/tlog/          the log: C2SP tlog-tiles (checkpoint, tile/...), servable as files
//! <data_dir>/index.fjall/   (tenant_id, pcs_id) -> leaf index, and "indexed up to leaf N"
//! <data_dir>/index.lock    held while the index is open
//! <data_dir>/feed.cursor    last outcome-feed seq integrated (one decimal line)
//! <data_dir>/log.key        the log's signer key, mode 0600 (unless `log_key_file` is set)
//! <data_dir>/anchors.jsonl  checkpoint anchors with their proofs and notes (append-only)
//! <data_dir>/siem/<sink>/   SIEM spool, cursor and dead letters ([`siem::spool`])
//! ```
//!
//! # Entry mapping
//!
//! Each `FeedRecord` of kind `RECORD_KIND_DECISION` becomes one `flk_tlog::AuditEntry`
//! (encoded as documented in `flk_tlog::entry`). Besides decisions the log holds *log events*
//! (version-2 entries, `flk_tlog::EventEntry`): the anchoring strategy in use and its changes
//! ([`anchoring`] module docs), each `RECORD_KIND_CONFLICTING_DUPLICATE` record (once per
//! conflicting content) and bursts of signature failures ([`mapping`] module docs).
//!
//! | entry field | from the feed record |
//! |---|---|
//! | `tenant_id` | `tenant_id` |
//! | `pcs_id` | `pcs_id`, 64 lowercase hex decoded to 32 bytes (anything else: skipped, `bad_pcs_id`) |
//! | `signed_fields` | the canonical signed payload (PROTOCOL.md section 2) of the request: `canonical_payload` as svc-verify published it, when its SHA-256 is `canonical_digest` and it names the record's `pcs_id`; otherwise (older records) `request_json` re-parsed with `flk_core::parse_pcs`, or else `request_pcs` through flk-proto's validating conversion, then `flk_core::canonicalize(..).payload` |
//! | `outcome` | `outcome.outcome` (accepted / escalated / rejected) |
//! | `reason_code` | `outcome.reason_code` |
//! | `policy_version` | `outcome.policy_version` |
//! | `policy_hash` | `outcome.policy_hash`, 64 hex decoded to 32 bytes |
//! | `region` | `region` |
//! | `decided_at_unix_ms` | `decided_at_unix_ms` |
//! | `request_digest` | `canonical_digest` (32 bytes), as svc-verify recorded it |
//!
//! A decision record that cannot be mapped (no outcome, an unknown outcome kind, a malformed
//! policy hash or digest, a negative time, a request that does not parse or names another
//! `pcs_id`, an entry over 65,535 bytes) is logged, counted in
//! `flk_audit_skipped_records_total{reason="bad_record"}` and skipped; the cursor moves past it.
//! A request whose canonical digest differs from `canonical_digest` is logged as received
//! (both values are in the entry) and counted in `flk_audit_digest_mismatches_total`.
//!
//! # Invariants
//!
//! * **OneLeafPerDecision** — a `(tenant_id, pcs_id)` is in the log at most once: a batch's
//!   keys are checked against the index under the single writer lock, and the index always
//!   covers the log before a batch is checked ([`ledger`] module docs).
//! * **IndexCoversLog** — the index knows every entry below its `indexed_size`, and
//!   `indexed_size <= log size`; on start (and after a failed batch) the log above
//!   `indexed_size` is re-indexed from the stored entries.
//! * **CursorBehindLog** — the cursor only names records whose entries are durable in the log
//!   (it is written last), so a restart redelivers, never skips.
//! * **CheckpointCovered** (flk-tlog) — a published checkpoint only covers durable tiles.
//!
//! Checkpoint cadence: every batch that appends entries publishes a signed checkpoint, and a
//! received decision waits at most `checkpoint_interval_ms` before its batch is integrated
//! (sooner when the batch fills, or on `PublishCheckpoint`).

pub mod anchoring;
pub mod config;
pub mod cursor;
pub mod error;
pub mod feed;
pub mod grpc;
pub mod http;
pub mod index;
pub mod keys;
pub mod ledger;
pub mod mapping;
pub mod metrics;
pub mod siem;

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context as _;
use flk_proto::v1::audit_service_server::AuditServiceServer;
use prometheus::Registry;
use tokio::net::TcpListener;

pub use config::AuditConfig;
pub use error::AuditError;
use flk_runtime::feed::{FeedConsumer, FeedControl, FeedSettings, FeedWiring};
use flk_runtime::security::ServerSecurity;
pub use ledger::Ledger;
use metrics::AuditMetrics;

/// Client facade for svc-audit.
pub use flk_runtime::client::AuditClient;

/// How long `PublishCheckpoint` waits for the integrator.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `AnchorCheckpoint` waits for an anchoring round.
const ANCHOR_TIMEOUT: Duration = Duration::from_secs(120);

/// What the handlers share.
pub(crate) struct Shared {
    ledger: Arc<Ledger>,
    registry: Registry,
    /// Set once the consumer runs ([`Service::serve`]).
    feed: OnceLock<FeedControl>,
    /// The anchor journal.
    anchors: Arc<anchoring::AnchorStore>,
    /// Set once the anchoring task runs (never with `anchor.strategy = "none"`).
    anchoring: OnceLock<anchoring::AnchorControl>,
}

impl Shared {
    fn feed_connected(&self) -> bool {
        self.feed.get().is_some_and(FeedControl::connected)
    }

    async fn anchor_now(&self) -> Result<anchoring::Round, AuditError> {
        match self.anchoring.get() {
            Some(a) => a.anchor_now(ANCHOR_TIMEOUT).await,
            None => Err(AuditError::AnchoringDisabled),
        }
    }

    async fn publish(&self) -> Result<(), AuditError> {
        match self.feed.get() {
            Some(feed) => feed
                .flush(PUBLISH_TIMEOUT)
                .await
                .map_err(|_| AuditError::Busy(PUBLISH_TIMEOUT)),
            None => Err(AuditError::Busy(Duration::ZERO)),
        }
    }
}

/// An opened svc-audit: log recovered and re-indexed, not yet consuming or serving.
pub struct Service {
    shared: Arc<Shared>,
    metrics: AuditMetrics,
    settings: FeedSettings,
    /// The feed's source and metrics (`flk up` hands in its in-process fan-out).
    feed_wiring: FeedWiring,
    security: ServerSecurity,
    anchor_cfg: anchoring::AnchorConfig,
    anchor_strategy: anchoring::Effective,
    siem_cfg: siem::SiemConfig,
    siem_sinks: Vec<siem::ResolvedSink>,
    siem_metrics: siem::SiemMetrics,
    data_dir: std::path::PathBuf,
    origin: String,
}

impl Service {
    /// Loads (or generates) the log key, opens the ledger in the data directory (recovering
    /// the log and re-indexing what a crash left unindexed).
    pub async fn open(cfg: &AuditConfig) -> anyhow::Result<Service> {
        cfg.validate()?;
        // Secrets first: a sink without its token is a startup error, before anything opens.
        let siem_sinks = cfg.siem.resolve(|k| std::env::var(k).ok())?;
        let registry = Registry::new();
        let metrics = AuditMetrics::register(&registry)?;
        let siem_metrics = siem::SiemMetrics::register(&registry)?;
        let key_path = cfg.key_path();
        let generate_as = cfg.log_key_file.is_none().then(|| cfg.origin.clone());
        let (data_dir, origin, sync, m) = (
            cfg.data_dir.clone(),
            cfg.origin.clone(),
            cfg.sync.mode(),
            metrics.clone(),
        );
        let postgres = match cfg.storage {
            config::StorageSetting::Embedded => None,
            config::StorageSetting::Postgres => cfg.postgres_url.clone(),
        };
        let ledger = tokio::task::spawn_blocking(move || {
            let signer = keys::load_or_generate(&key_path, generate_as.as_deref())?;
            match postgres {
                // On a blocking thread: the store drives its own runtime (flk_tlog::PgStore).
                Some(url) => {
                    let store =
                        flk_tlog::PgStore::open(&url).map_err(|e| AuditError::Log(e.into()))?;
                    Ledger::open_with_store(&data_dir, Box::new(store), &origin, signer, m)
                }
                None => Ledger::open(&data_dir, &origin, signer, sync, m),
            }
        })
        .await?
        .with_context(|| format!("cannot open the audit log in {}", cfg.data_dir.display()))?;
        let peer = flk_runtime::client::Peer::resolve(&cfg.peer, |k| std::env::var(k).ok())
            .context("peer settings")?;
        let security = ServerSecurity::resolve(&cfg.tls, &cfg.auth, &cfg.data_dir, |k| {
            std::env::var(k).ok()
        })?;
        let settings = FeedSettings {
            verify_url: cfg.verify_url.clone(),
            peer,
            from_seq: ledger.cursor().saturating_add(1),
            batch_interval: cfg.checkpoint_interval(),
            batch_max: cfg.batch_max_entries,
            retry_initial: Duration::from_millis(cfg.reconnect_initial_ms),
            retry_max: Duration::from_millis(cfg.reconnect_max_ms),
        };
        ledger.set_burst_detection(
            cfg.siem.signature_burst_threshold,
            cfg.siem.signature_burst_window_ms,
        );
        let ledger = Arc::new(ledger);
        // The anchor journal, and the strategy in effect recorded in the log when it changed
        // (see the `anchoring` module docs).
        let anchor_strategy = anchoring::effective(&cfg.anchor)?;
        let (l, dir, acfg, eff) = (
            ledger.clone(),
            cfg.data_dir.clone(),
            cfg.anchor.clone(),
            anchor_strategy.clone(),
        );
        let anchors = tokio::task::spawn_blocking(move || {
            let store = anchoring::AnchorStore::open(&dir)?;
            anchoring::record_strategy(&l, &store, &acfg, &eff)?;
            Ok::<_, AuditError>(store)
        })
        .await?
        .context("cannot open the anchor journal")?;
        for a in anchors.list() {
            metrics.anchored_up_to(a.record.checkpoint_size);
        }
        Ok(Service {
            shared: Arc::new(Shared {
                ledger,
                registry,
                feed: OnceLock::new(),
                anchors: Arc::new(anchors),
                anchoring: OnceLock::new(),
            }),
            metrics,
            settings,
            feed_wiring: FeedWiring::default(),
            security,
            anchor_cfg: cfg.anchor.clone(),
            anchor_strategy,
            siem_cfg: cfg.siem.clone(),
            siem_sinks,
            siem_metrics,
            data_dir: cfg.data_dir.clone(),
            origin: cfg.origin.clone(),
        })
    }

    /// The ledger (for tests and embedding).
    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.shared.ledger
    }

    /// The anchor journal (for tests and embedding).
    pub fn anchors(&self) -> &Arc<anchoring::AnchorStore> {
        &self.shared.anchors
    }

    /// The port's security, as resolved at open.
    pub fn security(&self) -> &ServerSecurity {
        &self.security
    }

    /// Replaces the port's security (`flk up` and tests, which configure it in code).
    pub fn set_security(&mut self, security: ServerSecurity) {
        self.security = security;
    }

    /// Replaces the credentials towards svc-verify.
    pub fn set_peer(&mut self, peer: flk_runtime::client::Peer) {
        self.settings.peer = peer;
    }

    /// Where the outcome feed comes from and where its metrics go (`flk up`: its in-process
    /// fan-out and shared metrics; by default svc-verify's `Subscribe` and this registry).
    pub fn set_feed(&mut self, wiring: FeedWiring) {
        self.feed_wiring = wiring;
    }

    /// The metrics registry.
    pub fn registry(&self) -> &Registry {
        &self.shared.registry
    }

    /// Consumes the feed and serves gRPC and HTTP on `listener` until `shutdown` resolves.
    /// The consumer stops with it (records received but not integrated are redelivered on the
    /// next start).
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let anchorer = anchoring::AnchorHandle::start(
            &self.anchor_cfg,
            &self.anchor_strategy,
            self.shared.ledger.clone(),
            self.shared.anchors.clone(),
            self.metrics.clone(),
        )?;
        if let Some(a) = &anchorer {
            let _ = self.shared.anchoring.set(a.control());
        }
        let siem = siem::SiemStage::start(
            &self.siem_cfg,
            self.siem_sinks,
            &self.data_dir,
            &self.origin,
            self.shared.ledger.clone(),
            self.shared.anchors.clone(),
            self.siem_metrics,
        )?;
        let wiring = self.feed_wiring.or_metrics_in(&self.shared.registry)?;
        let feed = FeedConsumer::start_with(
            self.settings,
            wiring,
            "audit",
            Arc::new(feed::AuditSink {
                ledger: self.shared.ledger.clone(),
                metrics: self.metrics,
            }),
        );
        let _ = self.shared.feed.set(feed.control());
        let grpc = tonic::service::Routes::new(AuditServiceServer::new(grpc::AuditGrpc::new(
            self.shared.clone(),
        )));
        let router = grpc
            .into_axum_router()
            .merge(http::routes(self.shared.clone()));
        let result = flk_runtime::server::serve(listener, router, &self.security, shutdown).await;
        drop(siem);
        drop(anchorer);
        drop(feed);
        let ledger = self.shared.ledger.clone();
        match tokio::task::spawn_blocking(move || ledger.sync_index()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot make the index durable at shutdown"),
            Err(e) => tracing::warn!(error = %e, "index sync task failed"),
        }
        result.context("audit server failed")
    }
}

/// Opens and serves until Ctrl-C / SIGTERM (the binary's whole job).
pub async fn run(cfg: AuditConfig) -> anyhow::Result<()> {
    let service = Service::open(&cfg).await?;
    let listener = TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    let cp = service.ledger().checkpoint();
    println!(
        "svc-audit listening on http://{addr} (grpc; REST /v1/audit/*; /health /ready /metrics)"
    );
    println!("data dir: {}", cfg.data_dir.display());
    println!("outcome feed: {}", cfg.verify_url);
    if service.security.mutual {
        println!("clients: mTLS (certificates signed by tls.client_ca)");
    } else if let Some(path) = &service.security.generated_token {
        println!("clients: bearer token in {}", path.display());
    }
    println!("log verifier key: {}", cp.verifier_key);
    println!("log size: {} entries", cp.size);
    service.serve(listener, shutdown_signal()).await
}

/// Resolves on Ctrl-C or SIGTERM.
pub use flk_runtime::shutdown::signal as shutdown_signal;
