//! svc-crr: cross-region replication. Ships this region's decisions to the peer regions its
//! tenants' policies name, applies what peers ship through svc-verify (re-verified, first
//! write wins), finds divergence with per-tenant Merkle trees and repairs it.
//!
//! * [`ship`]: one shipper per peer tails this region's outcome feed from the watermark the
//!   peer acknowledged, keeps the records the policies send there (decided here only: nothing
//!   is forwarded), orders a window by tenant priority and ships batches over a
//!   `ReplicationService.Ship` stream; each acknowledgement moves the persisted watermark.
//! * [`grpc`]: the receiving side applies each batch through svc-verify's
//!   `ReplicaApplyService` (signature re-verified with the tenant's keys, first write wins,
//!   origin region and decision time kept) before acknowledging it, and serves the tree
//!   comparison and the admin RPCs.
//! * [`store`] + [`merkle`]: the tree of every decision this region holds (its own and
//!   replicated ones), fed by the outcome feed.
//! * [`reconcile`]: anti-entropy rounds with every peer and the repair proposals.
//! * [`http`]: `/v1/crr/*` REST, `/health`, `/ready`, `/metrics`.
//!
//! `main.rs` only parses config and calls [`run`]; `flk up` and tests call [`Service::open`]
//! and [`Service::serve`] with a listener bound to port 0.

pub mod config;
pub mod grpc;
pub mod http;
pub mod merkle;
pub mod metrics;
pub mod policy;
pub mod reconcile;
pub mod ship;
pub mod store;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use flk_proto::v1;
use flk_proto::v1::replica_apply_service_client::ReplicaApplyServiceClient;
use flk_runtime::client::{EndpointOptions, Peer};
use flk_runtime::feed::{FeedConsumer, FeedSettings, FeedSink, FeedSource, FeedWiring, GrpcSource};
use flk_runtime::security::{PeerSettings, ServerSecurity};
use prometheus::Registry;
use sha2::{Digest as _, Sha256};
use tokio::net::TcpListener;

pub use config::CrrConfig;
use metrics::Metrics;
use policy::{PolicySet, PolicySpec};
use store::{Store, TreeUpdate};

/// The outcome digest of a decision: what two regions must agree on for a key. Covers the
/// signed content (canonical digest), the decision (outcome, reason, policy) and its time;
/// not the region that holds the copy.
pub fn outcome_digest(rec: &v1::FeedRecord) -> merkle::Digest {
    let none = v1::Outcome::default();
    let o = rec.outcome.as_ref().unwrap_or(&none);
    let mut h = Sha256::new();
    h.update(b"flk-crr/outcome\0");
    h.update((rec.canonical_digest.len() as u32).to_be_bytes());
    h.update(&rec.canonical_digest);
    h.update(o.outcome.to_be_bytes());
    for s in [&o.reason_code, &o.policy_version, &o.policy_hash] {
        h.update((s.len() as u32).to_be_bytes());
        h.update(s.as_bytes());
    }
    h.update(rec.decided_at_unix_ms.to_be_bytes());
    h.finalize().into()
}

/// Wall-clock milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// What the status shows of one peer link.
#[derive(Debug, Clone, Default)]
pub struct LinkState {
    pub connected: bool,
    /// What the peer acknowledged of this region's feed.
    pub acked: u64,
    /// Windows shipped and not yet acknowledged, in order: each one's last feed seq and the
    /// decision time of its oldest record (kept across reconnections: they are re-shipped).
    pub pending: std::collections::VecDeque<(u64, Option<i64>)>,
    /// When the peer last acknowledged a window (or the link was set up).
    pub progress_ms: i64,
    pub last_error: Option<String>,
    /// Times of recent shipping errors (the last hour), for the health gate.
    pub errors: std::collections::VecDeque<i64>,
    /// The region the peer says it is (from `Hello`).
    pub answered_as: Option<String>,
}

impl LinkState {
    /// Decision time of the oldest record shipped and not yet acknowledged.
    pub fn oldest_unacked_ms(&self) -> Option<i64> {
        self.pending.iter().filter_map(|(_, t)| *t).min()
    }
}

