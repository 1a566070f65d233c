//! The tier latencies and prices a replay is judged by: explicit inputs (the CLI's flags),
//! never constants of the policies. Formulas in `docs/tiering.md`, "Evaluating hot-tier
//! policies".

use serde::Serialize;

/// Bytes in a GB, as the price tables count them.
pub const GB: f64 = 1e9;
/// Seconds in the month per-request costs are scaled to (30 days).
pub const MONTH_SECS: f64 = 30.0 * 86_400.0;

/// Latencies and prices of the hot and warm tiers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CostModel {
    /// Time to first byte of a hot-tier read, ms.
    pub hot_read_ms: f64,
    /// Hot-tier read throughput, MB/s (10^6 bytes).
    pub hot_mb_per_s: f64,
    /// Time to first byte of a warm-tier read, ms.
    pub warm_read_ms: f64,
    /// Warm-tier read throughput, MB/s.
    pub warm_mb_per_s: f64,
    /// Hot storage, USD per GB-month, charged on the time-averaged bytes the hot tier holds.
    pub hot_usd_per_gb_month: f64,
    /// USD per read from the warm tier (a miss, or a promotion's copy).
    pub warm_read_usd: f64,
    /// USD per GB read from the warm tier.
    pub warm_read_usd_per_gb: f64,
    /// USD per promotion on top of the warm read it makes (the copy into the hot tier).
    pub promotion_usd: f64,
    /// What one millisecond of read latency saved is worth, USD (0: only money counts in
    /// the promotion rule).
    pub usd_per_saved_ms: f64,
}

impl CostModel {
    /// Read latency in ms of `size` bytes from the hot tier (`hit`) or the warm tier.
    pub fn read_ms(&self, hit: bool, size: u64) -> f64 {
        let (first, mb_per_s) = if hit {
            (self.hot_read_ms, self.hot_mb_per_s)
        } else {
            (self.warm_read_ms, self.warm_mb_per_s)
        };
        first + size as f64 / (mb_per_s * 1e6) * 1e3
    }

    /// USD of one warm read of `size` bytes (what a miss costs).
    pub fn warm_read_cost(&self, size: u64) -> f64 {
        self.warm_read_usd + size as f64 / GB * self.warm_read_usd_per_gb
    }

    /// USD of promoting an object of `size` bytes: its warm read plus `promotion_usd`.
    pub fn promotion_cost(&self, size: u64) -> f64 {
        self.warm_read_cost(size) + self.promotion_usd
    }

    /// What a hit on an object of `size` bytes saves against a miss: the warm read and the
    /// latency difference valued at `usd_per_saved_ms`.
    pub fn hit_saving(&self, size: u64) -> f64 {
        self.warm_read_cost(size)
            + self.usd_per_saved_ms * (self.read_ms(false, size) - self.read_ms(true, size))
    }
}
