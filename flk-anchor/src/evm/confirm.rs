//! Confirmation tracking of a sent anchor transaction, as pure functions of what the node
//! reported: the [`PendingEvm`] state (persisted by the caller between polls and across
//! restarts), one poll's observation and the [`Step`] it leads to.
//!
//! # Rules, per poll
//!
//! The attempts (the first transaction and every re-submission) are asked for a receipt,
//! newest first; the first receipt found is the candidate inclusion. It counts only when
//! `eth_getBlockByNumber(receipt.blockNumber)` has the receipt's block hash, i.e. the block is
//! on the node's canonical chain.
//!
//! * **Included, canonical, status 1**: `confirmations = head - blockNumber + 1` (the block
//!   itself is the first). At or above the required depth the anchor is [`Step::Final`].
//!   A different block than the one seen before is a reorg: it is counted and the depth
//!   restarts from the new block (the formula does that by itself).
//! * **Included, canonical, status not 1**: [`Step::Dropped`] with [`DropReason::Reverted`]
//!   (the nonce is spent, nothing is anchored).
//! * **A receipt in a block that is not canonical** (the node is switching forks): not
//!   included, 0 confirmations; a reorg if an inclusion was seen before.
//! * **No receipt, but the node knows an attempt** (`eth_getTransactionByHash`, in the mempool
//!   or in a block not indexed yet): pending; a reorg if an inclusion was seen before.
//!   Without any receipt for `receipt_timeout` since the newest attempt was sent:
//!   [`DropReason::Stuck`] (re-submitted with the same nonce and a higher gas price, so it
//!   replaces the stuck one).
//! * **No receipt and no attempt known**: a missing poll; after
//!   [`MISSING_POLLS_BEFORE_DROP`] consecutive ones, [`DropReason::Vanished`] (a reorg
//!   dropped it, or the mempool evicted it). One missing answer alone is not trusted: a
//!   load-balanced RPC may ask a node that has not seen the transaction yet.
//!
//! A dropped transaction is re-submitted by the caller
//! ([`EvmClient::resubmit`](super::EvmClient::resubmit)); the earlier attempts stay in the
//! state (the newest [`MAX_ATTEMPTS`]) and are still polled, so a replaced transaction that is
//! mined after all is adopted rather than followed by a second anchor.
//!
//! # Cost
//!
//! [`receipt_cost_wei`]: `gasUsed * effectiveGasPrice` of the receipt, in wei (`u128`: a
//! cost can exceed `2^64` wei, 18.4 ETH). Nodes that predate EIP-1559 (and old ganache
//! versions) omit `effectiveGasPrice`; a legacy transaction then pays exactly its `gasPrice`,
//! which is used instead.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{EvmAnchor, EvmError, SignedLegacyTx, quantity};

/// Consecutive polls without any trace of the transaction before it counts as dropped.
pub const MISSING_POLLS_BEFORE_DROP: u32 = 3;

/// Attempts kept (and polled) per pending anchor; older ones are forgotten.
pub const MAX_ATTEMPTS: usize = 8;

/// The confirmation depth used when none is configured: 12 blocks on Ethereum mainnet (and
/// its Sepolia / Holesky testnets), about 2.4 minutes of 12 s slots, the customary depth
/// before Casper finality (2 epochs, ~13 min) which would be 64; 128 blocks on Polygon PoS
/// (and its Amoy testnet), about 4.3 minutes of 2 s blocks, past the depth of the deepest
/// reorgs Polygon has seen before its milestones and in line with the optimizer's 300 s
/// latency figure for Polygon; 12 for any other chain (set it explicitly for a development
/// chain that mines only on demand, e.g. 1).
pub fn default_confirmations(chain_id: u64) -> u64 {
    match chain_id {
        137 | 80_002 => 128,
        _ => 12,
    }
}

/// Wei paid by the transaction of `receipt`: `gasUsed * effectiveGasPrice`, or
/// `gasUsed * tx_gas_price` when the receipt has no `effectiveGasPrice` (see the module docs).
pub fn receipt_cost_wei(receipt: &Value, tx_gas_price: u128) -> Result<u128, EvmError> {
    let malformed = |what| EvmError::Malformed {
        method: "eth_getTransactionReceipt",
        what,
    };
    let gas_used = quantity(&receipt["gasUsed"]).ok_or(malformed("gasUsed"))?;
    let price = match receipt.get("effectiveGasPrice") {
        None | Some(Value::Null) => tx_gas_price,
        Some(v) => quantity(v).ok_or(malformed("effectiveGasPrice"))?,
    };
    gas_used
        .checked_mul(price)
        .ok_or(malformed("gasUsed x effectiveGasPrice exceeds 2^128 wei"))
}

