//! Anchoring of checkpoints: a task that periodically (every `anchor.interval_secs`, and on
//! demand through `AnchorCheckpoint`) takes the latest published checkpoint, exactly as its
//! signed note was published, and anchors `SHA-256(note)` with the configured strategy
//! (`flk_anchor`), storing each [`AnchorRecord`] with its proof and its note in the anchor
//! journal ([`store`], `<data_dir>/anchors.jsonl`). Single entries are never anchored: a
//! checkpoint commits to every entry before it.
//!
//! # Strategies
//!
//! | strategy | per round, for the latest checkpoint not yet anchored by that method |
//! |---|---|
//! | `none` (default) | nothing; no task runs (stored anchors are still served) |
//! | `rfc3161` | an RFC 3161 token from `tsa_url`, verified against `tsa_ca_cert` |
//! | `opentimestamps` | a pending `.ots` proof from `ots_calendars`; later rounds upgrade pending proofs until a Bitcoin attestation arrives (`complete`) |
//! | `ethereum`, `polygon` | a calldata transaction through `evm_rpc_url`, stored at once as pending (`complete = false`) and final at its confirmation depth (below) |
//! | `hybrid` | RFC 3161 at once, then Polygon in the same round ("later": after the token is stored; final at the depth); two records of strategy `hybrid` |
//! | `auto` | the strategy `flk_anchor::optimizer::choose` picks (below) |
//!
//! A round anchors only the latest checkpoint: an older checkpoint whose anchoring failed is
//! superseded by a newer one, which covers it. A failed method is counted and retried with
//! capped exponential backoff (`retry_initial_ms` doubling to `retry_max_ms`, at most the
//! interval); a success returns to the interval.
//!
//! # EVM confirmations
//!
//! An EVM anchor is done only once its transaction is `evm_confirmations` blocks deep
//! (default by `evm_chain_id`: 12 on Ethereum, 128 on Polygon; see
//! `flk_anchor::evm::confirm`) in a block that is still canonical. Sending never waits: the
//! round stores the anchor with `complete = false`, the [`flk_anchor::evm::PendingEvm`]
//! state as its proof and 0 confirmations, and goes on (in `hybrid` the RFC 3161 token is
//! already stored). Between rounds the task polls every pending EVM anchor every
//! `evm_poll_interval_ms` (each round polls too); each change (a receipt, one more
//! confirmation, a reorg, a re-submission) replaces the stored state with an `upgrade` line
//! of the journal, so after a restart the first round resumes polling the same transaction
//! and never sends a second one for the checkpoint unless the first was dropped. A reorg
//! that moves the transaction restarts its count from the new block
//! (`flk_audit_anchor_evm_reorgs_total`); a transaction that vanished, reverted, or has no
//! receipt after `evm_receipt_timeout_secs` is re-submitted, same nonce and a higher gas price
//! while that nonce is unspent (`flk_audit_anchor_evm_resubmissions_total{reason}`, an
//! attempt of kind `evm`). Once final the proof becomes the `flk_anchor::EvmAnchor` (which
//! verifies offline), `complete = true`, and only then the anchor counts as a success; its
//! cost, `gasUsed * effectiveGasPrice` of the receipt, is added to
//! `flk_audit_anchor_cost_wei_total` and shown in `flk.v1.Anchor.cost_wei` with the
//! confirmations. One EVM transaction is in flight at a time: while one is pending, rounds do
//! not send another (a later checkpoint is anchored by the first round after it is final, and
//! covers the ones before). Pending EVM anchors are polled only while the strategy in effect
//! uses EVM.
//!
//! # Durability
//!
//! An anchor counts as done ([`flk_audit_anchor_success_total`](crate::metrics), listings)
//! only once its journal line is fsync'd. A crash during an attempt loses only the attempt:
//! the next round finds the checkpoint unanchored and retries (an external service may then
//! hold a second, unused timestamp of the same digest, which is harmless). An EVM anchor
//! counts as done once the journal line of its final state is; its transaction is stored
//! (pending) right after it is sent, so a crash between the two is the only way to send a
//! second transaction for a checkpoint.
//!
//! # The strategy is audited, in the audit log
//!
//! The strategy in use (`auto`'s choice, or a fixed setting) and every change of it are
//! appended to the audit log itself as a *log event*: a version-2 entry of kind
//! `AnchorStrategy` (`flk_tlog::entry`, documented there; version-1 decision entries are
//! unchanged byte for byte, and `verify_log` decodes both). Recording it in the log rather
//! than a side journal makes the choice as tamper-evident as the decisions, covered by the
//! same checkpoints and anchors, and needs no second signing key. The event body is JSON:
//!
//! ```json
//! {"event":"anchor_strategy","configured":"auto","chosen":"rfc3161","previous":null,
//!  "decision":{ ...flk_anchor::optimizer::Decision: objective, constraints,
//!               batches_per_month, every candidate with scores and exclusions, chosen... }}
//! ```
//!
//! `previous` is the strategy recorded before (`null` the first time), `decision` is `null`
//! for a fixed strategy. Under `auto` the candidates are the strategies this configuration
//! can run (e.g. `rfc3161` only with `tsa_url` and `tsa_ca_cert`), with the figures of
//! `flk_anchor::optimizer::default_strategies` overridden by `[anchor.strategies]`
//! ([`config`]), and `batches_per_month = 30 * 86400 / interval_secs`. The event is written
//! at start when the body differs from the one last recorded; `none` is recorded only as a
//! change from another strategy (a log that never anchored has no strategy event). Exactly once across crashes: the journal's `strategy`
//! line is written under the ledger's writer lock right after the append, and if a crash
//! came between the two, the event is the log's last entry and is adopted on the next start.

