//! Ethereum / Polygon anchoring: the anchored digest as the calldata of a transaction signed
//! locally, sent over JSON-RPC, done once it is buried under a configured number of blocks;
//! its receipt stored and verified.
//!
//! The transaction is an EIP-155 legacy transaction (`rlp([nonce, gasPrice, gas, to, value,
//! data, v, r, s])`, signed over `keccak256(rlp([nonce, gasPrice, gas, to, value, data,
//! chainId, 0, 0]))` with secp256k1, low-S, `v = recovery id + 35 + 2 * chainId`), sent by the
//! configured key **to its own address** with value 0; `data` is exactly the 32-byte anchored
//! digest; gas is the intrinsic cost (21000 + 16 per non-zero and 4 per zero calldata byte), the
//! gas price `eth_gasPrice`, the nonce `eth_getTransactionCount(address, "pending")`. Polygon is
//! the same code with its chain id and RPC URL.
//!
//! # Sending and confirming
//!
//! [`EvmClient::send`] checks `eth_chainId`, sends with `eth_sendRawTransaction` (the returned
//! hash must be ours) and returns a [`PendingEvm`]: the state a caller stores and hands to
//! [`EvmClient::poll`] until it is [`Step::Final`]. A poll asks `eth_blockNumber`, the
//! attempts' receipts, and `eth_getBlockByNumber` at the receipt's block; the anchor is final
//! once `head - receipt.blockNumber + 1 >= confirmations` ([`EvmConfig::confirmations`],
//! default [`default_confirmations`]: 12 on Ethereum, 128 on Polygon) *and* that block is
//! still the canonical one at its height. A reorg that moves the transaction restarts the
//! count from its new block; a transaction that vanished (reorged out and not in the mempool),
//! reverted, or got no receipt within [`EvmConfig::receipt_timeout`] is [`Step::Dropped`], and
//! [`EvmClient::resubmit`] sends it again: with the same nonce and a gas price at least 10%
//! higher while that nonce is unspent (so it replaces a stuck copy), else with the next nonce.
//! The rules are pure functions of the node's answers, in [`confirm`]. Because the state is
//! data, a restarted caller resumes polling and never sends a second transaction for a
//! digest unless the first was dropped. [`EvmClient::anchor`] runs the whole cycle in one
//! call.
//!
//! The final [`EvmAnchor`] holds the signed transaction fields, its hash, the block, the
//! receipt as received, the confirmations seen and the cost in wei from the receipt
//! (`gasUsed * effectiveGasPrice`, [`confirm::receipt_cost_wei`]).
//!
//! # Verifying
//!
//! Offline ([`EvmAnchor::verify_offline`]): the transaction's calldata is the digest, its
//! re-encoding hashes to the stored hash, its signature recovers the stored sender for the
//! stored chain id, and the stored receipt has status 1, this hash and the stored block (and,
//! when stored, the cost is the receipt's).
//! Online ([`EvmClient::verify_online`]): `eth_getTransactionByHash` has the same input, sender,
//! block hash and number; the receipt has status 1 in that block; `eth_getBlockByNumber` at
//! that number has that hash.

