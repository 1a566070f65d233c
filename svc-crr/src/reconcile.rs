//! Anti-entropy and repair. Every `anti_entropy_interval` this region compares its tree with
//! each peer's ([`crate::merkle::diff`] over gRPC) and turns what differs into proposals:
//!
//! | divergence | action | safety | what it changes here |
//! |---|---|---|---|
//! | a key the peer holds, this region should and its log does not | `replay_missing` | 0.9 | the peer's record applied through svc-verify (re-verified, first write wins) |
//! | a key both hold with different outcomes, two regions hold it | `choose_first` | 0.7 | if the peer's decision is the earlier, it replaces this region's |
//! | the same, three or more regions hold it, a strict majority agrees | `quorum` | 0.5 | the majority's decision replaces a minority one here |
//! | the same, no majority | `manual_review` | 0.2 | nothing: a human decides |
//!
//! Each region repairs only its own data (a key missing *there* is the peer's
//! `replay_missing`). Keys the policies do not place in both regions are not divergence, nor
//! are keys older than the retention horizon. `reconcile_mode` decides what runs at once:
//! `manual` nothing, `auto_safe` actions at or above `safety_threshold`, `auto_aggressive`
//! everything but `manual_review`; the rest waits in the persisted queue for approve / reject.
//! A proposal's id is a hash of its action, peer, tenant and keys, so the same divergence
//! found again maps to the same proposal (no duplicates); every proposal, decision and action
//! is recorded through svc-verify's outcome log, so it reaches the audit log and the SIEM.
//! Actions are idempotent: applying a record twice is a duplicate, replacing with the same
//! decision is a no-op.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use flk_proto::v1;
use flk_proto::v1::replication_service_client::ReplicationServiceClient;
use flk_proto::{ApiError, ErrorKind};
use flk_runtime::client::EndpointOptions;
use sha2::{Digest as _, Sha256};

use crate::config::ReconcileMode;
use crate::merkle::{self, Divergence, Key, Leaf, MerkleError, TreeSource};
use crate::store::Proposal;
use crate::{Core, Link, now_ms, outcome_digest};

pub const REPLAY_MISSING: (&str, f64) = ("replay_missing", 0.9);
pub const CHOOSE_FIRST: (&str, f64) = ("choose_first", 0.7);
pub const QUORUM: (&str, f64) = ("quorum", 0.5);
pub const MANUAL_REVIEW: (&str, f64) = ("manual_review", 0.2);

/// Keys one round handles per peer at most (the rest in the next round).
const MAX_KEYS_PER_ROUND: usize = 10_000;
/// Records per FetchRecords / ApplyReplicated call.
const CHUNK: usize = 1_000;

type Client = ReplicationServiceClient<flk_runtime::client::Channel>;

