//! The log: appends batches of entries, keeps the stored subtree hashes, publishes signed
//! checkpoints and serves proofs.
//!
//! # Append protocol (crash safety)
//!
//! [`Log::append_batch`] integrates a batch in memory (on a copy of the right edge), then:
//!
//! 1. writes every new full tile, the new partial tile of each level whose row grew, and the
//!    entry bundles, in one durable [`TileStore::write_batch`];
//! 2. signs and durably stores the checkpoint of the new size (`publish_checkpoint`);
//! 3. only then adopts the new edge in memory, and deletes the partial versions of tiles that
//!    became full (allowed by tlog-tiles once the full tile is available).
//!
//! So a published checkpoint only ever refers to durable tiles and bundles (**CheckpointCovered**),
//! and the entries of a batch whose checkpoint was not published are not part of the log.
//!
//! # Recovery
//!
//! [`Log::open`] takes the size from the latest checkpoint (verified with the signer's own
//! key) and discards, before anything else is written, every resource beyond it that a crashed
//! batch may have left: full tiles and bundles at or right of each level's edge and partials
//! wider than the committed width, within the reach of one batch of at most
//! [`MAX_BATCH_ENTRIES`]. This does not break write-once: write-once protects *committed* data,
//! and no checkpoint ever referred to these resources — no client can have verified anything
//! against them. Deleting them matters because a tile path names only a position and width, not
//! the content: the next batch may hold different entries (the crashed batch was never
//! acknowledged) and must be able to write the same paths. Since every open (and every failed
//! append) cleans this window before the next write, uncommitted resources never extend beyond
//! one batch past the checkpoint. After cleaning, `open` reloads the edge tiles and the partial
//! bundle of the checkpoint's size and checks that they hash to the checkpoint's root.

use std::sync::{Arc, Mutex};

use crate::checkpoint::{Checkpoint, open_checkpoint};
use crate::error::Error;
use crate::hash::{Hash, leaf_hash};
use crate::note::LogSigner;
use crate::proof::{self, NodeSource};
use crate::store::{TileStore, TileWrite};
use crate::tile::{TILE_WIDTH, TileHashes, TileKind, decode_bundle, encode_bundle, tile_hashes};
use crate::tree::{Completed, Edge, EdgeNodes, Nodes, TileCache, lock, row_len};

/// The most entries one [`Log::append_batch`] takes; recovery relies on this bound.
pub const MAX_BATCH_ENTRIES: usize = 65_536;

/// Tuning of a [`Log`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogOptions {
    /// Full tiles kept in memory (each ~16 KiB expanded). The default, 8,192, holds every
    /// tile of a 2-million-entry log; a miss costs one tile read and 255 hashes.
    pub cache_tiles: usize,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions { cache_tiles: 8192 }
    }
}

/// A transparency log over a [`TileStore`]. Single writer: `append_batch` takes `&mut self`;
/// reads (`entry`, proofs, roots) take `&self` and may run concurrently.
pub struct Log<S: TileStore> {
    store: S,
    signer: LogSigner,
    edge: Edge,
    /// Entries of the partial level-0 tile (its bundle), `edge.size % 256` of them.
    edge_entries: Vec<Vec<u8>>,
    cache: Mutex<TileCache>,
    checkpoint: Checkpoint,
    note: String,
    /// Set when an append failed after writing: the store may hold uncommitted resources and
    /// the next append must first reload from the store.
    needs_recovery: bool,
}

impl<S: TileStore> std::fmt::Debug for Log<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("origin", &self.checkpoint.origin)
            .field("size", &self.edge.size)
            .field("signer", &self.signer)
            .finish_non_exhaustive()
    }
}

/// Loaded, verified state of the store at its latest checkpoint.
struct State {
    edge: Edge,
    edge_entries: Vec<Vec<u8>>,
    checkpoint: Checkpoint,
    note: Option<String>,
}

impl<S: TileStore> Log<S> {
    /// Opens the log in `store` (creating it if empty) with default options. See the module
    /// docs for recovery.
    pub fn open(store: S, signer: LogSigner, origin: &str) -> Result<Log<S>, Error> {
        Log::open_with(store, signer, origin, LogOptions::default())
    }

    /// Opens the log with explicit options.
    pub fn open_with(
        store: S,
        signer: LogSigner,
        origin: &str,
        options: LogOptions,
    ) -> Result<Log<S>, Error> {
        let state = load(&store, &signer, origin)?;
        let mut log = Log {
            store,
            signer,
            edge: state.edge,
            edge_entries: state.edge_entries,
            cache: Mutex::new(TileCache::new(options.cache_tiles)),
            checkpoint: state.checkpoint,
            note: String::new(),
            needs_recovery: false,
        };
        match state.note {
            Some(note) => log.note = note,
            // A new log publishes the empty tree's checkpoint at once.
            None => log.publish_checkpoint(log.checkpoint.clone())?,
        }
        Ok(log)
    }

