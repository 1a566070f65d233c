//! `flk-anchor`: anchors flk-tlog checkpoints to external time-stamping and ledger services, and
//! verifies the stored proofs offline.
//!
//! # What is anchored
//!
//! Only checkpoints are anchored, never single entries: a checkpoint commits to every entry
//! before it (RFC 9162 Merkle root), so one anchor per published checkpoint proves that the
//! whole log prefix existed no later than the anchor's time.
//!
//! The **anchored digest** is `SHA-256(note)`, where `note` is the exact byte string of the
//! signed checkpoint note as the log published it ([`flk_tlog::LogSigner::sign`]): the three
//! body lines (origin, tree size, base64 root hash), the blank line and the signature line(s).
//! It therefore covers the origin, size, root *and* the log's signature; see
//! [`anchored_digest`]. The caller must store the note bytes exactly (a note re-serialized with
//! other cosignatures has another digest).
//!
//! # Methods
//!
//! * [`rfc3161`] — an RFC 3161 Time-Stamp Authority signs `(digest, genTime, nonce)`. The proof
//!   is the DER time-stamp token (a CMS SignedData). Verified: PKIStatus granted; the CMS
//!   signature over the signed attributes by the TSA certificate carried in the token (RSA
//!   PKCS#1 v1.5 or ECDSA P-256, SHA-256); the messageDigest attribute is SHA-256 of the
//!   encapsulated TSTInfo and the content types are id-ct-TSTInfo; the signed
//!   SigningCertificate(V2) attribute names the TSA certificate by hash; the TSA certificate has a
//!   critical extended key usage of exactly id-kp-timeStamping and is signed by a configured
//!   trust-anchor CA certificate; both certificates are valid at genTime; the messageImprint is
//!   SHA-256 with our digest; the nonce is the one we sent (at issuance only: the nonce defeats
//!   a replayed reply, and afterwards the token stands alone).
//! * [`ots`] — OpenTimestamps calendars aggregate digests into Bitcoin transactions. The proof
//!   is a `.ots` detached timestamp file (the reference format, checked against
//!   python-opentimestamps in the tests), first with pending attestations, later upgraded with a
//!   path to a Bitcoin block header attestation. Verified: the file parses strictly, its digest
//!   is ours, and the commitment chain is evaluated to every attestation; the resulting
//!   `(block height, Merkle root)` pairs are returned for comparison with Bitcoin block headers
//!   (no Bitcoin header source is built in).
//! * [`evm`] — Ethereum or Polygon: a locally signed EIP-155 transaction to our own address
//!   whose calldata is the digest, sent over JSON-RPC, final once buried under a configured
//!   number of blocks on the canonical chain (re-submitted if a reorg drops it). The proof is
//!   the transaction, its hash, block and receipt, with the confirmations seen and the cost in
//!   wei from the receipt. Verified offline: calldata is the digest, the transaction re-encodes to
//!   its hash, the signature recovers the sender for the chain id, the receipt has status 1 in
//!   that block; online additionally against the node (transaction input, sender, block, and
//!   the block hash at that height).
//! * [`optimizer`] — pure decision logic choosing the anchoring strategy (cost, latency,
//!   durability, reliability) under hard constraints; its [`optimizer::Decision`] is JSON for
//!   svc-audit's audit events.
//!
//! # Storing and re-verifying
//!
//! [`AnchorRecord`] is what svc-audit stores per anchor: checkpoint size and root, the strategy
//! that chose the anchor, the [`AnchorKind`], the proof bytes and the creation time.
//! [`AnchorRecord::verify`] re-checks it offline against the stored checkpoint note, the log's
//! public key and a [`VerifyContext`]. The hybrid strategy (RFC 3161 now, Polygon later) is two
//! records of one checkpoint with strategy `hybrid`: an RFC 3161 one at once and an EVM one
//! when the transaction is sent, whose proof is the [`evm::PendingEvm`] state
//! ([`AnchorRecord::evm_pending`]) until the transaction is final and it is replaced by the
//! [`EvmAnchor`] ([`AnchorRecord::evm`]); a pending proof does not verify
//! ([`AnchorError::EvmNotFinal`]).
//!
//! ```
//! use flk_anchor::optimizer::{choose, default_strategies, Constraints, Inputs, Objective, StrategyId};
//!
//! let decision = choose(&Inputs {
//!     strategies: default_strategies(),
//!     objective: Objective::Cost,
//!     constraints: Constraints { max_latency_secs: Some(60.0), ..Constraints::default() },
//!     batches_per_month: 30 * 24 * 60,
//! })
//! .unwrap();
//! assert_eq!(decision.chosen, StrategyId::Rfc3161);
//! let event = serde_json::to_string(&decision).unwrap(); // what svc-audit logs
//! assert!(event.contains(r#""chosen":"rfc3161""#));
//! ```
//!
//! # Async and blocking
//!
//! Network calls are `async` (reqwest). Each has a `*_blocking` variant for synchronous callers
//! (e.g. inside `spawn_blocking`): it runs the call on a private current-thread runtime in a
//! helper thread and blocks until it is done. Verification is synchronous and pure.

