//! The hot tier's replacement policies, one file each, all behind [`HotTier`]: a byte-weighted
//! cache of objects (id and size; no payloads) that the replay drives request by request.

mod lru;
mod predictive;
mod sieve;
mod tinylfu;

pub use self::lru::Lru;
pub use self::predictive::{CycleOutcome, Predictive, PredictiveConfig};
pub use self::sieve::Sieve;
pub use self::tinylfu::WTinyLfu;

/// A byte-weighted hot tier. Sizes are bytes; the tier never holds more than its capacity.
pub trait HotTier {
    /// The policy's name in reports (`lru`, `sieve`, `w_tinylfu`).
    fn name(&self) -> &str;
    /// Bytes the tier may hold.
    fn capacity(&self) -> u64;
    /// Looks `object` up and records the access: a hit if the tier holds it with exactly `size`
    /// bytes (a copy of another size is stale, so a miss).
    fn get(&mut self, object: u64, size: u64) -> bool;
    /// Admits `object` (replacing a copy of another size), evicting by the policy until it
    /// fits. An object larger than the capacity is not admitted; a policy with an admission
    /// filter (W-TinyLFU) may also refuse it.
    fn insert(&mut self, object: u64, size: u64);
    /// Whether the tier holds `object` (any size), without recording an access.
    fn contains(&self, object: u64) -> bool;
    /// Bytes held now.
    fn used_bytes(&self) -> u64;
}

/// The baseline policies by name, as `flk tiering eval` reports them.
pub const BASELINES: [&str; 3] = ["lru", "sieve", "w_tinylfu"];

/// A baseline policy by name ([`BASELINES`]), or `None` for an unknown name.
pub fn baseline(name: &str, capacity: u64) -> Option<Box<dyn HotTier>> {
    match name {
        "lru" => Some(Box::new(Lru::new(capacity))),
        "sieve" => Some(Box::new(Sieve::new(capacity))),
        "w_tinylfu" => Some(Box::new(WTinyLfu::new(capacity))),
        _ => None,
    }
}
