//! Ethereum / Polygon anchoring: the anchored digest as the calldata of a transaction signed
//! locally, sent over JSON-RPC, its receipt stored and verified.
//!
//! The transaction is an EIP-155 legacy transaction (`rlp([nonce, gasPrice, gas, to, value,
//! data, v, r, s])`, signed over `keccak256(rlp([nonce, gasPrice, gas, to, value, data,
//! chainId, 0, 0]))` with secp256k1, low-S, `v = recovery id + 35 + 2 * chainId`), sent by the
//! configured key **to its own address** with value 0; `data` is exactly the 32-byte anchored
//! digest; gas is the intrinsic cost (21000 + 16 per non-zero and 4 per zero calldata byte), the
//! gas price `eth_gasPrice`, the nonce `eth_getTransactionCount(address, "pending")`. Polygon is
//! the same code with its chain id and RPC URL.
//!
//! [`EvmClient::anchor`] checks `eth_chainId`, sends with `eth_sendRawTransaction` (the returned
//! hash must be ours), polls `eth_getTransactionReceipt` until a deadline and verifies online
//! ([`EvmClient::verify_online`]). The stored [`EvmAnchor`] holds the signed transaction fields,
//! its hash, the block and the receipt as received.
//!
//! Offline ([`EvmAnchor::verify_offline`]): the transaction's calldata is the digest, its
//! re-encoding hashes to the stored hash, its signature recovers the stored sender for the
//! stored chain id, and the stored receipt has status 1, this hash and the stored block.
//! Online ([`EvmClient::verify_online`]): `eth_getTransactionByHash` has the same input, sender,
//! block hash and number; the receipt has status 1 in that block; `eth_getBlockByNumber` at
//! that number has that hash.

mod rlp;

use std::time::Duration;

use k256::ecdsa::{RecoveryId, Signature, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha3::{Digest, Keccak256};

/// The largest JSON-RPC answer read, in bytes.
pub const MAX_RESPONSE_BYTES: usize = 4 << 20;

/// Why anchoring or verification failed.
#[derive(Debug, thiserror::Error)]
pub enum EvmError {
    /// The configuration is unusable (URL, key).
    #[error("evm config: {0}")]
    Config(String),
    /// The node could not be reached.
    #[error("json-rpc transport: {0}")]
    Transport(String),
    /// The node answered with a non-200 HTTP status.
    #[error("json-rpc http status {0}")]
    HttpStatus(u16),
    /// The answer is too large.
    #[error("json-rpc answer exceeds {MAX_RESPONSE_BYTES} bytes")]
    ResponseTooLarge,
    /// The node returned a JSON-RPC error.
    #[error("json-rpc {method}: error {code}: {message}")]
    Rpc {
        /// The method called.
        method: &'static str,
        /// The error code.
        code: i64,
        /// The error message.
        message: String,
    },
    /// The answer is not the JSON expected.
    #[error("json-rpc {method}: malformed answer: {what}")]
    Malformed {
        /// The method called.
        method: &'static str,
        /// What is wrong.
        what: &'static str,
    },
    /// The node's chain id is not the configured one.
    #[error("node is on chain {node}, configured {configured}")]
    ChainIdMismatch {
        /// eth_chainId.
        node: u64,
        /// The configuration's.
        configured: u64,
    },
    /// No receipt before the deadline.
    #[error("no receipt for {tx_hash} within {waited:?}")]
    ReceiptTimeout {
        /// The transaction hash.
        tx_hash: String,
        /// How long it waited.
        waited: Duration,
    },
    /// A verification check failed; names the check.
    #[error("evm anchor verification failed: {0}")]
    Verification(&'static str),
}

/// Where and how to anchor.
#[derive(Clone)]
pub struct EvmConfig {
    /// The JSON-RPC URL.
    pub rpc_url: String,
    /// The chain id (1 Ethereum mainnet, 137 Polygon PoS, ...).
    pub chain_id: u64,
    /// The secp256k1 private key of the sending account.
    pub private_key: [u8; 32],
    /// How long to wait for the receipt.
    pub receipt_timeout: Duration,
    /// Pause between receipt polls.
    pub poll_interval: Duration,
    /// Bound on each JSON-RPC request.
    pub request_timeout: Duration,
}

impl std::fmt::Debug for EvmConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EvmConfig")
            .field("rpc_url", &self.rpc_url)
            .field("chain_id", &self.chain_id)
            .field("private_key", &"<redacted>")
            .field("receipt_timeout", &self.receipt_timeout)
            .field("poll_interval", &self.poll_interval)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

/// A signed EIP-155 legacy transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedLegacyTx {
    /// Account nonce.
    pub nonce: u64,
    /// Gas price, wei.
    pub gas_price: u128,
    /// Gas limit.
    pub gas_limit: u64,
    /// Recipient, 20 bytes hex with 0x.
    pub to: String,
    /// Value, wei.
    pub value: u128,
    /// Calldata, hex with 0x.
    pub data: String,
    /// `recovery id + 35 + 2 * chainId`.
    pub v: u64,
    /// Signature r, 32 bytes hex with 0x.
    pub r: String,
    /// Signature s, 32 bytes hex with 0x.
    pub s: String,
}

/// A stored EVM anchor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvmAnchor {
    /// The chain id.
    pub chain_id: u64,
    /// The sender, 0x-hex lowercase.
    pub from: String,
    /// The transaction.
    pub tx: SignedLegacyTx,
    /// `keccak256(raw transaction)`, 0x-hex.
    pub tx_hash: String,
    /// The including block's number.
    pub block_number: u64,
    /// The including block's hash, 0x-hex.
    pub block_hash: String,
    /// The receipt as returned by the node.
    pub receipt: Value,
}