async fn client(core: &Core, link: &Link) -> Result<Client, String> {
    let channel = core
        .peer_client
        .connect(
            &link.url,
            EndpointOptions {
                connect_timeout: Duration::from_secs(3),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| format!("cannot reach {}: {e:#}", link.url))?;
    Ok(ReplicationServiceClient::new(channel)
        .max_decoding_message_size(64 * 1024 * 1024)
        .max_encoding_message_size(64 * 1024 * 1024))
}

/// A peer's tree over gRPC.
pub struct RemoteTree {
    client: Client,
}

fn remote(s: tonic::Status) -> MerkleError {
    MerkleError::Remote(format!("{:?}: {}", s.code(), s.message()))
}

fn digest(bytes: &[u8]) -> Result<merkle::Digest, MerkleError> {
    bytes
        .try_into()
        .map_err(|_| MerkleError::Remote(format!("a hash of {} bytes", bytes.len())))
}

#[async_trait::async_trait]
impl TreeSource for RemoteTree {
    async fn roots(&self) -> Result<Vec<(String, merkle::Digest)>, MerkleError> {
        let r = self
            .client
            .clone()
            .tree_roots(v1::TreeRootsRequest {})
            .await
            .map_err(remote)?
            .into_inner();
        r.roots
            .into_iter()
            .map(|t| Ok((t.tenant_id, digest(&t.root)?)))
            .collect()
    }

    async fn nodes(
        &self,
        tenant_id: &str,
        level: u8,
        indices: &[u32],
    ) -> Result<Vec<merkle::Digest>, MerkleError> {
        let r = self
            .client
            .clone()
            .tree_nodes(v1::TreeNodesRequest {
                tenant_id: tenant_id.to_owned(),
                level: u32::from(level),
                indices: indices.to_vec(),
            })
            .await
            .map_err(remote)?
            .into_inner();
        if r.hashes.len() != indices.len() {
            return Err(MerkleError::Remote(format!(
                "{} hashes for {} nodes",
                r.hashes.len(),
                indices.len()
            )));
        }
        r.hashes.iter().map(|h| digest(h)).collect()
    }

    async fn bucket_leaves(
        &self,
        tenant_id: &str,
        buckets: &[u32],
    ) -> Result<Vec<(u32, Leaf)>, MerkleError> {
        let r = self
            .client
            .clone()
            .bucket_leaves(v1::BucketLeavesRequest {
                tenant_id: tenant_id.to_owned(),
                buckets: buckets.to_vec(),
            })
            .await
            .map_err(remote)?
            .into_inner();
        r.leaves
            .into_iter()
            .map(|l| {
                Ok((
                    l.bucket,
                    Leaf {
                        pcs_id: l.pcs_id,
                        digest: digest(&l.digest)?,
                        decided_at_ms: l.decided_at_unix_ms,
                    },
                ))
            })
            .collect()
    }
}

fn unavailable(message: String) -> ApiError {
    ApiError::new(ErrorKind::Unavailable, "peer_unavailable", message)
        .with_retry_after(Duration::from_secs(5))
}

/// What differs with `peer`, as this region's policies see it: keys that do not belong in
/// both regions are left out.
pub async fn divergence(core: &Core, peer: &str) -> Result<Divergence, ApiError> {
    let link = core.link(peer).ok_or_else(|| {
        ApiError::new(
            ErrorKind::NotFound,
            "unknown_peer",
            format!("{peer:?} is not a peer of region {:?}", core.cfg.region),
        )
    })?;
    let client = client(core, link).await.map_err(unavailable)?;
    let local = merkle::LocalTree::new(core.store.merkle.clone());
    let there = RemoteTree {
        client: client.clone(),
    };
    let raw = merkle::diff(&local, &there, core.horizon_ms())
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    let policies = core.policy_set();
    let region = core.cfg.region.as_str();
    let mut out = Divergence {
        conflicting: raw.conflicting,
        ..Default::default()
    };
    for k in raw.missing_there {
        let origin = core
            .store
            .origin(&k.tenant_id, &k.pcs_id)
            .map_err(|e| ApiError::new(ErrorKind::Unavailable, "store_unavailable", e.to_string()))?
            .unwrap_or_else(|| region.to_owned());
        if policies.expected_in(&k.tenant_id, &origin, peer) {
            out.missing_there.push(k);
        }
    }
    // Where a key missing here was decided is known from the peer's record. The tree follows
    // this region's log through the feed, so it lags it: a key the log already holds (a
    // record replicated a moment ago) is on its way to the tree, not missing.
    for chunk in raw.missing_here.chunks(CHUNK) {
        let records = fetch(&client, chunk).await.map_err(unavailable)?;
        let expected: Vec<Key> = records
            .into_iter()
            .filter(|r| policies.expected_in(&r.tenant_id, &r.region, region))
            .map(|r| Key {
                tenant_id: r.tenant_id,
                pcs_id: r.pcs_id,
            })
            .collect();
        if expected.is_empty() {
            continue;
        }
        let held: BTreeSet<Key> = local_records(core, &expected)
            .await?
            .into_iter()
            .map(|r| Key {
                tenant_id: r.tenant_id,
                pcs_id: r.pcs_id,
            })
            .collect();
        out.missing_here
            .extend(expected.into_iter().filter(|k| !held.contains(k)));
    }
    out.missing_here.sort();
    Ok(out)
}

fn records_request(keys: &[Key]) -> v1::GetRecordsRequest {
    v1::GetRecordsRequest {
        keys: keys
            .iter()
            .map(|k| v1::RecordKey {
                tenant_id: k.tenant_id.clone(),
                pcs_id: k.pcs_id.clone(),
            })
            .collect(),
    }
}

/// The records of `keys` this region's svc-verify holds.
async fn local_records(core: &Core, keys: &[Key]) -> Result<Vec<v1::FeedRecord>, ApiError> {
    core.verify
        .clone()
        .get_records(records_request(keys))
        .await
        .map(|r| r.into_inner().records)
        .map_err(|s| {
            ApiError::new(
                ErrorKind::Unavailable,
                "verify_unavailable",
                format!("svc-verify: {}", s.message()),
            )
            .with_retry_after(Duration::from_secs(5))
        })
}

async fn fetch(client: &Client, keys: &[Key]) -> Result<Vec<v1::FeedRecord>, String> {
    Ok(client
        .clone()
        .fetch_records(records_request(keys))
        .await
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?
        .into_inner()
        .records)
}

/// Runs anti-entropy rounds until the task is aborted.
pub async fn run(core: Arc<Core>) {
    let every = core.cfg.anti_entropy_every();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        if let Some(cutoff) = core.cfg.retention_ms().ok().flatten() {
            let store_core = core.clone();
            let cutoff = now_ms().saturating_sub(cutoff);
            match tokio::task::spawn_blocking(move || store_core.store.prune(cutoff)).await {
                Ok(Ok(n)) if n > 0 => {
                    tracing::info!(removed = n, "tree leaves past retention removed")
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "tree retention failed"),
                Err(e) => tracing::warn!(error = %e, "tree retention task failed"),
            }
        }
        for link in &core.links {
            if let Err(e) = round(&core, &link.region).await {
                tracing::warn!(peer = %link.region, error = %e.message, "anti-entropy round failed");
            }
        }
    }
}

