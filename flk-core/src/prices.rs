//! The storage price table, in one place: svc-kpi charges each decision's bytes with it
//! (cost per trusted task) and svc-tiering prices every move with it. Both services read it
//! under `[prices]` with these keys; `flk up` gives svc-tiering svc-kpi's table unless
//! `[tiering.prices]` is set, so a stack prices storage once.

use serde::{Deserialize, Serialize};

/// USD per GB-month (GB = 10^9 bytes) in each tier.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoragePrices {
    pub storage_hot_usd_per_gb_month: f64,
    pub storage_warm_usd_per_gb_month: f64,
    pub storage_cold_usd_per_gb_month: f64,
}

impl Default for StoragePrices {
    /// Object-storage list prices of the large clouds (standard, infrequent-access and
    /// archive-class storage), the figures svc-kpi has used since it was built.
    fn default() -> Self {
        StoragePrices {
            storage_hot_usd_per_gb_month: 0.023,
            storage_warm_usd_per_gb_month: 0.0125,
            storage_cold_usd_per_gb_month: 0.004,
        }
    }
}

impl StoragePrices {
    /// Hot, warm and cold, in that order.
    pub fn by_tier(&self) -> [f64; 3] {
        [
            self.storage_hot_usd_per_gb_month,
            self.storage_warm_usd_per_gb_month,
            self.storage_cold_usd_per_gb_month,
        ]
    }

    /// Whether every price is finite and non-negative.
    pub fn is_valid(&self) -> bool {
        self.by_tier().iter().all(|p| p.is_finite() && *p >= 0.0)
    }
}
