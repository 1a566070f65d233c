//! The FLK gateway: the REST contract of PROTOCOL.md section 5 in front of one or more
//! svc-verify replicas. Stateless: it routes each submission by consistent hash of
//! `(tenant_id, pcs_id)` and fails over to the next replica when one cannot be reached.
//!
//! `main.rs` parses config and calls [`serve`] with a bound listener; tests bind port 0.

pub mod ring;

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
use flk_proto::v1::{self, submit_request};
use flk_proto::{ApiError, DEFAULT_TENANT, ErrorKind, VerifyClient};
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;

use ring::{DEFAULT_VNODES, Ring};

/// Gateway settings.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// svc-verify replicas, as `http://host:port`.
    pub upstreams: Vec<String>,
    /// Largest accepted body (PROTOCOL.md: 1 MiB).
    pub max_body_bytes: usize,
    /// Per-request deadline towards svc-verify.
    pub request_timeout: Duration,
    /// Optional basic auth for `/metrics` as `(user, password)`.
    pub metrics_auth: Option<(String, String)>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            upstreams: vec!["http://127.0.0.1:50051".into()],
            max_body_bytes: 1024 * 1024,
            request_timeout: Duration::from_secs(10),
            metrics_auth: None,
        }
    }
}

struct Upstream {
    name: String,
    client: VerifyClient,
    healthy: AtomicBool,
}

/// Gateway state shared by the handlers.
pub struct Gateway {
    upstreams: Vec<Upstream>,
    ring: Ring,
    cfg: GatewayConfig,
    registry: Registry,
    ingest: IntCounter,
    responses: IntCounterVec,
}

impl Gateway {
    /// Builds lazy channels to every upstream (connections are made on first use).
    pub fn new(cfg: GatewayConfig) -> anyhow::Result<Arc<Gateway>> {
        if cfg.upstreams.is_empty() {
            anyhow::bail!("the gateway needs at least one svc-verify upstream");
        }
        let mut upstreams = Vec::with_capacity(cfg.upstreams.len());
        for u in &cfg.upstreams {
            let endpoint = tonic::transport::Endpoint::from_shared(u.clone())
                .map_err(|e| anyhow::anyhow!("invalid upstream {u:?}: {e}"))?
                .connect_timeout(Duration::from_secs(2))
                .timeout(cfg.request_timeout)
                .tcp_nodelay(true);
            upstreams.push(Upstream {
                name: u.clone(),
                client: VerifyClient::new(endpoint.connect_lazy()),
                healthy: AtomicBool::new(true),
            });
        }
        let ring = Ring::new(&cfg.upstreams, DEFAULT_VNODES);
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
        registry.register(Box::new(ingest.clone()))?;
        registry.register(Box::new(responses.clone()))?;
        Ok(Arc::new(Gateway {
            upstreams,
            ring,
            cfg,
            registry,
            ingest,
            responses,
        }))
    }

    /// Calls `f` on the owner of `(tenant, pcs_id)`, failing over to the next replicas when
    /// one cannot be reached (a transport failure, not an answer from the service).
    async fn route<T, F, Fut>(&self, tenant: &str, pcs_id: &str, f: F) -> Result<T, ApiError>
    where
        F: Fn(VerifyClient) -> Fut,
        Fut: Future<Output = Result<T, tonic::Status>>,
    {
        let order = self.ring.candidates(tenant, pcs_id);
        // Healthy replicas first, in ring order; unhealthy ones are still tried last.
        let (healthy, unhealthy): (Vec<usize>, Vec<usize>) = order
            .into_iter()
            .partition(|&i| self.upstreams[i].healthy.load(Ordering::Relaxed));
        let mut last: Option<ApiError> = None;
        for i in healthy.into_iter().chain(unhealthy) {
            let up = &self.upstreams[i];
            match f(up.client.clone()).await {
                Ok(v) => {
                    up.healthy.store(true, Ordering::Relaxed);
                    return Ok(v);
                }
                Err(status) if is_transport_failure(&status) => {
                    tracing::warn!(upstream = %up.name, error = %status.message(), "upstream unreachable, failing over");
                    up.healthy.store(false, Ordering::Relaxed);
                    last = Some(
                        ApiError::new(
                            ErrorKind::Unavailable,
                            "upstream_unavailable",
                            "no svc-verify replica is reachable",
                        )
                        .with_retry_after(Duration::from_secs(1)),
                    );
                }
                Err(status) => return Err(ApiError::from_status(&status)),
            }
        }
        Err(last.unwrap_or_else(|| {
            ApiError::new(
                ErrorKind::Unavailable,
                "upstream_unavailable",
                "no upstream configured",
            )
        }))
    }
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

/// The router: every route of PROTOCOL.md section 5.
pub fn router(gw: Arc<Gateway>) -> axum::Router {
    axum::Router::new()
        .route("/v1/pcs/submit", post(submit))
        .route("/v1/pcs/{pcs_id}", get(get_outcome))
        .route(
            "/health",
            get(|| async { ([(header::CONTENT_TYPE, "text/plain")], "OK") }),
        )
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        // The submit handler enforces the body limit itself so its 413 carries the contract's
        // JSON error body; other routes take no body.
        .layer(DefaultBodyLimit::disable())
        .with_state(gw)
}

/// Serves the REST API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    gw: Arc<Gateway>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    axum::serve(listener, router(gw))
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

fn tenant_of(headers: &HeaderMap) -> String {
    headers
        .get("x-tenant-id")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .unwrap_or(DEFAULT_TENANT)
        .to_owned()
}

fn json_response(status: StatusCode, body: String) -> Response {
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn error_response(e: &ApiError) -> Response {
    let status =
        StatusCode::from_u16(e.kind.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = json_response(status, e.json_body());
    if let Some(secs) = e.retry_after_secs()
        && let Ok(v) = HeaderValue::from_str(&secs.to_string())
    {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
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
    let limit = gw.cfg.max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let body: Option<Bytes> = match declared {
        Some(n) if n > limit as u64 => None,
        // Reading stops one byte past the limit (chunked bodies have no declared length).
        _ => axum::body::to_bytes(body, limit).await.ok(),
    };
    let resp = if let Some(body) = body {
        gw.ingest.inc();
        let tenant = tenant_of(&headers);
        let pcs_id = routing_pcs_id(&body);
        let result = gw
            .route(&tenant, &pcs_id, |mut client| {
                let req = v1::SubmitRequest {
                    tenant_id: tenant.clone(),
                    body: Some(submit_request::Body::PcsJson(body.to_vec())),
                };
                async move { client.submit(req).await.map(|r| r.into_inner()) }
            })
            .await;
        match result {
            Ok(v1::SubmitResponse { outcome: Some(o) }) => outcome_response(&o),
            Ok(_) => error_response(&ApiError::new(
                ErrorKind::Internal,
                "bad_upstream_answer",
                "empty answer",
            )),
            Err(e) => error_response(&e),
        }
    } else {
        error_response(&ApiError::new(
            ErrorKind::PayloadTooLarge,
            "payload_too_large",
            format!("body is over the limit of {limit} bytes"),
        ))
    };
    gw.responses
        .with_label_values(&["submit", resp.status().as_str()])
        .inc();
    resp
}

async fn get_outcome(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    Path(pcs_id): Path<String>,
) -> Response {
    let tenant = tenant_of(&headers);
    let result = gw
        .route(&tenant, &pcs_id, |mut client| {
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
    let _ = prometheus::TextEncoder::new().encode(&gw.registry.gather(), &mut out);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
