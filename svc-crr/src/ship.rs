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
    let feed = core.feed.subscribe(from + 1).await?;
    let (tx, rx) = mpsc::channel::<v1::ShipBatch>(PIPELINE);
    let acks = client
        .ship(ReceiverStream::new(rx))
        .await
        .map_err(status)?
        .into_inner();
    {
        let mut st = link.state.lock().unwrap_or_else(|p| p.into_inner());
        st.connected = true;
        st.last_error = None;
    }
    // What the acknowledgements will answer, in order; its bound is the batches in flight.
    let (sent_tx, sent_rx) = mpsc::channel::<Sent>(PIPELINE);
    tokio::select! {
        r = send_windows(core, link, feed, from, tx, sent_tx) => r,
        r = read_acks(core, link, acks, sent_rx) => r,
    }
}

/// Batches in flight on a link at most: the sender collects and ships the next window while
/// the peer applies the previous ones (it applies several concurrently and acknowledges them
/// in order).
const PIPELINE: usize = 8;

/// A batch on the wire, as its acknowledgement will close it.
struct Sent {
    records: u64,
    /// The window's last feed seq, on the window's last batch.
    window_end: Option<u64>,
}

/// Reads the feed into windows and ships them, never waiting for an acknowledgement except
/// when [`PIPELINE`] batches are in flight.
async fn send_windows(
    core: &Arc<Core>,
    link: &Arc<Link>,
    mut feed: flk_runtime::feed::BatchStream,
    from: u64,
    tx: mpsc::Sender<v1::ShipBatch>,
    sent: mpsc::Sender<Sent>,
) -> Result<(), String> {
    let batch_max = core.cfg.batch_max_records;
    let window_max = batch_max * 4;
    let interval = Duration::from_millis(core.cfg.batch_interval_ms.max(1));
    let mut carry: Vec<v1::FeedRecord> = Vec::new();
    let mut shipped_to = from;
    loop {
        // A window: what is ready (waiting up to `interval` for more once something is).
        let mut window = std::mem::take(&mut carry);
        if window.is_empty() {
            match feed.next().await {
                Some(Ok(b)) => window.extend(b.iter().filter(|r| r.seq > shipped_to).cloned()),
                Some(Err(e)) => return Err(format!("feed: {e}")),
                None => return Err("the feed ended".to_owned()),
            }
        }
        let deadline = tokio::time::Instant::now() + interval;
        while window.len() < window_max {
            match tokio::time::timeout_at(deadline, feed.next()).await {
                Ok(Some(Ok(b))) => window.extend(b.iter().filter(|r| r.seq > shipped_to).cloned()),
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
        let last_seq = window.last().map_or(shipped_to, |r| r.seq);
        shipped_to = last_seq;
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
        let oldest = records.iter().map(|r| r.decided_at_unix_ms).min();
        {
            // After a reconnection the windows up to the newest pending one are shipped again:
            // they are pending already (with their oldest decision time), not twice.
            let mut st = link.state.lock().unwrap_or_else(|p| p.into_inner());
            if st.pending.back().is_none_or(|(seq, _)| *seq < last_seq) {
                st.pending.push_back((last_seq, oldest));
            }
        }
        if records.is_empty() {
            // Nothing for this peer in the window: an empty batch carries the watermark, so
            // that it moves in order behind the batches still in flight.
            sent.send(Sent {
                records: 0,
                window_end: Some(last_seq),
            })
            .await
            .map_err(|_| "the acknowledgement reader stopped".to_owned())?;
            tx.send(v1::ShipBatch {
                source: core.cfg.region.clone(),
                target: link.region.clone(),
                records: Vec::new(),
                last_seq,
            })
            .await
            .map_err(|_| "the ship stream closed".to_owned())?;
            continue;
        }
        let n = records.len().div_ceil(batch_max);
        let mut records = records.into_iter();
        for i in 0..n {
            let chunk: Vec<v1::FeedRecord> = records.by_ref().take(batch_max).collect();
            let last = i + 1 == n;
            sent.send(Sent {
                records: chunk.len() as u64,
                window_end: last.then_some(last_seq),
            })
            .await
            .map_err(|_| "the acknowledgement reader stopped".to_owned())?;
            tx.send(v1::ShipBatch {
                source: core.cfg.region.clone(),
                target: link.region.clone(),
                records: chunk,
                last_seq: if last { last_seq } else { 0 },
            })
            .await
            .map_err(|_| "the ship stream closed".to_owned())?;
        }
    }
}

/// Closes batches as the peer acknowledges them, in order; a window's last acknowledgement
/// moves the persisted watermark.
async fn read_acks(
    core: &Arc<Core>,
    link: &Arc<Link>,
    mut acks: tonic::Streaming<v1::ShipAck>,
    mut sent: mpsc::Receiver<Sent>,
) -> Result<(), String> {
    while let Some(batch) = sent.recv().await {
        match acks.next().await {
            Some(Ok(_ack)) => {}
            Some(Err(s)) => return Err(status(s)),
            None => return Err("the peer closed the ship stream".to_owned()),
        }
        core.metrics
            .shipped
            .with_label_values(&[&link.region])
            .inc_by(batch.records);
        if let Some(seq) = batch.window_end {
            core.store
                .set_ship_acked(&link.region, seq)
                .map_err(|e| e.to_string())?;
            note_acked(core, link, seq);
        }
    }
    Err("the sender stopped".to_owned())
}

/// Publishes a new watermark (status, metrics): the windows it closes leave the pending list,
/// and the lag becomes the age of the oldest record still in flight.
fn note_acked(core: &Core, link: &Link, acked: u64) {
    let oldest = {
        let mut st = link.state.lock().unwrap_or_else(|p| p.into_inner());
        st.acked = acked;
        st.progress_ms = now_ms();
        while st.pending.front().is_some_and(|(seq, _)| *seq <= acked) {
            st.pending.pop_front();
        }
        st.oldest_unacked_ms()
    };
    let lag = oldest.map_or(0.0, |t| (now_ms() - t).max(0) as f64 / 1000.0);
    core.metrics
        .lag_seconds
        .with_label_values(&[&link.region])
        .set(lag);
}
