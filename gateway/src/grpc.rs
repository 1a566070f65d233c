//! `flk.v1.VerifyService` on the gateway's port: the same operations as REST, routed the same
//! way (consistent hash of `(tenant_id, pcs_id)`, failover on transport failures only) and
//! admitted by the same per-tenant limits, so a client gets identical outcomes either way.
//!
//! `SubmitStream` keeps one upstream `SubmitStream` per svc-verify replica that the call's
//! items hash to, opened on first use. Each answer carries the client's item `index`; answers
//! from different replicas may interleave, so clients match answers by `index` (svc-verify
//! alone also answers in order, the gateway with several replicas does not). When an upstream
//! stream breaks, every item in flight on it is answered with `upstream_unavailable` (retry
//! it) and later items open a new upstream stream, on the next healthy replica if need be.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use flk_proto::v1::verify_service_server::VerifyService;
use flk_proto::v1::{self, submit_request, submit_stream_response};
use flk_proto::{ApiError, ErrorKind};
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::Credentials;
use crate::{Gateway, routing_pcs_id};

/// Items buffered towards one upstream stream, and answers towards the client.
const STREAM_BUFFER: usize = 1024;

pub struct GatewayGrpc {
    gw: Arc<Gateway>,
}

impl GatewayGrpc {
    pub fn new(gw: Arc<Gateway>) -> GatewayGrpc {
        GatewayGrpc { gw }
    }
}

