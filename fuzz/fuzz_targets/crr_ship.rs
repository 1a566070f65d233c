//! Fuzz target: svc-crr's receiving side of replication. The input is a sequence of
//! `flk.v1.ShipBatch` messages, each preceded by its length as a protobuf varint (prost's
//! length-delimited encoding, as `Message::encode_length_delimited` writes it); at most
//! [`MAX_BATCHES`] are read, and decoding stops at the first that does not decode. Each batch
//! goes, in order, through `svc_crr::grpc::apply_batch` (what the `Ship` stream does with a
//! batch: the peer and target checks, svc-verify's `ApplyReplicated` over real gRPC, the
//! receiving watermark) on a real svc-crr `Core` of region `flk_fuzz::REPLICA_REGION` with two
//! configured peers ([`PEERS`]), whose svc-verify (outcome log, embedded dedup index, the
//! golden tenants) serves on 127.0.0.1:0 in the same process. Both are opened once per process
//! in a temporary directory. The seeds are real batches of records svc-verify decided from the
//! golden vectors, signed with their keys (`cargo run --example seeds -- crr_ship`).
//!
//! Checked on every batch, beyond "no panic":
//!
//! * a `source` that is not a configured peer is `PERMISSION_DENIED`; from a peer, a `target`
//!   other than this region is `FAILED_PRECONDITION`; either way nothing is applied (the
//!   outcome log does not grow) and no receiving watermark moves;
//! * any other batch is acknowledged: no error at all (an error stalls the peer's stream, which
//!   ships the batch again for ever); `applied + duplicates + conflicts + rejected` is the
//!   number of records; the records whose `region` is not the `source` are among the rejected
//!   and never stored; the log grows by exactly `applied` records, each kept as the origin
//!   shipped it (its region, replicated, a decision);
//! * the receiving watermark of the source is `max(before, last_seq)` after the batch, and
//!   `acked_seq` says so; it never goes backwards; another source's does not move;
//! * the same batch applied again at once applies nothing (first write wins), save records
//!   decided longer ago than their tenant's dedup TTL (logged, not indexed, by design), rejects
//!   as many records, and acknowledges the same watermark.
#![no_main]

use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use flk_proto::v1;
use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use svc_verify::Engine;
use tonic::Code;

/// The peer regions configured in the fuzzed svc-crr: the origins of the seeds' records.
const PEERS: [&str; 2] = ["us-east", "ap-south"];
/// Batches read from one input at most.
const MAX_BATCHES: usize = 16;
/// svc-crr's token towards its svc-verify (the variable it is read from, and its value).
const VERIFY_TOKEN_ENV: &str = "FLK_FUZZ_VERIFY_TOKEN";
const VERIFY_TOKEN: &str = "fuzz-verify-token";
/// How often svc-crr's lazy store commits are made durable, as its flush loop does.
const FLUSH_EVERY: Duration = Duration::from_millis(200);

struct Fixture {
    core: Arc<svc_crr::Core>,
    engine: Arc<Engine>,
    stop_verify: tokio::sync::oneshot::Sender<()>,
    verify: tokio::task::JoinHandle<()>,
    flushed: Instant,
    rt: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
}

