//! Offline verification: of a whole stored log against its signed checkpoint
//! ([`verify_log`]), and of one entry's proof bundle ([`verify_inclusion_bundle`]).
//!
//! `verify_log` trusts nothing but the verifier key. It opens the latest checkpoint, reads the
//! entry bundles in order, recomputes every leaf hash and every tile from scratch, and compares
//! them with the stored tiles and the checkpoint's root. Failures name the place:
//!
//! * a leaf hash differs from the stored level-0 tile: if the entries still hash to the
//!   signed root, the tile was altered ([`VerifyError::TileMismatch`]); otherwise the entry was
//!   ([`VerifyError::EntryTampered`], the first differing index);
//! * a stored tile above level 0 differs from the one recomputed from the level below:
//!   [`VerifyError::TileMismatch`] (the lowest level first);
//! * everything agrees but the root is not the checkpoint's: [`VerifyError::RootMismatch`];
//! * bundles missing or shorter than the checkpoint: [`VerifyError::Truncated`].
//!
//! With [`VerifyOptions::entries`] set, only the entries in that range are read; outside it the
//! stored level-0 tiles stand in for the leaf hashes (all tiles and the root are still
//! checked), so tampering of a level-0 tile outside the range shows up as a mismatch one level
//! up.

use std::ops::Range;

use crate::checkpoint::{Checkpoint, CheckpointError, open_checkpoint};
use crate::entry::{EntryError, LogEntry};
use crate::hash::{Hash, leaf_hash};
use crate::note::{LogVerifier, NoteError};
use crate::proof::{self, ProofError};
use crate::store::{StoreError, TileStore};
use crate::tile::{TILE_WIDTH, TileHashes, TileKind, decode_bundle, tile_hashes};
use crate::tree::{Edge, EdgeNodes, row_len};

/// What [`verify_log`] checks beyond the tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyOptions {
    /// Entries to read and rehash; `None` for all of them.
    pub entries: Option<Range<u64>>,
    /// Also decode every entry read as a [`LogEntry`] (a decision or a log event).
    pub decode_entries: bool,
}

/// What a successful [`verify_log`] covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// The verified checkpoint.
    pub checkpoint: Checkpoint,
    /// Entries read and rehashed.
    pub entries_checked: u64,
    /// Hash tiles compared (full and partial, all levels).
    pub tiles_checked: u64,
    /// Bytes of entry bundles read.
    pub bundle_bytes: u64,
}

