//! `flk-tlog`: the storage-and-proof core of svc-audit, a tamper-evident transparency log of
//! verification decisions.
//!
//! The log is an RFC 9162 Merkle tree (SHA-256, [`hash`]) stored in the C2SP tlog-tiles layout
//! ([`tile`], [`store`]) with C2SP checkpoints signed as C2SP signed notes with Ed25519
//! ([`checkpoint`], [`note`]). It is a plain synchronous library: svc-audit calls it from a
//! blocking thread.
//!
//! * [`Log`] appends batches of entries, writing full and partial hash tiles and entry bundles
//!   before the checkpoint that covers them, and serves entries, roots and inclusion and
//!   consistency proofs from stored subtree hashes ([`proof`]).
//! * [`TileStore`] is the append-only storage contract; [`FsStore`] is the embedded on-disk
//!   backend (a directory servable as static tlog-tiles files), [`MemStore`] an in-memory one.
//! * [`verify_log`] re-derives a whole stored log from its entries and names the first altered
//!   entry or tile; [`verify_inclusion_bundle`] checks one entry's proof against a signed
//!   checkpoint, offline.
//! * [`AuditEntry`] is the decision record svc-audit logs, with a documented canonical byte
//!   encoding ([`entry`]).
//!
//! # Invariants
//!
//! * **WriteOnce** — a stored tile or bundle is never replaced; a second write must carry the
//!   same bytes ([`TileStore`]).
//! * **CheckpointCovered** — every resource a published checkpoint needs is durable before the
//!   checkpoint is ([`Log::append_batch`]).
//! * **RecoverToCheckpoint** — after a crash the log is exactly its latest checkpoint; resources
//!   beyond it are discarded before the next write ([`log`] module docs).
//!
//! ```
//! use flk_tlog::{Log, LogSigner, MemStore, verify_inclusion_bundle};
//!
//! let signer = LogSigner::generate("audit.example/log").unwrap();
//! let mut log = Log::open(MemStore::new(), signer.clone(), "audit.example/log").unwrap();
//! let (first, size) = log.append_batch(&[b"decision 0".to_vec(), b"decision 1".to_vec()]).unwrap();
//! assert_eq!((first, size), (0, 2));
//! let proof = log.inclusion_proof(1, size).unwrap();
//! let cp = verify_inclusion_bundle(
//!     b"decision 1", 1, size, &proof, log.checkpoint_note(), &signer.verifier(),
//! ).unwrap();
//! assert_eq!(cp.size, 2);
//! ```

pub mod checkpoint;
pub mod entry;
pub mod error;
pub mod hash;
pub mod log;
pub mod note;
pub mod proof;
pub mod store;
pub mod tile;
mod tree;
pub mod verify;

pub use checkpoint::{Checkpoint, CheckpointError, open_checkpoint};
pub use entry::{
    AuditEntry, AuditOutcome, EntryError, EventEntry, EventKind, LogEntry, MAX_ENTRY_SIZE,
};
pub use error::Error;
pub use hash::{Hash, empty_root, leaf_hash, node_hash};
pub use log::{Log, LogOptions, MAX_BATCH_ENTRIES};
pub use note::{LogSigner, LogVerifier, NoteError};
pub use proof::{ProofError, verify_consistency, verify_inclusion};
#[cfg(feature = "postgres")]
pub use store::PgStore;
pub use store::{FsStore, MemStore, StoreError, SyncMode, TileStore, TileWrite};
pub use tile::TileKind;
pub use verify::{VerifyError, VerifyOptions, VerifyReport, verify_inclusion_bundle, verify_log};