    /// Appends `entries` (each at most 65,535 bytes, at most [`MAX_BATCH_ENTRIES`] of them),
    /// writes tiles and bundles, publishes the new checkpoint, and returns
    /// `(index of the first entry, new size)`. An empty batch changes nothing.
    ///
    /// On error nothing is committed: the log stays at its previous checkpoint (or, if the
    /// failure hit after the checkpoint became durable, at the new one) and the next call first
    /// reloads from the store.
    pub fn append_batch<E: AsRef<[u8]>>(&mut self, entries: &[E]) -> Result<(u64, u64), Error> {
        if entries.len() > MAX_BATCH_ENTRIES {
            return Err(Error::BatchTooLarge {
                len: entries.len(),
                max: MAX_BATCH_ENTRIES,
            });
        }
        if let Some(position) = entries.iter().position(|e| e.as_ref().len() > 65_535) {
            return Err(Error::EntryTooLarge {
                position,
                len: entries[position].as_ref().len(),
            });
        }
        if self.needs_recovery {
            self.reload()?;
        }
        let first = self.edge.size;
        if entries.is_empty() {
            return Ok((first, first));
        }
        let mut edge = self.edge.clone();
        let mut completed = Vec::new();
        for e in entries {
            edge.push_leaf(leaf_hash(e.as_ref()), &mut completed);
        }
        let (writes, edge_entries) = self.batch_writes(entries, &edge, &completed)?;
        let root = proof::tree_root(&EdgeNodes(&edge), edge.size)?;
        let checkpoint = Checkpoint {
            origin: self.checkpoint.origin.clone(),
            size: edge.size,
            root_hash: root,
        };
        // From the first write on, a failure leaves the store ahead of this instance.
        self.needs_recovery = true;
        self.store.write_batch(&writes)?;
        self.publish_checkpoint(checkpoint)?;
        self.needs_recovery = false;

        self.edge = edge;
        self.edge_entries = edge_entries;
        let mut cache = lock(&self.cache);
        for c in completed {
            cache.insert(c.level, c.index, Arc::new(c.tile));
        }
        drop(cache);
        self.remove_superseded_partials(&writes);
        Ok((first, self.edge.size))
    }

    /// The resources a batch writes, and the entries of the new partial bundle.
    fn batch_writes<E: AsRef<[u8]>>(
        &self,
        entries: &[E],
        edge: &Edge,
        completed: &[Completed],
    ) -> Result<(Vec<TileWrite>, Vec<Vec<u8>>), Error> {
        let old = self.edge.size;
        let mut writes: Vec<TileWrite> = completed
            .iter()
            .map(|c| TileWrite {
                kind: TileKind::Hash(c.level),
                index: c.index,
                width: TILE_WIDTH,
                data: c.tile.row_bytes(),
            })
            .collect();
        for (level, tile) in edge.tiles.iter().enumerate() {
            let level = level as u8;
            if row_len(edge.size, level) != row_len(old, level) && tile.width() > 0 {
                writes.push(TileWrite {
                    kind: TileKind::Hash(level),
                    index: edge.index(level),
                    width: tile.width(),
                    data: tile.row_bytes(),
                });
            }
        }
        // Bundles: the old partial bundle's entries followed by the batch, cut at tile borders.
        let pending: Vec<&[u8]> = self
            .edge_entries
            .iter()
            .map(Vec::as_slice)
            .chain(entries.iter().map(AsRef::as_ref))
            .collect();
        let first_tile = old / 256;
        let mut new_edge_entries = Vec::new();
        for (i, chunk) in pending.chunks(256).enumerate() {
            // Entry sizes were checked by `append_batch`; the old edge entries by `load`.
            let data = encode_bundle(chunk.iter().copied()).ok_or(Error::EntryTooLarge {
                position: 0,
                len: chunk.iter().map(|e| e.len()).max().unwrap_or(0),
            })?;
            writes.push(TileWrite {
                kind: TileKind::Entries,
                index: first_tile + i as u64,
                width: chunk.len() as u16,
                data,
            });
            if chunk.len() < 256 {
                new_edge_entries = chunk.iter().map(|e| e.to_vec()).collect();
            }
        }
        Ok((writes, new_edge_entries))
    }

