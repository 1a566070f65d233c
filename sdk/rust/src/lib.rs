//! FLK agent SDK: builds Proof-of-Computation Summaries (PCS) from raw data, signs them with
//! the canonical bytes of PROTOCOL.md section 2, delivers them to FLK at least once, and
//! verifies the audit log's proofs offline.
//!
//! # Layers
//!
//! * The **core** (`no_std` + `alloc`, always built): [`canon`] (canonical payload, `round9`,
//!   Python-`repr` floats), [`sign`] (HMAC-SHA256 in `digest` and `payload` modes, Ed25519,
//!   strict verification), [`pcs`] (the record and its JSON), [`audit`] (RFC 9162 inclusion
//!   proofs and C2SP signed checkpoints). `cargo build -p flk-sdk --no-default-features
//!   --target wasm32-unknown-unknown` builds exactly this; `sdk/wasm` exports it.
//! * `construct` (feature `construct`, needs `std`): N_j, Theil-Sen `D_hat`, `coh_star` /
//!   `v_star`, `r` (real zlib), the Merkle root and `pcs_id`, as the field's reference agent
//!   computes them (`construct::build_pcs`).
//! * `client` (feature `client`): gRPC (unary and streaming) and REST submission with
//!   exponential backoff and full jitter honouring `Retry-After`, reads with the tenant's API
//!   token, and the fsync'd `client::Outbox`.
//!
//! ```
//! use flk_sdk::pcs::Pcs;
//! use flk_sdk::sign::{HmacMode, SigningKey};
//!
//! let mut pcs = Pcs::example();
//! let key = SigningKey::hmac(b"testsecret", HmacMode::Digest).unwrap();
//! pcs.sign(&key);
//! assert!(pcs.sig.is_some());
//! ```

// no_std unless `std` is on (then the std prelude is there for the generated gRPC code too).
#![cfg_attr(not(feature = "std"), no_std)]

extern crate alloc;

pub mod audit;
pub mod canon;
pub mod hex;
pub mod pcs;
pub mod sign;

#[cfg(feature = "construct")]
pub mod construct;

#[cfg(feature = "client")]
pub mod client;

#[cfg(feature = "std")]
pub mod json;

pub use canon::{Canonical, SignedFields};
pub use pcs::Pcs;
pub use sign::{HmacMode, SigningKey, VerifyingKey};
