//! The FLK gateway: the REST contract of PROTOCOL.md section 5 in front of one or more
//! svc-verify replicas. Stateless: it routes each submission by consistent hash of
//! `(tenant_id, pcs_id)` and fails over to the next replica when one cannot be reached.
//!
//! `main.rs` parses config and calls [`serve`] with a bound listener; tests bind port 0.

pub mod audit;
mod auth;
pub mod compliance;
pub mod config;
pub mod grpc;
mod kpi;
mod lanes;
pub mod ring;
pub mod tiering;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use flk_core::OutcomeRecord;
use flk_core::admission::{Admission, Limits};
use flk_proto::transport::TransportError;
use flk_proto::v1::compliance_service_server::ComplianceServiceServer;
use flk_proto::v1::tiering_service_server::TieringServiceServer;
use flk_proto::v1::verify_service_client::VerifyServiceClient;
use flk_proto::v1::verify_service_server::VerifyService;
use flk_proto::v1::verify_service_server::VerifyServiceServer;
use flk_proto::v1::{self, submit_request};
use flk_proto::{ApiError, ErrorKind};
use flk_runtime::client::{AuditClient, EndpointOptions, Peer};
pub use flk_runtime::http::{error_response, json_response};
use flk_runtime::security::TokenHash;
use flk_runtime::tenants::ApiTokens;
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;

use ring::{DEFAULT_VNODES, Ring};

pub use flk_runtime::tls::ServerTls;

use auth::Credentials;

/// Gateway settings.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// svc-verify replicas, as `http://host:port` (`https://host:port` with `upstream_tls`;
    /// an `http://` upstream is then reached over TLS too).
    pub upstreams: Vec<String>,
    /// Largest accepted body (PROTOCOL.md: 1 MiB).
    pub max_body_bytes: usize,
    /// Per-request deadline, at the gateway (tower stack) and towards svc-verify.
    pub request_timeout: Duration,
    /// Deadline for receiving a request body (below `request_timeout`): a client that stalls
    /// mid-body gets 408 `request_timeout` and the connection is closed.
    pub body_timeout: Duration,
    /// Requests in flight above which the gateway sheds load (503 `overloaded`).
    pub max_in_flight: usize,
    /// Optional basic auth for `/metrics` as `(user, password)`.
    pub metrics_auth: Option<(String, String)>,
    /// Per-tenant rate limits and daily quotas, applied before routing (REST and gRPC). A
    /// tenant without an entry is not limited here (svc-verify still applies its own).
    pub limits: HashMap<String, Limits>,
    /// The tenants' API tokens: reads and feedback need one ([`auth`]).
    pub api_tokens: ApiTokens,
    /// The admin token, the only credential that opens `Subscribe` here; `None` refuses it.
    pub admin_token: Option<TokenHash>,
    /// TLS for the gateway's own port (REST over HTTP/1.1 and HTTP/2, gRPC over h2, ALPN
    /// negotiated); with `client_ca`, clients must present a certificate signed by it.
    /// Plain text (HTTP/1.1 and h2c) when `None`.
    pub tls: Option<ServerTls>,
    /// How svc-verify, svc-audit and svc-kpi are reached: the CA to trust, the client
    /// certificate (mTLS), the server name, the bearer token. Plain h2c without a CA.
    pub peer: Peer,
    /// svc-audit's gRPC address, for `/v1/audit/*`; without it those routes answer 503
    /// `audit_unavailable`.
    pub audit_upstream: Option<String>,
    /// svc-kpi's REST base URL (`http://host:port`), for `POST /v1/feedback` and
    /// `GET /v1/kpi/report`; without it those routes answer 503 `kpi_unavailable`.
    pub kpi_upstream: Option<String>,
    /// svc-tiering's gRPC address: `GET /v1/pcs/{pcs_id}` reads the tiered record (with
    /// `X-Flk-Tier`), `GET /v1/pcs/{pcs_id}/body` the submitted bytes, and the public gRPC
    /// port serves `flk.v1.TieringService` ([`tiering`]). Without it, outcomes come from
    /// svc-verify and bodies are 503 `tiering_unavailable`.
    pub tiering_upstream: Option<String>,
    /// Compliance reports for `GET /v1/compliance/report` and `ComplianceService` (admin
    /// token); without it both answer 503 `compliance_unavailable` ([`compliance`]).
    pub compliance: Option<Arc<dyn compliance::ComplianceReports>>,
    /// svc-verify replicas in the gateway's own process (`flk up`), called directly instead of
    /// over HTTP/2; they join the ring beside `upstreams`.
    pub in_process: Vec<InProcessUpstream>,
    /// More checks for `/ready`, each giving named dependencies (`flk up`: svc-verify's outcome
    /// log and dedup store, which a round trip to an in-process replica cannot see).
    pub ready_probes: Vec<ReadyProbe>,
    /// Long-lived upstream `SubmitStream`s per networked replica that carry the unary
    /// submissions (REST and gRPC `Submit`) as stream items (see `lanes`); 0 sends each
    /// submission as a unary call of its own, as is always done for `in_process` replicas.
    pub upstream_streams: usize,
    /// More registries exported on `/metrics` after the gateway's own (e.g. the in-process
    /// services of `flk up`). A metric family already exported by an earlier registry is
    /// skipped, so each family appears once.
    pub extra_registries: Vec<Registry>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            upstreams: vec!["http://127.0.0.1:50051".into()],
            max_body_bytes: 1024 * 1024,
            request_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(5),
            max_in_flight: 4096,
            metrics_auth: None,
            limits: HashMap::new(),
            api_tokens: ApiTokens::default(),
            admin_token: None,
            tls: None,
            peer: Peer::plain(),
            audit_upstream: None,
            kpi_upstream: None,
            tiering_upstream: None,
            compliance: None,
            in_process: Vec::new(),
            ready_probes: Vec::new(),
            upstream_streams: DEFAULT_UPSTREAM_STREAMS,
            extra_registries: Vec::new(),
        }
    }
}