fn hex0x(b: &[u8]) -> String {
    format!("0x{}", hex::encode(b))
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    hex::decode(s.strip_prefix("0x")?).ok()
}

fn quantity(v: &Value) -> Option<u128> {
    u128::from_str_radix(v.as_str()?.strip_prefix("0x")?, 16).ok()
}

fn keccak(b: &[u8]) -> [u8; 32] {
    Keccak256::digest(b).into()
}

/// The address of a public key: the last 20 bytes of keccak256 of the uncompressed point.
pub fn address_of(key: &VerifyingKey) -> [u8; 20] {
    let point = key.to_encoded_point(false);
    let hash = keccak(&point.as_bytes()[1..]);
    let mut out = [0; 20];
    out.copy_from_slice(&hash[12..]);
    out
}

/// Intrinsic gas of a plain transaction with `data`.
pub fn intrinsic_gas(data: &[u8]) -> u64 {
    21_000
        + data
            .iter()
            .map(|&b| if b == 0 { 4 } else { 16 })
            .sum::<u64>()
}

struct UnsignedTx<'a> {
    nonce: u64,
    gas_price: u128,
    gas_limit: u64,
    to: &'a [u8],
    value: u128,
    data: &'a [u8],
}

impl UnsignedTx<'_> {
    fn fields(&self) -> Vec<Vec<u8>> {
        vec![
            rlp::uint(self.nonce.into()),
            rlp::uint(self.gas_price),
            rlp::uint(self.gas_limit.into()),
            rlp::bytes(self.to),
            rlp::uint(self.value),
            rlp::bytes(self.data),
        ]
    }

    fn signing_hash(&self, chain_id: u64) -> [u8; 32] {
        let mut f = self.fields();
        f.extend([rlp::uint(chain_id.into()), rlp::uint(0), rlp::uint(0)]);
        keccak(&rlp::list(&f))
    }

    fn raw(&self, v: u64, r: &[u8], s: &[u8]) -> Vec<u8> {
        let strip = |x: &[u8]| {
            let start = x.iter().position(|&b| b != 0).unwrap_or(x.len());
            rlp::bytes(&x[start..])
        };
        let mut f = self.fields();
        f.extend([rlp::uint(v.into()), strip(r), strip(s)]);
        rlp::list(&f)
    }
}