pub mod config;
pub mod store;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flk_anchor::evm::{PendingEvm, Step};
use flk_anchor::optimizer::{self, Decision, Inputs, Strategy, StrategyId};
use flk_anchor::{
    AnchorKind, AnchorRecord, EvmClient, EvmConfig, OtsAnchor, OtsClient, Rfc3161Client, TsaTrust,
    anchored_digest,
};
use flk_tlog::{EventEntry, EventKind, LogEntry, open_checkpoint};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub use config::{AnchorConfig, StrategySetting};
pub use store::{AnchorStore, StoredAnchor, StrategyMark};

use crate::error::AuditError;
use crate::ledger::Ledger;
use crate::metrics::AuditMetrics;

/// The methods a strategy runs per round, in order.
fn methods(strategy: StrategyId) -> &'static [Method] {
    match strategy {
        StrategyId::Rfc3161 => &[Method::Rfc3161],
        StrategyId::Opentimestamps => &[Method::Ots],
        StrategyId::Ethereum | StrategyId::Polygon => &[Method::Evm],
        StrategyId::Hybrid => &[Method::Rfc3161, Method::Evm],
    }
}

/// One anchoring method (the `kind` label of the metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Rfc3161,
    Ots,
    Evm,
}

impl Method {
    fn kind(self) -> AnchorKind {
        match self {
            Method::Rfc3161 => AnchorKind::Rfc3161,
            Method::Ots => AnchorKind::OpenTimestamps,
            Method::Evm => AnchorKind::Evm,
        }
    }
}

/// The metric label of an anchor kind (closed set).
pub fn kind_label(kind: AnchorKind) -> &'static str {
    match kind {
        AnchorKind::Rfc3161 => "rfc3161",
        AnchorKind::OpenTimestamps => "opentimestamps",
        AnchorKind::Evm => "evm",
    }
}

/// The strategy in effect and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Effective {
    /// `None` for no anchoring.
    pub strategy: Option<StrategyId>,
    /// The optimizer's decision under `auto`.
    pub decision: Option<Decision>,
}

impl Effective {
    /// The strategy's name (`none` for no anchoring).
    pub fn name(&self) -> &'static str {
        self.strategy.map_or("none", StrategyId::name)
    }
}