/// One configured peer.
pub struct Link {
    pub region: String,
    pub url: String,
    pub state: Mutex<LinkState>,
}

/// What every part of the service shares.
pub struct Core {
    pub cfg: CrrConfig,
    pub store: Store,
    pub metrics: Metrics,
    pub policies: RwLock<PolicySet>,
    pub links: Vec<Arc<Link>>,
    /// Credentials towards peer regions (mTLS or the peer token).
    pub peer_client: Peer,
    /// This region's svc-verify (`ReplicaApplyService`).
    pub verify: ReplicaApplyServiceClient<flk_runtime::client::Channel>,
    /// Where shippers read this region's feed.
    pub feed: Arc<dyn FeedSource>,
    /// Newest seq of this region's feed seen.
    pub head: AtomicU64,
    /// The last divergence found with each peer (for status and the health gate).
    pub last_divergence: Mutex<BTreeMap<String, usize>>,
    /// One reconciliation at a time.
    pub reconciling: tokio::sync::Mutex<()>,
    /// Turned true when the server starts shutting down: peers' `Ship` streams then end, so
    /// that the graceful shutdown does not wait on callers that never hang up.
    pub closing: tokio::sync::watch::Sender<bool>,
}

impl Core {
    pub fn link(&self, region: &str) -> Option<&Arc<Link>> {
        self.links.iter().find(|l| l.region == region)
    }

    pub fn policy_set(&self) -> PolicySet {
        self.policies
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the run-time policies (validated), persisted so that a restart keeps them.
    pub fn set_policies(&self, specs: Vec<PolicySpec>) -> Result<(), String> {
        for (i, s) in specs.iter().enumerate() {
            s.validate().map_err(|m| format!("policies[{i}]: {m}"))?;
        }
        let json = serde_json::to_string(&specs).map_err(|e| e.to_string())?;
        self.store
            .set_policies(&json)
            .map_err(|e| format!("cannot persist the policies: {e}"))?;
        self.policies
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .specs = specs;
        Ok(())
    }

    /// Retention horizon: keys decided before it are not divergence.
    pub fn horizon_ms(&self) -> i64 {
        match self.cfg.retention_ms() {
            Ok(Some(r)) => now_ms().saturating_sub(r),
            _ => i64::MIN,
        }
    }
}

/// The feed consumer that keeps the tree: every decision this region holds.
struct TreeSink {
    core: Arc<Core>,
}

impl FeedSink for TreeSink {
    fn apply(&self, batch: &[&v1::FeedRecord]) -> Result<(), String> {
        let updates: Vec<TreeUpdate> = batch
            .iter()
            .filter(|r| {
                matches!(
                    v1::RecordKind::try_from(r.kind),
                    Ok(v1::RecordKind::Decision | v1::RecordKind::Reconciled)
                ) && r.outcome.is_some()
            })
            .map(|r| TreeUpdate {
                leaf: merkle::LeafUpdate {
                    tenant_id: r.tenant_id.clone(),
                    pcs_id: r.pcs_id.clone(),
                    digest: outcome_digest(r),
                    decided_at_ms: r.decided_at_unix_ms,
                },
                origin: (!r.region.is_empty() && r.region != self.core.cfg.region)
                    .then(|| r.region.clone()),
            })
            .collect();
        let last = batch.iter().map(|r| r.seq).max().unwrap_or(0);
        self.core
            .store
            .apply_tree(&updates, last)
            .map_err(|e| e.to_string())?;
        self.core.head.fetch_max(last, Ordering::Relaxed);
        Ok(())
    }

