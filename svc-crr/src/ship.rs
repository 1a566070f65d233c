//! One shipper per peer region: tails this region's outcome feed from the watermark the peer
//! acknowledged and ships what the policies send there, in acknowledged batches.
//!
//! * **Order and priority.** The feed is read in order into windows (what is ready, up to
//!   four batches); inside a window a higher-priority tenant's records ship first. The
//!   watermark moves to a window's last seq only once every batch of the window is
//!   acknowledged, so a crash re-ships at most one window (the receiver is idempotent).
//! * **What ships.** Decisions this region made whose tenant's policy names the peer; never a
//!   replicated record (one hop from the origin, no loops), never a conflict event.
//! * **Failures.** A lost link, a refused batch or a peer that answers as another region is
//!   recorded (`last_error`, errors per hour for the health gate) and retried with capped
//!   backoff from the persisted watermark: nothing is skipped.

use std::sync::Arc;
use std::time::Duration;

use flk_proto::v1;
use flk_proto::v1::replication_service_client::ReplicationServiceClient;
use flk_runtime::client::EndpointOptions;
use futures::StreamExt as _;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::{Core, Link, now_ms};

/// Runs the link until the task is aborted.
pub async fn run(core: Arc<Core>, link: Arc<Link>) {
    let mut delay = Duration::from_millis(core.cfg.reconnect_initial_ms.max(1));
    let max = Duration::from_millis(core.cfg.reconnect_max_ms.max(1));
    loop {
        let started = tokio::time::Instant::now();
        let e = match session(&core, &link).await {
            Ok(()) => "the session ended".to_owned(),
            Err(e) => e,
        };
        {
            let mut st = link.state.lock().unwrap_or_else(|p| p.into_inner());
            st.connected = false;
            st.oldest_unacked_ms = None;
            st.last_error = Some(e.clone());
            let now = now_ms();
            st.errors.push_back(now);
            while st.errors.front().is_some_and(|t| *t < now - 3_600_000) {
                st.errors.pop_front();
            }
        }
        core.metrics
            .ship_errors
            .with_label_values(&[&link.region])
            .inc();
        tracing::warn!(peer = %link.region, error = %e, "replication link down; retrying");
        if started.elapsed() > Duration::from_secs(10) {
            delay = Duration::from_millis(core.cfg.reconnect_initial_ms.max(1));
        }
        tokio::time::sleep(flk_runtime::feed::backoff(&mut delay, max)).await;
    }
}

fn status(s: tonic::Status) -> String {
    format!("{:?}: {}", s.code(), s.message())
}