/// Default of [`GatewayConfig::upstream_streams`].
pub const DEFAULT_UPSTREAM_STREAMS: usize = 2;

/// How the gateway reaches an svc-verify replica: a tonic channel (HTTP/2 over TCP, TLS when
/// configured), or the gRPC service of a replica in the same process.
type Transport = tower::util::BoxCloneSyncService<
    axum::http::Request<tonic::body::Body>,
    axum::http::Response<tonic::body::Body>,
    TransportError,
>;

/// What a [`ReadyProbe`] answers: dependencies by name, each `Ok` or the error that makes it
/// unready.
pub type ReadyReport = Vec<(String, Result<(), String>)>;

/// A `/ready` check the gateway runs beside its upstream round trips.
#[derive(Clone)]
pub struct ReadyProbe(
    Arc<dyn Fn() -> futures::future::BoxFuture<'static, ReadyReport> + Send + Sync>,
);

impl ReadyProbe {
    pub fn new(
        probe: impl Fn() -> futures::future::BoxFuture<'static, ReadyReport> + Send + Sync + 'static,
    ) -> ReadyProbe {
        ReadyProbe(Arc::new(probe))
    }
}

impl std::fmt::Debug for ReadyProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReadyProbe")
    }
}

/// How long `/ready` waits for one [`ReadyProbe`] before reporting it unready.
const READY_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// A client of one svc-verify replica, whatever its [`Transport`].
pub(crate) type UpstreamClient = VerifyServiceClient<Transport>;

/// An svc-verify replica in the gateway's own process (`flk up`). Requests still go through
/// the replica's gRPC service (protobuf in, protobuf out, the same handlers and errors as over
/// the network) but skip HTTP/2 framing and the loopback socket, which cost as much CPU as the
/// gateway's own REST handling when everything shares two cores.
#[derive(Clone)]
pub struct InProcessUpstream {
    name: String,
    transport: Transport,
}