/// Resolves the configured strategy; runs the optimizer under `auto`.
pub fn effective(cfg: &AnchorConfig) -> Result<Effective, AuditError> {
    match cfg.strategy {
        StrategySetting::None => Ok(Effective {
            strategy: None,
            decision: None,
        }),
        StrategySetting::Auto => {
            let available = cfg.available();
            let strategies: Vec<Strategy> = cfg
                .strategy_table()
                .into_iter()
                .filter(|s| available.contains(&s.id))
                .collect();
            let decision = optimizer::choose(&Inputs {
                strategies,
                objective: cfg.objective,
                constraints: cfg.constraints(),
                batches_per_month: cfg.batches_per_month(),
            })
            .map_err(|e| {
                AuditError::Anchors(format!(
                    "the anchoring optimizer chose nothing: {e}: {}",
                    serde_json::to_string(&e).unwrap_or_default()
                ))
            })?;
            Ok(Effective {
                strategy: Some(decision.chosen),
                decision: Some(decision),
            })
        }
        fixed => Ok(Effective {
            strategy: fixed.fixed(),
            decision: None,
        }),
    }
}

/// The cost of one batch of `strategy` from the optimizer's `table`, split per method
/// (hybrid: RFC 3161's part and Polygon's part). An estimate: EVM anchors count their receipts.
fn method_cost(table: &[Strategy], strategy: StrategyId, method: Method) -> f64 {
    let cost = |id: StrategyId| {
        table
            .iter()
            .find(|s| s.id == id)
            .map_or(0.0, |s| s.cost_per_batch_usd)
    };
    match (strategy, method) {
        (StrategyId::Hybrid, Method::Rfc3161) => cost(StrategyId::Rfc3161),
        (StrategyId::Hybrid, _) => cost(StrategyId::Polygon),
        (s, _) => cost(s),
    }
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The body of the strategy event (see the module docs).
fn strategy_body(cfg: &AnchorConfig, eff: &Effective, previous: Option<&str>) -> String {
    json!({
        "event": "anchor_strategy",
        "configured": cfg.strategy.name(),
        "chosen": eff.name(),
        "previous": previous,
        "decision": eff.decision,
    })
    .to_string()
}

/// Records the strategy in effect in the audit log when it differs from the one last
/// recorded (see the module docs). Blocking. Returns the event's leaf index if one was
/// written or adopted.
pub fn record_strategy(
    ledger: &Ledger,
    store: &AnchorStore,
    cfg: &AnchorConfig,
    eff: &Effective,
) -> Result<Option<u64>, AuditError> {
    let previous = store.strategy();
    let prev_name = previous.as_ref().map(|p| p.chosen.as_str());
    if eff.strategy.is_none() && prev_name.is_none_or(|p| p == "none") {
        return Ok(None);
    }
    let body = strategy_body(cfg, eff, prev_name);
    if let Some(p) = &previous {
        // Same choice for the same reasons: nothing changed.
        let same = |a: &str, b: &str| {
            let strip = |s: &str| {
                serde_json::from_str::<serde_json::Value>(s).map(|mut v| {
                    if let Some(o) = v.as_object_mut() {
                        o.remove("previous");
                    }
                    v
                })
            };
            matches!((strip(a), strip(b)), (Ok(x), Ok(y)) if x == y)
        };
        if p.chosen == eff.name() && same(&p.body, &body) {
            return Ok(None);
        }
    }
    let mark = |leaf_index| StrategyMark {
        chosen: eff.name().to_owned(),
        body: body.clone(),
        leaf_index,
    };
    // A crash between the append and the journal line: adopt the event.
    if let Some((leaf, LogEntry::Event(e))) = ledger.last_entry()?
        && e.kind == EventKind::AnchorStrategy
        && e.body == body
    {
        store.set_strategy(mark(leaf))?;
        return Ok(Some(leaf));
    }
    let event = EventEntry {
        kind: EventKind::AnchorStrategy,
        recorded_at_unix_ms: now_unix_ms(),
        body: body.clone(),
    };
    let leaf = ledger.append_event(&event, |leaf| {
        store.set_strategy(mark(leaf))?;
        Ok(leaf)
    })?;
    tracing::info!(
        chosen = eff.name(),
        previous = prev_name.unwrap_or("none"),
        leaf,
        "anchoring strategy recorded in the audit log"
    );
    Ok(Some(leaf))
}

/// The clients a strategy needs, built from the config.
struct Clients {
    rfc3161: Option<Rfc3161Client>,
    ots: Option<OtsClient>,
    evm: Option<EvmClient>,
}

fn read_evm_key(path: &std::path::Path) -> Result<[u8; 32], AuditError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| AuditError::Anchors(format!("cannot read {}: {e}", path.display())))?;
    let t = text.trim();
    let hex_digits = t.strip_prefix("0x").unwrap_or(t);
    hex::decode(hex_digits)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| {
            AuditError::Anchors(format!(
                "{} does not hold a 32-byte hex secp256k1 key",
                path.display()
            ))
        })
}

