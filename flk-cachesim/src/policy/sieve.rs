//! SIEVE (Zhang et al., NSDI '24), byte-weighted: a FIFO queue with one "visited" bit per
//! object and a hand that moves from the tail (oldest) towards the head (newest). A hit only
//! sets the bit; to make room, the hand clears set bits as it passes and evicts the first
//! object whose bit is clear, then stays where it stopped for the next eviction.
//!
//! Written here because the `sieve-cache` crate bounds a cache by entry count, and the hot
//! tier is bounded by bytes. The queue is a doubly linked list in a slab (`Vec` + free list).

use std::collections::HashMap;

use super::HotTier;

const NIL: u32 = u32::MAX;

struct Node {
    object: u64,
    size: u64,
    visited: bool,
    /// Towards the head (newer).
    newer: u32,
    /// Towards the tail (older).
    older: u32,
}

/// Byte-weighted SIEVE.
pub struct Sieve {
    capacity: u64,
    used: u64,
    nodes: Vec<Node>,
    free: Vec<u32>,
    index: HashMap<u64, u32>,
    head: u32,
    tail: u32,
    hand: u32,
}

impl Sieve {
    pub fn new(capacity: u64) -> Sieve {
        Sieve {
            capacity,
            used: 0,
            nodes: Vec::new(),
            free: Vec::new(),
            index: HashMap::new(),
            head: NIL,
            tail: NIL,
            hand: NIL,
        }
    }

    fn unlink(&mut self, i: u32) {
        let (newer, older) = {
            let n = &self.nodes[i as usize];
            (n.newer, n.older)
        };
        if newer == NIL {
            self.head = older;
        } else {
            self.nodes[newer as usize].older = older;
        }
        if older == NIL {
            self.tail = newer;
        } else {
            self.nodes[older as usize].newer = newer;
        }
        if self.hand == i {
            self.hand = newer;
        }
        self.used -= self.nodes[i as usize].size;
        self.index.remove(&self.nodes[i as usize].object);
        self.free.push(i);
    }

    fn push_head(&mut self, object: u64, size: u64) {
        let node = Node {
            object,
            size,
            visited: false,
            newer: NIL,
            older: self.head,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.nodes[i as usize] = node;
                i
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        };
        if self.head != NIL {
            self.nodes[self.head as usize].newer = i;
        }
        self.head = i;
        if self.tail == NIL {
            self.tail = i;
        }
        self.index.insert(object, i);
        self.used += size;
    }

    fn evict_one(&mut self) {
        let mut i = if self.hand == NIL {
            self.tail
        } else {
            self.hand
        };
        while i != NIL && self.nodes[i as usize].visited {
            self.nodes[i as usize].visited = false;
            i = self.nodes[i as usize].newer;
            if i == NIL {
                i = self.tail;
            }
        }
        if i != NIL {
            // unlink moves the hand to the next newer object when it points at `i`.
            self.hand = i;
            self.unlink(i);
        }
    }
}

impl HotTier for Sieve {
    fn name(&self) -> &str {
        "sieve"
    }

    fn capacity(&self) -> u64 {
        self.capacity
    }

    fn get(&mut self, object: u64, size: u64) -> bool {
        match self.index.get(&object) {
            Some(&i) if self.nodes[i as usize].size == size => {
                self.nodes[i as usize].visited = true;
                true
            }
            _ => false,
        }
    }

    fn insert(&mut self, object: u64, size: u64) {
        if let Some(&i) = self.index.get(&object) {
            self.unlink(i);
        }
        if size > self.capacity {
            return;
        }
        while self.used + size > self.capacity && self.head != NIL {
            self.evict_one();
        }
        self.push_head(object, size);
    }

    fn contains(&self, object: u64) -> bool {
        self.index.contains_key(&object)
    }

    fn used_bytes(&self) -> u64 {
        self.used
    }
}