/// Signs `tx` for `chain_id` (EIP-155); returns the stored form and the raw bytes.
fn sign(
    key: &SigningKey,
    tx: &UnsignedTx<'_>,
    chain_id: u64,
) -> Result<(SignedLegacyTx, Vec<u8>), EvmError> {
    let hash = tx.signing_hash(chain_id);
    let (sig, recid) = key
        .sign_prehash_recoverable(&hash)
        .map_err(|e| EvmError::Config(format!("signing: {e}")))?;
    let v = u64::from(recid.to_byte()) + 35 + 2 * chain_id;
    let (r, s) = (sig.r().to_bytes(), sig.s().to_bytes());
    let raw = tx.raw(v, &r, &s);
    let stored = SignedLegacyTx {
        nonce: tx.nonce,
        gas_price: tx.gas_price,
        gas_limit: tx.gas_limit,
        to: hex0x(tx.to),
        value: tx.value,
        data: hex0x(tx.data),
        v,
        r: hex0x(&r),
        s: hex0x(&s),
    };
    Ok((stored, raw))
}

impl EvmAnchor {
    /// Offline checks (see the module docs); returns the block number.
    pub fn verify_offline(&self, digest: &[u8; 32]) -> Result<u64, EvmError> {
        let bad = EvmError::Verification;
        let tx = &self.tx;
        let data = unhex(&tx.data).ok_or(bad("calldata is not hex"))?;
        if data != digest {
            return Err(bad("calldata is not the anchored digest"));
        }
        let to = unhex(&tx.to)
            .filter(|t| t.len() == 20)
            .ok_or(bad("bad recipient"))?;
        let unsigned = UnsignedTx {
            nonce: tx.nonce,
            gas_price: tx.gas_price,
            gas_limit: tx.gas_limit,
            to: &to,
            value: tx.value,
            data: &data,
        };
        let r = unhex(&tx.r)
            .filter(|x| x.len() == 32)
            .ok_or(bad("bad signature r"))?;
        let s = unhex(&tx.s)
            .filter(|x| x.len() == 32)
            .ok_or(bad("bad signature s"))?;
        let raw = unsigned.raw(tx.v, &r, &s);
        if hex0x(&keccak(&raw)) != self.tx_hash {
            return Err(bad("transaction hash does not match the transaction"));
        }
        let recid =
            tx.v.checked_sub(35 + 2 * self.chain_id)
                .and_then(|x| u8::try_from(x).ok())
                .and_then(RecoveryId::from_byte)
                .ok_or(bad("v does not encode this chain id"))?;
        let sig = Signature::from_scalars(
            <[u8; 32]>::try_from(r.as_slice()).map_err(|_| bad("bad signature r"))?,
            <[u8; 32]>::try_from(s.as_slice()).map_err(|_| bad("bad signature s"))?,
        )
        .map_err(|_| bad("invalid signature"))?;
        let key =
            VerifyingKey::recover_from_prehash(&unsigned.signing_hash(self.chain_id), &sig, recid)
                .map_err(|_| bad("signature does not recover"))?;
        if hex0x(&address_of(&key)) != self.from {
            return Err(bad("signature is not by the stored sender"));
        }
        let rc = &self.receipt;
        if rc["status"].as_str() != Some("0x1") {
            return Err(bad("receipt status is not 1"));
        }
        if rc["transactionHash"].as_str().map(str::to_lowercase) != Some(self.tx_hash.clone()) {
            return Err(bad("receipt is for another transaction"));
        }
        if rc["blockHash"].as_str().map(str::to_lowercase) != Some(self.block_hash.clone())
            || quantity(&rc["blockNumber"]) != Some(self.block_number.into())
        {
            return Err(bad("receipt block differs from the stored block"));
        }
        Ok(self.block_number)
    }
}

/// A JSON-RPC client with a signing key.
#[derive(Debug, Clone)]
pub struct EvmClient {
    http: reqwest::Client,
    url: reqwest::Url,
    chain_id: u64,
    key: SigningKey,
    address: [u8; 20],
    receipt_timeout: Duration,
    poll_interval: Duration,
}

impl EvmClient {
    /// A client for `config`.
    pub fn new(config: &EvmConfig) -> Result<EvmClient, EvmError> {
        let url = reqwest::Url::parse(&config.rpc_url)
            .map_err(|e| EvmError::Config(format!("rpc url: {e}")))?;
        let key = SigningKey::from_slice(&config.private_key)
            .map_err(|_| EvmError::Config("private key is not a valid secp256k1 scalar".into()))?;
        let address = address_of(key.verifying_key());
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .build()
            .map_err(|e| EvmError::Transport(e.to_string()))?;
        Ok(EvmClient {
            http,
            url,
            chain_id: config.chain_id,
            key,
            address,
            receipt_timeout: config.receipt_timeout,
            poll_interval: config.poll_interval,
        })
    }