impl Clients {
    fn build(cfg: &AnchorConfig, strategy: StrategyId) -> Result<Clients, AuditError> {
        let need = methods(strategy);
        let timeout = cfg.request_timeout();
        let bad = |what: &str, e: &dyn std::fmt::Display| {
            AuditError::Anchors(format!("anchoring {what}: {e}"))
        };
        let rfc3161 = if need.contains(&Method::Rfc3161) {
            let (Some(url), Some(ca)) = (&cfg.tsa_url, &cfg.tsa_ca_cert) else {
                return Err(AuditError::Anchors("no tsa_url / tsa_ca_cert".into()));
            };
            let pem = std::fs::read(ca).map_err(|e| bad(&format!("{}", ca.display()), &e))?;
            let trust = TsaTrust::from_pem(&pem).map_err(|e| bad("tsa_ca_cert", &e))?;
            Some(Rfc3161Client::new(url, trust, timeout).map_err(|e| bad("tsa_url", &e))?)
        } else {
            None
        };
        let ots = if need.contains(&Method::Ots) {
            let cals: Vec<&str> = cfg.ots_calendars.iter().map(String::as_str).collect();
            Some(OtsClient::new(&cals, timeout).map_err(|e| bad("ots_calendars", &e))?)
        } else {
            None
        };
        let evm = if need.contains(&Method::Evm) {
            let (Some(url), Some(chain_id), Some(key), Some(confirmations)) = (
                &cfg.evm_rpc_url,
                cfg.evm_chain_id,
                &cfg.evm_key_file,
                cfg.confirmations(),
            ) else {
                return Err(AuditError::Anchors("no evm settings".into()));
            };
            let config = EvmConfig {
                rpc_url: url.clone(),
                chain_id,
                private_key: read_evm_key(key)?,
                confirmations,
                receipt_timeout: Duration::from_secs(cfg.evm_receipt_timeout_secs),
                poll_interval: cfg.evm_poll_interval(),
                request_timeout: timeout,
            };
            Some(EvmClient::new(&config).map_err(|e| bad("evm", &e))?)
        } else {
            None
        };
        Ok(Clients { rfc3161, ots, evm })
    }
}

/// What one round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Round {
    /// Anchors stored in this round (new ones, EVM ones still pending; upgrades not included).
    pub anchored: Vec<u64>,
    /// Methods that failed (their kind labels).
    pub failed: Vec<&'static str>,
    /// OpenTimestamps proofs upgraded.
    pub upgraded: usize,
    /// EVM anchors that became final.
    pub confirmed: Vec<u64>,
    /// EVM anchor transactions re-submitted.
    pub resubmitted: usize,
}

/// The anchoring task's state.
struct Anchorer {
    strategy: StrategyId,
    cfg: AnchorConfig,
    clients: Clients,
    ledger: Arc<Ledger>,
    store: Arc<AnchorStore>,
    metrics: AuditMetrics,
    /// The optimizer's (configured) figures, for the estimated cost metric.
    table: Vec<Strategy>,
}

/// Runs a journal write on a blocking thread.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, AuditError> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()))
}

