//! Restarts: the dedup index survives a clean stop, and startup replays the outcome log above
//! the persisted watermark into the index (`IndexCoversLog`), and only that tail.

mod common;

use common::*;
use flk_proto::v1;
use serde_json::Value;
use tonic::Code;

const WATERMARK: &str = "dedup.watermark";

/// Submits `n` fresh PCS and returns them with their decisions (seqs 1..=n on a new log).
async fn decide(h: &Harness, tag: &str, n: usize) -> Vec<(Value, v1::Outcome)> {
    let mut client = h.client().await;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let pcs = fresh_accepted(&format!("{tag}-{i}"));
        let o = submit_ok(&mut client, json_request(TENANT, &pcs)).await;
        assert!(!o.duplicate);
        out.push((pcs, o));
    }
    out
}

fn read_watermark(h: &Harness) -> u64 {
    std::fs::read_to_string(h.data_dir().join(WATERMARK))
        .expect("watermark file")
        .trim()
        .parse()
        .expect("watermark is a seq")
}

async fn assert_all_duplicates(h: &Harness, decided: &[(Value, v1::Outcome)]) {
    let mut client = h.client().await;
    for (pcs, first) in decided {
        let again = submit_ok(&mut client, json_request(TENANT, pcs)).await;
        assert!(
            again.duplicate,
            "{} answered from the index",
            pcs_id_of(pcs)
        );
        assert_eq!(&without_duplicate(&again), first);
    }
}

async fn duplicates_survive_a_restart(backend: Backend) {
    let mut h = Harness::start(backend).await;
    let decided = decide(&h, "restart", 10).await;
    h.restart().await;
    assert_eq!(
        read_watermark(&h),
        10,
        "a clean stop leaves the watermark at the log's end"
    );
    assert_all_duplicates(&h, &decided).await;
    let records = h.log_records().await;
    assert_eq!(records.len(), 10, "no decision was taken twice");
    assert_log_consistent(&records);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_duplicates_survive_a_restart() {
    duplicates_survive_a_restart(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_duplicates_survive_a_restart() {
    duplicates_survive_a_restart(Backend::Postgres).await;
}

/// With an existing but empty index and the watermark at 4, startup replays exactly seqs 5..
/// into the index: those answer as duplicates, the ones at or below the watermark are not
/// there (the watermark is trusted, so a normal start reads only the log's tail).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_replays_only_the_log_tail_above_the_watermark() {
    let mut h = Harness::start(Backend::Embedded).await;
    let decided = decide(&h, "tail", 10).await;
    h.stop().await;
    let index = h.data_dir().join("dedup");
    std::fs::remove_dir_all(&index).expect("remove the dedup index");
    drop(flk_dedup::EmbeddedStore::open(&index).expect("create an empty index"));
    std::fs::write(h.data_dir().join(WATERMARK), "4\n").expect("write watermark");
    h.reopen().await;
    let mut client = h.client().await;
    for (pcs, first) in &decided {
        let got = client
            .get_outcome(get_request(TENANT, &pcs_id_of(pcs)))
            .await;
        if first.seq <= 4 {
            assert_status(got, Code::NotFound, "not_found");
        } else {
            let stored = got.expect("replayed into the index").into_inner();
            assert_eq!(&without_duplicate(&stored), first);
        }
    }
    drop(client);
    h.stop().await;
}

/// A lost embedded index (its directory deleted, the watermark left behind) is rebuilt from
/// the whole log on startup: every earlier key still answers duplicate, nothing is decided
/// twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_embedded_index_is_rebuilt_from_the_log() {
    let mut h = Harness::start(Backend::Embedded).await;
    let decided = decide(&h, "rebuild", 10).await;
    h.stop().await;
    assert_eq!(read_watermark(&h), 10);
    std::fs::remove_dir_all(h.data_dir().join("dedup")).expect("remove the dedup index");
    h.reopen().await;
    assert_all_duplicates(&h, &decided).await;
    let records = h.log_records().await;
    assert_eq!(records.len(), 10, "no decision was taken twice");
    assert_log_consistent(&records);
    h.stop().await;
}