    /// The sending address, 0x-hex lowercase.
    pub fn address(&self) -> String {
        hex0x(&self.address)
    }

    /// Anchors `digest` (see the module docs).
    pub async fn anchor(&self, digest: &[u8; 32]) -> Result<EvmAnchor, EvmError> {
        let node_chain = self.quantity_call("eth_chainId", json!([])).await?;
        if node_chain != u128::from(self.chain_id) {
            return Err(EvmError::ChainIdMismatch {
                node: u64::try_from(node_chain).unwrap_or(u64::MAX),
                configured: self.chain_id,
            });
        }
        let me = self.address();
        let nonce = self
            .quantity_call("eth_getTransactionCount", json!([me, "pending"]))
            .await?;
        let gas_price = self.quantity_call("eth_gasPrice", json!([])).await?;
        let unsigned = UnsignedTx {
            nonce: u64::try_from(nonce).map_err(|_| EvmError::Malformed {
                method: "eth_getTransactionCount",
                what: "nonce above 2^64",
            })?,
            gas_price,
            gas_limit: intrinsic_gas(digest),
            to: &self.address,
            value: 0,
            data: digest,
        };
        let (tx, raw) = sign(&self.key, &unsigned, self.chain_id)?;
        let tx_hash = hex0x(&keccak(&raw));
        let sent = self
            .call("eth_sendRawTransaction", json!([hex0x(&raw)]))
            .await?;
        if sent.as_str().map(str::to_lowercase) != Some(tx_hash.clone()) {
            return Err(EvmError::Malformed {
                method: "eth_sendRawTransaction",
                what: "returned hash is not the transaction's",
            });
        }
        let receipt = self.wait_for_receipt(&tx_hash).await?;
        let malformed = |what| EvmError::Malformed {
            method: "eth_getTransactionReceipt",
            what,
        };
        let block_number = quantity(&receipt["blockNumber"])
            .and_then(|n| u64::try_from(n).ok())
            .ok_or(malformed("blockNumber"))?;
        let block_hash = receipt["blockHash"]
            .as_str()
            .map(str::to_lowercase)
            .ok_or(malformed("blockHash"))?;
        let anchor = EvmAnchor {
            chain_id: self.chain_id,
            from: me,
            tx,
            tx_hash,
            block_number,
            block_hash,
            receipt,
        };
        anchor.verify_offline(digest)?;
        self.verify_online(&anchor, digest).await?;
        Ok(anchor)
    }

    /// [`EvmClient::anchor`] for synchronous callers: runs it on a private runtime in a helper
    /// thread and blocks until it is done.
    pub fn anchor_blocking(&self, digest: &[u8; 32]) -> Result<EvmAnchor, EvmError> {
        crate::block_on(self.anchor(digest)).map_err(EvmError::Transport)?
    }

    /// Checks `anchor` against the chain (see the module docs), after the offline checks.
    pub async fn verify_online(
        &self,
        anchor: &EvmAnchor,
        digest: &[u8; 32],
    ) -> Result<(), EvmError> {
        anchor.verify_offline(digest)?;
        let bad = EvmError::Verification;
        let tx = self
            .call("eth_getTransactionByHash", json!([anchor.tx_hash]))
            .await?;
        if tx.is_null() {
            return Err(bad("transaction not found on chain"));
        }
        let lower = |v: &Value| v.as_str().map(str::to_lowercase);
        if lower(&tx["input"]) != Some(anchor.tx.data.clone()) {
            return Err(bad("on-chain input is not the anchored digest"));
        }
        if lower(&tx["from"]) != Some(anchor.from.clone()) {
            return Err(bad("on-chain sender differs"));
        }
        if lower(&tx["blockHash"]) != Some(anchor.block_hash.clone())
            || quantity(&tx["blockNumber"]) != Some(anchor.block_number.into())
        {
            return Err(bad("on-chain transaction is in another block"));
        }
        let receipt = self
            .call("eth_getTransactionReceipt", json!([anchor.tx_hash]))
            .await?;
        if receipt["status"].as_str() != Some("0x1") {
            return Err(bad("on-chain receipt status is not 1"));
        }
        if lower(&receipt["blockHash"]) != Some(anchor.block_hash.clone()) {
            return Err(bad("on-chain receipt is in another block"));
        }
        let block = self
            .call(
                "eth_getBlockByNumber",
                json!([format!("0x{:x}", anchor.block_number), false]),
            )
            .await?;
        if lower(&block["hash"]) != Some(anchor.block_hash.clone()) {
            return Err(bad("the block at that number has another hash"));
        }
        Ok(())
    }

