//! W-TinyLFU through the `moka` crate (a window LRU, a segmented main LRU and a TinyLFU
//! admission filter on a count-min sketch), weighted by bytes.
//!
//! The replay must be deterministic, so: the cache hashes with a fixed-key hasher (moka's
//! frequency sketch uses the cache's hasher), and its pending maintenance (admission,
//! eviction, the recorded reads) runs right after every write, as `run_pending_tasks`.

use std::hash::{BuildHasherDefault, DefaultHasher};

use super::HotTier;

type Cache = moka::sync::Cache<u64, u64, BuildHasherDefault<DefaultHasher>>;

/// Byte-weighted W-TinyLFU (moka).
pub struct WTinyLfu {
    capacity: u64,
    cache: Cache,
}

impl WTinyLfu {
    pub fn new(capacity: u64) -> WTinyLfu {
        let cache = moka::sync::Cache::builder()
            .max_capacity(capacity)
            // moka weighs with u32: an object over 4 GiB counts as 4 GiB.
            .weigher(|_: &u64, size: &u64| u32::try_from(*size).unwrap_or(u32::MAX))
            .build_with_hasher(BuildHasherDefault::<DefaultHasher>::default());
        WTinyLfu { capacity, cache }
    }
}

impl HotTier for WTinyLfu {
    fn name(&self) -> &str {
        "w_tinylfu"
    }

    fn capacity(&self) -> u64 {
        self.capacity
    }

    fn get(&mut self, object: u64, size: u64) -> bool {
        self.cache.get(&object) == Some(size)
    }

    fn insert(&mut self, object: u64, size: u64) {
        if size > self.capacity {
            self.cache.invalidate(&object);
        } else {
            self.cache.insert(object, size);
        }
        self.cache.run_pending_tasks();
    }

    fn contains(&self, object: u64) -> bool {
        self.cache.contains_key(&object)
    }

    fn used_bytes(&self) -> u64 {
        self.cache.weighted_size()
    }
}
