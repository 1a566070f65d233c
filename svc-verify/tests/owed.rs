//! Owed index writes, driven deterministically through the engine: a shared store whose puts
//! fail after the log append (the repair path) and a single-writer store written behind the
//! answers. In both, a decided key answers as a duplicate before the store has it, is never
//! decided twice, holds the watermark below it, and reaches the store on the next flush.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::{TENANT, fresh_accepted, pcs_id_of};
use flk_dedup::{DedupEntry, DedupError, DedupKey, DedupStore, EmbeddedStore, PutOutcome};
use flk_outcome_log::{LogConfig, OutcomeLog};
use futures::StreamExt as _;
use prometheus::Registry;
use svc_verify::Engine;
use svc_verify::engine::Body;
use svc_verify::metrics::VerifyMetrics;
use svc_verify::tenants::TenantRegistry;
use tempfile::TempDir;

/// An embedded store that can pretend to be shared and can refuse puts.
struct Flaky {
    inner: EmbeddedStore,
    single_writer: bool,
    refuse_puts: AtomicBool,
    puts: AtomicUsize,
}

#[async_trait::async_trait]
impl DedupStore for Flaky {
    async fn get(&self, key: &DedupKey) -> Result<Option<DedupEntry>, DedupError> {
        self.inner.get(key).await
    }

    async fn put_if_absent(
        &self,
        key: &DedupKey,
        entry: &DedupEntry,
        ttl: Duration,
    ) -> Result<PutOutcome, DedupError> {
        if self.refuse_puts.load(Ordering::SeqCst) {
            return Err(refused());
        }
        self.puts.fetch_add(1, Ordering::SeqCst);
        self.inner.put_if_absent(key, entry, ttl).await
    }

    async fn replace(
        &self,
        key: &DedupKey,
        entry: &DedupEntry,
        ttl: Duration,
    ) -> Result<(), DedupError> {
        if self.refuse_puts.load(Ordering::SeqCst) {
            return Err(refused());
        }
        self.inner.replace(key, entry, ttl).await
    }

    async fn check_ready(&self) -> Result<(), DedupError> {
        if self.refuse_puts.load(Ordering::SeqCst) {
            return Err(refused());
        }
        self.inner.check_ready().await
    }

    fn backend(&self) -> &'static str {
        "flaky"
    }

    fn single_writer(&self) -> bool {
        self.single_writer
    }
}

fn refused() -> DedupError {
    DedupError::Unavailable {
        backend: "flaky",
        message: "puts refused by the test".into(),
    }
}

struct Rig {
    engine: Arc<Engine>,
    store: Arc<Flaky>,
    _dir: TempDir,
}

async fn rig(single_writer: bool) -> Rig {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Flaky {
        inner: EmbeddedStore::open(dir.path().join("index")).expect("embedded store"),
        single_writer,
        refuse_puts: AtomicBool::new(false),
        puts: AtomicUsize::new(0),
    });
    let (log, _) = OutcomeLog::open(LogConfig::new(dir.path().join("log"))).expect("log");
    let tenants = TenantRegistry::single_hmac(common::SECRET).expect("tenants");
    let metrics = VerifyMetrics::register(&Registry::new()).expect("metrics");
    let engine = Engine::start(
        Arc::new(tenants),
        log,
        store.clone(),
        metrics,
        "test".into(),
        64 * 1024,
        dir.path(),
    )
    .await
    .expect("engine");
    Rig {
        engine,
        store,
        _dir: dir,
    }
}

fn body(pcs: &serde_json::Value) -> Body {
    Body::Json(Bytes::from(serde_json::to_vec(pcs).expect("json")))
}

fn key(pcs: &serde_json::Value) -> DedupKey {
    DedupKey {
        tenant_id: TENANT.into(),
        pcs_id: pcs_id_of(pcs),
    }
}

fn decisions_in_log(engine: &Engine) -> usize {
    engine
        .log()
        .read_from(1)
        .map(|r| r.expect("log record"))
        .map(|(seq, payload)| common::decode_feed(seq, &payload))
        .filter(|f| f.kind() == flk_proto::v1::RecordKind::Decision)
        .count()
}