pub mod confirm;
mod rlp;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k256::ecdsa::{RecoveryId, Signature, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha3::{Digest, Keccak256};

pub use confirm::{DropReason, PendingEvm, SentTx, Step, default_confirmations};
use confirm::{Observation, bumped_gas_price};

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
    /// Blocks, the transaction's included, before an anchor is final (at least 1; usually
    /// [`default_confirmations`] of the chain id).
    pub confirmations: u64,
    /// How long a sent transaction may stay without a receipt before it counts as stuck and
    /// is re-submitted with a higher gas price ([`EvmClient::anchor`]: gives up instead).
    pub receipt_timeout: Duration,
    /// Pause between polls in [`EvmClient::anchor`].
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
            .field("confirmations", &self.confirmations)
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
    /// Confirmations when the anchor became final (`head - block_number + 1`; 0 in anchors
    /// stored before confirmations were counted).
    #[serde(default)]
    pub confirmations: u64,
    /// Wei paid, `gasUsed * effectiveGasPrice` of the receipt, decimal ([`confirm`]; empty
    /// in anchors stored before the cost was recorded).
    #[serde(default)]
    pub cost_wei: String,
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

/// The byte fields of a stored transaction, decoded.
struct Decoded {
    to: Vec<u8>,
    data: Vec<u8>,
    r: [u8; 32],
    s: [u8; 32],
}

impl SignedLegacyTx {
    fn decoded(&self) -> Result<Decoded, EvmError> {
        let bad = EvmError::Verification;
        let b32 = |x: &str, what| {
            unhex(x)
                .and_then(|v| <[u8; 32]>::try_from(v).ok())
                .ok_or(bad(what))
        };
        Ok(Decoded {
            to: unhex(&self.to)
                .filter(|t| t.len() == 20)
                .ok_or(bad("bad recipient"))?,
            data: unhex(&self.data).ok_or(bad("calldata is not hex"))?,
            r: b32(&self.r, "bad signature r")?,
            s: b32(&self.s, "bad signature s")?,
        })
    }

    fn unsigned<'a>(&self, d: &'a Decoded) -> UnsignedTx<'a> {
        UnsignedTx {
            nonce: self.nonce,
            gas_price: self.gas_price,
            gas_limit: self.gas_limit,
            to: &d.to,
            value: self.value,
            data: &d.data,
        }
    }

    /// The raw signed transaction, `rlp([nonce, gasPrice, gas, to, value, data, v, r, s])`
    /// (what `eth_sendRawTransaction` takes, e.g. to broadcast it again); `Err` names the
    /// field that is not well-formed.
    pub fn raw(&self) -> Result<Vec<u8>, EvmError> {
        let d = self.decoded()?;
        Ok(self.unsigned(&d).raw(self.v, &d.r, &d.s))
    }
}