/// One comparison with `peer` and the proposals it makes (applied at once as the mode
/// allows); what was found.
pub async fn round(core: &Core, peer: &str) -> Result<Divergence, ApiError> {
    let _one = core.reconciling.lock().await;
    let d = divergence(core, peer).await?;
    let total = d.missing_here.len() + d.missing_there.len() + d.conflicting.len();
    core.last_divergence
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(peer.to_owned(), total);
    core.metrics
        .divergence
        .with_label_values(&[peer])
        .set(total as i64);
    if d.is_empty() {
        return Ok(d);
    }
    let mut groups: BTreeMap<(&'static str, String), (f64, Vec<Key>)> = BTreeMap::new();
    for k in d.missing_here.iter().take(MAX_KEYS_PER_ROUND) {
        groups
            .entry((REPLAY_MISSING.0, k.tenant_id.clone()))
            .or_insert_with(|| (REPLAY_MISSING.1, Vec::new()))
            .1
            .push(k.clone());
    }
    for c in d.conflicting.iter().take(MAX_KEYS_PER_ROUND) {
        let key = Key {
            tenant_id: c.tenant_id.clone(),
            pcs_id: c.pcs_id.clone(),
        };
        let (action, safety) = conflict_action(core, &key).await;
        groups
            .entry((action, key.tenant_id.clone()))
            .or_insert_with(|| (safety, Vec::new()))
            .1
            .push(key);
    }
    for ((action, tenant), (safety, keys)) in groups {
        propose(core, peer, action, safety, &tenant, keys).await?;
    }
    Ok(d)
}

/// The action for a conflicting key: how many regions hold it decides between choose-first
/// and quorum.
async fn conflict_action(core: &Core, key: &Key) -> (&'static str, f64) {
    let votes = votes(core, key).await;
    if votes.values().sum::<usize>() <= 2 {
        return CHOOSE_FIRST;
    }
    match majority(&votes) {
        Some(_) => QUORUM,
        None => MANUAL_REVIEW,
    }
}

/// Outcome digest -> how many regions (this one included) hold it for `key`; peers that do
/// not answer are not counted.
async fn votes(core: &Core, key: &Key) -> BTreeMap<merkle::Digest, usize> {
    let mut votes = BTreeMap::new();
    if let Ok(Some(l)) = core.store.merkle.leaf(&key.tenant_id, &key.pcs_id) {
        *votes.entry(l.digest).or_default() += 1;
    }
    for link in &core.links {
        let Ok(c) = client(core, link).await else {
            continue;
        };
        if let Ok(records) = fetch(&c, std::slice::from_ref(key)).await {
            for r in records {
                *votes.entry(outcome_digest(&r)).or_default() += 1;
            }
        }
    }
    votes
}

fn majority(votes: &BTreeMap<merkle::Digest, usize>) -> Option<merkle::Digest> {
    let total: usize = votes.values().sum();
    votes.iter().find(|(_, n)| **n * 2 > total).map(|(d, _)| *d)
}

fn proposal_id(action: &str, peer: &str, tenant: &str, keys: &[Key]) -> String {
    let mut h = Sha256::new();
    for part in [action, peer, tenant] {
        h.update((part.len() as u32).to_be_bytes());
        h.update(part.as_bytes());
    }
    let sorted: BTreeSet<&str> = keys.iter().map(|k| k.pcs_id.as_str()).collect();
    for k in sorted {
        h.update(k.as_bytes());
    }
    hex::encode(&h.finalize()[..12])
}

fn auto_applies(core: &Core, action: &str, safety: f64) -> bool {
    match core.cfg.reconcile_mode {
        ReconcileMode::Manual => false,
        ReconcileMode::AutoSafe => safety >= core.cfg.safety_threshold,
        ReconcileMode::AutoAggressive => action != MANUAL_REVIEW.0,
    }
}

fn store_error(e: crate::store::StoreError) -> ApiError {
    ApiError::new(ErrorKind::Unavailable, "store_unavailable", e.to_string())
        .with_retry_after(Duration::from_secs(1))
}

/// Records a proposal (once per id) and applies it when the mode allows.
async fn propose(
    core: &Core,
    peer: &str,
    action: &'static str,
    safety: f64,
    tenant: &str,
    keys: Vec<Key>,
) -> Result<(), ApiError> {
    let id = proposal_id(action, peer, tenant, &keys);
    if core.store.proposal(&id).map_err(store_error)?.is_some() {
        // Already proposed: pending approval, or decided (a rejected repair is not proposed
        // again for the same keys).
        return Ok(());
    }
    let mut p = Proposal {
        id,
        action: action.to_owned(),
        safety,
        peer: peer.to_owned(),
        keys,
        state: "pending".to_owned(),
        created_at_ms: now_ms(),
        decided_by: None,
        decided_at_ms: None,
        applied_at_ms: None,
        detail: String::new(),
    };
    core.store.put_proposal(&p).map_err(store_error)?;
    core.metrics.proposals.with_label_values(&[action]).inc();
    record_event(core, &p, "proposed", "svc-crr").await;
    if auto_applies(core, action, safety) {
        p.state = "approved".to_owned();
        p.decided_by = Some("auto".to_owned());
        p.decided_at_ms = Some(now_ms());
        core.store.put_proposal(&p).map_err(store_error)?;
        record_event(core, &p, "approved", "auto").await;
        execute(core, &mut p).await?;
    }
    Ok(())
}

/// Approves or rejects a pending proposal; an approved one is applied at once.
pub async fn decide(
    core: &Core,
    id: &str,
    approve: bool,
    actor: &str,
) -> Result<Proposal, ApiError> {
    let _one = core.reconciling.lock().await;
    let mut p = core
        .store
        .proposal(id)
        .map_err(store_error)?
        .ok_or_else(|| {
            ApiError::new(
                ErrorKind::NotFound,
                "unknown_proposal",
                format!("no proposal {id:?}"),
            )
        })?;
    if p.state != "pending" {
        return Err(ApiError::new(
            ErrorKind::FailedPrecondition,
            "proposal_decided",
            format!("proposal {id} is already {}", p.state),
        ));
    }
    p.decided_by = Some(actor.to_owned());
    p.decided_at_ms = Some(now_ms());
    p.state = if approve { "approved" } else { "rejected" }.to_owned();
    core.store.put_proposal(&p).map_err(store_error)?;
    record_event(core, &p, &p.state.clone(), actor).await;
    if approve {
        execute(core, &mut p).await?;
    }
    Ok(p)
}

/// Runs an approved proposal's action; its state becomes `applied` or `failed`.
async fn execute(core: &Core, p: &mut Proposal) -> Result<(), ApiError> {
    let result = match p.action.as_str() {
        "replay_missing" => replay(core, p, false).await,
        "choose_first" => choose_first(core, p).await,
        "quorum" => quorum(core, p).await,
        _ => Ok("nothing to apply: a human decides (manual review)".to_owned()),
    };
    match result {
        Ok(detail) => {
            p.state = "applied".to_owned();
            p.applied_at_ms = Some(now_ms());
            p.detail = detail;
        }
        Err(e) => {
            p.state = "failed".to_owned();
            p.detail = e;
        }
    }
    core.store.put_proposal(p).map_err(store_error)?;
    record_event(
        core,
        p,
        &p.state.clone(),
        p.decided_by.as_deref().unwrap_or("auto"),
    )
    .await;
    Ok(())
}

/// Applies the peer's records of the proposal's keys here (`replace`: overwriting the
/// stored decisions, a reconciliation).
async fn apply_from_peer(
    core: &Core,
    peer: &str,
    keys: &[Key],
    replace: bool,
) -> Result<(u64, u64, u64), String> {
    let link = core
        .link(peer)
        .ok_or_else(|| format!("{peer:?} is no longer a peer"))?;
    let c = client(core, link).await?;
    let (mut applied, mut same, mut refused) = (0, 0, 0);
    for chunk in keys.chunks(CHUNK) {
        let records = fetch(&c, chunk).await?;
        if records.is_empty() {
            continue;
        }
        let results = core
            .verify
            .clone()
            .apply_replicated(v1::ApplyReplicatedRequest { records, replace })
            .await
            .map_err(|s| format!("svc-verify: {}", s.message()))?
            .into_inner()
            .results;
        for r in results {
            match v1::ApplyStatus::try_from(r.status) {
                Ok(v1::ApplyStatus::Applied) => applied += 1,
                Ok(v1::ApplyStatus::Duplicate) => same += 1,
                _ => refused += 1,
            }
        }
    }
    Ok((applied, same, refused))
}

async fn replay(core: &Core, p: &Proposal, replace: bool) -> Result<String, String> {
    let (applied, same, refused) = apply_from_peer(core, &p.peer, &p.keys, replace).await?;
    core.metrics
        .repaired
        .with_label_values(&[p.action.as_str()])
        .inc_by(applied);
    Ok(format!(
        "{applied} applied, {same} already held, {refused} refused or conflicting"
    ))
}

/// Earliest decision wins: the keys where the peer's decision is earlier are replaced here.
async fn choose_first(core: &Core, p: &Proposal) -> Result<String, String> {
    let link = core
        .link(&p.peer)
        .ok_or_else(|| format!("{:?} is no longer a peer", p.peer))?;
    let c = client(core, link).await?;
    let mut theirs_first = Vec::new();
    let records = fetch(&c, &p.keys).await?;
    for r in records {
        let mine = core
            .store
            .merkle
            .leaf(&r.tenant_id, &r.pcs_id)
            .map_err(|e| e.to_string())?;
        let their_digest = outcome_digest(&r);
        let earlier = match mine {
            None => true,
            Some(l) => (r.decided_at_unix_ms, their_digest) < (l.decided_at_ms, l.digest),
        };
        if earlier {
            theirs_first.push(Key {
                tenant_id: r.tenant_id,
                pcs_id: r.pcs_id,
            });
        }
    }
    let kept = p.keys.len() - theirs_first.len();
    let (applied, same, refused) = apply_from_peer(core, &p.peer, &theirs_first, true).await?;
    core.metrics
        .repaired
        .with_label_values(&["choose_first"])
        .inc_by(applied);
    Ok(format!(
        "{applied} replaced by the peer's earlier decision, {kept} kept (earlier here), {same} unchanged, {refused} refused"
    ))
}

/// The majority's decision replaces a minority one here.
async fn quorum(core: &Core, p: &Proposal) -> Result<String, String> {
    let (mut replaced, mut kept) = (0u64, 0u64);
    for key in &p.keys {
        let votes = votes(core, key).await;
        let Some(winner) = majority(&votes) else {
            kept += 1;
            continue;
        };
        let mine = core
            .store
            .merkle
            .leaf(&key.tenant_id, &key.pcs_id)
            .map_err(|e| e.to_string())?;
        if mine.is_some_and(|l| l.digest == winner) {
            kept += 1;
            continue;
        }
        // Take the winning record from a peer that holds it.
        let mut done = false;
        for link in &core.links {
            let Ok(c) = client(core, link).await else {
                continue;
            };
            let Ok(records) = fetch(&c, std::slice::from_ref(key)).await else {
                continue;
            };
            if records.iter().any(|r| outcome_digest(r) == winner) {
                let (applied, _, _) =
                    apply_from_peer(core, &link.region, std::slice::from_ref(key), true).await?;
                replaced += applied;
                done = true;
                break;
            }
        }
        if !done {
            kept += 1;
        }
    }
    core.metrics
        .repaired
        .with_label_values(&["quorum"])
        .inc_by(replaced);
    Ok(format!(
        "{replaced} replaced by the majority's decision, {kept} kept"
    ))
}

/// Records a proposal event in the outcome log (audit log, SIEM). Best effort: the proposal
/// itself is already persisted; a failure is logged.
async fn record_event(core: &Core, p: &Proposal, what: &str, actor: &str) {
    let tenant = p
        .keys
        .first()
        .map(|k| k.tenant_id.clone())
        .unwrap_or_default();
    let event = serde_json::json!({
        "type": "crr_proposal",
        "event": what,
        "region": core.cfg.region,
        "peer": p.peer,
        "proposal_id": p.id,
        "action": p.action,
        "safety": p.safety,
        "state": p.state,
        "actor": actor,
        "keys": p.keys.len(),
        "pcs_ids": p.keys.iter().take(100).map(|k| k.pcs_id.as_str()).collect::<Vec<_>>(),
        "detail": p.detail,
        "at_unix_ms": now_ms(),
    });
    let r = core
        .verify
        .clone()
        .record_event(v1::RecordEventRequest {
            tenant_id: tenant,
            pcs_id: p.keys.first().map(|k| k.pcs_id.clone()).unwrap_or_default(),
            event_json: event.to_string(),
        })
        .await;
    if let Err(s) = r {
        tracing::warn!(proposal = %p.id, error = %s.message(), "cannot record the proposal event");
    }
}