    async fn wait_for_receipt(&self, tx_hash: &str) -> Result<Value, EvmError> {
        let start = tokio::time::Instant::now();
        let deadline = start + self.receipt_timeout;
        loop {
            let receipt = self
                .call("eth_getTransactionReceipt", json!([tx_hash]))
                .await?;
            if !receipt.is_null() {
                return Ok(receipt);
            }
            if tokio::time::Instant::now() + self.poll_interval > deadline {
                return Err(EvmError::ReceiptTimeout {
                    tx_hash: tx_hash.to_owned(),
                    waited: start.elapsed(),
                });
            }
            // Polling a remote node for a future block: the pause is the protocol, not a
            // synchronisation shortcut.
            tokio::time::sleep(self.poll_interval).await;
        }
    }

    async fn quantity_call(&self, method: &'static str, params: Value) -> Result<u128, EvmError> {
        let v = self.call(method, params).await?;
        quantity(&v).ok_or(EvmError::Malformed {
            method,
            what: "result is not a hex quantity",
        })
    }

    async fn call(&self, method: &'static str, params: Value) -> Result<Value, EvmError> {
        let transport = |e: reqwest::Error| EvmError::Transport(e.to_string());
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let mut resp = self
            .http
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(transport)?;
        if !resp.status().is_success() {
            return Err(EvmError::HttpStatus(resp.status().as_u16()));
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(transport)? {
            if bytes.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(EvmError::ResponseTooLarge);
            }
            bytes.extend_from_slice(&chunk);
        }
        let mut answer: Value =
            serde_json::from_slice(&bytes).map_err(|_| EvmError::Malformed {
                method,
                what: "not JSON",
            })?;
        if let Some(err) = answer.get("error") {
            return Err(EvmError::Rpc {
                method,
                code: err["code"].as_i64().unwrap_or_default(),
                message: err["message"].as_str().unwrap_or_default().to_owned(),
            });
        }
        match answer.get_mut("result") {
            Some(result) => Ok(result.take()),
            None => Err(EvmError::Malformed {
                method,
                what: "no result",
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of EIP-155.
    #[test]
    fn eip155_example() {
        let key = SigningKey::from_slice(&[0x46; 32]).unwrap();
        let to = [0x35; 20];
        let tx = UnsignedTx {
            nonce: 9,
            gas_price: 20_000_000_000,
            gas_limit: 21_000,
            to: &to,
            value: 1_000_000_000_000_000_000,
            data: &[],
        };
        let mut f = tx.fields();
        f.extend([rlp::uint(1), rlp::uint(0), rlp::uint(0)]);
        assert_eq!(
            hex::encode(rlp::list(&f)),
            "ec098504a817c800825208943535353535353535353535353535353535353535880de0b6b3a764000080018080"
        );
        assert_eq!(
            hex::encode(tx.signing_hash(1)),
            "daf5a779ae972f972197303d7b574746c7ef83eadac0f2791ad23db92e4c8e53"
        );
        let (stored, raw) = sign(&key, &tx, 1).unwrap();
        assert_eq!(
            hex::encode(raw),
            "f86c098504a817c800825208943535353535353535353535353535353535353535880de0b6b3a76400008025a028ef61340bd939bc2195fe537567866003e1a15d3c71ff63e1590620aa636276a067cbe9d8997f761aecb703304b3800ccf555c9f3dc64214b297fb1966a3b6d83"
        );
        assert_eq!(stored.v, 37);
    }

    #[test]
    fn intrinsic_gas_counts_bytes() {
        assert_eq!(intrinsic_gas(&[]), 21_000);
        assert_eq!(intrinsic_gas(&[0, 1, 0, 2]), 21_000 + 4 + 16 + 4 + 16);
    }
}
