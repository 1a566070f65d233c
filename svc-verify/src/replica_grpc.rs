//! `flk.v1.ReplicaApplyService` (svc-crr's calls into svc-verify): thin conversions around
//! [`Engine::apply_replicated`], [`Engine::get_records`] and [`Engine::record_crr_event`]. Served
//! on svc-verify's internal port only, behind its mTLS or token like every other call there;
//! the gateway never routes it.

use std::sync::Arc;

use flk_proto::v1;
use flk_proto::v1::replica_apply_service_server::ReplicaApplyService;
use tonic::{Request, Response, Status};

use crate::engine::Engine;

/// Records one call may carry (a svc-crr batch is far smaller).
const MAX_RECORDS: usize = 10_000;

pub struct ReplicaGrpc {
    engine: Arc<Engine>,
}

impl ReplicaGrpc {
    pub fn new(engine: Arc<Engine>) -> ReplicaGrpc {
        ReplicaGrpc { engine }
    }
}

fn too_many(n: usize) -> Status {
    Status::invalid_argument(format!("{n} items in one call; the limit is {MAX_RECORDS}"))
}

#[tonic::async_trait]
impl ReplicaApplyService for ReplicaGrpc {
    async fn apply_replicated(
        &self,
        request: Request<v1::ApplyReplicatedRequest>,
    ) -> Result<Response<v1::ApplyReplicatedResponse>, Status> {
        let req = request.into_inner();
        if req.records.len() > MAX_RECORDS {
            return Err(too_many(req.records.len()));
        }
        // On a task of its own: it must not stop between a log append and its index write if
        // the caller goes away (`Idempotency`), as submissions do not (`RunToEnd`).
        let engine = self.engine.clone();
        let results =
            tokio::spawn(async move { engine.apply_replicated(req.records, req.replace).await })
                .await
                .map_err(|e| Status::internal(format!("apply task failed: {e}")))??;
        Ok(Response::new(v1::ApplyReplicatedResponse { results }))
    }

    async fn get_records(
        &self,
        request: Request<v1::GetRecordsRequest>,
    ) -> Result<Response<v1::GetRecordsResponse>, Status> {
        let req = request.into_inner();
        if req.keys.len() > MAX_RECORDS {
            return Err(too_many(req.keys.len()));
        }
        let records = self.engine.get_records(req.keys).await?;
        Ok(Response::new(v1::GetRecordsResponse { records }))
    }

    async fn record_event(
        &self,
        request: Request<v1::RecordEventRequest>,
    ) -> Result<Response<v1::RecordEventResponse>, Status> {
        let req = request.into_inner();
        let engine = self.engine.clone();
        let seq = tokio::spawn(async move {
            engine
                .record_crr_event(&req.tenant_id, &req.pcs_id, req.event_json)
                .await
        })
        .await
        .map_err(|e| Status::internal(format!("event task failed: {e}")))??;
        Ok(Response::new(v1::RecordEventResponse { seq }))
    }
}
