//! EVM anchoring end to end against a local ganache development chain (npm `ganache`, installed
//! by .ci/deps/ganache.sh into $FLK_GANACHE_DIR or $HOME/.cache/flk/ganache), started by each
//! test on 127.0.0.1 port 0 with the deterministic, pre-funded accounts and chain id 1337.
//! A missing ganache fails the tests with instructions; they are never skipped.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use flk_anchor::evm::{EvmAnchor, EvmClient, EvmConfig, EvmError};
use flk_anchor::{AnchorRecord, Evidence, VerifyContext, anchored_digest};
use flk_tlog::{Log, LogSigner, MemStore, open_checkpoint};

/// ganache's first deterministic account.
const KEY: &str = "4f3edf983ac636a65a842ce7c78d9aa706d3b113bce9c46f30d7d21715b23b1d";
const ADDRESS: &str = "0x90f8bf6a479f320ead074411a4b0e7944ea8c9c1";
const CHAIN_ID: u64 = 1337;

fn ganache_dir() -> PathBuf {
    let dir = std::env::var_os("FLK_GANACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/flk/ganache")))
        .expect("neither FLK_GANACHE_DIR nor HOME is set");
    assert!(
        dir.join("node_modules/ganache/package.json").exists(),
        "ganache is not installed in {}: run `bash .ci/deps/ganache.sh` (or set FLK_GANACHE_DIR)",
        dir.display()
    );
    dir
}

/// A ganache chain, killed on drop.
struct Chain {
    child: Child,
    url: String,
}

impl Chain {
    fn start() -> Chain {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/evm/ganache_server.js");
        let mut child = Command::new("node")
            .arg(script)
            .arg(ganache_dir())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start node");
        // The script prints the port once ganache listens.
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let Ok(port) = line.trim().parse::<u16>() else {
            let _ = child.kill();
            let status = child.wait().unwrap();
            panic!("ganache did not start ({status})");
        };
        Chain {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    fn config(&self, private_key: [u8; 32], chain_id: u64) -> EvmConfig {
        EvmConfig {
            rpc_url: self.url.clone(),
            chain_id,
            private_key,
            receipt_timeout: Duration::from_secs(30),
            poll_interval: Duration::from_millis(50),
            request_timeout: Duration::from_secs(10),
        }
    }

    fn client(&self) -> EvmClient {
        let key: [u8; 32] = hex::decode(KEY).unwrap().try_into().unwrap();
        EvmClient::new(&self.config(key, CHAIN_ID)).unwrap()
    }
}

impl Drop for Chain {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn checkpoint_note() -> (String, LogSigner) {
    let signer = LogSigner::generate("audit.example/log").unwrap();
    let mut log = Log::open(MemStore::new(), signer.clone(), "audit.example/log").unwrap();
    log.append_batch(&[b"decision 0".to_vec(), b"decision 1".to_vec()])
        .unwrap();
    (log.checkpoint_note().to_owned(), signer)
}

#[tokio::test]
async fn anchor_on_ganache_verifies_offline_and_online() {
    let chain = Chain::start();
    let client = chain.client();
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
async fn tampered_anchors_are_refused() {
    let chain = Chain::start();
    let client = chain.client();
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
    x.receipt["status"] = "0x0".into();
    check(&x, "status");
    let mut x = a.clone();
    x.block_hash = b.block_hash.clone();
    check(&x, "block");

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
    let chain = Chain::start();
    let key: [u8; 32] = hex::decode(KEY).unwrap().try_into().unwrap();
    let polygon = EvmClient::new(&chain.config(key, 137)).unwrap();
    match polygon.anchor(&[1; 32]).await {
        Err(EvmError::ChainIdMismatch { node, configured }) => {
            assert_eq!((node, configured), (CHAIN_ID, 137));
        }
        other => panic!("expected ChainIdMismatch, got {other:?}"),
    }
    let poor = EvmClient::new(&chain.config([0x11; 32], CHAIN_ID)).unwrap();
    match poor.anchor(&[1; 32]).await {
        Err(EvmError::Rpc { method, .. }) => assert_eq!(method, "eth_sendRawTransaction"),
        other => panic!("expected an RPC error, got {other:?}"),
    }
    assert!(matches!(
        EvmClient::new(&chain.config([0; 32], CHAIN_ID)),
        Err(EvmError::Config(_))
    ));
}