/// A gas price at least 10% above `old` (what geth and most nodes require of a replacement
/// with the same nonce), rounded up.
pub fn bumped_gas_price(old: u128) -> u128 {
    old.saturating_add(old.div_ceil(10)).saturating_add(1)
}

/// One transaction sent for a pending anchor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentTx {
    /// The signed transaction.
    pub tx: SignedLegacyTx,
    /// Its hash, 0x-hex lowercase.
    pub tx_hash: String,
    /// When it was sent, Unix seconds (the sender's clock).
    pub sent_at_unix: i64,
}

/// The canonical block a pending anchor's transaction was last seen in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inclusion {
    /// The included attempt's hash.
    pub tx_hash: String,
    /// The block's number.
    pub block_number: u64,
    /// The block's hash, 0x-hex lowercase.
    pub block_hash: String,
    /// The receipt as returned by the node.
    pub receipt: Value,
    /// [`receipt_cost_wei`], decimal.
    pub cost_wei: String,
}

/// A sent anchor that is not final yet: what the caller stores between polls (JSON) to
/// resume after a restart without sending a second transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingEvm {
    /// The chain id.
    pub chain_id: u64,
    /// The sender, 0x-hex lowercase.
    pub from: String,
    /// The anchored digest, 0x-hex (every attempt's calldata).
    pub digest: String,
    /// The transactions sent, oldest first (never empty; the last is the newest).
    pub attempts: Vec<SentTx>,
    /// Where the transaction was last seen on the canonical chain.
    pub inclusion: Option<Inclusion>,
    /// Confirmations at the last poll (0 while not included).
    pub confirmations: u64,
    /// Consecutive polls without any trace of an attempt.
    pub missing_polls: u32,
    /// Transactions sent after the first.
    pub resubmissions: u32,
    /// Inclusions lost or moved to another block.
    pub reorgs: u32,
}

impl PendingEvm {
    /// The newest attempt.
    pub fn latest(&self) -> Option<&SentTx> {
        self.attempts.last()
    }

    /// The anchored digest's bytes.
    pub fn digest_bytes(&self) -> Result<[u8; 32], EvmError> {
        super::unhex(&self.digest)
            .and_then(|d| <[u8; 32]>::try_from(d).ok())
            .ok_or(EvmError::Verification(
                "pending anchor digest is not 32 hex bytes",
            ))
    }

    /// Wei paid by the included transaction, once a receipt was seen.
    pub fn cost_wei(&self) -> Option<u128> {
        self.inclusion
            .as_ref()
            .and_then(|i| i.cost_wei.parse().ok())
    }

    /// This state after sending `attempt` (a re-submission): not included, no missing polls.
    pub fn with_attempt(&self, attempt: SentTx) -> PendingEvm {
        let mut next = self.clone();
        next.attempts.push(attempt);
        let excess = next.attempts.len().saturating_sub(MAX_ATTEMPTS);
        next.attempts.drain(..excess);
        next.inclusion = None;
        next.confirmations = 0;
        next.missing_polls = 0;
        next.resubmissions = next.resubmissions.saturating_add(1);
        next
    }
}

/// Why a pending anchor's transaction needs re-submitting (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// No attempt is known to the node any more.
    Vanished,
    /// Mined with a status other than 1.
    Reverted,
    /// No receipt within the receipt timeout.
    Stuck,
}

impl DropReason {
    /// A stable label (logs, metrics).
    pub fn label(self) -> &'static str {
        match self {
            DropReason::Vanished => "vanished",
            DropReason::Reverted => "reverted",
            DropReason::Stuck => "stuck",
        }
    }
}

/// What one poll leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Not final yet: the updated state (store it when it differs from the previous one).
    Pending(PendingEvm),
    /// Final: the anchor, verified offline and online by [`EvmClient::poll`](super::EvmClient::poll).
    Final(EvmAnchor),
    /// Re-submit ([`EvmClient::resubmit`](super::EvmClient::resubmit)) from this state.
    Dropped(PendingEvm, DropReason),
}

/// What the node reported in one poll.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Observation {
    /// `eth_blockNumber`.
    pub head: u64,
    /// The newest attempt (its index) that has a receipt, and the receipt.
    pub receipt: Option<(usize, Value)>,
    /// The hash of the canonical block at the receipt's number, if there is one.
    pub canonical_hash: Option<String>,
    /// Whether the node knows any attempt (`eth_getTransactionByHash` not null).
    pub known: bool,
    /// The poller's clock, Unix seconds.
    pub now_unix: i64,
}