/// Why a log or proof bundle failed verification. Each variant names where.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The store has no checkpoint.
    #[error("no checkpoint in the store")]
    NoCheckpoint,
    /// The checkpoint's signature by the verifier key is missing or invalid.
    #[error("checkpoint signature: {0}")]
    CheckpointSignature(NoteError),
    /// The checkpoint is signed but not a valid checkpoint body.
    #[error("checkpoint body: {0}")]
    CheckpointMalformed(&'static str),
    /// The store holds fewer entries than the checkpoint covers.
    #[error("log truncated: checkpoint covers {checkpoint_size} entries, {available} available")]
    Truncated {
        /// The checkpoint's size.
        checkpoint_size: u64,
        /// Entries present from index 0 on.
        available: u64,
    },
    /// An entry bundle's framing is broken (not a truncation).
    #[error("entry bundle {path} is malformed at byte {offset}")]
    BundleMalformed {
        /// Bundle index.
        index: u64,
        /// Its path.
        path: String,
        /// Offset of the broken length prefix, or of the first extra byte.
        offset: usize,
    },
    /// An entry does not hash to its stored leaf hash, and the entries do not hash to the
    /// signed root: the entry was altered.
    #[error("entry {index} in {bundle_path} was altered")]
    EntryTampered {
        /// The first altered entry's index.
        index: u64,
        /// The bundle holding it.
        bundle_path: String,
    },
    /// A stored hash tile differs from the one recomputed from the entries.
    #[error("tile {path} (level {level}, index {index}) does not match the entries")]
    TileMismatch {
        /// Tile level.
        level: u8,
        /// Tile index.
        index: u64,
        /// Its path.
        path: String,
    },
    /// A hash tile the checkpoint needs is missing.
    #[error("tile {path} (level {level}, index {index}) is missing")]
    TileMissing {
        /// Tile level.
        level: u8,
        /// Tile index.
        index: u64,
        /// Its path.
        path: String,
    },
    /// Entries and tiles agree, but not with the checkpoint's root.
    #[error("computed root {computed} differs from checkpoint root {expected}")]
    RootMismatch {
        /// The checkpoint's root, hex.
        expected: String,
        /// The recomputed root, hex.
        computed: String,
    },
    /// An entry is not a valid [`LogEntry`] encoding (with `decode_entries`).
    #[error("entry {index} does not decode: {error}")]
    Undecodable {
        /// The entry's index.
        index: u64,
        /// Why.
        error: EntryError,
    },
    /// The entry range asked for is not inside the checkpoint.
    #[error("entry range {start}..{end} is not inside the checkpoint size {size}")]
    BadRange {
        /// Range start.
        start: u64,
        /// Range end.
        end: u64,
        /// Checkpoint size.
        size: u64,
    },
    /// A proof bundle's tree size is not its checkpoint's.
    #[error("proof is for tree size {proof_size}, checkpoint has size {checkpoint_size}")]
    SizeMismatch {
        /// Size the proof claims.
        proof_size: u64,
        /// Size in the checkpoint.
        checkpoint_size: u64,
    },
    /// The inclusion proof does not verify.
    #[error("inclusion proof: {0}")]
    Proof(#[from] ProofError),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

impl From<CheckpointError> for VerifyError {
    fn from(e: CheckpointError) -> Self {
        match e {
            CheckpointError::Note(n) => VerifyError::CheckpointSignature(n),
            CheckpointError::Body(b) => VerifyError::CheckpointMalformed(b),
        }
    }
}

/// Verifies an entry's inclusion proof against a signed checkpoint, offline: the note must
/// be signed by `verifier`, be for `tree_size`, and the proof must lead from the entry's leaf
/// hash to its root. Returns the checkpoint.
pub fn verify_inclusion_bundle(
    entry: &[u8],
    leaf_index: u64,
    tree_size: u64,
    proof: &[Hash],
    note: &str,
    verifier: &LogVerifier,
) -> Result<Checkpoint, VerifyError> {
    let checkpoint = open_checkpoint(note, verifier)?;
    if checkpoint.size != tree_size {
        return Err(VerifyError::SizeMismatch {
            proof_size: tree_size,
            checkpoint_size: checkpoint.size,
        });
    }
    proof::verify_inclusion(
        &leaf_hash(entry),
        leaf_index,
        tree_size,
        proof,
        &checkpoint.root_hash,
    )?;
    Ok(checkpoint)
}

/// Tiles above level 0 recomputed bottom-up and compared with the store as they fill.
struct Rebuild<'a, S: ?Sized> {
    store: &'a S,
    /// Partial row per level (index 0 unused: level 0 is handled by [`verify_log`]).
    rows: Vec<Vec<Hash>>,
    /// Full tiles completed per level.
    full: Vec<u64>,
    /// Lowest-level stored tile that differs: (level, index, width).
    first_mismatch: Option<(u8, u64, u16)>,
    tiles_checked: u64,
}

impl<S: TileStore + ?Sized> Rebuild<'_, S> {
    /// Compares a recomputed row with the stored tile; `Ok(false)` if they differ.
    fn compare(&mut self, level: u8, index: u64, row: &[Hash]) -> Result<bool, VerifyError> {
        let width = row.len() as u16;
        let kind = TileKind::Hash(level);
        let stored =
            self.store
                .get(kind, index, width)?
                .ok_or_else(|| VerifyError::TileMissing {
                    level,
                    index,
                    path: self.store.locate(kind, index, width),
                })?;
        self.tiles_checked += 1;
        let same = stored.len() == row.len() * 32
            && stored
                .chunks_exact(32)
                .zip(row)
                .all(|(a, b)| a == b.as_slice());
        if !same && self.first_mismatch.is_none_or(|(l, _, _)| level < l) {
            self.first_mismatch = Some((level, index, width));
        }
        Ok(same)
    }

    /// Appends the root of a full tile of `level - 1` to the row at `level`.
    fn push(&mut self, level: u8, h: Hash) -> Result<(), VerifyError> {
        let l = usize::from(level);
        if self.rows.len() <= l {
            self.rows.resize_with(l + 1, Vec::new);
            self.full.resize(l + 1, 0);
        }
        self.rows[l].push(h);
        if self.rows[l].len() == usize::from(TILE_WIDTH) {
            let row = std::mem::take(&mut self.rows[l]);
            let index = self.full[l];
            self.full[l] += 1;
            self.compare(level, index, &row)?;
            self.push(level + 1, tile_root(&row))?;
        }
        Ok(())
    }

    /// Compares the partial tile of every level above 0 and returns the recomputed right
    /// edge (with `level0` as its level-0 tile).
    fn finish(mut self, size: u64, level0: &[Hash]) -> Result<(Edge, Self), VerifyError> {
        let mut tiles = Vec::new();
        let mut level = 0u8;
        while row_len(size, level) > 0 {
            let l = usize::from(level);
            let row = if level == 0 {
                level0.to_vec()
            } else {
                self.rows.get(l).cloned().unwrap_or_default()
            };
            if level > 0 && !row.is_empty() {
                self.compare(level, row_len(size, level) / 256, &row)?;
            }
            tiles.push(TileHashes::from_row(&row));
            level += 1;
        }
        Ok((Edge { size, tiles }, self))
    }
}

/// The root of a full tile's row.
fn tile_root(row: &[Hash]) -> Hash {
    TileHashes::from_row(row).node(8, 0).unwrap_or_default()
}