impl InProcessUpstream {
    /// `server` is the replica's `VerifyService`, configured as it serves the network (e.g.
    /// its decoding limit); `name` labels it in logs and `/ready`.
    pub fn new<T: VerifyService>(name: impl Into<String>, server: VerifyServiceServer<T>) -> Self {
        let service =
            tower::ServiceExt::<axum::http::Request<tonic::body::Body>>::map_err(server, |never| {
                match never {}
            });
        InProcessUpstream {
            name: name.into(),
            transport: Transport::new(service),
        }
    }
}

impl std::fmt::Debug for InProcessUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcessUpstream")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

struct Upstream {
    name: String,
    client: UpstreamClient,
    /// The shared submission streams, unless submissions go as unary calls.
    lanes: Option<lanes::Lanes>,
    healthy: AtomicBool,
}

impl Upstream {
    fn new(name: String, client: UpstreamClient, streams: usize) -> Upstream {
        Upstream {
            lanes: (streams > 0).then(|| lanes::Lanes::new(client.clone(), streams)),
            name,
            client,
            healthy: AtomicBool::new(true),
        }
    }

    /// Submits `req` to this replica: as an item of a shared stream, or as a unary call when
    /// there are none or it is too large for one.
    async fn submit(&self, req: v1::SubmitRequest) -> Result<v1::Outcome, tonic::Status> {
        match &self.lanes {
            Some(lanes) if lanes::fits(&req) => lanes.submit(req).await,
            _ => {
                let mut client = self.client.clone();
                client
                    .submit(req)
                    .await?
                    .into_inner()
                    .outcome
                    .ok_or_else(|| {
                        ApiError::new(ErrorKind::Internal, "bad_upstream_answer", "empty answer")
                            .into()
                    })
            }
        }
    }
}

/// Gateway state shared by the handlers.
pub struct Gateway {
    upstreams: Vec<Upstream>,
    ring: Ring,
    cfg: GatewayConfig,
    /// Built from `cfg.tls` once, so a bad certificate fails [`Gateway::new`], not `serve`.
    server_tls: Option<Arc<flk_runtime::tls::ServerConfig>>,
    admission: HashMap<String, Admission>,
    /// svc-audit, when configured.
    audit: Option<AuditClient>,
    /// svc-tiering, when configured.
    tiering: Option<flk_runtime::client::TieringClient>,
    /// svc-kpi, when configured.
    kpi: Option<kpi::KpiUpstream>,
    registry: Registry,
    ingest: IntCounter,
    responses: IntCounterVec,
    refused: IntCounterVec,
}

