//! EVM anchoring end to end against a local ganache development chain
//! (`flk_anchor::test_support::TestChain`: npm `ganache`, installed by .ci/deps/ganache.sh,
//! started by each test on 127.0.0.1 port 0 with the deterministic, pre-funded accounts and
//! chain id 1337). Ganache mines one block per transaction and otherwise only on `evm_mine`,
//! so the tests mine the confirmations themselves and drive `poll` explicitly; reorgs are
//! `evm_snapshot` / `evm_revert`. A missing ganache fails the tests with instructions; they
//! are never skipped.

use std::time::Duration;

use flk_anchor::evm::confirm::MISSING_POLLS_BEFORE_DROP;
use flk_anchor::evm::{
    DropReason, EvmAnchor, EvmClient, EvmError, PendingEvm, Step, confirm::receipt_cost_wei,
};
use flk_anchor::test_support::TestChain;
use flk_anchor::test_support::ganache::{ADDRESS, CHAIN_ID};
use flk_anchor::{AnchorError, AnchorRecord, Evidence, VerifyContext, anchored_digest};
use flk_tlog::{Log, LogSigner, MemStore, open_checkpoint};
use serde_json::json;

fn client(chain: &TestChain, confirmations: u64) -> EvmClient {
    EvmClient::new(&chain.config(TestChain::key(), CHAIN_ID, confirmations)).unwrap()
}

fn checkpoint_note() -> (String, LogSigner) {
    let signer = LogSigner::generate("audit.example/log").unwrap();
    let mut log = Log::open(MemStore::new(), signer.clone(), "audit.example/log").unwrap();
    log.append_batch(&[b"decision 0".to_vec(), b"decision 1".to_vec()])
        .unwrap();
    (log.checkpoint_note().to_owned(), signer)
}

async fn poll(client: &EvmClient, p: &PendingEvm) -> Step {
    client.poll(p).await.expect("poll")
}

async fn pending(client: &EvmClient, p: &PendingEvm) -> PendingEvm {
    match poll(client, p).await {
        Step::Pending(next) => next,
        other => panic!("expected a pending anchor, got {other:?}"),
    }
}

async fn final_anchor(client: &EvmClient, p: &PendingEvm) -> EvmAnchor {
    match poll(client, p).await {
        Step::Final(a) => a,
        other => panic!("expected a final anchor, got {other:?}"),
    }
}

async fn mined_nonce(chain: &TestChain) -> serde_json::Value {
    chain
        .rpc("eth_getTransactionCount", json!([ADDRESS, "latest"]))
        .await
}

