//! Which records matter most in the hot tier: the [`Prewarm`] trait the placement engine asks
//! when the hot tier overflows (least valuable demoted first) and, for a predictive model,
//! which records to promote ahead of reads. [`Lru`] (`prewarm = "none"`) values a record by
//! its last access and promotes nothing ahead of reads.

use crate::record::{Key, RecordMeta};

/// A hot-tier valuation.
pub trait Prewarm: Send + Sync + 'static {
    /// The name in `/metrics` and logs.
    fn name(&self) -> &'static str;
    /// How valuable keeping `rec` hot is at `now_ms`: overflow demotes the lowest first.
    fn value(&self, rec: &RecordMeta, now_ms: i64) -> f64;
    /// Records (warm or cold) worth promoting before they are read, at most `max`.
    fn candidates(&self, _records: &[(Key, RecordMeta)], _now_ms: i64, _max: usize) -> Vec<Key> {
        Vec::new()
    }
    /// Online precision and recall of the promotions made ahead of reads, once measurable.
    fn precision_recall(&self) -> Option<(f64, f64)> {
        None
    }
}

/// Least recently used first.
pub struct Lru;

impl Prewarm for Lru {
    fn name(&self) -> &'static str {
        "lru"
    }
    fn value(&self, rec: &RecordMeta, _now_ms: i64) -> f64 {
        rec.last_access_ms() as f64
    }
}