impl Gateway {
    /// Builds lazy channels to every upstream (connections are made on first use) and loads
    /// the TLS material of `cfg` (errors name the file).
    pub fn new(mut cfg: GatewayConfig) -> anyhow::Result<Arc<Gateway>> {
        if cfg.upstreams.is_empty() && cfg.in_process.is_empty() {
            anyhow::bail!("the gateway needs at least one svc-verify upstream");
        }
        let server_tls = match &cfg.tls {
            Some(tls) => Some(flk_runtime::tls::server_config(tls)?),
            None => None,
        };
        cfg.upstreams = cfg
            .upstreams
            .iter()
            .map(|u| cfg.peer.url(u))
            .collect::<anyhow::Result<_>>()?;
        let authorization = cfg.peer.authorization();
        let mut upstreams = Vec::with_capacity(cfg.upstreams.len() + cfg.in_process.len());
        for u in &cfg.upstreams {
            let channel = cfg.peer.endpoint(u, UPSTREAM_CHANNEL)?.connect_lazy();
            let auth = authorization.clone();
            let channel = tower::ServiceExt::map_request(
                channel,
                move |mut req: axum::http::Request<tonic::body::Body>| {
                    if let Some(v) = &auth {
                        req.headers_mut().insert(header::AUTHORIZATION, v.clone());
                    }
                    req
                },
            );
            let transport = tower::ServiceExt::map_err(channel, TransportError::new);
            upstreams.push(Upstream::new(
                u.clone(),
                VerifyServiceClient::new(Transport::new(transport)),
                cfg.upstream_streams,
            ));
        }
        for local in &cfg.in_process {
            // No lanes in process: a unary call there has no HTTP/2 request to save, and runs
            // on the caller's task rather than on a lane's (measured in docs/BENCHMARKS.md).
            upstreams.push(Upstream::new(
                local.name.clone(),
                VerifyServiceClient::new(local.transport.clone()),
                0,
            ));
        }
        let names: Vec<String> = upstreams.iter().map(|u| u.name.clone()).collect();
        let audit = match &cfg.audit_upstream {
            Some(u) => Some(AuditClient::new(
                cfg.peer.connect_lazy(u, UPSTREAM_CHANNEL)?,
            )),
            None => None,
        };
        let tiering = match &cfg.tiering_upstream {
            Some(u) => Some(flk_runtime::client::TieringClient::new(
                cfg.peer.connect_lazy(u, UPSTREAM_CHANNEL)?,
            )),
            None => None,
        };
        let kpi = match &cfg.kpi_upstream {
            Some(u) => Some(kpi::KpiUpstream::new(u, &cfg.peer, cfg.request_timeout)?),
            None => None,
        };
        let ring = Ring::new(&names, DEFAULT_VNODES);
        let mut admission = HashMap::new();
        for (tenant, limits) in &cfg.limits {
            let a = Admission::new(*limits)
                .map_err(|e| anyhow::anyhow!("limits of tenant {tenant:?}: {e}"))?;
            if !a.is_unlimited() {
                admission.insert(tenant.clone(), a);
            }
        }
        let registry = Registry::new();
        let ingest = IntCounter::new(
            "flk_ingest_total",
            "submissions admitted past admission control, all tenants",
        )?;
        let responses = IntCounterVec::new(
            Opts::new(
                "flk_gateway_responses_total",
                "REST responses by route and status",
            ),
            &["route", "status"],
        )?;
        let refused = IntCounterVec::new(
            Opts::new(
                "flk_gateway_refused_total",
                "submissions the gateway's admission control refused, by code",
            ),
            &["code"],
        )?;
        registry.register(Box::new(ingest.clone()))?;
        registry.register(Box::new(responses.clone()))?;
        registry.register(Box::new(refused.clone()))?;
        Ok(Arc::new(Gateway {
            upstreams,
            ring,
            cfg,
            server_tls,
            admission,
            audit,
            tiering,
            kpi,
            registry,
            ingest,
            responses,
            refused,
        }))
    }

    /// The metric families of the gateway's registry, then of each extra registry, each
    /// family name once (the first registry to export a name wins: e.g. svc-verify's own
    /// `flk_ingest_total` is hidden behind the gateway's in `flk up`).
    fn gather_metrics(&self) -> Vec<prometheus::proto::MetricFamily> {
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for registry in std::iter::once(&self.registry).chain(&self.cfg.extra_registries) {
            for family in registry.gather() {
                if seen.insert(family.name().to_owned()) {
                    out.push(family);
                }
            }
        }
        out
    }

    /// Admission control of `tenant` (token bucket, then daily quota).
    fn admit_api(&self, tenant: &str) -> Result<(), ApiError> {
        let Some(a) = self.admission.get(tenant) else {
            return Ok(());
        };
        a.admit(std::time::Instant::now(), time::OffsetDateTime::now_utc())
            .map_err(|r| {
                self.refused.with_label_values(&[r.code()]).inc();
                ApiError::refused(tenant, &r)
            })
    }

    fn admit(&self, tenant: &str) -> Result<(), tonic::Status> {
        self.admit_api(tenant).map_err(tonic::Status::from)
    }