/// One connection: hello, then windows of the feed until something fails.
async fn session(core: &Arc<Core>, link: &Arc<Link>) -> Result<(), String> {
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
    let mut client = ReplicationServiceClient::new(channel)
        .max_decoding_message_size(64 * 1024 * 1024)
        .max_encoding_message_size(64 * 1024 * 1024);
    let hello = client
        .hello(v1::HelloRequest {
            source: core.cfg.region.clone(),
        })
        .await
        .map_err(status)?
        .into_inner();
    {
        let mut st = link.state.lock().unwrap_or_else(|p| p.into_inner());
        st.answered_as = Some(hello.region.clone());
    }
    if hello.region != link.region {
        return Err(format!(
            "the peer at {} is region {:?}, configured as {:?}",
            link.url, hello.region, link.region
        ));
    }
    let from = core
        .store
        .ship_acked(&link.region)
        .map_err(|e| e.to_string())?;
    let mut feed = core.feed.subscribe(from + 1).await?;
    let (tx, rx) = mpsc::channel::<v1::ShipBatch>(4);
    let mut acks = client
        .ship(ReceiverStream::new(rx))
        .await
        .map_err(status)?
        .into_inner();
    {
        let mut st = link.state.lock().unwrap_or_else(|p| p.into_inner());
        st.connected = true;
        st.last_error = None;
    }
    let batch_max = core.cfg.batch_max_records;
    let window_max = batch_max * 4;
    let interval = Duration::from_millis(core.cfg.batch_interval_ms.max(1));
    let mut carry: Vec<v1::FeedRecord> = Vec::new();
    let mut acked = from;
    loop {
        // A window: what is ready (waiting up to `interval` for more once something is).
        let mut window = std::mem::take(&mut carry);
        if window.is_empty() {
            match feed.next().await {
                Some(Ok(b)) => window.extend(b.iter().filter(|r| r.seq > acked).cloned()),
                Some(Err(e)) => return Err(format!("feed: {e}")),
                None => return Err("the feed ended".to_owned()),
            }
        }
        let deadline = tokio::time::Instant::now() + interval;
        while window.len() < window_max {
            match tokio::time::timeout_at(deadline, feed.next()).await {
                Ok(Some(Ok(b))) => window.extend(b.iter().filter(|r| r.seq > acked).cloned()),
                Ok(Some(Err(e))) => return Err(format!("feed: {e}")),
                Ok(None) => return Err("the feed ended".to_owned()),
                Err(_) => break,
            }
        }
        if window.is_empty() {
            continue;
        }
        if window.len() > window_max {
            carry = window.split_off(window_max);
        }
        let last_seq = window.last().map_or(acked, |r| r.seq);
        let policies = core.policy_set();
        let mut ship: Vec<(u8, v1::FeedRecord)> = window
            .into_iter()
            .filter(|r| {
                r.kind == v1::RecordKind::Decision as i32
                    && !r.replicated
                    && policies.ships(&r.tenant_id, &r.region, &link.region)
            })
            .map(|r| (policies.resolve(&r.tenant_id).priority, r))
            .collect();
        // Higher priority first; feed order within a priority (stable sort).
        ship.sort_by_key(|(p, _)| std::cmp::Reverse(*p));
        let records: Vec<v1::FeedRecord> = ship.into_iter().map(|(_, r)| r).collect();
        if records.is_empty() {
            // Nothing for this peer in the window: the watermark moves without a round trip.
            core.store
                .set_ship_acked(&link.region, last_seq)
                .map_err(|e| e.to_string())?;
            acked = last_seq;
            note_acked(core, link, acked, None);
            continue;
        }
        let oldest = records.iter().map(|r| r.decided_at_unix_ms).min();
        link.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .oldest_unacked_ms = oldest;
        let chunks: Vec<Vec<v1::FeedRecord>> =
            records.chunks(batch_max).map(<[_]>::to_vec).collect();
        let n = chunks.len();
        for (i, chunk) in chunks.into_iter().enumerate() {
            let count = chunk.len() as u64;
            let batch = v1::ShipBatch {
                source: core.cfg.region.clone(),
                target: link.region.clone(),
                records: chunk,
                last_seq: if i + 1 == n { last_seq } else { 0 },
            };
            tx.send(batch)
                .await
                .map_err(|_| "the ship stream closed".to_owned())?;
            match acks.next().await {
                Some(Ok(_ack)) => {
                    core.metrics
                        .shipped
                        .with_label_values(&[&link.region])
                        .inc_by(count);
                }
                Some(Err(s)) => return Err(status(s)),
                None => return Err("the peer closed the ship stream".to_owned()),
            }
        }
        core.store
            .set_ship_acked(&link.region, last_seq)
            .map_err(|e| e.to_string())?;
        acked = last_seq;
        note_acked(core, link, acked, oldest);
    }
}

/// Publishes a new watermark (status, metrics).
fn note_acked(core: &Core, link: &Link, acked: u64, oldest: Option<i64>) {
    let lag = oldest.map_or(0.0, |t| (now_ms() - t).max(0) as f64 / 1000.0);
    {
        let mut st = link.state.lock().unwrap_or_else(|p| p.into_inner());
        st.acked = acked;
        st.oldest_unacked_ms = None;
    }
    core.metrics
        .lag_seconds
        .with_label_values(&[&link.region])
        .set(lag);
}
