//! The `flk.v1.TieringService` gRPC handlers: thin conversions around [`Engine`].

use std::sync::Arc;

use flk_proto::v1::tiering_service_server::TieringService;
use flk_proto::v1::{self};
use flk_proto::{ApiError, DEFAULT_TENANT, TENANT_METADATA};
use tonic::{Request, Response, Status};

use crate::catalog::CatalogFigures;
use crate::config::Policy;
use crate::engine::{Engine, Stats};
use crate::error::TieringError;
use crate::record::{StoredRecord, Tier};

/// The service; cheap to clone. `flk up` and the gateway may call it in process.
#[derive(Clone)]
pub struct TieringGrpc {
    engine: Arc<Engine>,
}

impl TieringGrpc {
    pub fn new(engine: Arc<Engine>) -> TieringGrpc {
        TieringGrpc { engine }
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

fn status(e: TieringError) -> Status {
    Status::from(ApiError::from(e))
}

/// The stored outcome as a read answers it: `duplicate` is true, as for every answer that is
/// a stored outcome (PROTOCOL.md section 5), whatever the feed record said at decision time.
fn outcome_of(r: &StoredRecord) -> Result<v1::Outcome, Status> {
    let mut outcome = r.outcome().map_err(|e| {
        status(TieringError::Corrupt {
            key: String::new(),
            tier: "",
            message: e.to_string(),
        })
    })?;
    outcome.duplicate = true;
    Ok(outcome)
}

pub fn policy_msg(p: &Policy) -> v1::TieringPolicy {
    v1::TieringPolicy {
        hot_ttl_ms: p.hot_ttl_ms,
        warm_ttl_ms: p.warm_ttl_ms,
        retention_ms: p.retention_ms.unwrap_or(0),
        hot_max_bytes: p.hot_max_bytes,
        demote_interval_ms: p.demote_interval_ms,
    }
}

pub fn stats_msg(s: &Stats) -> v1::TieringStats {
    let mut moves = Vec::new();
    for from in Tier::ALL {
        for to in Tier::ALL {
            let n = s.moves[from.index()][to.index()];
            if from != to {
                moves.push(v1::TierMoves {
                    from: from.as_str().to_owned(),
                    to: to.as_str().to_owned(),
                    moves: n,
                });
            }
        }
    }
    v1::TieringStats {
        tiers: Tier::ALL
            .iter()
            .map(|t| v1::TierFigures {
                tier: t.as_str().to_owned(),
                records: s.records[t.index()],
                bytes: s.bytes[t.index()],
            })
            .collect(),
        moves,
        promotions: s.promotions,
        demotions: s.demotions,
        removals: s.removals,
        move_cost_usd: s.move_cost_usd,
        prewarm_precision: s.prewarm.map(|p| p.0),
        prewarm_recall: s.prewarm.map(|p| p.1),
        feed_cursor: s.feed_cursor,
        policy: Some(policy_msg(&s.policy)),
        catalog: None,
    }
}

pub fn catalog_figures_msg(f: &CatalogFigures) -> v1::CatalogFigures {
    v1::CatalogFigures {
        tiers: Tier::ALL
            .iter()
            .map(|t| v1::TierFigures {
                tier: t.as_str().to_owned(),
                records: f.records[t.index()],
                bytes: f.bytes[t.index()],
            })
            .collect(),
        pending_moves: f.pending_moves,
        oldest_decided_unix_ms: f.oldest_decided_ms,
        newest_decided_unix_ms: f.newest_decided_ms,
        past_retention: f.past_retention,
    }
}

/// The policy `req` asks for, over `current`.
pub fn apply_policy_request(current: Policy, req: &v1::SetPolicyRequest) -> Policy {
    Policy {
        hot_ttl_ms: req.hot_ttl_ms.unwrap_or(current.hot_ttl_ms),
        warm_ttl_ms: req.warm_ttl_ms.unwrap_or(current.warm_ttl_ms),
        retention_ms: match req.retention_ms {
            None => current.retention_ms,
            Some(0) => None,
            Some(ms) => Some(ms),
        },
        hot_max_bytes: req.hot_max_bytes.unwrap_or(current.hot_max_bytes),
        demote_interval_ms: req.demote_interval_ms.unwrap_or(current.demote_interval_ms),
    }
}

#[tonic::async_trait]
impl TieringService for TieringGrpc {
    async fn get(
        &self,
        request: Request<v1::GetRecordRequest>,
    ) -> Result<Response<v1::TieredRecord>, Status> {
        let tenant = tenant_of(&request.get_ref().tenant_id, request.metadata());
        let read = self
            .engine
            .get(&tenant, &request.get_ref().pcs_id)
            .await
            .map_err(status)?;
        Ok(Response::new(v1::TieredRecord {
            outcome: Some(outcome_of(&read.record)?),
            tier: read.tier.as_str().to_owned(),
            decided_at_unix_ms: read.record.decided_at_unix_ms,
            size_bytes: read.size,
        }))
    }

    async fn get_body(
        &self,
        request: Request<v1::GetRecordRequest>,
    ) -> Result<Response<v1::RecordBody>, Status> {
        let tenant = tenant_of(&request.get_ref().tenant_id, request.metadata());
        let read = self
            .engine
            .get(&tenant, &request.get_ref().pcs_id)
            .await
            .map_err(status)?;
        Ok(Response::new(v1::RecordBody {
            content_type: read.record.body_kind.content_type().to_owned(),
            body: read.record.body,
            tier: read.tier.as_str().to_owned(),
        }))
    }

    async fn stats(
        &self,
        request: Request<v1::TieringStatsRequest>,
    ) -> Result<Response<v1::TieringStats>, Status> {
        let cursor = self
            .engine
            .catalog()
            .cursor()
            .map_err(|e| status(e.into()))?;
        let mut stats = stats_msg(&self.engine.stats(cursor));
        let req = request.into_inner();
        if req.catalog {
            let catalog = self.engine.catalog().clone();
            let figures =
                tokio::task::spawn_blocking(move || catalog.figures(req.past_retention_after_ms))
                    .await
                    .map_err(|e| status(TieringError::Task(e.to_string())))?
                    .map_err(|e| status(e.into()))?;
            stats.catalog = Some(catalog_figures_msg(&figures));
        }
        Ok(Response::new(stats))
    }

    async fn set_policy(
        &self,
        request: Request<v1::SetPolicyRequest>,
    ) -> Result<Response<v1::TieringPolicy>, Status> {
        let p = apply_policy_request(self.engine.policy(), request.get_ref());
        let p = self.engine.set_policy(p).map_err(status)?;
        Ok(Response::new(policy_msg(&p)))
    }
}
