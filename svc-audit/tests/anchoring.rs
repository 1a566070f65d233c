//! Checkpoint anchoring end to end: a real svc-verify feeding a real svc-audit that anchors
//! its checkpoints at a real RFC 3161 TSA (`openssl ts -reply` on port 0, from
//! `flk_anchor::test_support`) and on a ganache development chain (`TestChain`, port 0; the
//! test mines the blocks and reorgs it with `evm_snapshot` / `evm_revert`). Anchors must
//! verify offline against the stored note and the log key, survive a restart, be listed over
//! REST and gRPC; TSA outages are counted and retried; EVM anchors stay pending until their
//! confirmation depth, without holding up RFC 3161, and are re-submitted after a reorg drops
//! them; the `auto` strategy's choice is an entry of the audit log itself.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use common::*;
use flk_anchor::evm::PendingEvm;
use flk_anchor::optimizer::Objective;
use flk_anchor::test_support::ganache::{ADDRESS, CHAIN_ID, KEY_HEX};
use flk_anchor::test_support::{TestChain, TestTsa};
use flk_anchor::{AnchorError, EvmAnchor};
use flk_anchor::{AnchorKind, AnchorRecord, Evidence, VerifyContext, anchored_digest};
use flk_proto::v1;
use flk_tlog::{EventKind, LogEntry};
use serde_json::Value;
use svc_audit::AuditConfig;
use svc_audit::anchoring::StrategySetting;

/// Anchoring at `tsa` with `strategy`; rounds every `interval_secs`, fast retries.
fn anchor_at(c: &mut AuditConfig, tsa: &TestTsa, strategy: StrategySetting, interval_secs: u64) {
    c.anchor.strategy = strategy;
    c.anchor.tsa_url = Some(tsa.url.clone());
    c.anchor.tsa_ca_cert = Some(tsa.ca_pem_path());
    c.anchor.interval_secs = interval_secs;
    c.anchor.retry_initial_ms = 20;
    c.anchor.retry_max_ms = 200;
}

/// Submits `n` fresh decisions and waits until svc-audit has integrated them.
async fn decide(verify: &Verify, audit: &Audit, prefix: &str, n: usize) {
    let mut client = verify.client().await;
    for p in mixed(prefix, n) {
        submit(&mut client, json_request(TENANT, &p)).await;
    }
    audit.wait_caught_up(verify.last_seq()).await;
}

/// The record of a listed anchor (gRPC shape) and its note.
fn record_of(a: &v1::Anchor) -> (AnchorRecord, String) {
    let kind = match a.kind.as_str() {
        "rfc3161" => AnchorKind::Rfc3161,
        "opentimestamps" => AnchorKind::OpenTimestamps,
        "evm" => AnchorKind::Evm,
        other => panic!("unknown kind {other}"),
    };
    let record = AnchorRecord {
        checkpoint_size: a.checkpoint_size,
        root_hash: hex::encode(&a.root_hash),
        strategy: a.strategy.clone(),
        kind,
        proof: a.proof.clone(),
        created_at_unix: a.created_at_unix,
    };
    (record, a.checkpoint_note.clone())
}

