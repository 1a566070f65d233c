//! An in-memory [`TileStore`]: the contract without I/O, for tests and as the model a new
//! backend can be compared against. Nothing survives the process.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{StoreError, TileStore, TileWrite};
use crate::tile::{TILE_WIDTH, TileKind, tile_path};

#[derive(Debug, Default)]
struct Inner {
    tiles: BTreeMap<(TileKind, u64, u16), Vec<u8>>,
    checkpoint: Option<String>,
}

/// In-memory tile store. Writes are durable immediately (there is nothing to lose).
#[derive(Debug, Default)]
pub struct MemStore {
    inner: Mutex<Inner>,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> MemStore {
        MemStore::default()
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Number of stored tile resources (hash tiles and bundles, full and partial).
    pub fn resource_count(&self) -> usize {
        self.inner().tiles.len()
    }
}

impl TileStore for MemStore {
    fn write_batch(&self, writes: &[TileWrite]) -> Result<(), StoreError> {
        let mut inner = self.inner();
        for w in writes {
            let key = (w.kind, w.index, w.width);
            match inner.tiles.get(&key) {
                Some(existing) if *existing != w.data => {
                    return Err(StoreError::Conflict {
                        path: tile_path(w.kind, w.index, w.width),
                    });
                }
                Some(_) => {}
                None => {
                    inner.tiles.insert(key, w.data.clone());
                }
            }
        }
        Ok(())
    }

    fn get(&self, kind: TileKind, index: u64, width: u16) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.inner().tiles.get(&(kind, index, width)).cloned())
    }

    fn put_checkpoint(&self, note: &str) -> Result<(), StoreError> {
        self.inner().checkpoint = Some(note.to_owned());
        Ok(())
    }

    fn latest_checkpoint(&self) -> Result<Option<String>, StoreError> {
        Ok(self.inner().checkpoint.clone())
    }

    fn remove_partials(&self, kind: TileKind, index: u64) -> Result<(), StoreError> {
        self.inner()
            .tiles
            .retain(|&(k, i, w), _| !(k == kind && i == index && w < TILE_WIDTH));
        Ok(())
    }

    fn discard_uncommitted(
        &self,
        kind: TileKind,
        index: u64,
        committed_width: u16,
    ) -> Result<(), StoreError> {
        self.inner()
            .tiles
            .retain(|&(k, i, w), _| !(k == kind && i == index && w > committed_width));
        Ok(())
    }
}