#[tokio::test]
async fn a_failed_index_write_is_repaired_and_the_key_is_never_decided_twice() {
    let rig = rig(false).await;
    let before = fresh_accepted("repair-before");
    rig.engine
        .submit(TENANT, body(&before))
        .await
        .expect("first decision");
    let mark_before = rig.engine.checkpoint_watermark().await.expect("watermark");
    assert_eq!(mark_before, 1);

    // The store takes reads but refuses writes: the decision is logged and answered, its
    // index write is owed.
    rig.store.refuse_puts.store(true, Ordering::SeqCst);
    let pcs = fresh_accepted("repair");
    let first = rig
        .engine
        .submit(TENANT, body(&pcs))
        .await
        .expect("answered");
    assert!(!first.duplicate);
    assert_eq!(rig.store.inner.get(&key(&pcs)).await.expect("get"), None);

    let again = rig
        .engine
        .submit(TENANT, body(&pcs))
        .await
        .expect("answered");
    assert!(again.duplicate, "answered from the owed write");
    assert_eq!(again.seq, first.seq);
    assert_eq!(decisions_in_log(&rig.engine), 2);

    // The watermark stays below the owed decision while the store is down.
    assert_eq!(rig.engine.flush_pending().await, 1);
    assert_eq!(
        rig.engine.checkpoint_watermark().await.expect("watermark"),
        first.seq - 1
    );

    rig.store.refuse_puts.store(false, Ordering::SeqCst);
    assert_eq!(rig.engine.flush_pending().await, 0);
    let stored = rig.store.inner.get(&key(&pcs)).await.expect("get");
    assert_eq!(stored.map(|e| e.seq), Some(first.seq));
    assert_eq!(
        rig.engine.checkpoint_watermark().await.expect("watermark"),
        first.seq
    );
}

#[tokio::test]
async fn a_single_writer_index_is_written_behind_the_answers() {
    let rig = rig(true).await;
    let pcs: Vec<_> = (0..50)
        .map(|i| fresh_accepted(&format!("behind-{i}")))
        .collect();
    let mut seqs = Vec::new();
    for p in &pcs {
        let r = rig.engine.submit(TENANT, body(p)).await.expect("answered");
        assert!(!r.duplicate);
        seqs.push(r.seq);
    }
    // Answered before the index write: no put has run (the flusher is the service's task,
    // not the engine's, and it is not running here).
    assert_eq!(rig.store.puts.load(Ordering::SeqCst), 0);
    assert_eq!(
        rig.engine.checkpoint_watermark().await.expect("watermark"),
        0
    );
    for (p, seq) in pcs.iter().zip(&seqs) {
        let again = rig.engine.submit(TENANT, body(p)).await.expect("answered");
        assert!(again.duplicate);
        assert_eq!(again.seq, *seq);
        let got = rig
            .engine
            .get_outcome(TENANT, &pcs_id_of(p))
            .await
            .expect("get outcome");
        assert_eq!(got.seq, *seq);
    }
    assert_eq!(decisions_in_log(&rig.engine), pcs.len());

    assert_eq!(rig.engine.flush_pending().await, 0);
    assert_eq!(rig.store.puts.load(Ordering::SeqCst), pcs.len());
    for (p, seq) in pcs.iter().zip(&seqs) {
        let stored = rig.store.inner.get(&key(p)).await.expect("get");
        assert_eq!(stored.map(|e| e.seq), Some(*seq));
    }
    assert_eq!(
        rig.engine.checkpoint_watermark().await.expect("watermark"),
        *seqs.last().expect("seqs")
    );
}

/// A caller that goes away mid-submission (a client's deadline, a reset stream) must not stop
/// the pipeline between the log append and the index write: the decision would be in the log
/// but in no lookup, and the client's retry would be decided a second time.
#[tokio::test]
async fn a_submission_whose_caller_goes_away_is_recorded_and_decided_once() {
    for single_writer in [true, false] {
        let rig = rig(single_writer).await;
        let pcs = fresh_accepted(&format!("abandoned-{single_writer}"));
        {
            let submit = rig.engine.submit(TENANT, body(&pcs));
            tokio::pin!(submit);
            // One poll starts the submission (it waits on the log's fsync), then the caller
            // drops it.
            assert!(futures::poll!(submit.as_mut()).is_pending());
        }
        // The decision still lands in the log.
        let (seq, _) = rig
            .engine
            .log()
            .subscribe(1)
            .next()
            .await
            .expect("a record")
            .expect("readable");

        let retry = rig
            .engine
            .submit(TENANT, body(&pcs))
            .await
            .expect("answered");
        assert!(
            retry.duplicate,
            "single_writer={single_writer}: the retry must be answered from the first decision"
        );
        assert_eq!(retry.seq, seq);
        assert_eq!(decisions_in_log(&rig.engine), 1);
    }
}