/// The step `obs` leads to from `state` (see the module docs); `required` is the
/// confirmation depth (at least 1), `receipt_timeout_secs` the stuck threshold.
pub(crate) fn advance(
    state: &PendingEvm,
    obs: &Observation,
    required: u64,
    receipt_timeout_secs: u64,
) -> Result<Step, EvmError> {
    let malformed = |what| EvmError::Malformed {
        method: "eth_getTransactionReceipt",
        what,
    };
    let mut next = state.clone();
    let lost = |next: &mut PendingEvm| {
        if next.inclusion.take().is_some() {
            next.reorgs = next.reorgs.saturating_add(1);
        }
        next.confirmations = 0;
    };
    if let Some((index, receipt)) = &obs.receipt {
        let attempt = state
            .attempts
            .get(*index)
            .ok_or(malformed("receipt of an unknown attempt"))?;
        let block_number = quantity(&receipt["blockNumber"])
            .and_then(|n| u64::try_from(n).ok())
            .ok_or(malformed("blockNumber"))?;
        let block_hash = receipt["blockHash"]
            .as_str()
            .map(str::to_lowercase)
            .ok_or(malformed("blockHash"))?;
        next.missing_polls = 0;
        if obs.canonical_hash.as_deref() != Some(block_hash.as_str()) {
            lost(&mut next);
            return Ok(Step::Pending(next));
        }
        if receipt["status"].as_str() != Some("0x1") {
            lost(&mut next);
            return Ok(Step::Dropped(next, DropReason::Reverted));
        }
        let cost = receipt_cost_wei(receipt, attempt.tx.gas_price)?;
        if next
            .inclusion
            .as_ref()
            .is_some_and(|i| i.block_hash != block_hash || i.tx_hash != attempt.tx_hash)
        {
            next.reorgs = next.reorgs.saturating_add(1);
        }
        let confirmations = match obs.head.checked_sub(block_number) {
            Some(above) => above.saturating_add(1),
            // The head answer came from a node behind the receipt's: count the block only.
            None => 1,
        };
        if confirmations >= required.max(1) {
            return Ok(Step::Final(EvmAnchor {
                chain_id: state.chain_id,
                from: state.from.clone(),
                tx: attempt.tx.clone(),
                tx_hash: attempt.tx_hash.clone(),
                block_number,
                block_hash,
                receipt: receipt.clone(),
                confirmations,
                cost_wei: cost.to_string(),
            }));
        }
        next.confirmations = confirmations;
        next.inclusion = Some(Inclusion {
            tx_hash: attempt.tx_hash.clone(),
            block_number,
            block_hash,
            receipt: receipt.clone(),
            cost_wei: cost.to_string(),
        });
        return Ok(Step::Pending(next));
    }
    lost(&mut next);
    if obs.known {
        next.missing_polls = 0;
        let sent = state.latest().map_or(obs.now_unix, |a| a.sent_at_unix);
        let waited = u64::try_from(obs.now_unix.saturating_sub(sent)).unwrap_or(0);
        if waited >= receipt_timeout_secs {
            return Ok(Step::Dropped(next, DropReason::Stuck));
        }
        return Ok(Step::Pending(next));
    }
    next.missing_polls = next.missing_polls.saturating_add(1);
    if next.missing_polls >= MISSING_POLLS_BEFORE_DROP {
        return Ok(Step::Dropped(next, DropReason::Vanished));
    }
    Ok(Step::Pending(next))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn tx(nonce: u64, gas_price: u128) -> SignedLegacyTx {
        SignedLegacyTx {
            nonce,
            gas_price,
            gas_limit: 21_512,
            to: format!("0x{}", "11".repeat(20)),
            value: 0,
            data: format!("0x{}", "22".repeat(32)),
            v: 2709,
            r: format!("0x{}", "33".repeat(32)),
            s: format!("0x{}", "44".repeat(32)),
        }
    }

    fn attempt(n: u8, sent_at_unix: i64) -> SentTx {
        SentTx {
            tx: tx(0, 2_000_000_000 + u128::from(n)),
            tx_hash: format!("0x{}", hex::encode([n; 32])),
            sent_at_unix,
        }
    }

    fn pending() -> PendingEvm {
        PendingEvm {
            chain_id: 1337,
            from: format!("0x{}", "11".repeat(20)),
            digest: format!("0x{}", "22".repeat(32)),
            attempts: vec![attempt(1, 1_000)],
            inclusion: None,
            confirmations: 0,
            missing_polls: 0,
            resubmissions: 0,
            reorgs: 0,
        }
    }

    fn block_hash(b: u8) -> String {
        format!("0x{}", hex::encode([b; 32]))
    }

    fn receipt(tx: u8, number: u64, block: u8, status: &str) -> Value {
        json!({
            "transactionHash": format!("0x{}", hex::encode([tx; 32])),
            "blockNumber": format!("0x{number:x}"),
            "blockHash": block_hash(block),
            "status": status,
            "gasUsed": "0x5408",
            "effectiveGasPrice": "0x77359400",
        })
    }

    /// Included in block `number` (hash byte `block`), canonical, at `head`.
    fn seen(index: usize, tx: u8, number: u64, block: u8, head: u64) -> Observation {
        Observation {
            head,
            receipt: Some((index, receipt(tx, number, block, "0x1"))),
            canonical_hash: Some(block_hash(block)),
            known: true,
            now_unix: 1_010,
        }
    }

    fn nothing(known: bool, now_unix: i64) -> Observation {
        Observation {
            head: 9,
            receipt: None,
            canonical_hash: None,
            known,
            now_unix,
        }
    }

    fn pending_of(step: Step) -> PendingEvm {
        match step {
            Step::Pending(p) => p,
            other => panic!("expected pending, got {other:?}"),
        }
    }

    #[test]
    fn default_depths() {
        assert_eq!(default_confirmations(1), 12);
        assert_eq!(default_confirmations(137), 128);
        assert_eq!(default_confirmations(1337), 12);
    }

    #[test]
    fn confirmations_count_the_block_itself_and_finalize_at_the_depth() {
        let mut s = pending();
        for (head, want) in [(5, 1), (6, 2), (7, 3)] {
            s = pending_of(advance(&s, &seen(0, 1, 5, 0xb5, head), 4, 600).unwrap());
            assert_eq!(s.confirmations, want);
            assert_eq!(s.inclusion.as_ref().unwrap().block_number, 5);
        }
        assert_eq!(s.cost_wei(), Some(21_512 * 2_000_000_000));
        match advance(&s, &seen(0, 1, 5, 0xb5, 8), 4, 600).unwrap() {
            Step::Final(a) => {
                assert_eq!((a.block_number, a.confirmations), (5, 4));
                assert_eq!(a.block_hash, block_hash(0xb5));
                assert_eq!(a.tx_hash, s.attempts[0].tx_hash);
                assert_eq!(a.cost_wei, (21_512u128 * 2_000_000_000).to_string());
            }
            other => panic!("expected final, got {other:?}"),
        }
        assert_eq!(s.reorgs, 0);
        // A depth of 1 is final at the first receipt; a lagging head counts the block only.
        assert!(matches!(
            advance(&pending(), &seen(0, 1, 5, 0xb5, 3), 1, 600).unwrap(),
            Step::Final(a) if a.confirmations == 1
        ));
    }

    #[test]
    fn a_reorg_into_another_block_restarts_the_count() {
        let mut s = pending();
        s = pending_of(advance(&s, &seen(0, 1, 5, 0xb5, 7), 4, 600).unwrap());
        assert_eq!(s.confirmations, 3);
        // The node is switching forks: the receipt still names block 5, whose hash changed.
        let mut switching = seen(0, 1, 5, 0xb5, 7);
        switching.canonical_hash = Some(block_hash(0xc5));
        s = pending_of(advance(&s, &switching, 4, 600).unwrap());
        assert_eq!((s.confirmations, s.reorgs), (0, 1));
        assert!(s.inclusion.is_none());
        // Re-included in block 6 on the new fork: counted from there.
        s = pending_of(advance(&s, &seen(0, 1, 6, 0xc6, 7), 4, 600).unwrap());
        assert_eq!((s.confirmations, s.reorgs), (2, 1));
        // Moved directly (seen in 6, now in 7): another reorg.
        s = pending_of(advance(&s, &seen(0, 1, 7, 0xd7, 8), 4, 600).unwrap());
        assert_eq!((s.confirmations, s.reorgs), (2, 2));
        assert!(matches!(
            advance(&s, &seen(0, 1, 7, 0xd7, 10), 4, 600).unwrap(),
            Step::Final(a) if a.block_number == 7 && a.confirmations == 4
        ));
    }

    #[test]
    fn a_vanished_transaction_is_dropped_after_consecutive_missing_polls() {
        let mut s = pending_of(advance(&pending(), &seen(0, 1, 5, 0xb5, 6), 4, 600).unwrap());
        for missing in 1..MISSING_POLLS_BEFORE_DROP {
            s = pending_of(advance(&s, &nothing(false, 1_010), 4, 600).unwrap());
            assert_eq!(s.missing_polls, missing);
        }
        assert_eq!((s.reorgs, s.confirmations), (1, 0));
        // A poll that sees it again resets the count.
        let back = pending_of(advance(&s, &nothing(true, 1_010), 4, 600).unwrap());
        assert_eq!(back.missing_polls, 0);
        match advance(&s, &nothing(false, 1_010), 4, 600).unwrap() {
            Step::Dropped(d, DropReason::Vanished) => {
                assert_eq!(d.missing_polls, MISSING_POLLS_BEFORE_DROP);
                assert_eq!(d.reorgs, 1);
                // Re-submitted: a second attempt, counters reset, the reorg kept.
                let r = d.with_attempt(attempt(2, 1_020));
                assert_eq!(r.attempts.len(), 2);
                assert_eq!((r.missing_polls, r.resubmissions, r.reorgs), (0, 1, 1));
                // The newest attempt's receipt is the one that counts.
                let f = pending_of(advance(&r, &seen(1, 2, 5, 0xe5, 5), 4, 600).unwrap());
                assert_eq!(f.inclusion.unwrap().tx_hash, r.attempts[1].tx_hash);
            }
            other => panic!("expected vanished, got {other:?}"),
        }
    }

    #[test]
    fn reverted_and_stuck_transactions_are_dropped() {
        let mut obs = seen(0, 1, 5, 0xb5, 9);
        obs.receipt = Some((0, receipt(1, 5, 0xb5, "0x0")));
        assert!(matches!(
            advance(&pending(), &obs, 4, 600).unwrap(),
            Step::Dropped(_, DropReason::Reverted)
        ));
        // Known (in the mempool) but without a receipt: pending until the timeout.
        assert!(matches!(
            advance(&pending(), &nothing(true, 1_599), 4, 600).unwrap(),
            Step::Pending(_)
        ));
        assert!(matches!(
            advance(&pending(), &nothing(true, 1_600), 4, 600).unwrap(),
            Step::Dropped(_, DropReason::Stuck)
        ));
        // A receipt for an attempt that is not in the state is the node's error.
        let mut bad = seen(0, 1, 5, 0xb5, 9);
        bad.receipt = Some((3, receipt(1, 5, 0xb5, "0x1")));
        assert!(matches!(
            advance(&pending(), &bad, 4, 600),
            Err(EvmError::Malformed { .. })
        ));
    }

    #[test]
    fn attempts_are_capped_and_gas_bumped() {
        let mut s = pending();
        for n in 2..20 {
            s = s.with_attempt(attempt(n, 1_000));
        }
        assert_eq!(s.attempts.len(), MAX_ATTEMPTS);
        assert_eq!(s.latest().unwrap().tx_hash, attempt(19, 0).tx_hash);
        assert_eq!(s.resubmissions, 18);
        assert_eq!(bumped_gas_price(2_000_000_000), 2_200_000_001);
        assert_eq!(bumped_gas_price(0), 1);
        assert_eq!(bumped_gas_price(u128::MAX), u128::MAX);
    }

    #[test]
    fn cost_from_the_receipt_exceeds_u64_and_falls_back_to_the_gas_price() {
        // 21,512 gas at 10^15 wei (1,000,000 gwei): 2.15 * 10^19 wei > u64::MAX.
        let r = json!({"gasUsed": "0x5408", "effectiveGasPrice": "0x38d7ea4c68000"});
        let cost = receipt_cost_wei(&r, 1).unwrap();
        assert_eq!(cost, 21_512 * 1_000_000_000_000_000);
        assert!(cost > u128::from(u64::MAX));
        assert_eq!(cost.to_string(), "21512000000000000000");
        // Legacy receipts without effectiveGasPrice: the transaction's gas price.
        let legacy = json!({"gasUsed": "0x5408", "effectiveGasPrice": null});
        assert_eq!(receipt_cost_wei(&legacy, 7).unwrap(), 21_512 * 7);
        assert_eq!(receipt_cost_wei(&json!({"gasUsed": "0x1"}), 7).unwrap(), 7);
        for bad in [
            json!({}),
            json!({"gasUsed": "0x1", "effectiveGasPrice": 5}),
            json!({"gasUsed": "0x100000000000000000000000000000000"}),
            json!({"gasUsed": "0x10000000000000000", "effectiveGasPrice": "0x10000000000000000"}),
        ] {
            assert!(receipt_cost_wei(&bad, 7).is_err(), "{bad}");
        }
    }
}