async fn list_anchors(audit: &Audit) -> Vec<v1::Anchor> {
    audit
        .client()
        .await
        .list_anchors(v1::ListAnchorsRequest::default())
        .await
        .expect("ListAnchors")
        .into_inner()
        .anchors
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_checkpoint_is_anchored_verifies_offline_survives_restart_and_is_listed() {
    let tsa = TestTsa::start().await;
    let verify = Verify::start().await;
    // A long interval: rounds run at start (empty log: nothing to anchor) and on demand.
    let mut audit = Audit::start_with(&verify.url(), |c| {
        anchor_at(c, &tsa, StrategySetting::Rfc3161, 3600)
    })
    .await;
    // The round at start anchors the checkpoint of the strategy event alone.
    let first = poll_until("the first checkpoint is anchored", || async {
        list_anchors(&audit).await.into_iter().next()
    })
    .await;
    assert_eq!((first.id, first.checkpoint_size), (0, 1));
    decide(&verify, &audit, "anchor", 7).await;
    let cp = audit.ledger().checkpoint();
    // Leaf 0 is the strategy event (a fixed strategy is recorded too), then 7 decisions.
    assert_eq!(cp.size, 8);

    let round = audit
        .client()
        .await
        .anchor_checkpoint(v1::AnchorCheckpointRequest {})
        .await
        .expect("AnchorCheckpoint")
        .into_inner();
    assert!(round.failed.is_empty(), "{round:?}");
    assert_eq!(round.anchored.len(), 1);
    let a = &round.anchored[0];
    assert_eq!((a.id, a.checkpoint_size), (1, 8));
    assert_eq!(a.root_hash, cp.root_hash.to_vec());
    assert_eq!(a.checkpoint_note, cp.note, "the exact published note");
    assert_eq!(
        (a.kind.as_str(), a.strategy.as_str()),
        ("rfc3161", "rfc3161")
    );
    assert!(a.complete);

    // Offline: the record, the note and the log key (and the TSA's CA) are all it takes.
    let ctx = VerifyContext {
        tsa_trust: Some(tsa.trust()),
    };
    let (record, note) = record_of(a);
    let v = record
        .verify(&note, audit.ledger().verifier(), &ctx)
        .expect("anchor verifies");
    assert_eq!(v.checkpoint.size, 8);
    assert_eq!(v.digest, anchored_digest(cp.note.as_bytes()));
    let Evidence::Rfc3161 { gen_time_unix } = v.evidence else {
        panic!("rfc 3161 evidence expected, got {:?}", v.evidence);
    };
    assert!((gen_time_unix - record.created_at_unix).abs() < 300);
    // Another note is not what was anchored; a changed proof does not verify.
    let mut other = record.clone();
    // The digest occurs once in the token, inside the signed TSTInfo.
    let digest = anchored_digest(note.as_bytes());
    let at = other
        .proof
        .windows(32)
        .position(|w| w == digest)
        .expect("digest in the token");
    other.proof[at] ^= 1;
    assert!(
        other
            .verify(&note, audit.ledger().verifier(), &ctx)
            .is_err()
    );
    let forged = note.replacen("\n8\n", "\n9\n", 1);
    assert!(
        record
            .verify(&forged, audit.ledger().verifier(), &ctx)
            .is_err()
    );

    // A second round finds the checkpoint anchored: no new token.
    let again = audit
        .client()
        .await
        .anchor_checkpoint(v1::AnchorCheckpointRequest {})
        .await
        .expect("AnchorCheckpoint")
        .into_inner();
    assert!(again.anchored.is_empty() && again.failed.is_empty());
    assert_eq!(tsa.tokens_issued(), 2);

    let m = audit.metrics();
    assert_eq!(
        metric(&m, r#"flk_audit_anchor_attempts_total{kind="rfc3161"}"#),
        2.0
    );
    assert_eq!(
        metric(&m, r#"flk_audit_anchor_success_total{kind="rfc3161"}"#),
        2.0
    );
    assert_eq!(
        metric(&m, r#"flk_audit_anchor_failures_total{kind="rfc3161"}"#),
        0.0
    );
    assert_eq!(metric(&m, "flk_audit_anchored_tree_size"), 8.0);
    assert!(
        (metric(&m, r#"flk_audit_anchor_cost_usd_total{strategy="rfc3161"}"#) - 0.02).abs() < 1e-9
    );
    let last = metric(
        &m,
        r#"flk_audit_anchor_last_success_timestamp_seconds{kind="rfc3161"}"#,
    );
    assert!((last - record.created_at_unix as f64).abs() < 5.0, "{last}");

    // New decisions, a new checkpoint, a second anchor.
    decide(&verify, &audit, "anchor-more", 3).await;
    let round = audit
        .client()
        .await
        .anchor_checkpoint(v1::AnchorCheckpointRequest {})
        .await
        .expect("AnchorCheckpoint")
        .into_inner();
    assert_eq!(round.anchored.len(), 1);
    assert_eq!(round.anchored[0].checkpoint_size, 11);

    // Restart: both anchors are still there, still verify, and are served.
    audit.stop().await;
    audit.reopen().await;
    let listed = list_anchors(&audit).await;
    assert_eq!(
        listed
            .iter()
            .map(|a| (a.id, a.checkpoint_size))
            .collect::<Vec<_>>(),
        [(0, 1), (1, 8), (2, 11)]
    );
    for a in &listed {
        let (record, note) = record_of(a);
        record
            .verify(&note, audit.ledger().verifier(), &ctx)
            .expect("stored anchor verifies after a restart");
    }
    assert_eq!(listed[1], *a);
    assert_eq!(
        metric(&audit.metrics(), "flk_audit_anchored_tree_size"),
        11.0
    );
    let got = audit
        .client()
        .await
        .get_anchor(v1::GetAnchorRequest { id: 2 })
        .await
        .expect("GetAnchor")
        .into_inner();
    assert_eq!(got, listed[2]);
    let missing = audit
        .client()
        .await
        .get_anchor(v1::GetAnchorRequest { id: 9 })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);

    // REST: the same anchors, hashes and proofs in base64.
    let (status, body) = get_json(audit.addr(), "/v1/audit/anchors", None).await;
    assert_eq!(status, 200, "{body}");
    let rest = body["anchors"].as_array().expect("anchors array");
    assert_eq!(rest.len(), 3);
    for (r, a) in rest.iter().zip(&listed) {
        assert_eq!(
            keys(r),
            [
                "checkpoint_note",
                "checkpoint_size",
                "complete",
                "created_at",
                "created_at_unix",
                "id",
                "kind",
                "proof",
                "root_hash",
                "strategy"
            ]
        );
        assert_eq!(r["checkpoint_size"], a.checkpoint_size);
        assert_eq!(r["root_hash"], B64.encode(&a.root_hash));
        assert_eq!(r["proof"], B64.encode(&a.proof));
        assert_eq!(r["kind"], "rfc3161");
        assert_eq!(r["strategy"], "rfc3161");
        assert_eq!(r["checkpoint_note"], a.checkpoint_note.as_str());
        let created = r["created_at"].as_str().expect("created_at string");
        assert!(created.ends_with('Z') && created.contains('T'), "{created}");
    }
    audit.stop().await;
    verify.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tsa_outage_is_counted_and_retried_until_the_anchor_is_stored() {
    let tsa = TestTsa::start().await;
    tsa.set_down(true);
    let verify = Verify::start().await;
    let mut audit = Audit::start_with(&verify.url(), |c| {
        anchor_at(c, &tsa, StrategySetting::Rfc3161, 3600)
    })
    .await;
    decide(&verify, &audit, "outage", 4).await;

    // A round on demand fails and says so; nothing is stored.
    let round = audit
        .client()
        .await
        .anchor_checkpoint(v1::AnchorCheckpointRequest {})
        .await
        .expect("AnchorCheckpoint")
        .into_inner();
    assert_eq!(round.failed, ["rfc3161"]);
    assert!(round.anchored.is_empty());
    // The task retries by itself with backoff (the interval is an hour): failures pile up.
    let registry_text = || audit.metrics();
    poll_until("failed attempts are retried", || {
        let m = registry_text();
        async move {
            (metric(&m, r#"flk_audit_anchor_failures_total{kind="rfc3161"}"#) >= 3.0).then_some(())
        }
    })
    .await;
    assert!(list_anchors(&audit).await.is_empty());
    let m = audit.metrics();
    assert_eq!(
        metric(&m, r#"flk_audit_anchor_success_total{kind="rfc3161"}"#),
        0.0
    );
    assert_eq!(metric(&m, "flk_audit_anchored_tree_size"), 0.0);
    assert!(tsa.requests() >= 3);

    // The TSA comes back: a retry (not a request of ours) stores the anchor.
    tsa.set_down(false);
    let stored = poll_until("a retry anchors the checkpoint", || {
        let audit_client = audit.client();
        async move {
            let anchors = audit_client
                .await
                .list_anchors(v1::ListAnchorsRequest::default())
                .await
                .ok()?
                .into_inner()
                .anchors;
            anchors.into_iter().next()
        }
    })
    .await;
    assert_eq!(stored.checkpoint_size, 5);
    let (record, note) = record_of(&stored);
    let ctx = VerifyContext {
        tsa_trust: Some(tsa.trust()),
    };
    record
        .verify(&note, audit.ledger().verifier(), &ctx)
        .expect("the retried anchor verifies");
    // The listing shows the anchor as soon as its journal line is stored; the round counts
    // the success just after, so wait for the counter rather than read it once.
    let m = poll_until("the success is counted", || {
        let m = registry_text();
        async move {
            (metric(&m, r#"flk_audit_anchor_success_total{kind="rfc3161"}"#) >= 1.0).then_some(m)
        }
    })
    .await;
    let attempts = metric(&m, r#"flk_audit_anchor_attempts_total{kind="rfc3161"}"#);
    let failures = metric(&m, r#"flk_audit_anchor_failures_total{kind="rfc3161"}"#);
    assert_eq!(
        metric(&m, r#"flk_audit_anchor_success_total{kind="rfc3161"}"#),
        1.0
    );
    assert_eq!(attempts, failures + 1.0);
    assert_eq!(metric(&m, "flk_audit_anchored_tree_size"), 5.0);
    audit.stop().await;
    verify.stop().await;
}

/// The anchoring-strategy events in the log, in order.
fn strategy_events(audit: &Audit) -> Vec<(u64, Value)> {
    let ledger = audit.ledger();
    (0..ledger.size())
        .filter_map(|i| {
            match LogEntry::decode(&ledger.entry(i).expect("entry")).expect("entry decodes") {
                LogEntry::Event(e) => {
                    assert_eq!(e.kind, EventKind::AnchorStrategy);
                    Some((
                        i,
                        serde_json::from_str(&e.body).expect("event body is json"),
                    ))
                }
                LogEntry::Decision(_) => None,
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_strategy_choice_and_its_changes_are_entries_of_the_log() {
    let tsa = TestTsa::start().await;
    let verify = Verify::start().await;
    let mut audit = Audit::start_with(&verify.url(), |c| {
        anchor_at(c, &tsa, StrategySetting::Auto, 3600);
        // Configured but unreachable: a candidate the latency objective must not choose.
        c.anchor.ots_calendars = vec!["http://127.0.0.1:9".into()];
        c.anchor.objective = Objective::Latency;
        c.anchor.max_latency_secs = Some(60.0);
    })
    .await;

    // The choice is the log's first entry, covered by the checkpoint.
    let events = strategy_events(&audit);
    assert_eq!(events.len(), 1, "{events:?}");
    let (leaf, body) = &events[0];
    assert_eq!(*leaf, 0);
    assert_eq!(body["event"], "anchor_strategy");
    assert_eq!(body["configured"], "auto");
    assert_eq!(body["chosen"], "rfc3161");
    assert_eq!(body["previous"], Value::Null);
    let d = &body["decision"];
    assert_eq!(d["chosen"], "rfc3161");
    assert_eq!(d["objective"], "latency");
    assert_eq!(d["batches_per_month"], 720);
    let candidates = d["candidates"].as_array().expect("candidates");
    assert_eq!(candidates.len(), 2);
    let ots = candidates
        .iter()
        .find(|c| c["strategy"]["id"] == "opentimestamps")
        .expect("opentimestamps is a candidate");
    assert_eq!(ots["excluded_by"][0]["constraint"], "max_latency");
    let p = audit.ledger().inclusion_by_leaf(0, 0).expect("proof");
    flk_tlog::verify_inclusion_bundle(
        &p.entry,
        0,
        p.tree_size,
        &p.proof,
        &p.checkpoint.note,
        audit.ledger().verifier(),
    )
    .expect("the event is in the log");

    // Decisions follow it; the chosen strategy anchors them.
    decide(&verify, &audit, "auto", 5).await;
    assert_eq!(audit.ledger().size(), 6);
    let round = audit
        .client()
        .await
        .anchor_checkpoint(v1::AnchorCheckpointRequest {})
        .await
        .expect("AnchorCheckpoint")
        .into_inner();
    assert_eq!(round.anchored.len(), 1, "{round:?}");
    assert_eq!(round.anchored[0].strategy, "rfc3161");
    assert_eq!(round.anchored[0].checkpoint_size, 6);

    // The same configuration again: no second event.
    audit.stop().await;
    audit.reopen().await;
    assert_eq!(strategy_events(&audit).len(), 1);
    assert_eq!(audit.ledger().size(), 6);

    // Another objective changes the choice: the change is logged, naming what it replaces.
    audit.stop().await;
    audit.cfg.anchor.objective = Objective::Durability;
    audit.cfg.anchor.max_latency_secs = None;
    audit.reopen().await;
    let events = strategy_events(&audit);
    assert_eq!(events.len(), 2, "{events:?}");
    let (leaf, body) = &events[1];
    assert_eq!(*leaf, 6);
    assert_eq!(body["chosen"], "opentimestamps");
    assert_eq!(body["previous"], "rfc3161");
    assert_eq!(body["decision"]["objective"], "durability");

    // The whole log still verifies, decoding every entry (decisions and events).
    let dir = audit.tlog_dir();
    let verifier = audit.ledger().verifier().clone();
    audit.stop().await;
    let store = flk_tlog::FsStore::open(&dir).expect("open tiles");
    let report = flk_tlog::verify_log(
        &store,
        &verifier,
        &flk_tlog::VerifyOptions {
            entries: None,
            decode_entries: true,
        },
    )
    .expect("log verifies");
    assert_eq!(report.checkpoint.size, 7);
    verify.stop().await;
}

async fn anchor_by_id(audit: &Audit, id: u64) -> Option<v1::Anchor> {
    let mut client = audit.client().await;
    client
        .get_anchor(v1::GetAnchorRequest { id })
        .await
        .ok()
        .map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hybrid_evm_anchor_waits_for_its_depth_survives_a_reorg_and_a_restart() {
    let tsa = TestTsa::start().await;
    let chain = TestChain::start();
    let before = chain.snapshot().await;
    let keys = tempfile::tempdir().expect("tempdir");
    let key_file = keys.path().join("anchor.key");
    std::fs::write(&key_file, format!("0x{KEY_HEX}\n")).expect("write key");
    let verify = Verify::start().await;
    let mut audit = Audit::start_with(&verify.url(), |c| {
        anchor_at(c, &tsa, StrategySetting::Hybrid, 3600);
        c.anchor.evm_rpc_url = Some(chain.url.clone());
        c.anchor.evm_chain_id = Some(CHAIN_ID);
        c.anchor.evm_key_file = Some(key_file.clone());
        c.anchor.evm_confirmations = Some(3);
        c.anchor.evm_poll_interval_ms = 20;
    })
    .await;

    // The round at start: the token at once, the transaction sent and pending. Ganache mined
    // its block, so a poll soon counts 1 confirmation.
    let pending = poll_until("the evm anchor has its first confirmation", || async {
        anchor_by_id(&audit, 1)
            .await
            .filter(|a| a.confirmations == 1)
    })
    .await;
    let token = anchor_by_id(&audit, 0).await.expect("the rfc 3161 anchor");
    assert_eq!((token.kind.as_str(), token.complete), ("rfc3161", true));
    assert_eq!(
        (pending.kind.as_str(), pending.strategy.as_str()),
        ("evm", "hybrid")
    );
    assert_eq!(pending.checkpoint_size, token.checkpoint_size);
    assert!(!pending.complete);
    assert!(pending.cost_wei.parse::<u128>().expect("cost in wei") > 0);
    let (record, note) = record_of(&pending);
    assert!(matches!(
        record.verify(&note, audit.ledger().verifier(), &VerifyContext::default()),
        Err(AnchorError::EvmNotFinal { confirmations: 1 })
    ));
    let first: PendingEvm = serde_json::from_slice(&pending.proof).expect("pending state");
    assert_eq!(first.attempts.len(), 1);

    // A reorg drops the transaction: the service notices and sends it again.
    chain.revert(&before).await;
    let resent = poll_until(
        "the dropped transaction is re-submitted and mined",
        || async {
            anchor_by_id(&audit, 1).await.filter(|a| {
                let p: PendingEvm = serde_json::from_slice(&a.proof).expect("pending state");
                p.attempts.len() == 2 && a.confirmations == 1
            })
        },
    )
    .await;
    let state: PendingEvm = serde_json::from_slice(&resent.proof).unwrap();
    assert_eq!((state.resubmissions, state.reorgs), (1, 1));
    assert_ne!(state.attempts[1].tx_hash, first.attempts[0].tx_hash);
    let m = audit.metrics();
    assert_eq!(
        metric(
            &m,
            r#"flk_audit_anchor_evm_resubmissions_total{reason="vanished"}"#
        ),
        1.0
    );
    assert_eq!(metric(&m, "flk_audit_anchor_evm_reorgs_total"), 1.0);
    assert_eq!(metric(&m, "flk_audit_anchor_evm_pending"), 1.0);
    assert_eq!(
        metric(&m, r#"flk_audit_anchor_success_total{kind="evm"}"#),
        0.0
    );

    // Waiting for confirmations holds up nothing: a new checkpoint gets its token now, and no
    // second transaction while one is in flight.
    decide(&verify, &audit, "evm", 3).await;
    let round = audit
        .client()
        .await
        .anchor_checkpoint(v1::AnchorCheckpointRequest {})
        .await
        .expect("AnchorCheckpoint")
        .into_inner();
    assert!(round.failed.is_empty(), "{round:?}");
    assert_eq!(round.anchored.len(), 1, "{round:?}");
    assert_eq!(round.anchored[0].kind, "rfc3161");
    assert_eq!(
        round.anchored[0].checkpoint_size,
        audit.ledger().checkpoint().size
    );
    // The table's estimate counts the two tokens only (RFC 3161's part of hybrid, 0.01 USD
    // each); the transaction will count what its receipt says.
    let usd = metric(
        &audit.metrics(),
        r#"flk_audit_anchor_cost_usd_total{strategy="hybrid"}"#,
    );
    assert!((usd - 0.02).abs() < 1e-9, "{usd}");

    // A restart resumes the pending anchor from the journal; a block mined meanwhile counts.
    audit.stop().await;
    chain.mine(1).await;
    audit.reopen().await;
    poll_until(
        "the resumed anchor counts the block mined while down",
        || async {
            anchor_by_id(&audit, 1)
                .await
                .filter(|a| a.confirmations == 2 && !a.complete)
        },
    )
    .await;
    chain.mine(1).await;
    let done = poll_until("the evm anchor is final at its depth", || async {
        anchor_by_id(&audit, 1).await.filter(|a| a.complete)
    })
    .await;
    assert_eq!(done.confirmations, 3);
    // One transaction mined in all: the re-submission; the restart sent none.
    assert_eq!(
        chain
            .rpc(
                "eth_getTransactionCount",
                serde_json::json!([ADDRESS, "latest"])
            )
            .await,
        "0x1"
    );

    // Final: the proof is the anchor, verifying offline; its cost is the receipt's.
    let anchor: EvmAnchor = serde_json::from_slice(&done.proof).expect("final anchor");
    assert_eq!(anchor.tx_hash, state.attempts[1].tx_hash);
    assert_eq!(anchor.cost_wei, done.cost_wei);
    let (record, note) = record_of(&done);
    let v = record
        .verify(&note, audit.ledger().verifier(), &VerifyContext::default())
        .expect("final evm anchor verifies");
    assert_eq!(
        v.evidence,
        Evidence::Evm {
            chain_id: CHAIN_ID,
            block_number: anchor.block_number
        }
    );
    let m =
        poll_until("the final anchor is counted", || {
            let m = audit.metrics();
            async move {
                (metric(&m, r#"flk_audit_anchor_success_total{kind="evm"}"#) == 1.0).then_some(m)
            }
        })
        .await;
    let wei: f64 = done.cost_wei.parse().unwrap();
    assert_eq!(
        metric(&m, r#"flk_audit_anchor_cost_wei_total{strategy="hybrid"}"#),
        wei
    );
    assert_eq!(metric(&m, "flk_audit_anchor_evm_pending"), 0.0);

    // The next round anchors the latest checkpoint by evm too, now that nothing is in flight.
    let round = audit
        .client()
        .await
        .anchor_checkpoint(v1::AnchorCheckpointRequest {})
        .await
        .expect("AnchorCheckpoint")
        .into_inner();
    assert_eq!(round.anchored.len(), 1, "{round:?}");
    assert_eq!(
        (round.anchored[0].kind.as_str(), round.anchored[0].complete),
        ("evm", false)
    );
    audit.stop().await;
    verify.stop().await;
}