pub mod evm;
pub mod optimizer;
pub mod ots;
pub mod rfc3161;
#[cfg(feature = "test-support")]
pub mod test_support;

use flk_tlog::{Checkpoint, LogVerifier, open_checkpoint};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use evm::{EvmAnchor, EvmClient, EvmConfig, EvmError, PendingEvm};
pub use ots::{OtsAnchor, OtsClient, OtsError, OtsVerified};
pub use rfc3161::{Rfc3161Anchor, Rfc3161Client, Rfc3161Error, TsaTrust};

/// The anchored digest of a signed checkpoint note: SHA-256 of its exact bytes.
pub fn anchored_digest(note: &[u8]) -> [u8; 32] {
    Sha256::digest(note).into()
}

/// The kind of proof an [`AnchorRecord`] carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnchorKind {
    /// An RFC 3161 time-stamp token (DER CMS ContentInfo).
    Rfc3161,
    /// An OpenTimestamps detached timestamp file (`.ots`).
    #[serde(rename = "opentimestamps")]
    OpenTimestamps,
    /// An EVM transaction carrying the digest as calldata: the proof is the JSON of an
    /// [`EvmAnchor`] (transaction, hash, block, receipt) once final, of an
    /// [`evm::PendingEvm`] before.
    Evm,
}

/// What a stored anchor needs to be verified besides its own bytes.
#[derive(Debug, Clone, Default)]
pub struct VerifyContext {
    /// The CA certificates RFC 3161 TSA certificates must be issued by.
    pub tsa_trust: Option<TsaTrust>,
}

/// One anchor as stored by svc-audit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnchorRecord {
    /// The anchored checkpoint's tree size.
    pub checkpoint_size: u64,
    /// The anchored checkpoint's root hash, lowercase hex.
    pub root_hash: String,
    /// The name of the strategy that produced the anchor (see [`optimizer::StrategyId`]).
    pub strategy: String,
    /// The proof's kind.
    pub kind: AnchorKind,
    /// The proof bytes (base64 in JSON): for [`AnchorKind::Rfc3161`] the DER token, for
    /// [`AnchorKind::OpenTimestamps`] the `.ots` file.
    #[serde(with = "serde_b64")]
    pub proof: Vec<u8>,
    /// When the anchor was obtained, Unix seconds (the caller's clock).
    pub created_at_unix: i64,
}

/// Why a stored anchor did not verify.
#[derive(Debug, thiserror::Error)]
pub enum AnchorError {
    /// The checkpoint note does not verify under the log key.
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] flk_tlog::CheckpointError),
    /// The record's size or root is not the note's.
    #[error(
        "record names checkpoint ({record_size}, {record_root}) but the note is ({note_size}, {note_root})"
    )]
    CheckpointMismatch {
        /// Size in the record.
        record_size: u64,
        /// Root in the record.
        record_root: String,
        /// Size in the note.
        note_size: u64,
        /// Root in the note.
        note_root: String,
    },
    /// The context lacks what this kind needs.
    #[error("no trust configured for {0:?} anchors")]
    NoTrust(AnchorKind),
    /// The RFC 3161 token did not verify.
    #[error("rfc 3161: {0}")]
    Rfc3161(#[from] Rfc3161Error),
    /// The OpenTimestamps proof did not verify.
    #[error("opentimestamps: {0}")]
    Ots(#[from] OtsError),
    /// The EVM anchor did not verify.
    #[error("evm: {0}")]
    Evm(#[from] EvmError),
    /// The stored EVM proof is not an [`EvmAnchor`] JSON.
    #[error("evm proof is not an EvmAnchor: {0}")]
    EvmProof(String),
    /// The stored EVM proof is a [`evm::PendingEvm`]: the transaction is not final yet.
    #[error("evm anchor is not final yet ({confirmations} confirmations so far)")]
    EvmNotFinal {
        /// Confirmations at the last poll.
        confirmations: u64,
    },
}

/// What the external service attests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evidence {
    /// An RFC 3161 TSA's genTime, Unix seconds.
    Rfc3161 {
        /// genTime.
        gen_time_unix: i64,
    },
    /// OpenTimestamps attestations (Bitcoin ones still to be compared with block headers).
    OpenTimestamps(OtsVerified),
    /// An EVM transaction included in a block (offline checks; see [`EvmClient::verify_online`]).
    Evm {
        /// The chain id.
        chain_id: u64,
        /// The including block.
        block_number: u64,
    },
}

/// A verified anchor: the checkpoint and when the external service saw its digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedAnchor {
    /// The anchored checkpoint.
    pub checkpoint: Checkpoint,
    /// The anchored digest.
    pub digest: [u8; 32],
    /// What the service attests.
    pub evidence: Evidence,
}

impl AnchorRecord {
    /// A record for an RFC 3161 anchor of the checkpoint `checkpoint`.
    pub fn rfc3161(
        checkpoint: &Checkpoint,
        strategy: &str,
        anchor: &Rfc3161Anchor,
        created_at_unix: i64,
    ) -> AnchorRecord {
        AnchorRecord {
            checkpoint_size: checkpoint.size,
            root_hash: hex::encode(checkpoint.root_hash),
            strategy: strategy.to_owned(),
            kind: AnchorKind::Rfc3161,
            proof: anchor.token.clone(),
            created_at_unix,
        }
    }

