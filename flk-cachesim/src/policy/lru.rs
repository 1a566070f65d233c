//! Least-recently-used, byte-weighted: the `lru` crate's list (unbounded by count) with the
//! bytes accounted here, evicting from the least recently used end until the object fits.

use super::HotTier;

/// Byte-weighted LRU.
pub struct Lru {
    capacity: u64,
    used: u64,
    /// object -> size in bytes, most recently used first.
    list: lru::LruCache<u64, u64>,
}

impl Lru {
    pub fn new(capacity: u64) -> Lru {
        Lru {
            capacity,
            used: 0,
            list: lru::LruCache::unbounded(),
        }
    }
}

impl HotTier for Lru {
    fn name(&self) -> &str {
        "lru"
    }

    fn capacity(&self) -> u64 {
        self.capacity
    }

    fn get(&mut self, object: u64, size: u64) -> bool {
        self.list.get(&object) == Some(&size)
    }

    fn insert(&mut self, object: u64, size: u64) {
        if let Some(old) = self.list.pop(&object) {
            self.used -= old;
        }
        if size > self.capacity {
            return;
        }
        while self.used + size > self.capacity {
            match self.list.pop_lru() {
                Some((_, s)) => self.used -= s,
                None => break,
            }
        }
        self.list.put(object, size);
        self.used += size;
    }

    fn contains(&self, object: u64) -> bool {
        self.list.contains(&object)
    }

    fn used_bytes(&self) -> u64 {
        self.used
    }
}
