//! The `flk.v1.AuditService` gRPC handlers: thin conversions around [`Ledger`] queries, run on
//! blocking threads (proofs may read tiles from disk).

use std::sync::Arc;

use flk_proto::v1::audit_service_server::AuditService;
use flk_proto::v1::{self, get_inclusion_proof_request};
use flk_proto::{ApiError, DEFAULT_TENANT, ErrorKind, TENANT_METADATA};
use tonic::{Request, Response, Status};

use crate::Shared;
use crate::anchoring::{StoredAnchor, kind_label};
use crate::error::AuditError;
use crate::ledger::{CheckpointView, InclusionView, Ledger};

pub struct AuditGrpc {
    shared: Arc<Shared>,
}

impl AuditGrpc {
    pub(crate) fn new(shared: Arc<Shared>) -> AuditGrpc {
        AuditGrpc { shared }
    }
}

/// Runs a ledger query on a blocking thread.
pub(crate) async fn query<T: Send + 'static>(
    ledger: &Arc<Ledger>,
    f: impl FnOnce(&Ledger) -> Result<T, AuditError> + Send + 'static,
) -> Result<T, ApiError> {
    let ledger = ledger.clone();
    match tokio::task::spawn_blocking(move || f(&ledger)).await {
        Ok(result) => result.map_err(ApiError::from),
        Err(e) => Err(ApiError::new(
            ErrorKind::Internal,
            "internal",
            format!("audit query task failed: {e}"),
        )),
    }
}

impl From<&CheckpointView> for v1::AuditCheckpoint {
    fn from(c: &CheckpointView) -> v1::AuditCheckpoint {
        v1::AuditCheckpoint {
            note: c.note.clone(),
            size: c.size,
            root_hash: c.root_hash.to_vec(),
            verifier_key: c.verifier_key.clone(),
            origin: c.origin.clone(),
            decisions: None,
        }
    }
}

impl From<InclusionView> for v1::InclusionProof {
    fn from(p: InclusionView) -> v1::InclusionProof {
        v1::InclusionProof {
            leaf_index: p.leaf_index,
            tree_size: p.tree_size,
            checkpoint: Some(v1::AuditCheckpoint::from(&p.checkpoint)),
            entry: p.entry,
            proof: p.proof.iter().map(|h| h.to_vec()).collect(),
        }
    }
}

impl From<&StoredAnchor> for v1::Anchor {
    fn from(a: &StoredAnchor) -> v1::Anchor {
        v1::Anchor {
            id: a.id,
            checkpoint_size: a.record.checkpoint_size,
            // The record holds the root as hex (flk_anchor); the wire carries raw bytes.
            root_hash: hex::decode(&a.record.root_hash).unwrap_or_default(),
            strategy: a.record.strategy.clone(),
            kind: kind_label(a.record.kind).to_owned(),
            created_at_unix: a.record.created_at_unix,
            proof: a.record.proof.clone(),
            checkpoint_note: a.note.clone(),
            complete: a.complete,
            confirmations: a.confirmations,
            cost_wei: a.cost_wei.clone().unwrap_or_default(),
        }
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

#[tonic::async_trait]
impl AuditService for AuditGrpc {
    async fn get_checkpoint(
        &self,
        _request: Request<v1::GetCheckpointRequest>,
    ) -> Result<Response<v1::AuditCheckpoint>, Status> {
        let (decisions, cp) =
            query(&self.shared.ledger, |l| Ok((l.decisions(), l.checkpoint()))).await?;
        let mut answer = v1::AuditCheckpoint::from(&cp);
        answer.decisions = decisions;
        Ok(Response::new(answer))
    }

    async fn publish_checkpoint(
        &self,
        _request: Request<v1::PublishCheckpointRequest>,
    ) -> Result<Response<v1::AuditCheckpoint>, Status> {
        self.shared.publish().await.map_err(ApiError::from)?;
        let (decisions, cp) =
            query(&self.shared.ledger, |l| Ok((l.decisions(), l.checkpoint()))).await?;
        let mut answer = v1::AuditCheckpoint::from(&cp);
        answer.decisions = decisions;
        Ok(Response::new(answer))
    }

    async fn get_inclusion_proof(
        &self,
        request: Request<v1::GetInclusionProofRequest>,
    ) -> Result<Response<v1::InclusionProof>, Status> {
        let (metadata, _, req) = request.into_parts();
        let proof = match req.target {
            Some(get_inclusion_proof_request::Target::Leaf(t)) => {
                query(&self.shared.ledger, move |l| {
                    l.inclusion_by_leaf(t.leaf_index, t.tree_size)
                })
                .await?
            }
            Some(get_inclusion_proof_request::Target::Pcs(t)) => {
                let tenant = tenant_of(&t.tenant_id, &metadata);
                query(&self.shared.ledger, move |l| {
                    l.inclusion_by_pcs(&tenant, &t.pcs_id)
                })
                .await?
            }
            None => {
                return Err(ApiError::new(
                    ErrorKind::InvalidArgument,
                    "invalid_request",
                    "request has no target (set `leaf` or `pcs`)",
                )
                .into());
            }
        };
        Ok(Response::new(v1::InclusionProof::from(proof)))
    }

    async fn get_consistency_proof(
        &self,
        request: Request<v1::GetConsistencyProofRequest>,
    ) -> Result<Response<v1::ConsistencyProof>, Status> {
        let req = request.into_inner();
        let (from, to) = (req.from_size, req.to_size);
        let proof = query(&self.shared.ledger, move |l| l.consistency(from, to)).await?;
        Ok(Response::new(v1::ConsistencyProof {
            from_size: from,
            to_size: to,
            proof: proof.iter().map(|h| h.to_vec()).collect(),
        }))
    }

    async fn get_entry(
        &self,
        request: Request<v1::GetEntryRequest>,
    ) -> Result<Response<v1::GetEntryResponse>, Status> {
        let index = request.into_inner().index;
        let entry = query(&self.shared.ledger, move |l| l.entry(index)).await?;
        Ok(Response::new(v1::GetEntryResponse { index, entry }))
    }
    async fn list_anchors(
        &self,
        request: Request<v1::ListAnchorsRequest>,
    ) -> Result<Response<v1::ListAnchorsResponse>, Status> {
        let min = request.into_inner().min_checkpoint_size;
        let anchors = self
            .shared
            .anchors
            .list()
            .iter()
            .filter(|a| a.record.checkpoint_size >= min)
            .map(v1::Anchor::from)
            .collect();
        Ok(Response::new(v1::ListAnchorsResponse { anchors }))
    }

    async fn get_anchor(
        &self,
        request: Request<v1::GetAnchorRequest>,
    ) -> Result<Response<v1::Anchor>, Status> {
        let id = request.into_inner().id;
        let a = self
            .shared
            .anchors
            .get(id)
            .ok_or(AuditError::UnknownAnchor(id))?;
        Ok(Response::new(v1::Anchor::from(&a)))
    }

    async fn anchor_checkpoint(
        &self,
        _request: Request<v1::AnchorCheckpointRequest>,
    ) -> Result<Response<v1::AnchorCheckpointResponse>, Status> {
        let round = self.shared.anchor_now().await?;
        let anchored = round
            .anchored
            .iter()
            .filter_map(|&id| self.shared.anchors.get(id))
            .map(|a| v1::Anchor::from(&a))
            .collect();
        Ok(Response::new(v1::AnchorCheckpointResponse {
            anchored,
            failed: round.failed.iter().map(|s| (*s).to_owned()).collect(),
        }))
    }
}