impl Fixture {
    fn open() -> Fixture {
        let (rt, dir) = flk_fuzz::fixture_runtime("flk-fuzz-crr-ship-");
        let (core, engine, stop_verify, verify) = rt.block_on(async {
            let mut service = flk_fuzz::open_verify(dir.path(), flk_fuzz::REPLICA_REGION)
                .await
                .unwrap_or_else(|e| panic!("cannot open svc-verify: {e}"));
            service.set_security(flk_runtime::security::ServerSecurity::token(VERIFY_TOKEN));
            let engine = service.engine.clone();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind svc-verify");
            let addr = listener.local_addr().expect("svc-verify address");
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let verify = tokio::spawn(async move {
                let serving = service.serve(listener, async {
                    let _ = stopped.await;
                });
                if let Err(e) = serving.await {
                    eprintln!("svc-verify stopped: {e:#}");
                }
            });
            let cfg = svc_crr::CrrConfig {
                region: flk_fuzz::REPLICA_REGION.to_owned(),
                data_dir: dir.path().join("crr"),
                verify_url: format!("http://{addr}"),
                peer_token: Some("fuzz-peer-token".to_owned()),
                // Never dialed: only the receiving side runs (`Service::serve` is not called).
                peers: PEERS
                    .iter()
                    .map(|r| svc_crr::config::PeerRegion {
                        region: (*r).to_owned(),
                        url: "http://127.0.0.1:9".to_owned(),
                    })
                    .collect(),
                peer: flk_runtime::security::PeerSettings {
                    token_env: Some(VERIFY_TOKEN_ENV.to_owned()),
                    ..Default::default()
                },
                ..svc_crr::CrrConfig::default()
            };
            let crr = svc_crr::Service::open(&cfg, Default::default(), |k| {
                (k == VERIFY_TOKEN_ENV).then(|| VERIFY_TOKEN.to_owned())
            })
            .await
            .unwrap_or_else(|e| panic!("cannot open svc-crr: {e:#}"));
            (crr.core().clone(), engine, stop, verify)
        });
        Fixture {
            core,
            engine,
            stop_verify,
            verify,
            flushed: Instant::now(),
            rt,
            dir,
        }
    }

    /// Lets go of svc-crr (its channel to svc-verify), stops svc-verify and waits for it,
    /// inside the runtime; then drops the runtime and removes the directory.
    fn close(self) {
        let Fixture {
            core,
            engine,
            stop_verify,
            verify,
            rt,
            dir,
            ..
        } = self;
        rt.block_on(async move {
            drop(core);
            let _ = stop_verify.send(());
            if tokio::time::timeout(Duration::from_secs(5), verify)
                .await
                .is_err()
            {
                eprintln!("svc-verify did not stop within 5 s");
            }
            drop(engine);
        });
        drop(rt);
        drop(dir);
    }

    fn recv_acked(&self, source: &str) -> u64 {
        self.core
            .store
            .recv_acked(source)
            .unwrap_or_else(|e| panic!("cannot read the receiving watermark of {source:?}: {e}"))
    }

    /// The receiving watermark of every configured peer.
    fn watermarks(&self) -> Vec<u64> {
        PEERS.iter().map(|p| self.recv_acked(p)).collect()
    }
}

static FIXTURE: Mutex<Option<Fixture>> = Mutex::new(None);

/// Removes the regions' directory when the process exits normally (libFuzzer's time limit
/// ends in `exit`); after a crash it stays, named `flk-fuzz-crr-ship-*`, for inspection. The
/// services are not dropped: the thread-locals their runtime needs are gone by then, and
/// nothing runs between inputs.
extern "C" fn close_at_exit() {
    let fixture = FIXTURE.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(f) = fixture {
        let _ = std::fs::remove_dir_all(f.dir.path());
        std::mem::forget(f);
    }
}

fn handled(ack: &v1::ShipAck) -> u64 {
    ack.applied + ack.duplicates + ack.conflicts + ack.rejected
}

