//! Fuzz target: what svc-crr receives from peer regions. The input is decoded as a
//! `flk.v1.ShipBatch` (a message of the `Ship` stream) and as an `ApplyReplicatedRequest`
//! (svc-verify's internal `ApplyReplicated`), and the records go through svc-verify's
//! `Engine::apply_replicated` on a real engine: outcome log, embedded dedup index and the
//! golden tenants (`flk_fuzz::REPLICA_TENANTS`), opened once per process in a temporary
//! directory. The seeds are real records decided by svc-verify from the golden vectors and
//! signed with their keys, so mutations reach the signature check and the store.
//!
//! Each batch's records are applied twice in a row, with `replace` false and with `replace`
//! true (a `ShipBatch` first without, an `ApplyReplicatedRequest` first with its own flag),
//! and the answers must keep what `apply_replicated` promises beyond "no panic":
//!
//! * one result per record, and no error: a record that fails the whole call would stall the
//!   stream (svc-crr retries the batch for ever);
//! * the outcome log grows by exactly the records answered `APPLIED`;
//! * first write wins: a record applied by the first call is, in the second, a duplicate of
//!   itself at the same seq. Two cases are exempt by design: a record decided longer ago than
//!   its tenant's dedup TTL (logged, not indexed, like a local decision of that age), and,
//!   with `replace`, a key that the batch holds more than once (each version replaces the
//!   other);
//! * a record refused the first time is refused again for the same reason, and one accepted
//!   is accepted again (the checks depend on the record alone).
#![no_main]

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Once};

use flk_proto::v1;
use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use svc_verify::Engine;

struct Fixture {
    engine: Arc<Engine>,
    rt: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
}

impl Fixture {
    fn open() -> Fixture {
        let (rt, dir) = flk_fuzz::fixture_runtime("flk-fuzz-replication-");
        let service = rt
            .block_on(flk_fuzz::open_verify(dir.path(), flk_fuzz::REPLICA_REGION))
            .unwrap_or_else(|e| panic!("cannot open svc-verify: {e}"));
        Fixture {
            engine: service.engine.clone(),
            rt,
            dir,
        }
    }

    /// Drops the engine inside its runtime, then the runtime, then removes the directory.
    fn close(self) {
        let Fixture { engine, rt, dir } = self;
        {
            let _in_runtime = rt.enter();
            drop(engine);
        }
        drop(rt);
        drop(dir);
    }
}

static FIXTURE: Mutex<Option<Fixture>> = Mutex::new(None);

/// Removes the engine's directory when the process exits normally (libFuzzer's time limit
/// ends in `exit`); after a crash it stays, named `flk-fuzz-replication-*`, for inspection.
/// The engine is not dropped: the thread-locals its runtime needs are gone by then, and its
/// threads are idle between inputs.
extern "C" fn close_at_exit() {
    let fixture = FIXTURE.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(f) = fixture {
        let _ = std::fs::remove_dir_all(f.dir.path());
        std::mem::forget(f);
    }
}

fn status(r: &v1::ApplyResult) -> Option<v1::ApplyStatus> {
    v1::ApplyStatus::try_from(r.status).ok()
}

fn apply(fx: &Fixture, records: &[v1::FeedRecord], replace: bool) -> Vec<v1::ApplyResult> {
    let before = fx.engine.log().last_seq();
    let results = fx
        .rt
        .block_on(fx.engine.apply_replicated(records.to_vec(), replace))
        .unwrap_or_else(|e| panic!("apply_replicated failed on the whole batch: {e:?}"));
    assert_eq!(results.len(), records.len(), "not one result per record");
    let applied = results
        .iter()
        .filter(|r| status(r) == Some(v1::ApplyStatus::Applied))
        .count() as u64;
    assert_eq!(
        fx.engine.log().last_seq() - before,
        applied,
        "the log did not grow by the records answered APPLIED"
    );
    for r in &results {
        match status(r) {
            Some(v1::ApplyStatus::Rejected) => {
                assert!(!r.reason.is_empty(), "a refusal without a reason");
                assert_eq!(r.seq, 0, "a refusal names a seq");
            }
            Some(
                v1::ApplyStatus::Applied | v1::ApplyStatus::Duplicate | v1::ApplyStatus::Conflict,
            ) => assert!(r.seq >= 1, "an accepted record without a seq: {r:?}"),
            _ => panic!("an unknown apply status: {r:?}"),
        }
    }
    results
}

/// Applies `records` twice with `replace` and checks the answers against each other.
fn twice(fx: &Fixture, records: &[v1::FeedRecord], replace: bool, flush_between: bool) {
    let first = apply(fx, records, replace);
    if flush_between {
        // The index writes owed behind the answers go to the store: the second call finds
        // the first call's records there instead of in the pending map.
        fx.rt.block_on(fx.engine.flush_pending());
    }
    let second = apply(fx, records, replace);

    // With `replace`, keys the batch holds more than once (among records not refused).
    let mut versions: HashMap<(&str, &str), usize> = HashMap::new();
    for (rec, r) in records.iter().zip(&first) {
        if status(r) != Some(v1::ApplyStatus::Rejected) {
            *versions
                .entry((rec.tenant_id.as_str(), rec.pcs_id.as_str()))
                .or_default() += 1;
        }
    }
    for (i, rec) in records.iter().enumerate() {
        let (a, b) = (&first[i], &second[i]);
        let refused = (
            status(a) == Some(v1::ApplyStatus::Rejected),
            status(b) == Some(v1::ApplyStatus::Rejected),
        );
        assert_eq!(
            refused.0, refused.1,
            "record {i}: refused in one call only ({a:?}, then {b:?})"
        );
        if refused.0 {
            assert_eq!(a.reason, b.reason, "record {i}: refused for another reason");
        }
        let exempt = flk_fuzz::outside_ttl(&fx.engine, rec)
            || (replace
                && versions
                    .get(&(rec.tenant_id.as_str(), rec.pcs_id.as_str()))
                    .is_some_and(|&n| n > 1));
        if status(a) == Some(v1::ApplyStatus::Applied) && !exempt {
            assert!(
                status(b) == Some(v1::ApplyStatus::Duplicate) && b.seq == a.seq,
                "record {i} (replace {replace}): applied at seq {}, then answered {b:?}: first write does not win",
                a.seq
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    static AT_EXIT: Once = Once::new();
    AT_EXIT.call_once(|| {
        // SAFETY: `close_at_exit` is a plain `extern "C" fn()` that catches nothing it could
        // unwind through (it only locks, takes and drops); registering it has no other effect.
        unsafe {
            libc::atexit(close_at_exit);
        }
    });
    let mut guard = FIXTURE.lock().unwrap_or_else(|p| p.into_inner());
    let fx = guard.get_or_insert_with(Fixture::open);

    if let Ok(batch) = v1::ShipBatch::decode(data) {
        // As svc-crr applies a shipped batch (first write wins), then as a reconciliation.
        twice(fx, &batch.records, false, false);
        twice(fx, &batch.records, true, true);
    }
    if let Ok(req) = v1::ApplyReplicatedRequest::decode(data) {
        twice(fx, &req.records, req.replace, true);
        twice(fx, &req.records, !req.replace, false);
    }
    fx.rt.block_on(fx.engine.flush_pending());

    if fx.engine.log().last_seq() >= flk_fuzz::ROTATE_AFTER_RECORDS
        && let Some(old) = guard.take()
    {
        old.close();
    }
});