#[tokio::test]
async fn anchor_on_ganache_verifies_offline_and_online() {
    let chain = TestChain::start();
    let client = client(&chain, 1);
    assert_eq!(client.address(), ADDRESS);
    let (note, signer) = checkpoint_note();
    let digest = anchored_digest(note.as_bytes());

    let anchor = client.anchor(&digest).await.unwrap();
    assert_eq!(anchor.chain_id, CHAIN_ID);
    assert_eq!(anchor.from, ADDRESS);
    assert_eq!(anchor.tx.to, ADDRESS);
    assert_eq!(anchor.tx.data, format!("0x{}", hex::encode(digest)));
    assert_eq!(anchor.tx.nonce, 0);
    assert_eq!(anchor.receipt["status"], "0x1");
    assert!(anchor.block_number >= 1);
    assert_eq!(anchor.confirmations, 1);
    // The cost is the receipt's gas used times its effective gas price.
    let q = |k: &str| {
        u128::from_str_radix(
            anchor.receipt[k].as_str().unwrap().trim_start_matches("0x"),
            16,
        )
        .unwrap()
    };
    assert_eq!(
        q("gasUsed"),
        21_000 + 16 * 32 - 12 * digest.iter().filter(|&&b| b == 0).count() as u128
    );
    assert_eq!(
        anchor.cost_wei,
        (q("gasUsed") * q("effectiveGasPrice")).to_string()
    );
    assert_eq!(
        receipt_cost_wei(&anchor.receipt, anchor.tx.gas_price).unwrap(),
        q("gasUsed") * anchor.tx.gas_price
    );
    assert_eq!(anchor.verify_offline(&digest).unwrap(), anchor.block_number);
    client.verify_online(&anchor, &digest).await.unwrap();

    // Stored as JSON and as an anchor record, re-verified offline.
    let back: EvmAnchor = serde_json::from_str(&serde_json::to_string(&anchor).unwrap()).unwrap();
    assert_eq!(back, anchor);
    let checkpoint = open_checkpoint(&note, &signer.verifier()).unwrap();
    let record = AnchorRecord::evm(&checkpoint, "polygon", &anchor, 0);
    let v = record
        .verify(&note, &signer.verifier(), &VerifyContext::default())
        .unwrap();
    assert_eq!(
        v.evidence,
        Evidence::Evm {
            chain_id: CHAIN_ID,
            block_number: anchor.block_number
        }
    );

    // The blocking API, from a blocking thread; the nonce advances.
    let second = tokio::task::spawn_blocking(move || client.anchor_blocking(&[7; 32]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.tx.nonce, 1);
    assert!(second.block_number > anchor.block_number);
}

#[tokio::test]
async fn an_anchor_waits_for_its_confirmations_and_resumes_from_its_stored_state() {
    let chain = TestChain::start();
    let client = client(&chain, 4);
    let (note, signer) = checkpoint_note();
    let digest = anchored_digest(note.as_bytes());

    let sent = client.send(&digest).await.unwrap();
    assert_eq!(sent.attempts.len(), 1);
    assert_eq!((sent.confirmations, sent.inclusion.as_ref()), (0, None));
    // Ganache mined the transaction's block at once: 1 confirmation, then one per block.
    let mut p = pending(&client, &sent).await;
    let block = p.inclusion.as_ref().unwrap().block_number;
    assert_eq!((p.confirmations, block), (1, chain.block_number().await));
    assert!(p.cost_wei().unwrap() > 0);
    // Nothing changes without blocks.
    assert_eq!(pending(&client, &p).await, p);
    for want in 2..=3 {
        chain.mine(1).await;
        p = pending(&client, &p).await;
        assert_eq!(p.confirmations, want);
    }
    // A pending anchor is stored (its JSON is the record's proof) and does not verify yet.
    let checkpoint = open_checkpoint(&note, &signer.verifier()).unwrap();
    let record = AnchorRecord::evm_pending(&checkpoint, "ethereum", &p, 0);
    match record.verify(&note, &signer.verifier(), &VerifyContext::default()) {
        Err(AnchorError::EvmNotFinal { confirmations }) => assert_eq!(confirmations, 3),
        other => panic!("expected a not-final anchor, got {other:?}"),
    }

    // "Restart": a new client resumes from the stored JSON; no second transaction.
    let stored: PendingEvm = serde_json::from_slice(&record.proof).unwrap();
    assert_eq!(stored, p);
    let resumed = EvmClient::new(&chain.config(TestChain::key(), CHAIN_ID, 4)).unwrap();
    chain.mine(1).await;
    let anchor = final_anchor(&resumed, &stored).await;
    assert_eq!((anchor.block_number, anchor.confirmations), (block, 4));
    assert_eq!(anchor.tx_hash, sent.attempts[0].tx_hash);
    assert_eq!(anchor.cost_wei, p.cost_wei().unwrap().to_string());
    resumed.verify_online(&anchor, &digest).await.unwrap();
    assert_eq!(mined_nonce(&chain).await, "0x1");
    let record = AnchorRecord::evm(&checkpoint, "ethereum", &anchor, 0);
    record
        .verify(&note, &signer.verifier(), &VerifyContext::default())
        .unwrap();

    // The all-in-one call waits for the depth too: it finishes once the test mined enough.
    let waiting = tokio::spawn({
        let client = client.clone();
        async move { client.anchor(&[9; 32]).await }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !waiting.is_finished() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "anchor() never finished"
        );
        chain.mine(1).await;
        tokio::task::yield_now().await;
    }
    let a = waiting.await.unwrap().unwrap();
    assert!(a.confirmations >= 4, "{a:?}");
    assert_eq!(a.tx.nonce, 1);
}

#[tokio::test]
async fn a_reorg_that_drops_the_transaction_resubmits_it_until_it_is_confirmed() {
    let chain = TestChain::start();
    let client = client(&chain, 3);
    let digest = anchored_digest(b"dropped by a reorg");
    let snapshot = chain.snapshot().await;

    let sent = client.send(&digest).await.unwrap();
    let first = sent.attempts[0].clone();
    let mut p = pending(&client, &sent).await;
    chain.mine(1).await;
    p = pending(&client, &p).await;
    assert_eq!(p.confirmations, 2);

    // The reorg: the transaction's block and the one above are gone, so is the transaction.
    chain.revert(&snapshot).await;
    assert!(
        chain
            .rpc("eth_getTransactionByHash", json!([first.tx_hash]))
            .await
            .is_null()
    );
    for missing in 1..MISSING_POLLS_BEFORE_DROP {
        p = pending(&client, &p).await;
        assert_eq!(
            (p.confirmations, p.missing_polls, p.reorgs),
            (0, missing, 1)
        );
        assert!(p.inclusion.is_none());
    }
    let dropped = match poll(&client, &p).await {
        Step::Dropped(d, DropReason::Vanished) => d,
        other => panic!("expected a vanished transaction, got {other:?}"),
    };

    // Re-submitted: the nonce was never spent, so the same one with a higher gas price.
    let again = client.resubmit(&dropped).await.unwrap();
    assert_eq!((again.attempts.len(), again.resubmissions), (2, 1));
    let second = again.attempts[1].clone();
    assert_ne!(second.tx_hash, first.tx_hash);
    assert_eq!(second.tx.nonce, first.tx.nonce);
    assert!(second.tx.gas_price > first.tx.gas_price);
    assert_eq!(second.tx.data, first.tx.data);

    // And confirmed at the full depth, counted from its own block.
    p = pending(&client, &again).await;
    assert_eq!(p.confirmations, 1);
    chain.mine(1).await;
    p = pending(&client, &p).await;
    assert_eq!(p.confirmations, 2);
    chain.mine(1).await;
    let anchor = final_anchor(&client, &p).await;
    assert_eq!(anchor.tx_hash, second.tx_hash);
    assert_eq!(anchor.confirmations, 3);
    assert_eq!(anchor.verify_offline(&digest).unwrap(), anchor.block_number);
    client.verify_online(&anchor, &digest).await.unwrap();
    // The cost is what the re-submission paid.
    assert_eq!(
        anchor.cost_wei,
        receipt_cost_wei(&anchor.receipt, second.tx.gas_price)
            .unwrap()
            .to_string()
    );
    assert_eq!(mined_nonce(&chain).await, "0x1");
}

#[tokio::test]
async fn a_reorg_that_moves_the_transaction_restarts_its_count() {
    let chain = TestChain::start();
    let client = client(&chain, 3);
    let digest = anchored_digest(b"moved by a reorg");
    let snapshot = chain.snapshot().await;

    let sent = client.send(&digest).await.unwrap();
    let mut p = pending(&client, &sent).await;
    let old = p.inclusion.clone().unwrap();
    chain.mine(1).await;
    p = pending(&client, &p).await;
    assert_eq!(p.confirmations, 2);

    // The other fork: another block at the old height, then the same transaction (as another
    // node would re-broadcast it from its mempool) in the block above.
    chain.revert(&snapshot).await;
    chain.mine(1).await;
    let raw = sent.attempts[0].tx.raw().unwrap();
    let hash = chain
        .rpc(
            "eth_sendRawTransaction",
            json!([format!("0x{}", hex::encode(raw))]),
        )
        .await;
    assert_eq!(hash, json!(sent.attempts[0].tx_hash));

    p = pending(&client, &p).await;
    let moved = p.inclusion.clone().unwrap();
    assert_eq!(moved.block_number, old.block_number + 1);
    assert_ne!(moved.block_hash, old.block_hash);
    assert_eq!((p.confirmations, p.reorgs, p.resubmissions), (1, 1, 0));
    chain.mine(1).await;
    p = pending(&client, &p).await;
    assert_eq!(p.confirmations, 2);
    chain.mine(1).await;
    let anchor = final_anchor(&client, &p).await;
    assert_eq!(
        (anchor.block_number, anchor.confirmations),
        (moved.block_number, 3)
    );
    assert_eq!(anchor.block_hash, moved.block_hash);
    assert_eq!(anchor.tx_hash, sent.attempts[0].tx_hash);
    client.verify_online(&anchor, &digest).await.unwrap();
}

#[tokio::test]
async fn tampered_anchors_are_refused() {
    let chain = TestChain::start();
    let client = client(&chain, 1);
    let (d1, d2) = (anchored_digest(b"one"), anchored_digest(b"two"));
    let a = client.anchor(&d1).await.unwrap();
    let b = client.anchor(&d2).await.unwrap();
    let check = |x: &EvmAnchor, want: &str| match x.verify_offline(&d1) {
        Err(EvmError::Verification(what)) => assert!(what.contains(want), "{what}"),
        other => panic!("expected {want:?}, got {other:?}"),
    };

    assert!(matches!(
        a.verify_offline(&d2),
        Err(EvmError::Verification(
            "calldata is not the anchored digest"
        ))
    ));
    let mut x = a.clone();
    x.from = b.from.replace('9', "8");
    check(&x, "not by the stored sender");
    let mut x = a.clone();
    x.tx.nonce += 1;
    check(&x, "hash does not match");
    let mut x = a.clone();
    x.chain_id = 137;
    check(&x, "chain id");
    let mut x = a.clone();
    x.chain_id = u64::MAX;
    check(&x, "chain id");
    let mut x = a.clone();
    x.receipt["status"] = "0x0".into();
    check(&x, "status");
    let mut x = a.clone();
    x.block_hash = b.block_hash.clone();
    check(&x, "block");
    let mut x = a.clone();
    x.cost_wei = "1".into();
    check(&x, "cost");
    // Anchors stored before the cost was recorded still verify.
    let mut x = a.clone();
    x.cost_wei.clear();
    x.verify_offline(&d1).unwrap();

    // Consistent offline but not on chain: a's transaction claimed in b's block.
    let mut x = a.clone();
    x.block_hash = b.block_hash.clone();
    x.block_number = b.block_number;
    x.receipt["blockHash"] = b.receipt["blockHash"].clone();
    x.receipt["blockNumber"] = b.receipt["blockNumber"].clone();
    x.verify_offline(&d1).unwrap();
    match client.verify_online(&x, &d1).await {
        Err(EvmError::Verification(what)) => assert!(what.contains("another block"), "{what}"),
        other => panic!("expected a block mismatch, got {other:?}"),
    }
}

#[tokio::test]
async fn wrong_chain_and_unfunded_key_are_refused() {
    let chain = TestChain::start();
    let key = TestChain::key();
    let polygon = EvmClient::new(&chain.config(key, 137, 1)).unwrap();
    match polygon.anchor(&[1; 32]).await {
        Err(EvmError::ChainIdMismatch { node, configured }) => {
            assert_eq!((node, configured), (CHAIN_ID, 137));
        }
        other => panic!("expected ChainIdMismatch, got {other:?}"),
    }
    let poor = EvmClient::new(&chain.config([0x11; 32], CHAIN_ID, 1)).unwrap();
    match poor.anchor(&[1; 32]).await {
        Err(EvmError::Rpc { method, .. }) => assert_eq!(method, "eth_sendRawTransaction"),
        other => panic!("expected an RPC error, got {other:?}"),
    }
    assert!(matches!(
        EvmClient::new(&chain.config([0; 32], CHAIN_ID, 1)),
        Err(EvmError::Config(_))
    ));
    assert!(matches!(
        EvmClient::new(&chain.config(key, CHAIN_ID, 0)),
        Err(EvmError::Config(m)) if m.contains("confirmations")
    ));
    // A pending anchor of another sender is not polled by this client.
    let mine = client(&chain, 1).send(&[2; 32]).await.unwrap();
    match poor.poll(&mine).await {
        Err(EvmError::Config(m)) => assert!(m.contains("sender"), "{m}"),
        other => panic!("expected a sender mismatch, got {other:?}"),
    }
}
