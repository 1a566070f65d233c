//! Decisions from other regions (svc-crr): applied through the same engine as submissions, so
//! that they are durable in the outcome log, indexed, and reach every consumer of the feed.
//!
//! A replicated record is trusted for nothing it can prove itself: the request it carries is
//! parsed and canonicalized again, must hash to the record's `canonical_digest` and name its
//! `pcs_id`, and its signature must verify with this region's copy of the tenant's keys at the
//! origin's decision time. A compromised peer can therefore replay real decisions, but never
//! inject one the tenant did not sign. First write wins on `(tenant_id, pcs_id)`, exactly as
//! for submissions (`Idempotency`); only a reconciliation (`replace`) overwrites the stored
//! decision, and it is recorded as `RECORD_KIND_RECONCILED`.

use std::time::{Duration, Instant};

use bytes::Bytes;
use flk_core::{OutcomeRecord, Pcs, canonicalize, parse_pcs};
use flk_dedup::{DedupEntry, DedupKey};
use flk_proto::v1;
use prost::Message as _;
use time::OffsetDateTime;

use super::{Engine, Owed, decode_stored, log_error};

/// The answer for one record.
fn result(status: v1::ApplyStatus, reason: &str, seq: u64) -> v1::ApplyResult {
    v1::ApplyResult {
        status: status as i32,
        reason: reason.to_owned(),
        seq,
    }
}

fn rejected(reason: &str) -> v1::ApplyResult {
    result(v1::ApplyStatus::Rejected, reason, 0)
}

/// A replicated record that passed every check, ready to record.
struct Checked {
    key: DedupKey,
    digest: [u8; 32],
    ttl: Duration,
}

impl Engine {
    /// Applies records decided elsewhere; one result per record, in order. They run
    /// concurrently, so that their log appends share fsyncs (group commit), and records of one
    /// key serialize on its stripe lock. Storage failures (log, index) fail the whole call,
    /// so that the caller retries and acknowledges nothing that is not durable.
    pub async fn apply_replicated(
        &self,
        records: Vec<v1::FeedRecord>,
        replace: bool,
    ) -> Result<Vec<v1::ApplyResult>, flk_proto::ApiError> {
        futures::future::join_all(records.into_iter().map(|rec| self.apply_one(rec, replace)))
            .await
            .into_iter()
            .collect()
    }