/// Applies `batch` once and checks the answer; the acknowledgement when it was accepted.
fn apply(fx: &Fixture, batch: &v1::ShipBatch) -> Option<v1::ShipAck> {
    let peer = PEERS.contains(&batch.source.as_str());
    let log_before = fx.engine.log().last_seq();
    let marks_before = fx.watermarks();
    let source_before = fx.recv_acked(&batch.source);
    let answer = fx
        .rt
        .block_on(svc_crr::grpc::apply_batch(&fx.core, batch.clone()));

    if !peer || batch.target != flk_fuzz::REPLICA_REGION {
        let want = if peer {
            Code::FailedPrecondition
        } else {
            Code::PermissionDenied
        };
        match &answer {
            Err(s) => assert_eq!(
                s.code(),
                want,
                "batch from {:?} to {:?} refused with {s:?}",
                batch.source,
                batch.target
            ),
            Ok(ack) => panic!(
                "batch from {:?} to {:?} accepted: {ack:?}",
                batch.source, batch.target
            ),
        }
        assert_eq!(
            fx.engine.log().last_seq(),
            log_before,
            "a refused batch stored records"
        );
        assert_eq!(
            fx.watermarks(),
            marks_before,
            "a refused batch moved a watermark"
        );
        assert_eq!(
            fx.recv_acked(&batch.source),
            source_before,
            "a refused batch moved its source's watermark"
        );
        return None;
    }

    let ack = answer.unwrap_or_else(|s| {
        panic!(
            "a batch from peer {:?} ({} records) failed as a whole: {s:?}",
            batch.source,
            batch.records.len()
        )
    });
    assert_eq!(
        handled(&ack),
        batch.records.len() as u64,
        "the acknowledgement does not account for every record: {ack:?}"
    );
    let wrong_origin = batch
        .records
        .iter()
        .filter(|r| r.region != batch.source)
        .count() as u64;
    assert!(
        ack.rejected >= wrong_origin,
        "{wrong_origin} records of another origin, {} rejected: {ack:?}",
        ack.rejected
    );
    let log_after = fx.engine.log().last_seq();
    assert_eq!(
        log_after - log_before,
        ack.applied,
        "the outcome log did not grow by the records acknowledged as applied: {ack:?}"
    );
    for r in fx.engine.log().read_from(log_before + 1) {
        let (seq, bytes) = r.unwrap_or_else(|e| panic!("cannot read the outcome log: {e}"));
        if seq > log_after {
            break;
        }
        let rec = v1::FeedRecord::decode(bytes.as_ref())
            .unwrap_or_else(|e| panic!("stored record {seq} does not decode: {e}"));
        assert!(
            rec.region == batch.source
                && rec.replicated
                && rec.kind == v1::RecordKind::Decision as i32,
            "record {seq} stored from a batch of {:?}: region {:?}, replicated {}, kind {}",
            batch.source,
            rec.region,
            rec.replicated,
            rec.kind
        );
    }

    let want = source_before.max(batch.last_seq);
    assert_eq!(
        fx.recv_acked(&batch.source),
        want,
        "watermark of {:?}: {source_before} before, last_seq {}",
        batch.source,
        batch.last_seq
    );
    assert_eq!(ack.acked_seq, want, "acked_seq is not the watermark");
    for (p, (before, after)) in PEERS.iter().zip(marks_before.iter().zip(fx.watermarks())) {
        if *p != batch.source {
            assert_eq!(
                *before, after,
                "a batch from {:?} moved the watermark of {p:?}",
                batch.source
            );
        }
    }
    Some(ack)
}

fn ship(fx: &Fixture, batch: &v1::ShipBatch) {
    let Some(first) = apply(fx, batch) else {
        return;
    };
    // As a peer does after a lost acknowledgement: the same batch again.
    let second = apply(fx, batch).expect("the batch was accepted the first time");
    let expired = batch
        .records
        .iter()
        .filter(|r| r.region == batch.source && flk_fuzz::outside_ttl(&fx.engine, r))
        .count() as u64;
    assert!(
        second.applied <= expired,
        "the same batch applied twice: {first:?}, then {second:?} (first write does not win; {expired} records past their TTL)"
    );
    assert_eq!(
        second.rejected, first.rejected,
        "the same batch rejected other records: {first:?}, then {second:?}"
    );
    assert_eq!(second.acked_seq, first.acked_seq, "the watermark moved");
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

    let mut rest = data;
    for _ in 0..MAX_BATCHES {
        if rest.is_empty() {
            break;
        }
        let Ok(batch) = v1::ShipBatch::decode_length_delimited(&mut rest) else {
            break;
        };
        ship(fx, &batch);
    }
    fx.rt.block_on(fx.engine.flush_pending());
    if fx.flushed.elapsed() >= FLUSH_EVERY {
        fx.core
            .store
            .flush()
            .unwrap_or_else(|e| panic!("cannot flush svc-crr's store: {e}"));
        fx.flushed = Instant::now();
    }

    if fx.engine.log().last_seq() >= flk_fuzz::ROTATE_AFTER_RECORDS
        && let Some(old) = guard.take()
    {
        old.close();
    }
});
