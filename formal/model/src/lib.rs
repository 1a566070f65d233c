//! FLK's replication model (`formal/crr_idempotency.tla`) in Rust, checked exhaustively.
//!
//! [`crr`] is the model: regions with a durable outcome log and a first-write-wins dedup index,
//! outcome feeds shipped to every peer with acknowledged watermarks persisted on both sides, a
//! network that loses, duplicates and reorders messages, partitions and restarts that keep only
//! durable state. Its safety invariants are stateright properties with the names the TLA+
//! specification uses (`Idempotency`, `FirstWriteWins`, `LogDurability`,
//! `WatermarkMonotonic`); [`liveness`] checks `EventualDelivery` and `EventualConvergence` on
//! the whole reachable graph, because stateright's `eventually` properties may miss violations
//! where paths join. The tests in `tests/crr.rs` state the bounds, print the states explored
//! and show that each injected bug ([`crr::Bug`]) is caught.

pub mod crr;
pub mod liveness;
