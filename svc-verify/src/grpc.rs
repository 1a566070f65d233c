//! The `flk.v1.VerifyService` gRPC handlers: thin conversions around [`Engine`].

use std::pin::Pin;
use std::sync::Arc;

use flk_proto::v1::verify_service_server::VerifyService;
use flk_proto::v1::{self, submit_request, submit_stream_response};
use flk_proto::{ApiError, DEFAULT_TENANT, ErrorKind, TENANT_METADATA};
use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::engine::{Body, Engine};

/// How many submissions of one stream are in flight at once. Their log appends share fsyncs
/// (group commit), which is what makes streaming fast; answers still come back in order.
const STREAM_CONCURRENCY: usize = 512;

pub struct VerifyGrpc {
    engine: Arc<Engine>,
    closing: tokio::sync::watch::Receiver<bool>,
}

impl VerifyGrpc {
    /// Handlers over `engine`; their streams end once `closing` turns true (or its sender is
    /// gone): `SubmitStream` stops reading items, answers those it has read and ends,
    /// `Subscribe` ends at a record boundary. Both callers resume on another connection.
    pub fn new(engine: Arc<Engine>, closing: tokio::sync::watch::Receiver<bool>) -> VerifyGrpc {
        VerifyGrpc { engine, closing }
    }

    /// Resolves when the service starts shutting down.
    fn closing(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut closing = self.closing.clone();
        async move {
            let _ = closing.wait_for(|c| *c).await;
        }
    }

    /// Appended to a stream cut short by [`VerifyGrpc::closing`]: ends the call with
    /// `UNAVAILABLE` `shutting_down` (retry elsewhere or later) rather than a plain end, which
    /// a caller could take for a complete answer. Empty when the stream ended by itself.
    fn closing_tail<T: Send + 'static>(
        &self,
    ) -> impl Stream<Item = Result<T, Status>> + Send + 'static {
        let closing = self.closing.clone();
        futures::stream::iter(
            std::iter::once_with(move || *closing.borrow() || closing.has_changed().is_err())
                .filter(|closed| *closed)
                .map(|_| {
                    Err(Status::from(
                        ApiError::new(
                            ErrorKind::Unavailable,
                            "shutting_down",
                            "svc-verify is shutting down",
                        )
                        .with_retry_after(std::time::Duration::from_secs(1)),
                    ))
                }),
        )
    }
}

/// Tenant from the request field, else the `x-tenant-id` metadata, else `default`.
fn tenant_of(field: &str, metadata: &tonic::metadata::MetadataMap) -> String {
    if !field.is_empty() {
        return field.to_owned();
    }
    metadata
        .get(TENANT_METADATA)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .unwrap_or(DEFAULT_TENANT)
        .to_owned()
}

fn body_of(req: v1::SubmitRequest) -> Result<Body, ApiError> {
    match req.body {
        Some(submit_request::Body::PcsJson(b)) => Ok(Body::Json(b)),
        Some(submit_request::Body::Pcs(p)) => Ok(Body::Structured(Box::new(p))),
        None => Err(ApiError::new(
            ErrorKind::InvalidArgument,
            "invalid_pcs",
            "request has no pcs (set `pcs_json` or `pcs`)",
        )),
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl VerifyService for VerifyGrpc {
    async fn submit(
        &self,
        request: Request<v1::SubmitRequest>,
    ) -> Result<Response<v1::SubmitResponse>, Status> {
        let (metadata, _, req) = request.into_parts();
        let tenant = tenant_of(&req.tenant_id, &metadata);
        let body = body_of(req)?;
        let record = self.engine.submit(&tenant, body).await?;
        Ok(Response::new(v1::SubmitResponse {
            outcome: Some(v1::Outcome::from(&record)),
        }))
    }

    type SubmitStreamStream = BoxStream<v1::SubmitStreamResponse>;

    async fn submit_stream(
        &self,
        request: Request<Streaming<v1::SubmitRequest>>,
    ) -> Result<Response<Self::SubmitStreamStream>, Status> {
        let (metadata, _, inbound) = request.into_parts();
        let default_tenant = tenant_of("", &metadata);
        let engine = self.engine.clone();
        let out = inbound
            .take_until(self.closing())
            .enumerate()
            .map(move |(index, item)| {
                let engine = engine.clone();
                let default_tenant = default_tenant.clone();
                async move {
                    let req = match item {
                        Ok(r) => r,
                        // A broken inbound stream ends the call with its status.
                        Err(status) => return Err(status),
                    };
                    let tenant = if req.tenant_id.is_empty() {
                        default_tenant
                    } else {
                        req.tenant_id.clone()
                    };
                    let result = match body_of(req) {
                        Ok(body) => engine.submit(&tenant, body).await,
                        Err(e) => Err(e),
                    };
                    Ok(v1::SubmitStreamResponse {
                        index: index as u64,
                        result: Some(match result {
                            Ok(rec) => {
                                submit_stream_response::Result::Outcome(v1::Outcome::from(&rec))
                            }
                            Err(e) => {
                                submit_stream_response::Result::Error(v1::ItemError::from(&e))
                            }
                        }),
                    })
                }
            })
            .buffered(STREAM_CONCURRENCY)
            .chain(self.closing_tail());
        Ok(Response::new(Box::pin(out)))
    }

    async fn get_outcome(
        &self,
        request: Request<v1::GetOutcomeRequest>,
    ) -> Result<Response<v1::Outcome>, Status> {
        let (metadata, _, req) = request.into_parts();
        let tenant = tenant_of(&req.tenant_id, &metadata);
        let rec = self.engine.get_outcome(&tenant, &req.pcs_id).await?;
        Ok(Response::new(v1::Outcome::from(&rec)))
    }

    type SubscribeStream = BoxStream<v1::FeedRecord>;

    async fn subscribe(
        &self,
        request: Request<v1::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let from = request.into_inner().from_seq.max(1);
        let stream = self.engine.log().subscribe(from).map(|item| match item {
            Ok((seq, payload)) => crate::fanout::decode_feed(seq, &payload).map_err(|e| {
                Status::from(ApiError::new(
                    ErrorKind::Internal,
                    "corrupt_record",
                    format!("outcome log record {seq} does not decode: {e}"),
                ))
            }),
            Err(e) => Err(Status::from(ApiError::new(
                ErrorKind::Unavailable,
                "log_unavailable",
                format!("outcome log read failed: {e}"),
            ))),
        });
        let stream = stream.take_until(self.closing()).chain(self.closing_tail());
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_refusal_counts(
        &self,
        request: Request<v1::GetRefusalCountsRequest>,
    ) -> Result<Response<v1::GetRefusalCountsResponse>, Status> {
        let req = request.into_inner();
        let Some(refusals) = self.engine.refusals().cloned() else {
            return Ok(Response::new(v1::GetRefusalCountsResponse::default()));
        };
        let counts =
            tokio::task::spawn_blocking(move || refusals.counts(req.from_unix_ms, req.to_unix_ms))
                .await
                .map_err(|e| Status::internal(e.to_string()))?
                .map_err(|e| {
                    Status::from(ApiError::new(
                        ErrorKind::Unavailable,
                        "refusal_store_unavailable",
                        e.to_string(),
                    ))
                })?;
        Ok(Response::new(v1::GetRefusalCountsResponse {
            counts: counts
                .into_iter()
                .map(|c| v1::RefusalCount {
                    minute_unix_ms: c.minute_unix_ms,
                    tenant_id: c.tenant_id,
                    reason_code: c.reason_code,
                    count: c.count,
                })
                .collect(),
        }))
    }
}
