//! Integration tests of flk-outcome-log, one binary (faster to build), one module per concern.

mod common;
mod concurrency;
mod crash;
mod faults;
mod props;
mod recovery;
mod rotation;
mod roundtrip;
mod subscribe;
