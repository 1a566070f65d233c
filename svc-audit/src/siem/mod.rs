//! SIEM streaming: every entry of the audit log (and every checkpoint and anchor of it) as an
//! event ([`event`]) in the SIEMs the operator runs ([`sink`]: Splunk HEC, Datadog, Elasticsearch,
//! Sumo Logic), at least once, with nothing lost across crashes and outages.
//!
//! Each sink has two tasks and a spool ([`spool`]) in `<data_dir>/siem/<name>/`:
//!
//! * the **reader** tails the integrated log (woken by every append), turns entries into
//!   envelopes, adds an `audit_checkpoint` event each time it reaches the published
//!   checkpoint and an `anchor` event per anchor of the journal, and appends them to the
//!   spool while it is under `spool_max_bytes`; when the spool is full it waits (the log keeps
//!   everything, so nothing is dropped and the submit path never waits for a SIEM);
//! * the **sender** reads batches from the spool (cut at `batch_max_events`,
//!   `batch_max_bytes`, or `flush_interval_ms` after the batch's first event), sends them split
//!   to the product's limits, retries what the product says to retry (Elasticsearch items
//!   alone) with exponential backoff and full jitter, never sooner than `Retry-After`,
//!   dead-letters what it refuses for good, and only then moves the cursor past the batch.
//!
//! Because events come from the log, every shipped event can be proved (`details.audit_index`
//! names its leaf), and event ids are deterministic, so the batches resent after a crash are
//! recognisable duplicates (Elasticsearch refuses them with 409, counted as delivered).
//!
//! Per tenant, events are sent in log order; a retried request keeps its place. Elasticsearch
//! items retried alone may land after later items of the same bulk request, so there order is
//! that of `details.audit_index` and `time`.
//!
//! Metrics, per `sink`: `flk_siem_events_sent_total`, `flk_siem_events_retried_total`,
//! `flk_siem_dead_letter_total`, `flk_siem_lag_seconds` (age of the oldest event not yet
//! delivered; 0 when none waits), `flk_siem_spool_bytes`, `flk_siem_delivery_seconds`
//! (event time to acknowledgement) and `flk_siem_requests_total{result}`.

pub mod config;
pub mod event;
pub mod sink;
pub mod spool;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flk_runtime::feed::AbortOnDrop;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};
use rand::Rng as _;
use tokio::sync::Notify;

pub use config::{ResolvedSink, SiemConfig, SinkConfig, SinkKind};

use crate::anchoring::AnchorStore;
use crate::ledger::Ledger;
use event::Encoder;
use sink::{Sender, Verdict};
use spool::{Item, Position, Spool};

/// Log entries read per step of the reader.
const READ_CHUNK: u64 = 4096;
/// How often the reader looks at the anchor journal when the log is idle.
const ANCHOR_POLL: Duration = Duration::from_secs(1);

/// The stage's metrics.
#[derive(Clone)]
pub struct SiemMetrics {
    sent: IntCounterVec,
    retried: IntCounterVec,
    dead: IntCounterVec,
    lag: prometheus::GaugeVec,
    spool_bytes: IntGaugeVec,
    delivery: HistogramVec,
    requests: IntCounterVec,
}

