//! `flk-cachesim`: the hot tier's replacement policies judged on access traces, and the
//! predictive pre-warming models svc-tiering ranks records with. Pure and synchronous: no I/O
//! beyond the `Read`/`Write` the trace functions are given, no clocks in the models.
//!
//! * [`trace`]: the [`trace::Request`] every policy replays; csv and libCacheSim
//!   oracle-general readers and writers.
//! * [`generator`]: seeded synthetic traces with diurnal, bursty and drifting tenants.
//! * [`policy`]: [`policy::HotTier`] and its implementations: `lru`, `sieve`, `w_tinylfu`
//!   (moka) and the model-driven [`policy::Predictive`].
//! * [`predict`]: features, the models (`predictive_ses`, `predictive_logreg`) and the
//!   promotion rule.
//! * [`cost`] and [`eval`]: the replay and its figures (hit ratios, p95 read latency, monthly
//!   cost), as `flk tiering eval` reports them.

pub mod cost;
pub mod eval;
pub mod generator;
pub mod policy;
pub mod predict;
pub mod trace;

/// A hash map with a fixed hasher, so iteration order (and so every replay) is the same from
/// run to run.
pub type DetMap<K, V> =
    std::collections::HashMap<K, V, std::hash::BuildHasherDefault<std::hash::DefaultHasher>>;