    /// The replicas for `(tenant, pcs_id)` in ring order, healthy ones first (unhealthy ones
    /// are still tried last: the health flag may be stale).
    fn ordered_candidates(&self, tenant: &str, pcs_id: &str) -> Vec<usize> {
        if self.upstreams.len() == 1 {
            // Nothing to choose (and no key to hash: see `routing_key`).
            return vec![0];
        }
        let (mut healthy, unhealthy): (Vec<usize>, Vec<usize>) = self
            .ring
            .candidates(tenant, pcs_id)
            .into_iter()
            .partition(|&i| self.upstreams[i].healthy.load(Ordering::Relaxed));
        healthy.extend(unhealthy);
        healthy
    }

    /// The `pcs_id` to route by, from `find`; with one replica there is nothing to choose, so
    /// the body is not scanned for it.
    fn routing_key(&self, find: impl FnOnce() -> String) -> String {
        if self.upstreams.len() > 1 {
            find()
        } else {
            String::new()
        }
    }

    /// Marks `replica` unhealthy if `status` is a transport failure.
    fn note_failure(&self, replica: usize, status: &tonic::Status) -> bool {
        let transport = is_transport_failure(status);
        if transport {
            let up = &self.upstreams[replica];
            tracing::warn!(upstream = %up.name, error = %status.message(), "upstream unreachable, failing over");
            up.healthy.store(false, Ordering::Relaxed);
        }
        transport
    }

    /// Calls `f` on the owner of `(tenant, pcs_id)`, failing over to the next replicas when
    /// one cannot be reached (a transport failure, not an answer from the service).
    async fn route<'a, T, F, Fut>(&'a self, tenant: &str, pcs_id: &str, f: F) -> Result<T, ApiError>
    where
        F: Fn(&'a Upstream) -> Fut,
        Fut: Future<Output = Result<T, tonic::Status>>,
    {
        for i in self.ordered_candidates(tenant, pcs_id) {
            let up = &self.upstreams[i];
            match f(up).await {
                Ok(v) => {
                    up.healthy.store(true, Ordering::Relaxed);
                    return Ok(v);
                }
                Err(status) if self.note_failure(i, &status) => {}
                Err(status) => return Err(ApiError::from_status(&status)),
            }
        }
        Err(no_replica())
    }
}

/// The upstream channels: no per-call timeout there (the tower stack's deadline covers unary
/// calls, answering 504 `timeout`, and stream calls have none); the submission lanes stay open
/// for the gateway's lifetime, and pings find a peer that vanished without closing the
/// connection (its items then fail over).
const UPSTREAM_CHANNEL: EndpointOptions = EndpointOptions {
    connect_timeout: Duration::from_secs(2),
    keep_alive_interval: Duration::from_secs(30),
    keep_alive_timeout: Duration::from_secs(10),
    keep_alive_while_idle: false,
};

/// Every replica failed at the transport level.
fn no_replica() -> ApiError {
    ApiError::new(
        ErrorKind::Unavailable,
        "upstream_unavailable",
        "no svc-verify replica is reachable",
    )
    .with_retry_after(Duration::from_secs(1))
}

/// A status the transport produced (no service answered): connection refused, reset, timeout.
fn is_transport_failure(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled
    ) && status
        .metadata()
        .get(flk_proto::error::ERROR_CODE_METADATA)
        .is_none()
}