    fn received(&self, seq: u64) {
        self.core.head.fetch_max(seq, Ordering::Relaxed);
    }
}

/// An opened svc-crr, not yet serving.
pub struct Service {
    core: Arc<Core>,
    registry: Registry,
    security: ServerSecurity,
    wiring: FeedWiring,
}

impl Service {
    /// Opens the store and resolves credentials. A region with peers and neither mTLS nor a
    /// peer token refuses to start, naming the settings.
    pub async fn open(
        cfg: &CrrConfig,
        wiring: FeedWiring,
        vars: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Service> {
        cfg.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
        let token = cfg.peer_token(&vars);
        if !cfg.peers.is_empty() && token.is_none() && !cfg.mtls() {
            anyhow::bail!(
                "svc-crr has peers but no peer credentials: set `peer_token_env` (default variable {}) or `peer_token`, or mTLS in `[crr.tls]` (cert, key, client_ca)",
                config::env::PEER_TOKEN
            );
        }
        let dir = cfg.data_dir.clone();
        let store = tokio::task::spawn_blocking(move || Store::open(&dir))
            .await?
            .context("cannot open the crr store")?;
        let registry = Registry::new();
        let metrics = Metrics::register(&registry)?;
        let wiring = wiring.or_metrics_in(&registry)?;

        // The replication port: mTLS when configured, else the peer token.
        let security = if cfg.mtls() {
            let mut s =
                ServerSecurity::resolve(&cfg.tls, &Default::default(), &cfg.data_dir, &vars)?;
            s.token = None;
            s
        } else {
            match &token {
                Some(t) => {
                    let mut s = ServerSecurity::resolve(
                        &cfg.tls,
                        &Default::default(),
                        &cfg.data_dir,
                        &vars,
                    )?;
                    s.token = Some(flk_runtime::security::TokenHash::of(t));
                    s.generated_token = None;
                    s
                }
                // No peers: the port still needs a credential (admin calls): generated.
                None => {
                    ServerSecurity::resolve(&cfg.tls, &Default::default(), &cfg.data_dir, &vars)?
                }
            }
        };
        let peer_client = if cfg.mtls() {
            Peer::resolve(
                &PeerSettings {
                    ca: cfg.tls.client_ca.clone(),
                    cert: cfg.tls.cert.clone(),
                    key: cfg.tls.key.clone(),
                    ..Default::default()
                },
                &vars,
            )?
        } else {
            match &token {
                Some(t) => Peer::with_token(t)?,
                None => Peer::plain(),
            }
        };
        let verify_peer = Peer::resolve(&cfg.peer, &vars)?;
        let verify = ReplicaApplyServiceClient::new(
            verify_peer.connect_lazy(&cfg.verify_url, EndpointOptions::default())?,
        )
        .max_decoding_message_size(64 * 1024 * 1024)
        .max_encoding_message_size(64 * 1024 * 1024);
        let feed: Arc<dyn FeedSource> = match &wiring.source {
            Some(s) => s.clone(),
            None => Arc::new(GrpcSource::new(cfg.verify_url.clone(), verify_peer.clone())),
        };
        let mut specs = cfg.policies.clone();
        if let Some(json) = store.policies()? {
            specs = serde_json::from_str(&json).context("stored run-time policies")?;
            tracing::info!(
                policies = specs.len(),
                "using the run-time policies set through the admin API"
            );
        }
        let policies = PolicySet {
            region: cfg.region.clone(),
            peers: cfg.peers.iter().map(|p| p.region.clone()).collect(),
            default_mode: cfg.default_mode,
            specs,
            labels: cfg.labels.clone(),
        };
        let mut links = Vec::new();
        for p in &cfg.peers {
            let acked = store.ship_acked(&p.region)?;
            links.push(Arc::new(Link {
                region: p.region.clone(),
                url: p.url.clone(),
                state: Mutex::new(LinkState {
                    acked,
                    progress_ms: now_ms(),
                    ..Default::default()
                }),
            }));
        }
        let head = store.tree_cursor()?;
        let core = Arc::new(Core {
            cfg: cfg.clone(),
            store,
            metrics,
            policies: RwLock::new(policies),
            links,
            peer_client,
            verify,
            feed,
            head: AtomicU64::new(head),
            last_divergence: Mutex::new(BTreeMap::new()),
            reconciling: tokio::sync::Mutex::new(()),
            closing: tokio::sync::watch::Sender::new(false),
        });
        Ok(Service {
            core,
            registry,
            security,
            wiring,
        })
    }

    pub fn core(&self) -> &Arc<Core> {
        &self.core
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Where the port's generated token is, when the port has no configured credential.
    pub fn generated_token(&self) -> Option<&std::path::Path> {
        self.security.generated_token.as_deref()
    }

    /// Serves the replication port on `listener` and runs the tree feed, the shippers and
    /// the anti-entropy rounds until `shutdown` resolves.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let core = self.core.clone();
        let from = core.store.tree_cursor()? + 1;
        let settings = FeedSettings {
            verify_url: core.cfg.verify_url.clone(),
            peer: Peer::resolve(&core.cfg.peer, |k| std::env::var(k).ok())?,
            from_seq: from,
            batch_interval: Duration::from_millis(core.cfg.batch_interval_ms.max(1)),
            batch_max: 4096,
            retry_initial: Duration::from_millis(core.cfg.reconnect_initial_ms),
            retry_max: Duration::from_millis(core.cfg.reconnect_max_ms),
        };
        let _tree = FeedConsumer::start_with(
            settings,
            self.wiring.clone(),
            "crr",
            Arc::new(TreeSink { core: core.clone() }),
        );
        let mut tasks = Vec::new();
        for link in &core.links {
            tasks.push(flk_runtime::feed::AbortOnDrop(tokio::spawn(ship::run(
                core.clone(),
                link.clone(),
            ))));
        }
        tasks.push(flk_runtime::feed::AbortOnDrop(tokio::spawn(
            reconcile::run(core.clone()),
        )));
        tasks.push(flk_runtime::feed::AbortOnDrop(tokio::spawn(flush_loop(
            core.clone(),
        ))));
        let grpc = tonic::service::Routes::new(
            v1::replication_service_server::ReplicationServiceServer::new(grpc::CrrGrpc::new(
                core.clone(),
            ))
            .max_decoding_message_size(64 * 1024 * 1024)
            .max_encoding_message_size(64 * 1024 * 1024),
        );
        let router = grpc
            .into_axum_router()
            .merge(http::router(core.clone(), self.registry.clone()));
        let closing = core.clone();
        let shutdown = async move {
            shutdown.await;
            closing.closing.send_replace(true);
        };
        let result = flk_runtime::server::serve(listener, router, &self.security, shutdown).await;
        drop(tasks);
        if let Err(e) = flush(&core).await {
            tracing::error!(error = %e, "svc-crr could not make its last commits durable");
        }
        result.context("svc-crr server failed")
    }
}

async fn flush(core: &Arc<Core>) -> Result<(), String> {
    let core = core.clone();
    tokio::task::spawn_blocking(move || core.store.flush().map_err(|e| e.to_string()))
        .await
        .map_err(|e| e.to_string())?
}

/// Makes the store's lazy commits (tree batches, watermarks) durable every
/// [`FLUSH_INTERVAL`](flk_runtime::embedded_db::FLUSH_INTERVAL) (the most a crash rolls
/// back, all of it re-derivable: see [`store`]), and refreshes the status gauges (lag,
/// backlog, health-gate alerts) once a second, so that a scrape sees them without anyone
/// asking for the status.
async fn flush_loop(core: Arc<Core>) {
    let mut refreshed = tokio::time::Instant::now();
    flk_runtime::embedded_db::flush_every_interval("svc-crr store", || {
        if refreshed.elapsed() >= Duration::from_secs(1) {
            refreshed = tokio::time::Instant::now();
            http::status_doc(&core);
        }
        flush(&core)
    })
    .await;
}

/// Opens and serves until `shutdown` (the binary's path).
pub async fn run(
    cfg: CrrConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let service = Service::open(&cfg, FeedWiring::default(), |k| std::env::var(k).ok()).await?;
    let listener = TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("svc-crr cannot listen on {}", cfg.listen))?;
    tracing::info!(addr = %listener.local_addr()?, region = %cfg.region, "svc-crr listening");
    service.serve(listener, shutdown).await
}
