//! `flk.v1.ReplicationService`: the receiving side of shipping (each batch applied through
//! svc-verify before it is acknowledged), the tree comparison peers run against this region,
//! full records for their repairs, and the admin calls (the same JSON documents as the REST
//! routes, from [`crate::http`]).

use std::pin::Pin;
use std::sync::Arc;

use flk_proto::v1;
use flk_proto::v1::replication_service_server::ReplicationService;
use futures::{Stream, StreamExt as _};
use tonic::{Request, Response, Status, Streaming};

use crate::merkle::MAX_BUCKETS_PER_CALL;
use crate::metrics::reason_label;
use crate::{Core, http, now_ms};

pub struct CrrGrpc {
    core: Arc<Core>,
}

impl CrrGrpc {
    pub fn new(core: Arc<Core>) -> CrrGrpc {
        CrrGrpc { core }
    }
}

/// The peer must be configured here: an unknown region is refused, never applied.
fn known_source(core: &Core, source: &str) -> Result<(), Status> {
    if core.link(source).is_none() {
        return Err(Status::permission_denied(format!(
            "region {source:?} is not a configured peer of {:?}",
            core.cfg.region
        )));
    }
    Ok(())
}

/// Applies one shipped batch and moves the receiving watermark; the acknowledgement.
pub async fn apply_batch(core: &Core, batch: v1::ShipBatch) -> Result<v1::ShipAck, Status> {
    let (source, last_seq) = (batch.source.clone(), batch.last_seq);
    let ack = apply_records(core, batch).await?;
    acknowledge(core, &source, last_seq, ack)
}

/// Records svc-verify's `ApplyReplicated` takes in one call (its `MAX_RECORDS`); a shipped
/// batch holding more is applied in several calls.
const VERIFY_MAX_RECORDS: usize = 10_000;

/// Applies one shipped batch's records through svc-verify (durable once it answers); the
/// acknowledgement without its watermark.
async fn apply_records(core: &Core, batch: v1::ShipBatch) -> Result<v1::ShipAck, Status> {
    known_source(core, &batch.source)?;
    if batch.target != core.cfg.region {
        return Err(Status::failed_precondition(format!(
            "batch for region {:?} sent to {:?}",
            batch.target, core.cfg.region
        )));
    }
    let mut ack = v1::ShipAck::default();
    // A record must come from its origin: a peer cannot ship decisions of another region.
    let (records, wrong): (Vec<_>, Vec<_>) = batch
        .records
        .into_iter()
        .partition(|r| r.region == batch.source);
    for _ in &wrong {
        core.metrics
            .rejected
            .with_label_values(&["wrong_origin"])
            .inc();
    }
    ack.rejected += wrong.len() as u64;
    let delays: Vec<i64> = records.iter().map(|r| r.decided_at_unix_ms).collect();
    if !records.is_empty() {
        // In calls svc-verify takes: a batch refused as a whole would be shipped for ever.
        let mut results = Vec::with_capacity(records.len());
        let mut rest = records;
        while !rest.is_empty() {
            let tail = rest.split_off(rest.len().min(VERIFY_MAX_RECORDS));
            let records = std::mem::replace(&mut rest, tail);
            results.extend(
                core.verify
                    .clone()
                    .apply_replicated(v1::ApplyReplicatedRequest {
                        records,
                        replace: false,
                    })
                    .await
                    .map_err(|s| Status::unavailable(format!("svc-verify: {}", s.message())))?
                    .into_inner()
                    .results,
            );
        }
        let now = now_ms();
        for (r, decided) in results.iter().zip(delays) {
            match v1::ApplyStatus::try_from(r.status) {
                Ok(v1::ApplyStatus::Applied) => {
                    ack.applied += 1;
                    core.metrics
                        .apply_delay
                        .observe((now - decided).max(0) as f64 / 1000.0);
                }
                Ok(v1::ApplyStatus::Duplicate) => ack.duplicates += 1,
                Ok(v1::ApplyStatus::Conflict) => ack.conflicts += 1,
                _ => {
                    ack.rejected += 1;
                    core.metrics
                        .rejected
                        .with_label_values(&[reason_label(&r.reason)])
                        .inc();
                }
            }
        }
    }
    let source = batch.source.as_str();
    core.metrics
        .applied
        .with_label_values(&[source])
        .inc_by(ack.applied);
    core.metrics
        .duplicates
        .with_label_values(&[source])
        .inc_by(ack.duplicates);
    core.metrics
        .conflicts
        .with_label_values(&[source])
        .inc_by(ack.conflicts);
    Ok(ack)
}

/// Moves the receiving watermark past an applied batch, in stream order.
fn acknowledge(
    core: &Core,
    source: &str,
    last_seq: u64,
    mut ack: v1::ShipAck,
) -> Result<v1::ShipAck, Status> {
    if last_seq > 0 {
        core.store
            .set_recv_acked(source, last_seq)
            .map_err(|e| Status::unavailable(e.to_string()))?;
    }
    ack.acked_seq = core
        .store
        .recv_acked(source)
        .map_err(|e| Status::unavailable(e.to_string()))?;
    Ok(ack)
}

/// Shipped batches of one stream applied concurrently (see `ship`).
const APPLY_CONCURRENCY: usize = 4;

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

fn json(doc: serde_json::Value) -> Response<v1::JsonDocument> {
    Response::new(v1::JsonDocument {
        json: doc.to_string(),
    })
}

fn api(e: flk_proto::ApiError) -> Status {
    Status::from(e)
}