/// The routes: REST of PROTOCOL.md section 5, and `flk.v1.VerifyService` over gRPC on the
/// same port (HTTP/2; REST also over HTTP/1.1).
pub fn routes(gw: Arc<Gateway>) -> axum::Router {
    let rest = axum::Router::new()
        .route("/v1/pcs/submit", post(submit))
        .route("/v1/pcs/{pcs_id}", get(get_outcome))
        .route("/v1/pcs/{pcs_id}/body", get(tiering::body))
        .route(
            "/health",
            get(|| async { ([(header::CONTENT_TYPE, "text/plain")], "OK") }),
        )
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/v1/audit/checkpoint", get(audit::checkpoint))
        .route("/v1/audit/proof/{pcs_id}", get(audit::proof))
        .route("/v1/audit/consistency", get(audit::consistency))
        .route("/v1/feedback", post(kpi::feedback))
        .route("/v1/kpi/report", get(kpi::report))
        .route("/v1/compliance/report", get(compliance::report))
        // The submit handler enforces the body limit itself so its 413 carries the contract's
        // JSON error body; other routes take no body.
        .layer(DefaultBodyLimit::disable())
        .with_state(gw.clone());
    let grpc = tonic::service::Routes::new(
        VerifyServiceServer::new(grpc::GatewayGrpc::new(gw.clone()))
            .max_decoding_message_size(4 * 1024 * 1024),
    )
    .add_service(TieringServiceServer::new(tiering::GatewayTiering::new(
        gw.clone(),
    )))
    .add_service(ComplianceServiceServer::new(
        compliance::GatewayCompliance::new(gw),
    ))
    .into_axum_router();
    grpc.merge(rest)
        .fallback(unrouted)
        .method_not_allowed_fallback(method_not_allowed)
}

/// A request no route matches: a gRPC caller gets `UNIMPLEMENTED` (as from any gRPC server),
/// anyone else the JSON 404 of the REST contract (never a gRPC answer to an HTTP/1.1 client).
async fn unrouted(
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    if flk_runtime::http::is_grpc(&headers) {
        return tonic::Status::unimplemented(format!("unknown method {}", uri.path()))
            .into_http::<axum::body::Body>();
    }
    error_response(&ApiError::new(
        ErrorKind::NotFound,
        "not_found",
        format!("no route for {method} {}", uri.path()),
    ))
}

/// A known path with a method it does not take: 405 with the JSON error body (axum adds
/// the `Allow` header).
async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    error_response(&ApiError::new(
        ErrorKind::MethodNotAllowed,
        "method_not_allowed",
        format!("{} does not take {method}", uri.path()),
    ))
}

/// The routes inside the gateway's one tower stack, outermost first:
///
/// 1. `TraceLayer`: a `tracing` span per request (method, path, status, latency; `RUST_LOG`
///    `tower_http=debug` shows them).
/// 2. `HandleErrorLayer`: turns the layers' errors into protocol answers: overload is 503
///    `overloaded` with `Retry-After: 1`, a deadline is 504 `timeout` (REST JSON body, or the
///    gRPC status `UNAVAILABLE` / `DEADLINE_EXCEEDED` with the same error code).
/// 3. `LoadShedLayer`: refuses at once, instead of queueing, when the concurrency limit is
///    full.
/// 4. `ConcurrencyLimitLayer`: at most [`GatewayConfig::max_in_flight`] requests in flight
///    (a streaming call counts until its answers start).
/// 5. `TimeoutLayer`: [`GatewayConfig::request_timeout`] for a whole request (until the
///    answer's head for streams).
pub fn router(gw: Arc<Gateway>) -> axum::Router {
    let max_in_flight = gw.cfg.max_in_flight;
    let timeout = gw.cfg.request_timeout;
    // One stack around the whole router (not `Router::layer`, which gives every route its own
    // layer instance and so its own concurrency limit).
    let stack = tower::ServiceBuilder::new()
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .layer(axum::error_handling::HandleErrorLayer::new(stack_error))
        .load_shed()
        .concurrency_limit(max_in_flight)
        .timeout(timeout)
        .service(routes(gw));
    axum::Router::new().fallback_service(stack)
}

/// Answers an error of the tower stack in the caller's protocol.
async fn stack_error(headers: HeaderMap, err: tower::BoxError) -> Response {
    let e = if err.is::<tower::load_shed::error::Overloaded>() {
        ApiError::new(
            ErrorKind::Unavailable,
            "overloaded",
            "the gateway is at its concurrency limit",
        )
        .with_retry_after(Duration::from_secs(1))
    } else if err.is::<tower::timeout::error::Elapsed>() {
        ApiError::new(
            ErrorKind::DeadlineExceeded,
            "timeout",
            "the request took longer than the gateway's timeout",
        )
    } else {
        ApiError::new(ErrorKind::Internal, "internal", err.to_string())
    };
    flk_runtime::http::error_in_protocol(&headers, e)
}

