//! svc-crr: cross-region replication. Ships this region's decisions to the peer regions its
//! tenants' policies name, applies what peers ship through svc-verify (re-verified, first
//! write wins), finds divergence with per-tenant Merkle trees and repairs it.

pub mod merkle;