    async fn apply_one(
        &self,
        mut rec: v1::FeedRecord,
        replace: bool,
    ) -> Result<v1::ApplyResult, flk_proto::ApiError> {
        let started = Instant::now();
        let checked = match self.check_replicated(&rec) {
            Ok(c) => c,
            Err(reason) => {
                self.metrics
                    .refused
                    .with_label_values(&["replica_rejected"])
                    .inc();
                tracing::warn!(tenant_id = %rec.tenant_id, pcs_id = %rec.pcs_id, origin = %rec.region, reason, "replicated record refused");
                return Ok(rejected(reason));
            }
        };
        let stripe = self.stripe(&checked.key);
        let _stripe = self.stripes[stripe].lock().await;
        if let Some(stored) = self.lookup(&checked.key).await? {
            let same_decision = stored.digest == checked.digest
                && decode_stored(&stored).is_ok_and(|s| {
                    rec.outcome
                        .as_ref()
                        .is_some_and(|o| o.outcome == v1::OutcomeKind::from(s.outcome) as i32)
                });
            if stored.digest == checked.digest && (!replace || same_decision) {
                return Ok(result(v1::ApplyStatus::Duplicate, "", stored.seq));
            }
            if !replace {
                return Ok(result(v1::ApplyStatus::Conflict, "", stored.seq));
            }
        }
        let _barrier = self.barrier.read().await;
        let origin = rec.region.clone();
        rec.seq = 0;
        rec.replicated = origin != self.region;
        rec.kind = if replace {
            v1::RecordKind::Reconciled
        } else {
            v1::RecordKind::Decision
        } as i32;
        rec.verify_cpu_ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        if let Some(o) = rec.outcome.as_mut() {
            o.origin_region.clone_from(&origin);
            o.replicated = rec.replicated;
            o.duplicate = false;
            o.seq = 0;
        }
        let payload = rec.encode_to_vec();
        if payload.len() > flk_outcome_log::MAX_PAYLOAD_LEN {
            // Refused like any bad record: as a storage error it would fail the whole call and
            // the peer would ship the batch again for ever.
            self.metrics
                .refused
                .with_label_values(&["replica_rejected"])
                .inc();
            tracing::warn!(tenant_id = %rec.tenant_id, pcs_id = %rec.pcs_id, origin = %origin, bytes = payload.len(), "replicated record too large for the outcome log; refused");
            return Ok(rejected("too_large"));
        }
        let seq = self
            .log
            .append(Bytes::from(payload))
            .await
            .map_err(log_error)?;
        let mut outcome = rec.outcome.unwrap_or_default();
        outcome.seq = seq;
        let entry = DedupEntry {
            seq,
            digest: checked.digest,
            outcome: Bytes::from(outcome.encode_to_vec()),
        };
        if checked.ttl.is_zero() {
            // Decided longer ago than the tenant's dedup TTL: logged (audit, KPIs), not
            // indexed, as a local decision of that age would no longer be.
        } else if replace {
            self.pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&checked.key);
            if let Err(e) = self.dedup.replace(&checked.key, &entry, checked.ttl).await {
                // Durable in the log: the index catches up by replay (which honours
                // reconciled records) once the store answers.
                tracing::warn!(error = %e, "dedup replace failed after log append");
                self.rebuild
                    .store(true, std::sync::atomic::Ordering::SeqCst);
            }
        } else if self.write_behind {
            self.pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(checked.key.clone(), Owed::new(entry, checked.ttl));
            self.stripe_decisions[stripe].fetch_add(1, std::sync::atomic::Ordering::Release);
        } else if let Some(winner) = self.put_now(&checked.key, entry, checked.ttl).await {
            // Another replica of this region decided the key between our lookup and put.
            return Ok(result(v1::ApplyStatus::Conflict, "", winner.seq));
        }
        Ok(result(v1::ApplyStatus::Applied, "", seq))
    }

    /// Every check a replicated record must pass; the refusal reason otherwise.
    fn check_replicated(&self, rec: &v1::FeedRecord) -> Result<Checked, &'static str> {
        let kind = v1::RecordKind::try_from(rec.kind).map_err(|_| "bad_record")?;
        if !matches!(kind, v1::RecordKind::Decision | v1::RecordKind::Reconciled) {
            return Err("not_a_decision");
        }
        let tenant = self.tenants.get(&rec.tenant_id).ok_or("unknown_tenant")?;
        let outcome = rec.outcome.as_ref().ok_or("bad_record")?;
        if outcome.pcs_id != rec.pcs_id || outcome.tenant_id != rec.tenant_id {
            return Err("bad_record");
        }
        let decided = OutcomeRecord::try_from(outcome).map_err(|_| "bad_record")?;
        let at = OffsetDateTime::from_unix_timestamp_nanos(
            i128::from(rec.decided_at_unix_ms) * 1_000_000,
        )
        .map_err(|_| "bad_record")?;
        if (decided.received_at - at).whole_milliseconds().abs() >= 1 {
            return Err("bad_record");
        }
        if rec.region.is_empty() {
            return Err("bad_record");
        }
        let pcs = if !rec.request_json.is_empty() {
            parse_pcs(&rec.request_json).map_err(|_| "invalid_pcs")?
        } else {
            let wire = rec.request_pcs.clone().ok_or("bad_record")?;
            Pcs::try_from(wire).map_err(|_| "invalid_pcs")?
        };
        if pcs.pcs_id != rec.pcs_id {
            return Err("pcs_id_mismatch");
        }
        let canon = canonicalize(&pcs);
        if canon.digest.as_slice() != rec.canonical_digest.as_slice() {
            return Err("digest_mismatch");
        }
        // At the origin's decision time: a key rotated out since then still proves it.
        tenant
            .keys
            .verify(&canon, pcs.sig.as_deref(), at)
            .map_err(|e| e.code())?;
        let age = OffsetDateTime::now_utc() - at;
        let ttl = Duration::from_secs(tenant.policy.dedup_ttl_secs)
            .saturating_sub(Duration::try_from(age).unwrap_or_default());
        Ok(Checked {
            key: DedupKey {
                tenant_id: tenant.id.clone(),
                pcs_id: pcs.pcs_id,
            },
            digest: canon.digest,
            ttl,
        })
    }

    /// The stored decisions of `keys` (unknown keys left out), read back from the outcome log
    /// by the sequence number the index holds, for replay-missing repairs in other regions.
    pub async fn get_records(
        &self,
        keys: Vec<v1::RecordKey>,
    ) -> Result<Vec<v1::FeedRecord>, flk_proto::ApiError> {
        let mut seqs = Vec::with_capacity(keys.len());
        for k in keys {
            if self.tenants.get(&k.tenant_id).is_none() {
                continue;
            }
            let key = DedupKey {
                tenant_id: k.tenant_id,
                pcs_id: k.pcs_id,
            };
            if let Some(entry) = self.lookup(&key).await? {
                seqs.push(entry.seq);
            }
        }
        let log = self.log.clone();
        let read = tokio::task::spawn_blocking(move || {
            let mut out = Vec::with_capacity(seqs.len());
            for seq in seqs {
                if let Some(item) = log.read_from(seq).next() {
                    let (at, payload) = item?;
                    if at == seq {
                        out.push((seq, payload));
                    }
                }
            }
            Ok::<_, flk_outcome_log::LogError>(out)
        })
        .await
        .map_err(|e| {
            flk_proto::ApiError::new(
                flk_proto::ErrorKind::Internal,
                "internal",
                format!("log read task failed: {e}"),
            )
        })?
        .map_err(log_error)?;
        let mut records = Vec::with_capacity(read.len());
        for (seq, payload) in read {
            match v1::FeedRecord::decode(payload.as_ref()) {
                Ok(mut rec) => {
                    rec.seq = seq;
                    records.push(rec);
                }
                Err(e) => tracing::warn!(seq, error = %e, "outcome log record does not decode"),
            }
        }
        Ok(records)
    }

    /// Records an event of cross-region replication in the outcome log (so that svc-audit
    /// logs it and the SIEM ships it); its sequence number.
    pub async fn record_crr_event(
        &self,
        tenant_id: &str,
        pcs_id: &str,
        event_json: String,
    ) -> Result<u64, flk_proto::ApiError> {
        if serde_json::from_str::<serde_json::Value>(&event_json).is_err() {
            return Err(flk_proto::ApiError::new(
                flk_proto::ErrorKind::InvalidArgument,
                "invalid_event",
                "`event_json` is not JSON",
            ));
        }
        let rec = v1::FeedRecord {
            tenant_id: tenant_id.to_owned(),
            pcs_id: pcs_id.to_owned(),
            decided_at_unix_ms: (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)
                as i64,
            region: self.region.clone(),
            kind: v1::RecordKind::CrrEvent as i32,
            event_json,
            ..Default::default()
        };
        self.log
            .append(Bytes::from(rec.encode_to_vec()))
            .await
            .map_err(log_error)
    }
}