impl EvmAnchor {
    /// Offline checks (see the module docs); returns the block number.
    pub fn verify_offline(&self, digest: &[u8; 32]) -> Result<u64, EvmError> {
        let bad = EvmError::Verification;
        let tx = &self.tx;
        let d = tx.decoded()?;
        if d.data != digest {
            return Err(bad("calldata is not the anchored digest"));
        }
        let unsigned = tx.unsigned(&d);
        let raw = unsigned.raw(tx.v, &d.r, &d.s);
        if hex0x(&keccak(&raw)) != self.tx_hash {
            return Err(bad("transaction hash does not match the transaction"));
        }
        let recid = self
            .chain_id
            .checked_mul(2)
            .and_then(|c| c.checked_add(35))
            .and_then(|base| tx.v.checked_sub(base))
            .and_then(|x| u8::try_from(x).ok())
            .and_then(RecoveryId::from_byte)
            .ok_or(bad("v does not encode this chain id"))?;
        let sig = Signature::from_scalars(d.r, d.s).map_err(|_| bad("invalid signature"))?;
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
        if !self.cost_wei.is_empty()
            && confirm::receipt_cost_wei(rc, tx.gas_price)
                .map(|c| c.to_string())
                .ok()
                != Some(self.cost_wei.clone())
        {
            return Err(bad(
                "stored cost differs from the receipt's gas used x price",
            ));
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
    confirmations: u64,
    receipt_timeout: Duration,
    poll_interval: Duration,
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn lower(v: &Value) -> Option<String> {
    v.as_str().map(str::to_lowercase)
}

impl EvmClient {
    /// A client for `config`.
    pub fn new(config: &EvmConfig) -> Result<EvmClient, EvmError> {
        let url = reqwest::Url::parse(&config.rpc_url)
            .map_err(|e| EvmError::Config(format!("rpc url: {e}")))?;
        let key = SigningKey::from_slice(&config.private_key)
            .map_err(|_| EvmError::Config("private key is not a valid secp256k1 scalar".into()))?;
        if config.confirmations == 0 {
            return Err(EvmError::Config("confirmations must be at least 1".into()));
        }
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
            confirmations: config.confirmations,
            receipt_timeout: config.receipt_timeout,
            poll_interval: config.poll_interval,
        })
    }

    /// The sending address, 0x-hex lowercase.
    pub fn address(&self) -> String {
        hex0x(&self.address)
    }

    /// The confirmation depth at which an anchor is final.
    pub fn confirmations(&self) -> u64 {
        self.confirmations
    }

    /// Anchors `digest` from start to finish: [`EvmClient::send`], then
    /// [`EvmClient::poll`] every `poll_interval` until final, re-submitting a transaction that
    /// vanished or reverted. Waits as long as the chain takes to reach the depth;
    /// [`EvmError::ReceiptTimeout`] when a transaction has no receipt within
    /// `receipt_timeout`.
    pub async fn anchor(&self, digest: &[u8; 32]) -> Result<EvmAnchor, EvmError> {
        let start = tokio::time::Instant::now();
        let mut pending = self.send(digest).await?;
        loop {
            pending = match self.poll(&pending).await? {
                Step::Final(anchor) => return Ok(anchor),
                Step::Pending(p) => p,
                Step::Dropped(p, DropReason::Stuck) => {
                    return Err(EvmError::ReceiptTimeout {
                        tx_hash: p.latest().map(|a| a.tx_hash.clone()).unwrap_or_default(),
                        waited: start.elapsed(),
                    });
                }
                Step::Dropped(p, _) => self.resubmit(&p).await?,
            };
            // Polling a remote node for a future block: the pause is the protocol, not a
            // synchronisation shortcut.
            tokio::time::sleep(self.poll_interval).await;
        }
    }

    /// [`EvmClient::anchor`] for synchronous callers: runs it on a private runtime in a helper
    /// thread and blocks until it is done.
    pub fn anchor_blocking(&self, digest: &[u8; 32]) -> Result<EvmAnchor, EvmError> {
        crate::block_on(self.anchor(digest)).map_err(EvmError::Transport)?
    }

    /// Sends the transaction anchoring `digest` and returns the state to poll (see the module
    /// docs).
    pub async fn send(&self, digest: &[u8; 32]) -> Result<PendingEvm, EvmError> {
        self.check_chain().await?;
        let nonce = self.nonce("pending").await?;
        let gas_price = self.quantity_call("eth_gasPrice", json!([])).await?;
        let attempt = self.sign_and_send(digest, nonce, gas_price).await?;
        Ok(PendingEvm {
            chain_id: self.chain_id,
            from: self.address(),
            digest: hex0x(digest),
            attempts: vec![attempt],
            inclusion: None,
            confirmations: 0,
            missing_polls: 0,
            resubmissions: 0,
            reorgs: 0,
        })
    }

    /// Re-submits a dropped anchor ([`Step::Dropped`]): the same nonce with a gas price at
    /// least 10% above the last attempt's (or `eth_gasPrice` if higher) while the account's
    /// mined nonce has not passed it, else the next pending nonce at `eth_gasPrice`. Returns
    /// the state with the new attempt.
    pub async fn resubmit(&self, pending: &PendingEvm) -> Result<PendingEvm, EvmError> {
        self.check_pending(pending)?;
        let digest = pending.digest_bytes()?;
        let last = pending
            .latest()
            .ok_or(EvmError::Verification("pending anchor has no transaction"))?;
        self.check_chain().await?;
        let mined = self.nonce("latest").await?;
        let current = self.quantity_call("eth_gasPrice", json!([])).await?;
        let (nonce, gas_price) = if mined <= last.tx.nonce {
            (
                last.tx.nonce,
                current.max(bumped_gas_price(last.tx.gas_price)),
            )
        } else {
            (self.nonce("pending").await?, current)
        };
        let attempt = self.sign_and_send(&digest, nonce, gas_price).await?;
        Ok(pending.with_attempt(attempt))
    }

    /// Polls a pending anchor once (see [`confirm`]); a [`Step::Final`] anchor has passed
    /// [`EvmAnchor::verify_offline`] and [`EvmClient::verify_online`].
    pub async fn poll(&self, pending: &PendingEvm) -> Result<Step, EvmError> {
        self.check_pending(pending)?;
        let digest = pending.digest_bytes()?;
        let head = u64::try_from(self.quantity_call("eth_blockNumber", json!([])).await?).map_err(
            |_| EvmError::Malformed {
                method: "eth_blockNumber",
                what: "block number above 2^64",
            },
        )?;
        let mut receipt = None;
        for (i, a) in pending.attempts.iter().enumerate().rev() {
            let r = self
                .call("eth_getTransactionReceipt", json!([a.tx_hash]))
                .await?;
            // Some nodes answer a receipt without a block for a transaction still pending.
            if !r.is_null() && !r["blockHash"].is_null() {
                receipt = Some((i, r));
                break;
            }
        }
        let mut canonical_hash = None;
        let mut known = receipt.is_some();
        if let Some((_, r)) = &receipt {
            let block = self
                .call("eth_getBlockByNumber", json!([r["blockNumber"], false]))
                .await?;
            canonical_hash = lower(&block["hash"]);
        } else {
            for a in pending.attempts.iter().rev() {
                let tx = self
                    .call("eth_getTransactionByHash", json!([a.tx_hash]))
                    .await?;
                if !tx.is_null() {
                    known = true;
                    break;
                }
            }
        }
        let obs = Observation {
            head,
            receipt,
            canonical_hash,
            known,
            now_unix: now_unix(),
        };
        let step = confirm::advance(
            pending,
            &obs,
            self.confirmations,
            self.receipt_timeout.as_secs(),
        )?;
        if let Step::Final(anchor) = &step {
            self.verify_online(anchor, &digest).await?;
        }
        Ok(step)
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

    /// A pending anchor must be of this chain and sender.
    fn check_pending(&self, pending: &PendingEvm) -> Result<(), EvmError> {
        if pending.chain_id != self.chain_id || pending.from != self.address() {
            return Err(EvmError::Config(format!(
                "pending anchor is for chain {} sender {}, this client is chain {} sender {}",
                pending.chain_id,
                pending.from,
                self.chain_id,
                self.address()
            )));
        }
        Ok(())
    }

    async fn check_chain(&self) -> Result<(), EvmError> {
        let node_chain = self.quantity_call("eth_chainId", json!([])).await?;
        if node_chain != u128::from(self.chain_id) {
            return Err(EvmError::ChainIdMismatch {
                node: u64::try_from(node_chain).unwrap_or(u64::MAX),
                configured: self.chain_id,
            });
        }
        Ok(())
    }

    /// `eth_getTransactionCount(address, block)`.
    async fn nonce(&self, block: &str) -> Result<u64, EvmError> {
        let n = self
            .quantity_call("eth_getTransactionCount", json!([self.address(), block]))
            .await?;
        u64::try_from(n).map_err(|_| EvmError::Malformed {
            method: "eth_getTransactionCount",
            what: "nonce above 2^64",
        })
    }

    async fn sign_and_send(
        &self,
        digest: &[u8; 32],
        nonce: u64,
        gas_price: u128,
    ) -> Result<SentTx, EvmError> {
        let unsigned = UnsignedTx {
            nonce,
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
        if lower(&sent) != Some(tx_hash.clone()) {
            return Err(EvmError::Malformed {
                method: "eth_sendRawTransaction",
                what: "returned hash is not the transaction's",
            });
        }
        Ok(SentTx {
            tx,
            tx_hash,
            sent_at_unix: now_unix(),
        })
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