/// Serves REST and gRPC on `listener` until `shutdown` resolves: through TLS when the
/// gateway was configured with [`GatewayConfig::tls`], else plain HTTP/1.1 and h2c.
pub async fn serve(
    listener: TcpListener,
    gw: Arc<Gateway>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    use axum::serve::ListenerExt as _;
    let router = router(gw.clone());
    match &gw.server_tls {
        Some(tls) => {
            // Accepts with TCP_NODELAY and hands over only completed handshakes.
            let listener = flk_runtime::tls::TlsListener::new(listener, tls.clone())?;
            axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await?;
        }
        None => {
            // Small answers must not wait on Nagle's algorithm.
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await?;
        }
    }
    Ok(())
}

fn outcome_response(o: &v1::Outcome) -> Response {
    match OutcomeRecord::try_from(o) {
        Ok(rec) => {
            let status = StatusCode::from_u16(rec.http_status()).unwrap_or(StatusCode::OK);
            json_response(status, rec.to_json_body().to_string())
        }
        Err(e) => error_response(&ApiError::new(
            ErrorKind::Internal,
            "bad_upstream_answer",
            e.to_string(),
        )),
    }
}

/// Only the `pcs_id` of a body, for routing; anything unreadable routes by tenant alone and
/// gets its precise 400 from svc-verify.
fn routing_pcs_id(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Only {
        pcs_id: Option<String>,
    }
    serde_json::from_slice::<Only>(body)
        .ok()
        .and_then(|o| o.pcs_id)
        .unwrap_or_default()
}

