//! Integration tests of flk-tlog, one binary (see each module's docs).

mod checkpoint;
mod common;
mod conformance;
mod crash;
mod entry;
mod proofs;
mod props;
mod python;
mod tamper;
mod tiles;