    /// Signs `checkpoint` and stores it durably as the latest.
    fn publish_checkpoint(&mut self, checkpoint: Checkpoint) -> Result<(), Error> {
        let note = self.signer.sign(&checkpoint)?;
        self.store.put_checkpoint(&note)?;
        self.checkpoint = checkpoint;
        self.note = note;
        Ok(())
    }

    /// Best-effort removal of partial versions superseded by full tiles written in this batch.
    fn remove_superseded_partials(&self, writes: &[TileWrite]) {
        for w in writes.iter().filter(|w| w.width == TILE_WIDTH) {
            if let Err(e) = self.store.remove_partials(w.kind, w.index) {
                // Leftover partials are harmless (the spec allows keeping them); retrying
                // would only repeat the failure.
                tracing::warn!(error = %e, path = %self.store.locate(w.kind, w.index, w.width), "could not remove superseded partial tiles");
            }
        }
    }

    /// Re-reads the store's latest state (after a failed append).
    fn reload(&mut self) -> Result<(), Error> {
        let state = load(&self.store, &self.signer, &self.checkpoint.origin)?;
        self.edge = state.edge;
        self.edge_entries = state.edge_entries;
        self.checkpoint = state.checkpoint;
        if let Some(note) = state.note {
            self.note = note;
        }
        self.needs_recovery = false;
        Ok(())
    }

    fn nodes(&self) -> Nodes<'_, S> {
        Nodes {
            edge: &self.edge,
            cache: &self.cache,
            store: &self.store,
        }
    }

    fn check_size(&self, size: u64) -> Result<(), Error> {
        if size > self.edge.size {
            return Err(Error::BeyondSize {
                requested: size,
                size: self.edge.size,
            });
        }
        Ok(())
    }

    /// Number of entries (the size of the latest checkpoint).
    pub fn size(&self) -> u64 {
        self.edge.size
    }

    /// The latest published checkpoint.
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    /// The latest published checkpoint as its signed note.
    pub fn checkpoint_note(&self) -> &str {
        &self.note
    }

    /// The log's store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Number of full tiles currently cached in memory.
    pub fn cached_tiles(&self) -> usize {
        lock(&self.cache).len()
    }

    /// The root hash of the tree of the first `size` entries, from stored hashes.
    pub fn root_at(&self, size: u64) -> Result<Hash, Error> {
        self.check_size(size)?;
        proof::tree_root(&self.nodes(), size)
    }

    /// The leaf hash of entry `index`.
    pub fn leaf_hash(&self, index: u64) -> Result<Hash, Error> {
        if index >= self.edge.size {
            return Err(Error::IndexOutOfRange {
                index,
                size: self.edge.size,
            });
        }
        self.nodes().node(0, index)
    }

    /// RFC 9162 inclusion proof of entry `index` in the tree of `size` entries.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, Error> {
        self.check_size(size)?;
        proof::inclusion_proof(&self.nodes(), index, size)
    }

    /// RFC 9162 consistency proof from size `first` to size `second`, `0 < first <= second`.
    pub fn consistency_proof(&self, first: u64, second: u64) -> Result<Vec<Hash>, Error> {
        self.check_size(second)?;
        proof::consistency_proof(&self.nodes(), first, second)
    }

    /// The bytes of entry `index`.
    pub fn entry(&self, index: u64) -> Result<Vec<u8>, Error> {
        let size = self.edge.size;
        if index >= size {
            return Err(Error::IndexOutOfRange { index, size });
        }
        let tile = index / 256;
        if tile == size / 256 {
            return self
                .edge_entries
                .get((index % 256) as usize)
                .cloned()
                .ok_or_else(|| Error::Corrupt(format!("entry {index} missing from the edge")));
        }
        let bytes = self
            .store
            .get(TileKind::Entries, tile, TILE_WIDTH)?
            .ok_or_else(|| {
                Error::Corrupt(format!(
                    "missing bundle {}",
                    self.store.locate(TileKind::Entries, tile, TILE_WIDTH)
                ))
            })?;
        let (entries, _) = decode_bundle(&bytes);
        entries
            .get((index % 256) as usize)
            .map(|e| e.to_vec())
            .ok_or_else(|| {
                Error::Corrupt(format!(
                    "bundle {} is truncated",
                    self.store.locate(TileKind::Entries, tile, TILE_WIDTH)
                ))
            })
    }
}