impl SiemMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<SiemMetrics> {
        let m = SiemMetrics {
            sent: IntCounterVec::new(
                Opts::new("flk_siem_events_sent_total", "events the SIEM acknowledged"),
                &["sink"],
            )?,
            retried: IntCounterVec::new(
                Opts::new(
                    "flk_siem_events_retried_total",
                    "events sent again after a retryable refusal or failure",
                ),
                &["sink"],
            )?,
            dead: IntCounterVec::new(
                Opts::new(
                    "flk_siem_dead_letter_total",
                    "events the SIEM refused for good, kept in the sink's dead-letter file",
                ),
                &["sink"],
            )?,
            lag: prometheus::GaugeVec::new(
                Opts::new(
                    "flk_siem_lag_seconds",
                    "age of the oldest event not yet delivered (0 when none waits)",
                ),
                &["sink"],
            )?,
            spool_bytes: IntGaugeVec::new(
                Opts::new(
                    "flk_siem_spool_bytes",
                    "encoded events spooled on disk and not yet acknowledged",
                ),
                &["sink"],
            )?,
            delivery: HistogramVec::new(
                HistogramOpts::new(
                    "flk_siem_delivery_seconds",
                    "time from an event (its decision) to the SIEM's acknowledgement",
                )
                .buckets(vec![
                    0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.0, 5.0, 15.0, 60.0, 300.0,
                ]),
                &["sink"],
            )?,
            requests: IntCounterVec::new(
                Opts::new(
                    "flk_siem_requests_total",
                    "batches sent, by result (delivered, retried, dead_letter, partial)",
                ),
                &["sink", "result"],
            )?,
        };
        registry.register(Box::new(m.sent.clone()))?;
        registry.register(Box::new(m.retried.clone()))?;
        registry.register(Box::new(m.dead.clone()))?;
        registry.register(Box::new(m.lag.clone()))?;
        registry.register(Box::new(m.spool_bytes.clone()))?;
        registry.register(Box::new(m.delivery.clone()))?;
        registry.register(Box::new(m.requests.clone()))?;
        Ok(m)
    }
}

/// The running stage: dropping it stops every task (what was not acknowledged is sent again
/// on the next start).
pub struct SiemStage {
    _tasks: Vec<AbortOnDrop>,
}

/// One sink's shared state.
struct SinkCtx {
    name: String,
    cfg: SinkConfig,
    spool: Spool,
    /// The reader appended; the sender may have more to send.
    appended: Notify,
    /// The sender acknowledged; the spool has room again.
    drained: Notify,
    metrics: SiemMetrics,
}