/// Verifies a stored log against its latest checkpoint, signed by `verifier`. See the module
/// docs for what is compared and how failures are attributed.
pub fn verify_log<S: TileStore + ?Sized>(
    store: &S,
    verifier: &LogVerifier,
    options: &VerifyOptions,
) -> Result<VerifyReport, VerifyError> {
    let note = store
        .latest_checkpoint()?
        .ok_or(VerifyError::NoCheckpoint)?;
    let checkpoint = open_checkpoint(&note, verifier)?;
    let size = checkpoint.size;
    let range = options.entries.clone().unwrap_or(0..size);
    if range.start > range.end || range.end > size {
        return Err(VerifyError::BadRange {
            start: range.start,
            end: range.end,
            size,
        });
    }
    let mut rebuild = Rebuild {
        store,
        rows: Vec::new(),
        full: Vec::new(),
        first_mismatch: None,
        tiles_checked: 0,
    };
    let mut first_leaf_mismatch: Option<u64> = None;
    let mut first_undecodable: Option<(u64, EntryError)> = None;
    let mut entries_checked = 0u64;
    let mut bundle_bytes = 0u64;
    let mut level0_edge: Vec<Hash> = Vec::new();

    for tile in 0..size.div_ceil(256) {
        let start = tile * 256;
        let width = (size - start).min(256) as u16;
        let kind0 = TileKind::Hash(0);
        let stored = store
            .get(kind0, tile, width)?
            .ok_or_else(|| VerifyError::TileMissing {
                level: 0,
                index: tile,
                path: store.locate(kind0, tile, width),
            })?;
        rebuild.tiles_checked += 1;
        let stored_row = tile_hashes(&stored).filter(|r| r.len() == usize::from(width));
        let mut row: Vec<Hash> = match &stored_row {
            Some(r) => r.clone(),
            None => vec![[0; 32]; usize::from(width)],
        };
        if stored_row.is_none() {
            // A tile of the wrong length can only be reported as a mismatch.
            rebuild.first_mismatch.get_or_insert((0, tile, width));
        }
        let end = start + u64::from(width);
        if range.start < end && start < range.end {
            let bytes =
                store
                    .get(TileKind::Entries, tile, width)?
                    .ok_or(VerifyError::Truncated {
                        checkpoint_size: size,
                        available: start,
                    })?;
            bundle_bytes += bytes.len() as u64;
            let (entries, framing) = decode_bundle(&bytes);
            if entries.len() < usize::from(width) {
                return Err(VerifyError::Truncated {
                    checkpoint_size: size,
                    available: start + entries.len() as u64,
                });
            }
            if entries.len() > usize::from(width) || framing.is_some() {
                let offset = framing.unwrap_or_else(|| {
                    entries[..usize::from(width)]
                        .iter()
                        .map(|e| e.len() + 2)
                        .sum()
                });
                return Err(VerifyError::BundleMalformed {
                    index: tile,
                    path: store.locate(TileKind::Entries, tile, width),
                    offset,
                });
            }
            for (i, e) in entries.iter().enumerate() {
                let index = start + i as u64;
                if !range.contains(&index) {
                    continue;
                }
                entries_checked += 1;
                let h = leaf_hash(e);
                if h != row[i] && first_leaf_mismatch.is_none() {
                    first_leaf_mismatch = Some(index);
                }
                row[i] = h;
                if options.decode_entries
                    && first_undecodable.is_none()
                    && let Err(error) = LogEntry::decode(e)
                {
                    first_undecodable = Some((index, error));
                }
            }
        }
        if width == TILE_WIDTH {
            rebuild.push(1, tile_root(&row))?;
        } else {
            level0_edge = row;
        }
    }
    let (edge, rebuild) = rebuild.finish(size, &level0_edge)?;
    let computed = proof::tree_root(&EdgeNodes(&edge), size)
        .map_err(|_| VerifyError::CheckpointMalformed("tree shape does not match the size"))?;
    let root_ok = computed == checkpoint.root_hash;

    if let Some(index) = first_leaf_mismatch {
        let tile = index / 256;
        let width = (size - tile * 256).min(256) as u16;
        return Err(if root_ok {
            VerifyError::TileMismatch {
                level: 0,
                index: tile,
                path: store.locate(TileKind::Hash(0), tile, width),
            }
        } else {
            VerifyError::EntryTampered {
                index,
                bundle_path: store.locate(TileKind::Entries, tile, width),
            }
        });
    }
    if let Some((level, index, width)) = rebuild.first_mismatch {
        return Err(VerifyError::TileMismatch {
            level,
            index,
            path: store.locate(TileKind::Hash(level), index, width),
        });
    }
    if !root_ok {
        return Err(VerifyError::RootMismatch {
            expected: crate::hash::to_hex(&checkpoint.root_hash),
            computed: crate::hash::to_hex(&computed),
        });
    }
    if let Some((index, error)) = first_undecodable {
        return Err(VerifyError::Undecodable { index, error });
    }
    Ok(VerifyReport {
        checkpoint,
        entries_checked,
        tiles_checked: rebuild.tiles_checked,
        bundle_bytes,
    })
}