impl Anchorer {
    /// One round: upgrade pending OpenTimestamps proofs, poll pending EVM anchors, then anchor
    /// the latest checkpoint by every method of the strategy that has not anchored it yet.
    async fn round(&self) -> Round {
        let mut round = Round::default();
        self.upgrade_pending(&mut round).await;
        self.poll_evm(&mut round).await;
        let cp = self.ledger.checkpoint();
        if cp.size == 0 {
            return round;
        }
        let checkpoint = match open_checkpoint(&cp.note, self.ledger.verifier()) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "the published checkpoint does not verify; not anchoring it");
                return round;
            }
        };
        let root = hex::encode(cp.root_hash);
        let digest = anchored_digest(cp.note.as_bytes());
        let stored = self.store.list();
        for &method in methods(self.strategy) {
            let kind = method.kind();
            let done = stored.iter().any(|a| {
                a.record.kind == kind
                    && a.record.checkpoint_size == cp.size
                    && a.record.root_hash == root
            });
            if done {
                continue;
            }
            if method == Method::Evm && stored.iter().any(|a| a.record.kind == kind && !a.complete)
            {
                // One EVM transaction in flight at a time (see the module docs).
                continue;
            }
            let label = kind_label(kind);
            let name = self.strategy.name();
            self.metrics
                .anchor_attempts
                .with_label_values(&[label])
                .inc();
            let result: Result<(AnchorRecord, bool), String> = match method {
                Method::Rfc3161 => match &self.clients.rfc3161 {
                    Some(c) => c
                        .timestamp(&digest)
                        .await
                        .map(|a| {
                            (
                                AnchorRecord::rfc3161(&checkpoint, name, &a, now_unix()),
                                true,
                            )
                        })
                        .map_err(|e| e.to_string()),
                    None => Err("no rfc 3161 client".into()),
                },
                Method::Ots => match &self.clients.ots {
                    Some(c) => c
                        .stamp(&digest)
                        .await
                        .map(|a| {
                            let complete = a.is_complete(&digest).unwrap_or(false);
                            (
                                AnchorRecord::opentimestamps(&checkpoint, name, &a, now_unix()),
                                complete,
                            )
                        })
                        .map_err(|e| e.to_string()),
                    None => Err("no opentimestamps client".into()),
                },
                Method::Evm => match &self.clients.evm {
                    Some(c) => c
                        .send(&digest)
                        .await
                        .map(|p| {
                            let record =
                                AnchorRecord::evm_pending(&checkpoint, name, &p, now_unix());
                            (record, false)
                        })
                        .map_err(|e| e.to_string()),
                    None => Err("no evm client".into()),
                },
            };
            let stored = match result {
                Ok((record, complete)) => {
                    let store = self.store.clone();
                    let note = cp.note.clone();
                    blocking(move || store.add(note, record, complete)).await
                }
                Err(e) => Err(e),
            };
            match stored {
                Ok(a) if method == Method::Evm => {
                    // Done only when final (`poll_evm`); an attempt until then.
                    self.metrics.evm_pending.inc();
                    tracing::info!(
                        id = a.id,
                        size = cp.size,
                        confirmations = self
                            .clients
                            .evm
                            .as_ref()
                            .map_or(0, EvmClient::confirmations),
                        "checkpoint anchor transaction sent; waiting for its confirmations"
                    );
                    round.anchored.push(a.id);
                }
                Ok(a) => {
                    self.metrics.anchor_succeeded(label, now_unix());
                    self.metrics
                        .anchor_cost
                        .with_label_values(&[name])
                        .inc_by(method_cost(&self.table, self.strategy, method));
                    self.metrics.anchored_up_to(cp.size);
                    tracing::info!(
                        id = a.id,
                        kind = label,
                        size = cp.size,
                        "checkpoint anchored"
                    );
                    round.anchored.push(a.id);
                }
                Err(e) => {
                    self.metrics
                        .anchor_failures
                        .with_label_values(&[label])
                        .inc();
                    tracing::warn!(kind = label, size = cp.size, error = %e, "anchoring failed; retrying with backoff");
                    round.failed.push(label);
                    // Hybrid: Polygon comes after the token ("later"); stop this round.
                    break;
                }
            }
        }
        round
    }

    /// Whether there are EVM anchors to poll.
    fn evm_pending(&self) -> bool {
        self.clients.evm.is_some() && !self.store.incomplete(AnchorKind::Evm).is_empty()
    }

    /// Polls every pending EVM anchor once (see the module docs): stores a changed state, the
    /// final anchor, or a re-submission.
    async fn poll_evm(&self, round: &mut Round) {
        let Some(client) = &self.clients.evm else {
            return;
        };
        let label = kind_label(AnchorKind::Evm);
        for a in self.store.incomplete(AnchorKind::Evm) {
            let id = a.id;
            let pending: PendingEvm = match serde_json::from_slice(&a.record.proof) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(id, error = %e, "a pending evm anchor's stored state does not parse; not polling it");
                    continue;
                }
            };
            let step = match client.poll(&pending).await {
                Ok(step) => step,
                Err(e) => {
                    tracing::warn!(id, error = %e, "polling a pending evm anchor failed; polling again later");
                    continue;
                }
            };
            let reorgs = |next: &PendingEvm| next.reorgs.saturating_sub(pending.reorgs);
            let store = self.store.clone();
            match step {
                Step::Pending(next) if next == pending => {}
                Step::Pending(next) => {
                    self.metrics.evm_reorgs.inc_by(u64::from(reorgs(&next)));
                    if reorgs(&next) > 0 {
                        tracing::warn!(
                            id,
                            reorgs = next.reorgs,
                            "a reorg moved or dropped a pending evm anchor's transaction; its confirmations restart"
                        );
                    }
                    let proof = serde_json::to_vec(&next).unwrap_or_default();
                    let (confirmations, cost) = (next.confirmations, next.cost_wei());
                    let done =
                        blocking(move || store.upgrade_evm(id, &proof, false, confirmations, cost))
                            .await;
                    if let Err(e) = done {
                        tracing::warn!(id, error = %e, "cannot store a pending evm anchor's progress");
                    }
                }
                Step::Final(anchor) => {
                    let proof = serde_json::to_vec(&anchor).unwrap_or_default();
                    let confirmations = anchor.confirmations;
                    let cost = anchor.cost_wei.parse::<u128>().ok();
                    let done =
                        blocking(move || store.upgrade_evm(id, &proof, true, confirmations, cost))
                            .await;
                    match done {
                        Ok(()) => {
                            self.metrics.evm_pending.dec();
                            self.metrics.anchor_succeeded(label, now_unix());
                            self.metrics
                                .anchor_cost_wei
                                .with_label_values(&[a.record.strategy.as_str()])
                                .inc_by(cost.unwrap_or(0) as f64);
                            self.metrics.anchored_up_to(a.record.checkpoint_size);
                            tracing::info!(
                                id,
                                kind = label,
                                size = a.record.checkpoint_size,
                                block = anchor.block_number,
                                confirmations,
                                cost_wei = %anchor.cost_wei,
                                "checkpoint anchored"
                            );
                            round.confirmed.push(id);
                        }
                        Err(e) => {
                            tracing::warn!(id, error = %e, "cannot store a final evm anchor; polling again later")
                        }
                    }
                }
                Step::Dropped(next, reason) => {
                    self.metrics.evm_reorgs.inc_by(u64::from(reorgs(&next)));
                    self.metrics
                        .anchor_attempts
                        .with_label_values(&[label])
                        .inc();
                    let old = next.latest().map(|t| t.tx_hash.clone()).unwrap_or_default();
                    let sent = match client.resubmit(&next).await {
                        Ok(p) => {
                            let proof = serde_json::to_vec(&p).unwrap_or_default();
                            let tx = p.latest().map(|t| t.tx_hash.clone()).unwrap_or_default();
                            blocking(move || store.upgrade_evm(id, &proof, false, 0, None))
                                .await
                                .map(|()| tx)
                        }
                        Err(e) => Err(e.to_string()),
                    };
                    match sent {
                        Ok(tx) => {
                            self.metrics
                                .evm_resubmissions
                                .with_label_values(&[reason.label()])
                                .inc();
                            tracing::warn!(id, reason = reason.label(), dropped = %old, sent = %tx, "evm anchor transaction re-submitted");
                            round.resubmitted += 1;
                        }
                        Err(e) => {
                            self.metrics
                                .anchor_failures
                                .with_label_values(&[label])
                                .inc();
                            tracing::warn!(id, reason = reason.label(), dropped = %old, error = %e, "re-submitting an evm anchor transaction failed; retrying at the next poll");
                            if !round.failed.contains(&label) {
                                round.failed.push(label);
                            }
                        }
                    }
                }
            }
        }
        let pending = self.store.incomplete(AnchorKind::Evm).len();
        self.metrics
            .evm_pending
            .set(i64::try_from(pending).unwrap_or(i64::MAX));
    }

    async fn upgrade_pending(&self, round: &mut Round) {
        let Some(client) = &self.clients.ots else {
            return;
        };
        for a in self
            .store
            .list()
            .into_iter()
            .filter(|a| a.record.kind == AnchorKind::OpenTimestamps && !a.complete)
        {
            let digest = anchored_digest(a.note.as_bytes());
            let mut anchor = OtsAnchor {
                ots: a.record.proof.clone(),
            };
            match client.upgrade(&mut anchor).await {
                Ok(outcome) if outcome.upgraded > 0 => {
                    let complete = anchor.is_complete(&digest).unwrap_or(false);
                    let store = self.store.clone();
                    let id = a.id;
                    let done = tokio::task::spawn_blocking(move || {
                        store.upgrade(id, &anchor.ots, complete)
                    })
                    .await;
                    match done {
                        Ok(Ok(())) => {
                            round.upgraded += 1;
                            tracing::info!(id, complete, "opentimestamps proof upgraded");
                        }
                        Ok(Err(e)) => {
                            tracing::warn!(id, error = %e, "cannot store an upgraded proof")
                        }
                        Err(e) => tracing::warn!(id, error = %e, "upgrade task failed"),
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(id = a.id, error = %e, "opentimestamps upgrade failed"),
            }
        }
    }
}

/// Aborts the task when dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The running anchoring task; dropping it stops the task.
pub struct AnchorHandle {
    control: AnchorControl,
    _task: AbortOnDrop,
}

/// What the handlers hold: ask for a round now.
#[derive(Clone)]
pub struct AnchorControl {
    trigger: mpsc::Sender<oneshot::Sender<Round>>,
}

impl AnchorControl {
    /// Runs a round now (after the one in progress, if any) and returns what it did, waiting
    /// at most `timeout`.
    pub async fn anchor_now(&self, timeout: Duration) -> Result<Round, AuditError> {
        let (done, wait) = oneshot::channel();
        let asked = async {
            self.trigger
                .send(done)
                .await
                .map_err(|_| AuditError::Busy(timeout))?;
            wait.await.map_err(|_| AuditError::Busy(timeout))
        };
        tokio::time::timeout(timeout, asked)
            .await
            .map_err(|_| AuditError::Busy(timeout))?
    }
}

impl AnchorHandle {
    /// Starts the task for `strategy`, or returns `Ok(None)` when there is nothing to run.
    pub fn start(
        cfg: &AnchorConfig,
        eff: &Effective,
        ledger: Arc<Ledger>,
        store: Arc<AnchorStore>,
        metrics: AuditMetrics,
    ) -> Result<Option<AnchorHandle>, AuditError> {
        let Some(strategy) = eff.strategy else {
            return Ok(None);
        };
        let clients = Clients::build(cfg, strategy)?;
        let anchorer = Anchorer {
            strategy,
            cfg: cfg.clone(),
            clients,
            ledger,
            store,
            metrics,
            table: cfg.strategy_table(),
        };
        let (trigger, rx) = mpsc::channel(16);
        let task = tokio::spawn(run(anchorer, rx));
        Ok(Some(AnchorHandle {
            control: AnchorControl { trigger },
            _task: AbortOnDrop(task),
        }))
    }

    pub fn control(&self) -> AnchorControl {
        self.control.clone()
    }
}

/// The loop: a round at start, then every interval (after a failure: after the backoff
/// delay), or when triggered; in between, while EVM anchors are pending, a poll of them every
/// `evm_poll_interval_ms`.
async fn run(anchorer: Anchorer, mut trigger: mpsc::Receiver<oneshot::Sender<Round>>) {
    let interval = anchorer.cfg.interval();
    let initial = Duration::from_millis(anchorer.cfg.retry_initial_ms).min(interval);
    let max = Duration::from_millis(anchorer.cfg.retry_max_ms).min(interval);
    let poll_every = anchorer.cfg.evm_poll_interval();
    let mut delay = initial;
    let mut next = tokio::time::Instant::now();
    let mut next_poll = next + poll_every;
    loop {
        let polling = anchorer.evm_pending();
        let reply = tokio::select! {
            _ = tokio::time::sleep_until(next) => None,
            _ = tokio::time::sleep_until(next_poll), if polling => {
                anchorer.poll_evm(&mut Round::default()).await;
                next_poll = tokio::time::Instant::now() + poll_every;
                continue;
            }
            asked = trigger.recv() => match asked {
                Some(reply) => Some(reply),
                None => return,
            },
        };
        let round = anchorer.round().await;
        next_poll = tokio::time::Instant::now() + poll_every;
        if round.failed.is_empty() {
            delay = initial;
            next = tokio::time::Instant::now() + interval;
        } else {
            let jittered = delay.mul_f64(rand::Rng::gen_range(&mut rand::thread_rng(), 0.5..=1.0));
            delay = (delay * 2).min(max);
            next = tokio::time::Instant::now() + jittered;
        }
        if let Some(reply) = reply {
            let _ = reply.send(round);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hybrid_cost_splits_into_its_parts() {
        let table = optimizer::default_strategies();
        let hybrid = table
            .iter()
            .find(|s| s.id == StrategyId::Hybrid)
            .unwrap()
            .cost_per_batch_usd;
        let parts = method_cost(&table, StrategyId::Hybrid, Method::Rfc3161)
            + method_cost(&table, StrategyId::Hybrid, Method::Evm);
        assert!((parts - hybrid).abs() < 1e-12);
        assert_eq!(method_cost(&table, StrategyId::Ethereum, Method::Evm), 2.0);
        // A configured table is the one used.
        let cfg = AnchorConfig {
            strategies: toml::from_str("[rfc3161]\ncost_per_batch_usd = 0.25\n").unwrap(),
            ..AnchorConfig::default()
        };
        let configured = cfg.strategy_table();
        assert_eq!(
            method_cost(&configured, StrategyId::Hybrid, Method::Rfc3161),
            0.25
        );
        assert_eq!(
            method_cost(&configured, StrategyId::Rfc3161, Method::Rfc3161),
            0.25
        );
    }

    #[test]
    fn a_configured_strategy_table_changes_the_auto_choice() {
        let cfg = AnchorConfig {
            strategy: StrategySetting::Auto,
            tsa_url: Some("http://tsa.test/".into()),
            tsa_ca_cert: Some("/ca.pem".into()),
            ots_calendars: vec!["http://cal.test".into()],
            objective: optimizer::Objective::Cost,
            ..AnchorConfig::default()
        };
        // Defaults: OpenTimestamps' public calendars are free.
        assert_eq!(
            effective(&cfg).unwrap().strategy,
            Some(StrategyId::Opentimestamps)
        );
        // A deployment that pays for its calendar says so, and RFC 3161 wins on cost.
        let cfg = AnchorConfig {
            strategies: toml::from_str("[opentimestamps]\ncost_per_batch_usd = 0.05\n").unwrap(),
            ..cfg
        };
        let eff = effective(&cfg).unwrap();
        assert_eq!(eff.strategy, Some(StrategyId::Rfc3161));
        let d = eff.decision.unwrap();
        let ots = d
            .candidates
            .iter()
            .find(|c| c.strategy.id == StrategyId::Opentimestamps)
            .unwrap();
        assert_eq!(ots.strategy.cost_per_batch_usd, 0.05);
    }

    #[test]
    fn auto_chooses_among_configured_methods_only() {
        let cfg = AnchorConfig {
            strategy: StrategySetting::Auto,
            tsa_url: Some("http://tsa.test/".into()),
            tsa_ca_cert: Some("/ca.pem".into()),
            ots_calendars: vec!["http://cal.test".into()],
            objective: optimizer::Objective::Latency,
            ..AnchorConfig::default()
        };
        let eff = effective(&cfg).unwrap();
        assert_eq!(eff.strategy, Some(StrategyId::Rfc3161));
        let d = eff.decision.unwrap();
        assert_eq!(d.candidates.len(), 2);
        assert_eq!(d.batches_per_month, 4320);
        let cfg = AnchorConfig {
            objective: optimizer::Objective::Durability,
            ..cfg
        };
        assert_eq!(
            effective(&cfg).unwrap().strategy,
            Some(StrategyId::Opentimestamps)
        );
        let cfg = AnchorConfig {
            min_durability: Some(0.999),
            ..cfg
        };
        assert!(matches!(effective(&cfg), Err(AuditError::Anchors(m)) if m.contains("infeasible")));
    }
}