impl SiemStage {
    /// Opens every sink's spool and starts its tasks. `sinks` are resolved (secrets read);
    /// an unusable spool directory is an error naming the sink.
    pub fn start(
        cfg: &SiemConfig,
        sinks: Vec<ResolvedSink>,
        data_dir: &Path,
        origin: &str,
        ledger: Arc<Ledger>,
        anchors: Arc<AnchorStore>,
        metrics: SiemMetrics,
    ) -> anyhow::Result<SiemStage> {
        let host = cfg.host.clone().unwrap_or_else(hostname);
        let encoder = Encoder::new(origin, &cfg.redact);
        let mut tasks = Vec::new();
        for sink in sinks {
            let name = sink.cfg.name.clone();
            let dir = data_dir.join("siem").join(&name);
            let spool = Spool::open(&dir, cfg.spool_max_bytes).map_err(|e| {
                anyhow::anyhow!(
                    "siem sink {name:?}: cannot open its spool in {}: {e}",
                    dir.display()
                )
            })?;
            let sender = Sender::new(sink.clone(), &host)
                .map_err(|e| anyhow::anyhow!("siem sink {name:?}: {e}"))?;
            let ctx = Arc::new(SinkCtx {
                name: name.clone(),
                cfg: sink.cfg,
                spool,
                appended: Notify::new(),
                drained: Notify::new(),
                metrics: metrics.clone(),
            });
            ctx.metrics
                .spool_bytes
                .with_label_values(&[&name])
                .set(i64::try_from(ctx.spool.bytes()).unwrap_or(i64::MAX));
            for c in [&ctx.metrics.sent, &ctx.metrics.retried, &ctx.metrics.dead] {
                c.with_label_values(&[&name]);
            }
            ctx.metrics.lag.with_label_values(&[&name]).set(0.0);
            tracing::info!(sink = %name, kind = sink.kind.label(), head = ctx.spool.head().leaf, acknowledged = ctx.spool.acknowledged().position.leaf, "SIEM sink started");
            tasks.push(AbortOnDrop(tokio::spawn(read_loop(
                ctx.clone(),
                encoder.clone(),
                ledger.clone(),
                anchors.clone(),
            ))));
            tasks.push(AbortOnDrop(tokio::spawn(send_loop(ctx, sender))));
        }
        Ok(SiemStage { _tasks: tasks })
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "flk-audit".to_owned())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Tails the log into the spool (module docs).
async fn read_loop(
    ctx: Arc<SinkCtx>,
    encoder: Encoder,
    ledger: Arc<Ledger>,
    anchors: Arc<AnchorStore>,
) {
    let mut size_rx = ledger.watch_size();
    loop {
        match read_step(&ctx, &encoder, &ledger, &anchors).await {
            Ok(true) => continue,
            Ok(false) => {}
            Err(e) => {
                tracing::error!(sink = %ctx.name, error = %e, "SIEM reader failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        }
        // Nothing to do: wait for an append, the sender to make room, or the anchor poll.
        tokio::select! {
            _ = size_rx.changed() => {}
            _ = ctx.drained.notified() => {}
            _ = tokio::time::sleep(ANCHOR_POLL) => {}
        }
    }
}

/// One step of the reader: `Ok(true)` when it spooled something (or made progress).
async fn read_step(
    ctx: &Arc<SinkCtx>,
    encoder: &Encoder,
    ledger: &Arc<Ledger>,
    anchors: &Arc<AnchorStore>,
) -> anyhow::Result<bool> {
    let head = ctx.spool.head();
    let used = ctx.spool.bytes();
    let room = ctx.spool_max().saturating_sub(used) as usize;
    if room == 0 {
        return Ok(false);
    }
    let size = ledger.size();
    let mut lines = String::with_capacity(room.min(4 << 20));
    let mut pos = head;
    if head.leaf < size {
        // Reading and encoding happen on a blocking thread: they are the stage's CPU, and the
        // async workers serve the submit path.
        let (l, enc, name) = (ledger.clone(), encoder.clone(), ctx.name.clone());
        (lines, pos) = tokio::task::spawn_blocking(move || {
            encode_entries(&l, &enc, &name, head, size, room, lines)
        })
        .await??;
    }
    if pos.leaf == size {
        let cp = ledger.checkpoint();
        if cp.size == pos.leaf && cp.size > pos.checkpoint {
            let after = Position {
                checkpoint: cp.size,
                ..pos
            };
            let line = Spool::line(
                &encoder.checkpoint(cp.size, &cp.root_hash, &cp.note, now_ms()),
                after,
            );
            if lines.len() + line.len() <= room {
                lines.push_str(&line);
                pos = after;
            }
        }
        let next_anchor = pos.anchor;
        for a in anchors.list().into_iter().filter(|a| a.id >= next_anchor) {
            let after = Position {
                anchor: a.id + 1,
                ..pos
            };
            let line = Spool::line(&encoder.anchor(&a), after);
            if lines.len() + line.len() > room {
                break;
            }
            lines.push_str(&line);
            pos = after;
        }
    }
    if pos == head {
        return Ok(false);
    }
    let c = ctx.clone();
    tokio::task::spawn_blocking(move || c.spool.append(&lines, pos)).await??;
    ctx.metrics
        .spool_bytes
        .with_label_values(&[&ctx.name])
        .set(i64::try_from(ctx.spool.bytes()).unwrap_or(i64::MAX));
    ctx.appended.notify_one();
    Ok(true)
}

/// Spool lines for the log entries from `head` on (at most [`READ_CHUNK`] of them and
/// `room` bytes), appended to `lines`; returns them and the position after the last one.
fn encode_entries(
    ledger: &Ledger,
    encoder: &Encoder,
    sink: &str,
    head: Position,
    size: u64,
    room: usize,
    mut lines: String,
) -> Result<(String, Position), crate::AuditError> {
    let start = head.leaf;
    let end = size.min(start + READ_CHUNK);
    let entries = ledger.entries(start, end)?;
    let mut pos = head;
    for (i, bytes) in (start..).zip(&entries) {
        let after = Position { leaf: i + 1, ..pos };
        match encoder.entry(i, bytes) {
            Some(ev) => {
                let mark = lines.len();
                Spool::push_line(&mut lines, &ev, after);
                if lines.len() > room {
                    lines.truncate(mark);
                    break;
                }
            }
            None => {
                tracing::error!(sink = %sink, leaf = i, "audit log entry does not decode; not shipped (run `flk audit verify`)")
            }
        }
        pos = after;
    }
    Ok((lines, pos))
}

impl SinkCtx {
    fn spool_max(&self) -> u64 {
        self.spool.max_bytes()
    }
}

/// Sends spooled batches until aborted (module docs).
async fn send_loop(ctx: Arc<SinkCtx>, sender: Sender) {
    let ack = ctx.spool.acknowledged();
    let mut from = (ack.segment, ack.offset);
    loop {
        let items = match next_batch(&ctx, from).await {
            Ok(items) => items,
            Err(e) => {
                tracing::error!(sink = %ctx.name, error = %e, "cannot read the SIEM spool; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let Some(last) = items.last() else { continue };
        deliver(&ctx, &sender, &items).await;
        let (c, last) = (ctx.clone(), last.clone());
        let n = items.len() as u64;
        loop {
            let (c2, l2) = (c.clone(), last.clone());
            match tokio::task::spawn_blocking(move || c2.spool.acknowledge(&l2, n)).await {
                Ok(Ok(())) => break,
                Ok(Err(e)) => {
                    tracing::error!(sink = %ctx.name, error = %e, "cannot store the SIEM cursor; retrying")
                }
                Err(e) => {
                    tracing::error!(sink = %ctx.name, error = %e, "SIEM cursor task failed; retrying")
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        from = (last.segment, last.end);
        ctx.metrics
            .spool_bytes
            .with_label_values(&[&ctx.name])
            .set(i64::try_from(ctx.spool.bytes()).unwrap_or(i64::MAX));
        ctx.drained.notify_one();
    }
}

/// The next batch from `from`: full by count or bytes, or whatever is there
/// `flush_interval_ms` after its first event was seen. Waits while the spool is empty.
async fn next_batch(ctx: &Arc<SinkCtx>, from: (u64, u64)) -> std::io::Result<Vec<Item>> {
    let (max_events, max_bytes) = (ctx.cfg.batch_max_events, ctx.cfg.batch_max_bytes);
    let flush = Duration::from_millis(ctx.cfg.flush_interval_ms);
    let mut first_seen: Option<Instant> = None;
    loop {
        let c = ctx.clone();
        let items = tokio::task::spawn_blocking(move || c.spool.read(from, max_events, max_bytes))
            .await
            .map_err(std::io::Error::other)??;
        let lag = items
            .first()
            .map_or(0.0, |i| now_ms().saturating_sub(i.time_ms) as f64 / 1000.0);
        ctx.metrics.lag.with_label_values(&[&ctx.name]).set(lag);
        let bytes: usize = items.iter().map(|i| i.json.len()).sum();
        if items.len() >= max_events || bytes >= max_bytes {
            return Ok(items);
        }
        let wait = match (first_seen, items.is_empty()) {
            (_, true) => None,
            (None, false) => {
                first_seen = Some(Instant::now());
                Some(flush)
            }
            (Some(t), false) => match flush.checked_sub(t.elapsed()) {
                Some(left) if !left.is_zero() => Some(left),
                _ => return Ok(items),
            },
        };
        match wait {
            Some(left) => {
                let _ = tokio::time::timeout(left, ctx.appended.notified()).await;
            }
            None => ctx.appended.notified().await,
        }
    }
}

/// Sends `items` until every one is delivered or dead-lettered.
async fn deliver(ctx: &Arc<SinkCtx>, sender: &Sender, items: &[Item]) {
    let name = ctx.name.as_str();
    let m = &ctx.metrics;
    let mut pending: Vec<&Item> = items.iter().collect();
    let mut attempt: u32 = 0;
    while !pending.is_empty() {
        let reply = sender.send(&pending).await;
        let mut retry = Vec::new();
        let mut dead = String::new();
        let mut done = 0u64;
        let now = now_ms();
        for (item, verdict) in pending.iter().zip(&reply.verdicts) {
            match verdict {
                Verdict::Done => {
                    done += 1;
                    m.delivery
                        .with_label_values(&[name])
                        .observe(now.saturating_sub(item.time_ms) as f64 / 1000.0);
                }
                Verdict::Retry => retry.push(*item),
                Verdict::Dead(why) => {
                    let line = serde_json::json!({
                        "sink": name,
                        "kind": sender.kind().label(),
                        "event_id": item.id,
                        "refused_at": event::rfc3339_ms(now),
                        "reason": why,
                        "event": serde_json::from_str::<serde_json::Value>(&item.json).unwrap_or_default(),
                    });
                    dead.push_str(&line.to_string());
                    dead.push('\n');
                }
            }
        }
        m.sent.with_label_values(&[name]).inc_by(done);
        if !dead.is_empty() {
            let n = dead.lines().count() as u64;
            tracing::error!(sink = %name, events = n, reason = reply.fatal.as_deref().unwrap_or("refused items"), "SIEM refused events for good; kept in its dead-letter file");
            let c = ctx.clone();
            match tokio::task::spawn_blocking(move || c.spool.dead_letter(&dead)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!(sink = %name, error = %e, "cannot write dead letters")
                }
                Err(e) => tracing::error!(sink = %name, error = %e, "dead-letter task failed"),
            }
            // Counted once the file has them: whoever sees the count can read them there.
            m.dead.with_label_values(&[name]).inc_by(n);
        }
        let result = match (retry.is_empty(), done > 0) {
            (true, _) if reply.fatal.is_some() => "dead_letter",
            (true, _) => "delivered",
            (false, true) => "partial",
            (false, false) => "retried",
        };
        m.requests.with_label_values(&[name, result]).inc();
        if retry.is_empty() {
            return;
        }
        m.retried
            .with_label_values(&[name])
            .inc_by(retry.len() as u64);
        let oldest = retry.iter().map(|i| i.time_ms).min().unwrap_or(now);
        m.lag
            .with_label_values(&[name])
            .set(now.saturating_sub(oldest) as f64 / 1000.0);
        let delay = backoff(&ctx.cfg, attempt, reply.retry_after);
        tracing::warn!(sink = %name, events = retry.len(), attempt, delay_ms = delay.as_millis() as u64, "SIEM asked for a retry");
        tokio::time::sleep(delay).await;
        attempt = attempt.saturating_add(1);
        pending = retry;
    }
}

/// Exponential backoff with full jitter, and never sooner than `Retry-After` (capped at ten
/// minutes, so a bogus header cannot park a sink for ever).
fn backoff(cfg: &SinkConfig, attempt: u32, retry_after: Option<Duration>) -> Duration {
    let cap = cfg
        .retry_initial_ms
        .saturating_mul(1u64 << attempt.min(30))
        .min(cfg.retry_max_ms);
    let jittered = Duration::from_millis(rand::thread_rng().gen_range(0..=cap));
    match retry_after {
        Some(d) => jittered.max(d.min(Duration::from_secs(600))),
        None => jittered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded_jittered_and_honours_retry_after() {
        let cfg = SinkConfig::new("t", SinkKind::Sumo, "http://h");
        for attempt in 0..40 {
            let d = backoff(&cfg, attempt, None);
            let cap = (100u64 << attempt.min(30)).min(30_000);
            assert!(d <= Duration::from_millis(cap), "{attempt}: {d:?}");
        }
        assert!(backoff(&cfg, 0, Some(Duration::from_secs(3))) >= Duration::from_secs(3));
        assert_eq!(
            backoff(&cfg, 0, Some(Duration::from_secs(1 << 20))),
            Duration::from_secs(600)
        );
    }
}
