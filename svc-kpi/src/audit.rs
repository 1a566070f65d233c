//! svc-audit as a source of KPIs: polls `AuditService` every `audit_poll_ms` for
//! * the number of decisions the checkpoint covers (`decisions`; the tree size from an
//!   svc-audit that predates it, which also counts events), handed to [`Kpi::set_audit_logged`]
//!   for audit coverage (while svc-audit is unreachable the last count is kept: coverage then
//!   reads low, never high);
//! * the anchors it stored since the last poll (`ListAnchors` from the import cursor's
//!   checkpoint size), imported with [`Kpi::import_anchors`] as anchoring batches by strategy
//!   for the anchoring cost. The import cursor is in the KPI store, so a restart neither
//!   loses nor recounts a batch.

use std::sync::Arc;
use std::time::Duration;

use crate::store::AnchorSeen;
use crate::{Kpi, blocking};
use flk_proto::v1;
use flk_runtime::client::{AuditClient, EndpointOptions, Peer};

fn status(s: tonic::Status) -> String {
    format!("{:?}: {}", s.code(), s.message())
}

/// One poll: the checkpoint size, then the new anchors.
async fn poll_once(client: &mut AuditClient, kpi: &Arc<Kpi>) -> Result<(), String> {
    let cp = client
        .get_checkpoint(v1::GetCheckpointRequest {})
        .await
        .map_err(status)?;
    let cp = cp.into_inner();
    kpi.set_audit_logged(Some(cp.decisions.unwrap_or(cp.size)));

    let cursor = blocking(kpi, |k| k.store().anchor_import_cursor())
        .await
        .map_err(|e| e.to_string())?;
    let listed = client
        .list_anchors(v1::ListAnchorsRequest {
            min_checkpoint_size: cursor.min_checkpoint_size,
        })
        .await
        .map_err(status)?
        .into_inner()
        .anchors;
    let fresh: Vec<AnchorSeen> = listed
        .into_iter()
        .filter(|a| a.id >= cursor.next_id)
        .map(|a| AnchorSeen {
            id: a.id,
            strategy: a.strategy,
            checkpoint_size: a.checkpoint_size,
            created_at_unix_ms: a.created_at_unix.saturating_mul(1000),
        })
        .collect();
    if !fresh.is_empty() {
        blocking(kpi, move |k| k.import_anchors(&fresh))
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Polls forever (the task is aborted with the service).
pub async fn poll(url: String, peer: Peer, every: Duration, kpi: Arc<Kpi>) {
    let mut client: Option<AuditClient> = None;
    loop {
        let result = match &mut client {
            Some(c) => poll_once(c, &kpi).await,
            None => match peer.connect(&url, EndpointOptions::default()).await {
                Ok(ch) => {
                    let c = client.insert(AuditClient::new(ch));
                    poll_once(c, &kpi).await
                }
                Err(e) => Err(format!("{e:#}")),
            },
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, url = %url, "cannot read svc-audit's checkpoint or anchors");
            // Reconnect next time (tonic channels reconnect by themselves, but a channel that
            // never connected is not kept).
            client = None;
        }
        tokio::time::sleep(every).await;
    }
}
