//! The log's in-memory view of its stored subtree hashes: the right edge of every tile level,
//! and a bounded cache of full tiles read from the store.
//!
//! Every complete aligned subtree hash of the tree lives in exactly one tile: the node of
//! height `h = 8·l + r` (`r < 8`) and index `k` is sub-level `r`, entry `k mod 2^(8-r)` of tile
//! `k >> (8-r)` at level `l` (see [`TileHashes`]). Tiles left of a level's edge are full and
//! immutable, so they can be cached and evicted freely; the edge tile of each level (possibly
//! empty) is kept in memory and grows as leaves are appended.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use crate::error::Error;
use crate::hash::Hash;
use crate::proof::NodeSource;
use crate::store::TileStore;
use crate::tile::{TILE_HEIGHT, TileHashes, TileKind, tile_hashes};

/// Level of the tile holding height `h`'s nodes, and the sub-level inside it.
fn locate(height: u8) -> (u8, u8) {
    (height / TILE_HEIGHT, height % TILE_HEIGHT)
}

/// Number of row hashes at tile level `level` in a tree of `size` leaves.
pub(crate) fn row_len(size: u64, level: u8) -> u64 {
    size.checked_shr(u32::from(level) * 8).unwrap_or(0)
}

/// The right edge of the tree: for each tile level, the partial (rightmost, not yet full)
/// tile. `edges[l]` has width `row_len(size, l) % 256` and index `row_len(size, l) / 256`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Edge {
    pub(crate) size: u64,
    pub(crate) tiles: Vec<TileHashes>,
}

/// A full tile completed by [`Edge::push_leaf`].
pub(crate) struct Completed {
    pub(crate) level: u8,
    pub(crate) index: u64,
    pub(crate) tile: TileHashes,
}

impl Edge {
    /// Appends a leaf hash, moving every tile it fills into `completed`.
    pub(crate) fn push_leaf(&mut self, leaf: Hash, completed: &mut Vec<Completed>) {
        let new_size = self.size + 1;
        let mut h = leaf;
        let mut level = 0u8;
        loop {
            if self.tiles.len() == usize::from(level) {
                self.tiles.push(TileHashes::new());
            }
            let tile = &mut self.tiles[usize::from(level)];
            match tile.push(h) {
                None => break,
                Some(root) => {
                    // The row at this level now ends exactly at the filled tile's end.
                    completed.push(Completed {
                        level,
                        index: row_len(new_size, level) / 256 - 1,
                        tile: std::mem::take(tile),
                    });
                    h = root;
                    level += 1;
                }
            }
        }
        self.size = new_size;
    }

    /// The edge tile index at `level`.
    pub(crate) fn index(&self, level: u8) -> u64 {
        row_len(self.size, level) / 256
    }
}

/// A bounded FIFO cache of full tiles, expanded.
#[derive(Debug)]
pub(crate) struct TileCache {
    tiles: HashMap<(u8, u64), Arc<TileHashes>>,
    order: VecDeque<(u8, u64)>,
    capacity: usize,
}

impl TileCache {
    pub(crate) fn new(capacity: usize) -> TileCache {
        TileCache {
            tiles: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    pub(crate) fn get(&self, level: u8, index: u64) -> Option<Arc<TileHashes>> {
        self.tiles.get(&(level, index)).cloned()
    }

    pub(crate) fn insert(&mut self, level: u8, index: u64, tile: Arc<TileHashes>) {
        if self.tiles.insert((level, index), tile).is_none() {
            self.order.push_back((level, index));
            while self.order.len() > self.capacity {
                if let Some(old) = self.order.pop_front() {
                    self.tiles.remove(&old);
                }
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.tiles.len()
    }
}

/// Loads full tile `(level, index)` from the store and expands it.
pub(crate) fn load_full_tile<S: TileStore + ?Sized>(
    store: &S,
    level: u8,
    index: u64,
) -> Result<TileHashes, Error> {
    let bytes = store
        .get(TileKind::Hash(level), index, 256)?
        .ok_or_else(|| {
            Error::Corrupt(format!(
                "missing full tile {}",
                store.locate(TileKind::Hash(level), index, 256)
            ))
        })?;
    let row = tile_hashes(&bytes)
        .filter(|r| r.len() == 256)
        .ok_or_else(|| {
            Error::Corrupt(format!(
                "tile {} is {} bytes, not 8192",
                store.locate(TileKind::Hash(level), index, 256),
                bytes.len()
            ))
        })?;
    Ok(TileHashes::from_row(&row))
}

/// A [`NodeSource`] over the edge, the cache and (on a miss) the store.
pub(crate) struct Nodes<'a, S: ?Sized> {
    pub(crate) edge: &'a Edge,
    pub(crate) cache: &'a Mutex<TileCache>,
    pub(crate) store: &'a S,
}

impl<S: TileStore + ?Sized> NodeSource for Nodes<'_, S> {
    fn node(&self, height: u8, index: u64) -> Result<Hash, Error> {
        let (level, r) = locate(height);
        let shift = TILE_HEIGHT - r;
        let tile_index = index >> shift;
        let within = index & ((1u64 << shift) - 1);
        let edge_index = self.edge.index(level);
        let missing = || {
            Error::Corrupt(format!(
                "subtree of height {height} at index {index} is not complete in the tree"
            ))
        };
        if tile_index == edge_index {
            return self
                .edge
                .tiles
                .get(usize::from(level))
                .and_then(|t| t.node(r, within))
                .ok_or_else(missing);
        }
        if tile_index > edge_index {
            return Err(missing());
        }
        let cached = lock(self.cache).get(level, tile_index);
        let tile = match cached {
            Some(t) => t,
            None => {
                let t = Arc::new(load_full_tile(self.store, level, tile_index)?);
                lock(self.cache).insert(level, tile_index, t.clone());
                t
            }
        };
        tile.node(r, within).ok_or_else(missing)
    }
}

/// An edge-only [`NodeSource`]: enough for the root of the edge's own size, whose binary
/// decomposition only uses nodes inside the edge tiles.
pub(crate) struct EdgeNodes<'a>(pub(crate) &'a Edge);

impl NodeSource for EdgeNodes<'_> {
    fn node(&self, height: u8, index: u64) -> Result<Hash, Error> {
        let (level, r) = locate(height);
        let shift = TILE_HEIGHT - r;
        let missing = || {
            Error::Corrupt(format!(
                "subtree of height {height} at index {index} is not on the right edge"
            ))
        };
        if index >> shift != self.0.index(level) {
            return Err(missing());
        }
        self.0
            .tiles
            .get(usize::from(level))
            .and_then(|t| t.node(r, index & ((1u64 << shift) - 1)))
            .ok_or_else(missing)
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The cache holds only immutable, re-loadable tiles: a poisoned lock is still consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}
