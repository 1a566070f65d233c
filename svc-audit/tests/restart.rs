//! Crashes, restarts and redelivery: svc-audit killed mid-stream, stopped between the log
//! append and the index commit, restarted with a rewound cursor, or started before svc-verify
//! loses no decision and logs none twice; its root always equals the root of a log built from
//! scratch from the feed's decisions.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;

use common::*;
use flk_runtime::client::VerifyClient;

use serde_json::Value;

/// Checks the audit log against the feed: one leaf per decision (each found by its key),
/// nothing else, and the reference root.
async fn assert_log_matches_feed(audit: &Audit, verify: &Verify) {
    audit.wait_caught_up(verify.last_seq()).await;
    let feed = verify.feed().await;
    let decided = decisions(&feed);
    let ledger = audit.ledger().clone();
    let (size, root) = reference_root(&feed);
    let cp = ledger.checkpoint();
    assert_eq!(cp.size, decided.len() as u64, "one leaf per decision");
    assert_eq!(
        (cp.size, cp.root_hash),
        (size, root),
        "root of the reference log"
    );
    assert_eq!(ledger.indexed_size().expect("index"), size);
    let mut leaves = BTreeSet::new();
    for rec in decided {
        let p = ledger
            .inclusion_by_pcs(&rec.tenant_id, &rec.pcs_id)
            .expect("every decision is provable");
        assert!(leaves.insert(p.leaf_index), "a leaf serves two decisions");
    }
    assert_eq!(leaves, (0..size).collect::<BTreeSet<_>>());
}

/// Submits `pcs` for [`TENANT`] and [`TWIN`] from a background task.
fn submit_all(mut client: VerifyClient, pcs: Vec<Value>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        for p in &pcs {
            submit(&mut client, json_request(TENANT, p)).await;
            submit(&mut client, json_request(TWIN, p)).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_stream_and_restarted_loses_and_duplicates_nothing() {
    let verify = Verify::start().await;
    // Small batches: the kill lands between many of them.
    let mut audit = Audit::start_with(&verify.url(), |c| {
        c.batch_max_entries = 16;
        c.checkpoint_interval_ms = 5;
    })
    .await;
    let producer = submit_all(verify.client().await, mixed("kill", 200));
    let ledger = audit.ledger().clone();
    poll_until("svc-audit has integrated part of the stream", || {
        let ledger = ledger.clone();
        async move { (ledger.size() >= 40).then_some(()) }
    })
    .await;
    drop(ledger);
    audit.kill().await;
    let killed_at = svc_audit::cursor::Cursor::new(audit.data_dir())
        .load()
        .expect("cursor");
    producer.await.expect("producer");

    audit.reopen().await;
    assert!(audit.ledger().cursor() >= killed_at);
    assert_log_matches_feed(&audit, &verify).await;
    // A second abrupt stop while idle, and a restart, change nothing.
    let before = audit.ledger().checkpoint();
    audit.kill().await;
    audit.reopen().await;
    assert_eq!(audit.ledger().checkpoint(), before);
    assert_log_matches_feed(&audit, &verify).await;
    audit.stop().await;
    verify.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_the_log_append_and_the_index_commit_is_repaired() {
    let verify = Verify::start().await;
    let mut audit = Audit::start(&verify.url()).await;
    let mut client = verify.client().await;
    for p in &mixed("before", 30) {
        submit(&mut client, json_request(TENANT, p)).await;
    }
    audit.wait_caught_up(verify.last_seq()).await;
    let cursor_before = audit.ledger().cursor();

    // The next batch reaches the Merkle log (tiles and checkpoint durable) and then the
    // process "dies": no index commit, no cursor.
    audit.ledger().halt_after_next_append();
    for p in &mixed("during", 30) {
        submit(&mut client, json_request(TENANT, p)).await;
    }
    let ledger = audit.ledger().clone();
    poll_until("the batch is appended but not indexed", || {
        let ledger = ledger.clone();
        async move { (ledger.size() > ledger.indexed_size().expect("index")).then_some(()) }
    })
    .await;
    assert_eq!(ledger.cursor(), cursor_before, "the cursor did not move");
    let appended_before_crash = ledger.size();
    drop(ledger);
    audit.kill().await;

    // The restart re-indexes the orphaned entries before consuming; the feed redelivers them
    // from the old cursor and they become no second leaf.
    audit.reopen().await;
    assert_eq!(
        audit.ledger().indexed_size().expect("index"),
        appended_before_crash
    );
    assert!(metric(&audit.metrics(), "flk_audit_reindexed_entries_total") >= 1.0);
    assert_log_matches_feed(&audit, &verify).await;
    assert!(metric(&audit.metrics(), "flk_audit_redelivered_total") >= 1.0);
    drop(client);
    audit.stop().await;
    verify.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewound_cursor_redelivers_without_duplicates() {
    let verify = Verify::start().await;
    let mut audit = Audit::start(&verify.url()).await;
    let producer = submit_all(verify.client().await, mixed("rewind", 40));
    producer.await.expect("producer");
    assert_log_matches_feed(&audit, &verify).await;
    let before = audit.ledger().checkpoint();
    audit.stop().await;

    for rewound in ["0\n", "17\n", "not a number\n"] {
        std::fs::write(audit.data_dir().join(svc_audit::cursor::FILE_NAME), rewound)
            .expect("rewind the cursor");
        audit.reopen().await;
        assert_log_matches_feed(&audit, &verify).await;
        assert_eq!(audit.ledger().checkpoint(), before, "cursor {rewound:?}");
        assert_eq!(
            metric(&audit.metrics(), "flk_audit_entries_appended_total"),
            0.0
        );
        assert!(metric(&audit.metrics(), "flk_audit_redelivered_total") >= 1.0);
        audit.stop().await;
    }
    verify.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_is_retried_until_svc_verify_is_up() {
    // A free port for svc-verify, which starts after its consumer.
    let addr: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let audit = Audit::start(&format!("http://{addr}")).await;
    poll_until("svc-audit has failed to subscribe", || {
        let text = audit.metrics();
        async move { (metric(&text, "flk_audit_feed_reconnects_total") >= 2.0).then_some(()) }
    })
    .await;
    let (status, ready) = get_json(audit.addr(), "/ready", None).await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["dependencies"]["outcome_feed"], "disconnected");

    let verify = Verify::start_on(addr).await;
    let mut client = verify.client().await;
    for p in &mixed("late", 10) {
        submit(&mut client, json_request(TENANT, p)).await;
    }
    assert_log_matches_feed(&audit, &verify).await;
    let (status, ready) = get_json(audit.addr(), "/ready", None).await;
    assert_eq!(status, 200, "{ready}");
}