/// Reads the latest checkpoint, discards uncommitted resources beyond it, and reloads and
/// checks the right edge.
fn load<S: TileStore + ?Sized>(
    store: &S,
    signer: &LogSigner,
    origin: &str,
) -> Result<State, Error> {
    let (checkpoint, note) = match store.latest_checkpoint()? {
        Some(note) => {
            let cp = open_checkpoint(&note, &signer.verifier())?;
            if cp.origin != origin {
                return Err(Error::OriginMismatch {
                    expected: origin.to_owned(),
                    found: cp.origin,
                });
            }
            (cp, Some(note))
        }
        None => (
            Checkpoint {
                origin: origin.to_owned(),
                size: 0,
                root_hash: crate::hash::empty_root(),
            },
            None,
        ),
    };
    let size = checkpoint.size;
    discard_uncommitted(store, size)?;
    let edge = load_edge(store, size)?;
    let edge_entries = load_edge_entries(store, size)?;
    let leaves: Vec<Hash> = edge_entries.iter().map(|e| leaf_hash(e)).collect();
    if edge.tiles.first().map_or(&[][..], TileHashes::row) != leaves.as_slice() {
        return Err(Error::Corrupt(format!(
            "partial bundle {} does not hash to partial tile {}",
            store.locate(TileKind::Entries, size / 256, (size % 256) as u16),
            store.locate(TileKind::Hash(0), size / 256, (size % 256) as u16),
        )));
    }
    let root = proof::tree_root(&EdgeNodes(&edge), size)?;
    if root != checkpoint.root_hash {
        return Err(Error::Corrupt(format!(
            "edge tiles hash to {}, checkpoint root is {}",
            crate::hash::to_hex(&root),
            crate::hash::to_hex(&checkpoint.root_hash)
        )));
    }
    Ok(State {
        edge,
        edge_entries,
        checkpoint,
        note,
    })
}

/// Deletes resources a crashed batch of at most [`MAX_BATCH_ENTRIES`] may have written beyond
/// `size` (see the module docs).
fn discard_uncommitted<S: TileStore + ?Sized>(store: &S, size: u64) -> Result<(), Error> {
    let reach = size + MAX_BATCH_ENTRIES as u64;
    let mut level = 0u8;
    while row_len(reach, level) > 0 {
        let committed = row_len(size, level);
        let last = row_len(reach, level) / 256;
        let kinds: &[TileKind] = if level == 0 {
            &[TileKind::Hash(0), TileKind::Entries]
        } else {
            &[TileKind::Hash(level)]
        };
        for &kind in kinds {
            store.discard_uncommitted(kind, committed / 256, (committed % 256) as u16)?;
            for index in committed / 256 + 1..=last {
                store.discard_uncommitted(kind, index, 0)?;
            }
        }
        level += 1;
    }
    Ok(())
}

/// Loads the partial tile of every level of a tree of `size` leaves.
fn load_edge<S: TileStore + ?Sized>(store: &S, size: u64) -> Result<Edge, Error> {
    let mut tiles = Vec::new();
    let mut level = 0u8;
    while row_len(size, level) > 0 {
        let row = row_len(size, level);
        let (index, width) = (row / 256, (row % 256) as u16);
        if width == 0 {
            tiles.push(TileHashes::new());
        } else {
            let kind = TileKind::Hash(level);
            let bytes = store.get(kind, index, width)?.ok_or_else(|| {
                Error::Corrupt(format!(
                    "missing partial tile {}",
                    store.locate(kind, index, width)
                ))
            })?;
            let hashes = tile_hashes(&bytes)
                .filter(|h| h.len() == usize::from(width))
                .ok_or_else(|| {
                    Error::Corrupt(format!(
                        "partial tile {} has {} bytes, expected {}",
                        store.locate(kind, index, width),
                        bytes.len(),
                        usize::from(width) * 32
                    ))
                })?;
            tiles.push(TileHashes::from_row(&hashes));
        }
        level += 1;
    }
    Ok(Edge { size, tiles })
}

/// Loads the entries of the partial bundle of a tree of `size` leaves.
fn load_edge_entries<S: TileStore + ?Sized>(store: &S, size: u64) -> Result<Vec<Vec<u8>>, Error> {
    let (index, width) = (size / 256, (size % 256) as u16);
    if width == 0 {
        return Ok(Vec::new());
    }
    let kind = TileKind::Entries;
    let bytes = store.get(kind, index, width)?.ok_or_else(|| {
        Error::Corrupt(format!(
            "missing partial bundle {}",
            store.locate(kind, index, width)
        ))
    })?;
    let (entries, error) = decode_bundle(&bytes);
    if error.is_some() || entries.len() != usize::from(width) {
        return Err(Error::Corrupt(format!(
            "partial bundle {} does not hold {width} well-framed entries",
            store.locate(kind, index, width)
        )));
    }
    Ok(entries.into_iter().map(<[u8]>::to_vec).collect())
}
