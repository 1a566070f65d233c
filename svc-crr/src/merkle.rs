//! Per-tenant Merkle trees of decided keys (placeholder until written).