async fn submit(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let body = read_body(&gw.cfg, &headers, body).await;
    let resp = match (body, gw.submit_tenant(Credentials::of_headers(&headers))) {
        (_, Err(e)) => error_response(&e),
        (Ok(body), Ok(tenant)) => submit_body(&gw, tenant, body).await,
        (Err(e), Ok(_)) => {
            let mut resp = error_response(&e);
            if e.kind == ErrorKind::RequestTimeout {
                // The rest of a stalled body may never come: do not read it as a next request.
                resp.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            resp
        }
    };
    gw.responses
        .with_label_values(&["submit", resp.status().as_str()])
        .inc();
    resp
}

/// Reads a request body of at most `max_body_bytes` within `body_timeout`: a declared or
/// actual size over the limit is 413, a client that stalls is 408, a body the HTTP layer
/// cannot decode (broken chunked encoding, a connection closed mid-body) is 400.
async fn read_body(
    cfg: &GatewayConfig,
    headers: &HeaderMap,
    body: axum::body::Body,
) -> Result<Bytes, ApiError> {
    let limit = cfg.max_body_bytes;
    let too_large = || {
        ApiError::new(
            ErrorKind::PayloadTooLarge,
            "payload_too_large",
            format!("body is over the limit of {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    // Reading stops one byte past the limit (chunked bodies have no declared length).
    match tokio::time::timeout(cfg.body_timeout, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) if is_length_limit(&e) => Err(too_large()),
        Ok(Err(e)) => Err(ApiError::new(
            ErrorKind::InvalidArgument,
            "malformed_body",
            format!("the request body could not be read: {e}"),
        )),
        Err(_) => Err(ApiError::new(
            ErrorKind::RequestTimeout,
            "request_timeout",
            format!(
                "the request body did not arrive within {} ms",
                cfg.body_timeout.as_millis()
            ),
        )),
    }
}

/// Whether a body error is the size limit (rather than a transport or framing error).
fn is_length_limit(e: &axum::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cur = err.source();
    }
    false
}

/// Admission, then the routed call (REST submit after the size check).
async fn submit_body(gw: &Gateway, tenant: String, body: Bytes) -> Response {
    if let Err(e) = gw.admit_api(&tenant) {
        return error_response(&e);
    }
    gw.ingest.inc();
    let pcs_id = gw.routing_key(|| routing_pcs_id(&body));
    let result = gw
        .route(&tenant, &pcs_id, |up| {
            up.submit(v1::SubmitRequest {
                tenant_id: tenant.clone(),
                body: Some(submit_request::Body::PcsJson(body.clone())),
            })
        })
        .await;
    match result {
        Ok(o) => outcome_response(&o),
        Err(e) => error_response(&e),
    }
}

async fn get_outcome(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    Path(pcs_id): Path<String>,
) -> Response {
    let tenant = match gw.read_tenant(Credentials::of_headers(&headers)) {
        Ok(t) => t,
        Err(e) => {
            let resp = error_response(&e);
            gw.responses
                .with_label_values(&["get_outcome", resp.status().as_str()])
                .inc();
            return resp;
        }
    };
    if let Some(resp) = tiering::outcome(&gw, &tenant, &pcs_id).await {
        gw.responses
            .with_label_values(&["get_outcome", resp.status().as_str()])
            .inc();
        return resp;
    }
    let result = gw
        .route(&tenant, &pcs_id, |up| {
            let mut client = up.client.clone();
            let req = v1::GetOutcomeRequest {
                tenant_id: tenant.clone(),
                pcs_id: pcs_id.clone(),
            };
            async move { client.get_outcome(req).await.map(|r| r.into_inner()) }
        })
        .await;
    let resp = match result {
        Ok(o) => {
            let mut resp = outcome_response(&o);
            *resp.status_mut() = StatusCode::OK;
            resp
        }
        Err(e) => error_response(&e),
    };
    gw.responses
        .with_label_values(&["get_outcome", resp.status().as_str()])
        .inc();
    resp
}

async fn ready(State(gw): State<Arc<Gateway>>) -> Response {
    let mut deps = serde_json::Map::new();
    let mut all = true;
    for up in &gw.upstreams {
        // A real round trip: an unknown tenant is answered by a live service with
        // UNAUTHENTICATED; a transport failure means the replica is down.
        let mut client = up.client.clone();
        let probe = client
            .get_outcome(v1::GetOutcomeRequest {
                tenant_id: "\u{1}gateway-probe".into(),
                pcs_id: String::new(),
            })
            .await;
        let ok = match probe {
            Ok(_) => true,
            Err(s) => !is_transport_failure(&s),
        };
        up.healthy.store(ok, Ordering::Relaxed);
        all &= ok;
        deps.insert(
            up.name.clone(),
            serde_json::Value::from(if ok { "ok" } else { "unreachable" }),
        );
    }
    for probe in &gw.cfg.ready_probes {
        match tokio::time::timeout(READY_PROBE_TIMEOUT, (probe.0)()).await {
            Ok(named) => {
                for (name, r) in named {
                    all &= r.is_ok();
                    deps.insert(name, r.err().unwrap_or_else(|| "ok".to_owned()).into());
                }
            }
            Err(_) => {
                all = false;
                deps.insert(
                    "ready_probe".to_owned(),
                    format!("no answer within {READY_PROBE_TIMEOUT:?}").into(),
                );
            }
        }
    }
    let body = serde_json::json!({ "ready": all, "dependencies": deps });
    let status = if all {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(status, body.to_string())
}

async fn metrics(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    if let Some((user, pass)) = &gw.cfg.metrics_auth {
        use base64::Engine as _;
        let expected = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .unwrap_or("");
        if !bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
            let mut resp = error_response(&ApiError::new(
                ErrorKind::Unauthenticated,
                "unauthorized",
                "metrics need basic auth",
            ));
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"flk\""),
            );
            return resp;
        }
    }
    use prometheus::Encoder;
    let mut out = Vec::new();
    let _ = prometheus::TextEncoder::new().encode(&gw.gather_metrics(), &mut out);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