    /// A record for an OpenTimestamps anchor (pending or upgraded) of `checkpoint`; store a
    /// new record, or replace the proof, after an upgrade.
    pub fn opentimestamps(
        checkpoint: &Checkpoint,
        strategy: &str,
        anchor: &OtsAnchor,
        created_at_unix: i64,
    ) -> AnchorRecord {
        AnchorRecord {
            checkpoint_size: checkpoint.size,
            root_hash: hex::encode(checkpoint.root_hash),
            strategy: strategy.to_owned(),
            kind: AnchorKind::OpenTimestamps,
            proof: anchor.ots.clone(),
            created_at_unix,
        }
    }

    /// A record for an EVM anchor of `checkpoint` (the proof is the anchor's JSON).
    pub fn evm(
        checkpoint: &Checkpoint,
        strategy: &str,
        anchor: &EvmAnchor,
        created_at_unix: i64,
    ) -> AnchorRecord {
        AnchorRecord {
            checkpoint_size: checkpoint.size,
            root_hash: hex::encode(checkpoint.root_hash),
            strategy: strategy.to_owned(),
            kind: AnchorKind::Evm,
            proof: serde_json::to_vec(anchor).unwrap_or_default(),
            created_at_unix,
        }
    }

    /// A record for an EVM anchor of `checkpoint` whose transaction is not final yet (the
    /// proof is the pending state's JSON; replace it with [`AnchorRecord::evm`]'s when final).
    pub fn evm_pending(
        checkpoint: &Checkpoint,
        strategy: &str,
        pending: &PendingEvm,
        created_at_unix: i64,
    ) -> AnchorRecord {
        AnchorRecord {
            checkpoint_size: checkpoint.size,
            root_hash: hex::encode(checkpoint.root_hash),
            strategy: strategy.to_owned(),
            kind: AnchorKind::Evm,
            proof: serde_json::to_vec(pending).unwrap_or_default(),
            created_at_unix,
        }
    }

    /// Verifies the record offline: `note` (the exact stored note bytes) must verify under
    /// `log` and name this record's size and root, and the proof must verify for
    /// `anchored_digest(note)` under `ctx`.
    pub fn verify(
        &self,
        note: &str,
        log: &LogVerifier,
        ctx: &VerifyContext,
    ) -> Result<VerifiedAnchor, AnchorError> {
        let checkpoint = open_checkpoint(note, log)?;
        let note_root = hex::encode(checkpoint.root_hash);
        if checkpoint.size != self.checkpoint_size || note_root != self.root_hash {
            return Err(AnchorError::CheckpointMismatch {
                record_size: self.checkpoint_size,
                record_root: self.root_hash.clone(),
                note_size: checkpoint.size,
                note_root,
            });
        }
        let digest = anchored_digest(note.as_bytes());
        let evidence = match self.kind {
            AnchorKind::Rfc3161 => {
                let trust = ctx
                    .tsa_trust
                    .as_ref()
                    .ok_or(AnchorError::NoTrust(self.kind))?;
                Evidence::Rfc3161 {
                    gen_time_unix: rfc3161::verify_token(&self.proof, &digest, trust)?
                        .gen_time
                        .unix_timestamp(),
                }
            }
            AnchorKind::Evm => {
                let anchor: EvmAnchor = match serde_json::from_slice(&self.proof) {
                    Ok(a) => a,
                    Err(e) => {
                        return Err(match serde_json::from_slice::<PendingEvm>(&self.proof) {
                            Ok(p) => AnchorError::EvmNotFinal {
                                confirmations: p.confirmations,
                            },
                            Err(_) => AnchorError::EvmProof(e.to_string()),
                        });
                    }
                };
                let block_number = anchor.verify_offline(&digest)?;
                Evidence::Evm {
                    chain_id: anchor.chain_id,
                    block_number,
                }
            }
            AnchorKind::OpenTimestamps => Evidence::OpenTimestamps(
                OtsAnchor {
                    ots: self.proof.clone(),
                }
                .verify(&digest)?,
            ),
        };
        Ok(VerifiedAnchor {
            checkpoint,
            digest,
            evidence,
        })
    }
}

/// Runs `fut` to completion on a fresh current-thread runtime in a scoped helper thread, so
/// that synchronous callers can use the async clients from any thread (even one inside a
/// runtime, which it then blocks). `Err` if the runtime cannot be built or the thread panicked.
pub(crate) fn block_on<F>(fut: F) -> Result<F::Output, String>
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map(|rt| rt.block_on(fut))
                    .map_err(|e| format!("building a runtime: {e}"))
            })
            .join()
            .unwrap_or_else(|_| Err("the blocking helper thread panicked".into()))
    })
}

/// Serde helper: bytes as standard padded base64 strings.
pub(crate) mod serde_b64 {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        STANDARD.decode(s).map_err(serde::de::Error::custom)
    }
}
