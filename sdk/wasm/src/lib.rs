//! flk-sdk's signing core for JavaScript, compiled to `wasm32-unknown-unknown`: canonical
//! payload, digest, `pcs_id`, HMAC-SHA256 (digest and payload modes) and Ed25519 signatures,
//! strict verification, and the audit log's leaf hash.
//!
//! # ABI
//!
//! No wasm-bindgen (its CLI would be a download at build time): a handful of C-ABI functions
//! over two byte buffers that the module owns, driven by the hand-written glue in
//! `js/index.mjs`. The glue writes arguments into the *input* buffer
//! (`flk_input(len)` returns where), calls an operation with lengths and numbers as
//! parameters, and reads the result from the *output* buffer (`flk_output_ptr()`, length
//! returned by the operation; a negative return is an error code). A signing key and the
//! last canonical payload are kept between calls, so signing many records with one key keys
//! the HMAC once.
//!
//! | export | input | output |
//! |---|---|---|
//! | `flk_canonical(pcs_id_len, merkle_len, shard_len, epoch, d_hat, coh, r, budget)` | the three strings, concatenated | the canonical payload (also kept, with its digest) |
//! | `flk_digest()` | | the kept payload's SHA-256 (32 bytes) |
//! | `flk_pcs_id(merkle_len, shard_len, epoch)` | the two strings | 64 hex characters |
//! | `flk_set_hmac_key(len, mode)` | the secret (mode 0 digest, 1 payload) | |
//! | `flk_set_ed25519_seed()` | 32-byte seed | the 32-byte public key |
//! | `flk_set_ed25519_public()` | 32-byte public key (verify only) | |
//! | `flk_sign()` | | the signature of the kept payload |
//! | `flk_verify(sig_len)` | the signature | 1 valid, 0 invalid |
//! | `flk_leaf_hash(len)` | an audit entry | its RFC 9162 leaf hash |

// std (wasm32-unknown-unknown has it: its allocator and panic handler); flk-sdk's core below
// is no_std + alloc.
extern crate alloc;

mod state;

#[allow(unsafe_code)]
mod abi;

pub use state::{Error, State};
