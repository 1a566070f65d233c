//! Regressions of svc-crr's receiving side of shipping (`grpc::apply_batch`), found while
//! writing its fuzz target (`fuzz/fuzz_targets/crr_ship.rs`): each a batch the target's checks
//! refuse, run here on a real svc-verify and svc-crr.

mod common;

use common::*;
use flk_proto::v1;
use svc_crr::config::ReconcileMode;

/// svc-verify takes at most 10,000 records per `ApplyReplicated` call. A shipped batch holding
/// more failed as a whole (`UNAVAILABLE`), so the peer would have shipped it again for ever;
/// it is applied in several calls now, every record answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_larger_than_one_apply_call_is_applied_not_failed() {
    let dir = tempfile::tempdir().unwrap();
    let (_eu, us) = two_with(dir.path(), ReconcileMode::AutoSafe, |_| {}).await;
    let n = 10_001;
    // Records of the shipping peer's origin that svc-verify refuses one by one (no decision).
    let record = v1::FeedRecord {
        region: "eu".into(),
        ..Default::default()
    };
    // What svc-crr called with the whole batch: refused by svc-verify as a whole.
    let err = us
        .core()
        .verify
        .clone()
        .apply_replicated(v1::ApplyReplicatedRequest {
            records: vec![record.clone(); n],
            replace: false,
        })
        .await
        .expect_err("more records than one call takes");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    let head = us.engine().log().last_seq();
    let ack = svc_crr::grpc::apply_batch(
        us.core(),
        v1::ShipBatch {
            source: "eu".into(),
            target: "us".into(),
            records: vec![record; n],
            last_seq: 42,
        },
    )
    .await
    .expect("the batch is acknowledged, not failed");
    assert_eq!(
        (ack.applied, ack.duplicates, ack.conflicts, ack.rejected),
        (0, 0, 0, n as u64),
        "{ack:?}"
    );
    assert_eq!(ack.acked_seq, 42);
    assert_eq!(us.core().store.recv_acked("eu").unwrap(), 42);
    assert_eq!(us.engine().log().last_seq(), head, "nothing appended");
}