#[tonic::async_trait]
impl ReplicationService for CrrGrpc {
    async fn hello(
        &self,
        request: Request<v1::HelloRequest>,
    ) -> Result<Response<v1::HelloResponse>, Status> {
        let source = request.into_inner().source;
        known_source(&self.core, &source)?;
        let acked_seq = self
            .core
            .store
            .recv_acked(&source)
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(v1::HelloResponse {
            region: self.core.cfg.region.clone(),
            acked_seq,
        }))
    }

    type ShipStream = BoxStream<v1::ShipAck>;

    async fn ship(
        &self,
        request: Request<Streaming<v1::ShipBatch>>,
    ) -> Result<Response<Self::ShipStream>, Status> {
        let core = self.core.clone();
        let input = request.into_inner();
        let mut closing = core.closing.subscribe();
        let closed = async move {
            let _ = closing.wait_for(|c| *c).await;
        };
        // Up to APPLY_CONCURRENCY batches applied at once (svc-verify's log commits them in
        // one group), acknowledged in stream order, each only once durably applied.
        let watermark = core.clone();
        let acks = input
            .map(move |item| {
                let core = core.clone();
                async move {
                    let batch = item?;
                    let (source, last_seq) = (batch.source.clone(), batch.last_seq);
                    Ok((apply_records(&core, batch).await?, source, last_seq))
                }
            })
            .buffered(APPLY_CONCURRENCY)
            .map(move |applied: Result<_, Status>| {
                let (ack, source, last_seq) = applied?;
                acknowledge(&watermark, &source, last_seq, ack)
            });
        // Ends at a batch boundary when the service shuts down; the peer reconnects and
        // resumes from its watermark.
        Ok(Response::new(Box::pin(acks.take_until(closed))))
    }

    async fn tree_roots(
        &self,
        _request: Request<v1::TreeRootsRequest>,
    ) -> Result<Response<v1::TreeRootsResponse>, Status> {
        let roots = self
            .core
            .store
            .merkle
            .roots()
            .into_iter()
            .map(|(tenant_id, root)| v1::TenantRoot {
                tenant_id,
                root: root.to_vec(),
            })
            .collect();
        Ok(Response::new(v1::TreeRootsResponse { roots }))
    }

    async fn tree_nodes(
        &self,
        request: Request<v1::TreeNodesRequest>,
    ) -> Result<Response<v1::TreeNodesResponse>, Status> {
        let req = request.into_inner();
        let level = u8::try_from(req.level)
            .map_err(|_| Status::invalid_argument("`level` must be 1..=4"))?;
        let hashes = self
            .core
            .store
            .merkle
            .nodes(&req.tenant_id, level, &req.indices)
            .map_err(|e| Status::invalid_argument(e.to_string()))?
            .into_iter()
            .map(|h| h.to_vec())
            .collect();
        Ok(Response::new(v1::TreeNodesResponse { hashes }))
    }

    async fn bucket_leaves(
        &self,
        request: Request<v1::BucketLeavesRequest>,
    ) -> Result<Response<v1::BucketLeavesResponse>, Status> {
        let req = request.into_inner();
        if req.buckets.len() > MAX_BUCKETS_PER_CALL {
            return Err(Status::invalid_argument(format!(
                "at most {MAX_BUCKETS_PER_CALL} buckets per call"
            )));
        }
        let merkle = self.core.store.merkle.clone();
        let leaves =
            tokio::task::spawn_blocking(move || merkle.bucket_leaves(&req.tenant_id, &req.buckets))
                .await
                .map_err(|e| Status::internal(e.to_string()))?
                .map_err(|e| Status::invalid_argument(e.to_string()))?
                .into_iter()
                .map(|(bucket, l)| v1::TreeLeaf {
                    bucket,
                    pcs_id: l.pcs_id,
                    digest: l.digest.to_vec(),
                    decided_at_unix_ms: l.decided_at_ms,
                })
                .collect();
        Ok(Response::new(v1::BucketLeavesResponse { leaves }))
    }

    async fn fetch_records(
        &self,
        request: Request<v1::GetRecordsRequest>,
    ) -> Result<Response<v1::GetRecordsResponse>, Status> {
        let resp = self
            .core
            .verify
            .clone()
            .get_records(request.into_inner())
            .await
            .map_err(|s| Status::unavailable(format!("svc-verify: {}", s.message())))?;
        Ok(resp)
    }

    async fn status(
        &self,
        _request: Request<v1::StatusRequest>,
    ) -> Result<Response<v1::JsonDocument>, Status> {
        Ok(json(http::status_doc(&self.core)))
    }

    async fn divergence(
        &self,
        request: Request<v1::DivergenceRequest>,
    ) -> Result<Response<v1::JsonDocument>, Status> {
        let peer = request.into_inner().peer;
        http::divergence_doc(&self.core, &peer)
            .await
            .map(json)
            .map_err(api)
    }

    async fn list_proposals(
        &self,
        request: Request<v1::ListProposalsRequest>,
    ) -> Result<Response<v1::JsonDocument>, Status> {
        http::proposals_doc(&self.core, &request.into_inner().state)
            .map(json)
            .map_err(api)
    }

    async fn decide_proposal(
        &self,
        request: Request<v1::DecideProposalRequest>,
    ) -> Result<Response<v1::JsonDocument>, Status> {
        let req = request.into_inner();
        let actor = if req.actor.is_empty() {
            "grpc".to_owned()
        } else {
            req.actor
        };
        http::decide_doc(&self.core, &req.id, &req.decision, &actor)
            .await
            .map(json)
            .map_err(api)
    }

    async fn set_policies(
        &self,
        request: Request<v1::SetPoliciesRequest>,
    ) -> Result<Response<v1::JsonDocument>, Status> {
        http::set_policies_doc(&self.core, &request.into_inner().policies_json)
            .map(json)
            .map_err(api)
    }
}
