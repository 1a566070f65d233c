//! A ganache development chain (npm `ganache`, installed by `.ci/deps/ganache.sh` into
//! `$FLK_GANACHE_DIR` or `$HOME/.cache/flk/ganache`) on 127.0.0.1 port 0, with the
//! deterministic pre-funded accounts and chain id 1337, started by
//! `flk-anchor/tests/evm/ganache_server.js`. Ganache mines a block per transaction and
//! otherwise only when told ([`TestChain::mine`]), so tests decide when confirmations come;
//! [`TestChain::snapshot`] / [`TestChain::revert`] rewind the chain like a reorg that drops
//! every later block. A missing ganache fails with instructions; tests are never skipped.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::EvmConfig;

/// ganache's first deterministic account's private key, hex.
pub const KEY_HEX: &str = "4f3edf983ac636a65a842ce7c78d9aa706d3b113bce9c46f30d7d21715b23b1d";
/// Its address.
pub const ADDRESS: &str = "0x90f8bf6a479f320ead074411a4b0e7944ea8c9c1";
/// The chain id the script configures.
pub const CHAIN_ID: u64 = 1337;

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

/// A running ganache chain, killed on drop (its database directory removed with it).
pub struct TestChain {
    child: Child,
    _db: tempfile::TempDir,
    http: reqwest::Client,
    /// The JSON-RPC URL.
    pub url: String,
}

impl TestChain {
    /// Starts ganache and waits until it listens (the script prints the port then).
    pub fn start() -> TestChain {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/evm/ganache_server.js");
        let db = tempfile::tempdir().expect("ganache database directory");
        let mut child = Command::new("node")
            .arg(script)
            .arg(ganache_dir())
            .arg(db.path())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start node");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("ganache stdout"))
            .read_line(&mut line)
            .expect("read the ganache port");
        let Ok(port) = line.trim().parse::<u16>() else {
            let _ = child.kill();
            let status = child.wait().expect("wait for node");
            panic!("ganache did not start ({status})");
        };
        TestChain {
            child,
            _db: db,
            http: reqwest::Client::new(),
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// The first account's private key.
    pub fn key() -> [u8; 32] {
        let mut key = [0; 32];
        hex::decode_to_slice(KEY_HEX, &mut key).expect("key hex");
        key
    }

    /// A client configuration for this chain: `confirmations` deep, 30 s receipt timeout,
    /// 20 ms polls.
    pub fn config(&self, private_key: [u8; 32], chain_id: u64, confirmations: u64) -> EvmConfig {
        EvmConfig {
            rpc_url: self.url.clone(),
            chain_id,
            private_key,
            confirmations,
            receipt_timeout: Duration::from_secs(30),
            poll_interval: Duration::from_millis(20),
            request_timeout: Duration::from_secs(10),
        }
    }

    /// One JSON-RPC call; panics on an error answer.
    pub async fn rpc(&self, method: &str, params: Value) -> Value {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let text = self
            .http
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("ganache request")
            .text()
            .await
            .expect("ganache answer");
        let answer: Value = serde_json::from_str(&text).expect("ganache answer is json");
        assert!(answer.get("error").is_none(), "{method}: {answer}");
        answer["result"].clone()
    }

    /// Mines `blocks` empty blocks.
    pub async fn mine(&self, blocks: u64) {
        for _ in 0..blocks {
            self.rpc("evm_mine", json!([])).await;
        }
    }

    /// The head block number.
    pub async fn block_number(&self) -> u64 {
        let n = self.rpc("eth_blockNumber", json!([])).await;
        u64::from_str_radix(n.as_str().and_then(|s| s.strip_prefix("0x")).unwrap(), 16).unwrap()
    }

    /// Snapshots the chain; returns the id for [`TestChain::revert`].
    pub async fn snapshot(&self) -> String {
        let id = self.rpc("evm_snapshot", json!([])).await;
        id.as_str().expect("snapshot id").to_owned()
    }

    /// Rewinds the chain to snapshot `id`: every later block and its transactions are gone.
    pub async fn revert(&self, id: &str) {
        assert_eq!(self.rpc("evm_revert", json!([id])).await, json!(true));
    }
}

impl Drop for TestChain {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
