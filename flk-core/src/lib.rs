//! FLK's pure domain: the PCS record and its strict parser, canonical signing, tenant keys,
//! the verification policy and the verification rules. No I/O, no async, no clocks: callers
//! pass `now` where time matters.
//!
//! The contract is `PROTOCOL.md` (sections 1-3); the shared golden vectors are reproduced by
//! `tests/golden.rs`.

pub mod admission;
pub mod canon;
pub mod keys;
pub mod outcome;
pub mod pcs;
pub mod policy;
pub mod prices;
pub mod slo;
pub mod verify;

pub use canon::{Canonical, SignedFields, compute_pcs_id, round9};
pub use keys::{
    HmacMode, KeyError, KeyMaterial, KeySet, SignatureError, SigningMaterial, TenantKey,
};
pub use outcome::OutcomeRecord;
pub use pcs::{FaultTolerance, ParseError, ParseErrorKind, Pcs, PcsFields, Regime, parse_pcs};
pub use policy::{Policy, PolicyError};
pub use verify::{Outcome, ReasonCode, Verdict, verify};

/// Canonical payload and digest of a parsed PCS.
pub fn canonicalize(pcs: &Pcs) -> Canonical {
    Canonical::of(&SignedFields::from(pcs))
}