/// The `pcs_id` to route by: from the JSON body or the structured PCS.
fn pcs_id_of(req: &v1::SubmitRequest) -> String {
    match &req.body {
        Some(submit_request::Body::PcsJson(b)) => routing_pcs_id(b),
        Some(submit_request::Body::Pcs(p)) => p.pcs_id.clone().unwrap_or_default(),
        None => String::new(),
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl VerifyService for GatewayGrpc {
    async fn submit(
        &self,
        request: Request<v1::SubmitRequest>,
    ) -> Result<Response<v1::SubmitResponse>, Status> {
        let (metadata, _, mut req) = request.into_parts();
        req.tenant_id = self
            .gw
            .submit_tenant(Credentials::of_metadata(&metadata, &req.tenant_id))?;
        self.gw.admit(&req.tenant_id)?;
        self.gw.ingest.inc();
        let pcs_id = self.gw.routing_key(|| pcs_id_of(&req));
        let tenant = req.tenant_id.clone();
        let outcome = self
            .gw
            .route(&tenant, &pcs_id, |up| up.submit(req.clone()))
            .await?;
        Ok(Response::new(v1::SubmitResponse {
            outcome: Some(outcome),
        }))
    }

    type SubmitStreamStream = BoxStream<v1::SubmitStreamResponse>;

    async fn submit_stream(
        &self,
        request: Request<Streaming<v1::SubmitRequest>>,
    ) -> Result<Response<Self::SubmitStreamStream>, Status> {
        let (metadata, _, inbound) = request.into_parts();
        let credentials = Credentials::of_metadata(&metadata, "");
        let default_tenant = self.gw.submit_tenant(credentials)?;
        // With a token the call is that tenant's: an item naming another is refused.
        let pinned = credentials.token.is_some();
        let (answers, rx) = mpsc::channel(STREAM_BUFFER);
        tokio::spawn(proxy_stream(
            self.gw.clone(),
            (default_tenant, pinned),
            inbound,
            answers,
        ));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn get_outcome(
        &self,
        request: Request<v1::GetOutcomeRequest>,
    ) -> Result<Response<v1::Outcome>, Status> {
        let (metadata, _, mut req) = request.into_parts();
        req.tenant_id = self
            .gw
            .read_tenant(Credentials::of_metadata(&metadata, &req.tenant_id))?;
        let (tenant, pcs_id) = (req.tenant_id.clone(), req.pcs_id.clone());
        let answer = self
            .gw
            .route(&tenant, &pcs_id, |up| {
                let mut client = up.client.clone();
                let req = req.clone();
                async move { client.get_outcome(req).await.map(|r| r.into_inner()) }
            })
            .await?;
        Ok(Response::new(answer))
    }

    type SubscribeStream = BoxStream<v1::FeedRecord>;

    /// The feed holds every tenant's decisions: only the admin token opens it here
    /// ([`crate::auth`]). It is per replica (each has its own log and sequence numbers): the
    /// gateway passes it through when it fronts exactly one replica, and otherwise asks the
    /// caller to subscribe to each replica.
    async fn subscribe(
        &self,
        request: Request<v1::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        self.gw
            .check_admin(Credentials::of_metadata(request.metadata(), ""))?;
        let [only] = self.gw.upstreams.as_slice() else {
            return Err(ApiError::new(
                ErrorKind::FailedPrecondition,
                "subscribe_per_replica",
                format!(
                    "the gateway fronts {} replicas with separate feeds; subscribe to each svc-verify replica",
                    self.gw.upstreams.len()
                ),
            )
            .into());
        };
        let mut client = only.client.clone();
        let feed = client.subscribe(request.into_inner()).await?.into_inner();
        Ok(Response::new(Box::pin(feed)))
    }

    /// Every tenant's refusal counts: the admin token only. With several replicas, each
    /// counts its own refusals: the counts of a (minute, tenant, reason) are added up.
    async fn get_refusal_counts(
        &self,
        request: Request<v1::GetRefusalCountsRequest>,
    ) -> Result<Response<v1::GetRefusalCountsResponse>, Status> {
        self.gw
            .check_admin(Credentials::of_metadata(request.metadata(), ""))?;
        let req = request.into_inner();
        let mut sum: std::collections::BTreeMap<(i64, String, String), u64> = Default::default();
        for up in &self.gw.upstreams {
            let mut client = up.client.clone();
            let counts = client.get_refusal_counts(req).await?.into_inner().counts;
            for c in counts {
                *sum.entry((c.minute_unix_ms, c.tenant_id, c.reason_code))
                    .or_insert(0) += c.count;
            }
        }
        Ok(Response::new(v1::GetRefusalCountsResponse {
            counts: sum
                .into_iter()
                .map(
                    |((minute_unix_ms, tenant_id, reason_code), count)| v1::RefusalCount {
                        minute_unix_ms,
                        tenant_id,
                        reason_code,
                        count,
                    },
                )
                .collect(),
        }))
    }
}

/// One upstream `SubmitStream` of a client call.
struct Lane {
    items: mpsc::Sender<v1::SubmitRequest>,
    /// Upstream item index -> client item index, for the items in flight.
    in_flight: Arc<Mutex<HashMap<u64, u64>>>,
    next: u64,
}

fn item_answer(index: u64, e: &ApiError) -> v1::SubmitStreamResponse {
    v1::SubmitStreamResponse {
        index,
        result: Some(submit_stream_response::Result::Error(v1::ItemError::from(
            e,
        ))),
    }
}

/// Reads the client's items, admits them, and forwards each to the lane of its replica.
async fn proxy_stream(
    gw: Arc<Gateway>,
    (default_tenant, pinned): (String, bool),
    mut inbound: Streaming<v1::SubmitRequest>,
    answers: mpsc::Sender<Result<v1::SubmitStreamResponse, Status>>,
) {
    let mut lanes: HashMap<usize, Lane> = HashMap::new();
    let mut index: u64 = 0;
    while let Some(item) = inbound.next().await {
        let mut req = match item {
            Ok(r) => r,
            Err(status) => {
                // A broken inbound stream ends the call with its status.
                let _ = answers.send(Err(status)).await;
                return;
            }
        };
        let client_index = index;
        index += 1;
        let refused = if req.tenant_id.is_empty() {
            req.tenant_id.clone_from(&default_tenant);
            None
        } else if pinned && req.tenant_id != default_tenant {
            Some(crate::auth::mismatch(&req.tenant_id))
        } else {
            None
        };
        if let Err(e) = refused.map_or_else(|| gw.admit_api(&req.tenant_id), Err) {
            if answers
                .send(Ok(item_answer(client_index, &e)))
                .await
                .is_err()
            {
                return;
            }
            continue;
        }
        gw.ingest.inc();
        let pcs_id = gw.routing_key(|| pcs_id_of(&req));
        let candidates = gw.ordered_candidates(&req.tenant_id, &pcs_id);
        let mut req = Some(req);
        for replica in candidates {
            if lanes.get(&replica).is_none_or(|l| l.items.is_closed()) {
                match open_lane(&gw, replica, answers.clone()).await {
                    Some(lane) => {
                        lanes.insert(replica, lane);
                    }
                    None => continue,
                }
            }
            let Some(lane) = lanes.get_mut(&replica) else {
                continue;
            };
            let Some(item) = req.take() else { break };
            let up_index = lane.next;
            lane.next += 1;
            lane.in_flight
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(up_index, client_index);
            match lane.items.send(item).await {
                Ok(()) => break,
                Err(mpsc::error::SendError(item)) => {
                    // The upstream stream ended under us: try the next replica.
                    lane.in_flight
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&up_index);
                    lanes.remove(&replica);
                    req = Some(item);
                }
            }
        }
        if req.is_some() {
            let e = crate::no_replica();
            if answers
                .send(Ok(item_answer(client_index, &e)))
                .await
                .is_err()
            {
                return;
            }
        }
    }
    // Dropping the lanes ends the upstream streams; their readers deliver the last answers
    // and then drop their senders, which ends the client's stream.
}

/// Opens an upstream `SubmitStream` to `replica` and starts the task that relays its answers.
async fn open_lane(
    gw: &Arc<Gateway>,
    replica: usize,
    answers: mpsc::Sender<Result<v1::SubmitStreamResponse, Status>>,
) -> Option<Lane> {
    let up = &gw.upstreams[replica];
    let (items, rx) = mpsc::channel(STREAM_BUFFER);
    let mut client = up.client.clone();
    let upstream = match client.submit_stream(ReceiverStream::new(rx)).await {
        Ok(r) => r.into_inner(),
        Err(status) => {
            gw.note_failure(replica, &status);
            return None;
        }
    };
    let in_flight: Arc<Mutex<HashMap<u64, u64>>> = Arc::default();
    tokio::spawn(relay(
        gw.clone(),
        replica,
        upstream,
        in_flight.clone(),
        answers,
    ));
    Some(Lane {
        items,
        in_flight,
        next: 0,
    })
}

/// Relays one upstream stream's answers with the client's indices; when it breaks, answers
/// what was in flight on it with `upstream_unavailable`.
async fn relay(
    gw: Arc<Gateway>,
    replica: usize,
    mut upstream: Streaming<v1::SubmitStreamResponse>,
    in_flight: Arc<Mutex<HashMap<u64, u64>>>,
    answers: mpsc::Sender<Result<v1::SubmitStreamResponse, Status>>,
) {
    loop {
        match upstream.next().await {
            Some(Ok(mut answer)) => {
                let client_index = in_flight
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&answer.index);
                let Some(client_index) = client_index else {
                    tracing::warn!(
                        index = answer.index,
                        "upstream answered an unknown stream item"
                    );
                    continue;
                };
                answer.index = client_index;
                if answers.send(Ok(answer)).await.is_err() {
                    return;
                }
            }
            Some(Err(status)) => {
                gw.note_failure(replica, &status);
                break;
            }
            None => break,
        }
    }
    let orphans: Vec<u64> = in_flight
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .drain()
        .map(|(_, client)| client)
        .collect();
    let e = crate::no_replica();
    for client_index in orphans {
        if answers
            .send(Ok(item_answer(client_index, &e)))
            .await
            .is_err()
        {
            return;
        }
    }
}
