//! C2SP tlog-tiles geometry (<https://c2sp.org/tlog-tiles>): tile coordinates and paths, entry
//! bundle framing, and the in-memory expansion of a tile into all its subtree hashes.
//!
//! Tiles have height 8: the tile `n` at level `l` holds the hashes of the complete subtrees of
//! height `8·l` with indices `256·n .. 256·n + 255` (at level 0, leaf hashes). A full tile is
//! 256 hashes (8,192 bytes); the rightmost tile of a level may be *partial*, with width
//! `floor(size / 256^l) mod 256`, and is stored under its own path per width. Paths:
//!
//! * hash tiles: `tile/<l>/<n>` and `tile/<l>/<n>.p/<w>`
//! * entry bundles: `tile/entries/<n>` and `tile/entries/<n>.p/<w>`
//!
//! where `<n>` is split into 3-digit groups, all but the last prefixed with `x`
//! (1234067 → `x001/x234/067`). An entry bundle is the concatenation of the entries of the
//! corresponding level-0 tile, each prefixed with its length as a big-endian `u16`.

use crate::hash::{HASH_SIZE, Hash, node_hash};

/// Tile height: each tile spans 8 tree levels.
pub const TILE_HEIGHT: u8 = 8;
/// Hashes (or entries) in a full tile.
pub const TILE_WIDTH: u16 = 256;
/// Bytes in a full hash tile.
pub const FULL_TILE_BYTES: usize = TILE_WIDTH as usize * HASH_SIZE;

/// Which kind of tile resource: a hash tile at a level, or an entry bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TileKind {
    /// Hash tile at this level (0 = leaf hashes).
    Hash(u8),
    /// Entry bundle (parallel to the level-0 hash tiles).
    Entries,
}

/// `<n>` as 3-digit path groups: 1234067 → `x001/x234/067`, 5 → `005`.
pub fn index_path(n: u64) -> String {
    let mut groups = Vec::with_capacity(7);
    let mut rest = n;
    loop {
        groups.push(rest % 1000);
        rest /= 1000;
        if rest == 0 {
            break;
        }
    }
    let mut out = String::with_capacity(groups.len() * 5);
    for (i, g) in groups.iter().rev().enumerate() {
        if i + 1 < groups.len() {
            out.push_str(&format!("x{g:03}/"));
        } else {
            out.push_str(&format!("{g:03}"));
        }
    }
    out
}

/// The C2SP path of a tile resource, relative to the log prefix. `width` 256 is a full tile.
pub fn tile_path(kind: TileKind, index: u64, width: u16) -> String {
    let level = match kind {
        TileKind::Hash(l) => l.to_string(),
        TileKind::Entries => "entries".to_owned(),
    };
    if width >= TILE_WIDTH {
        format!("tile/{level}/{}", index_path(index))
    } else {
        format!("tile/{level}/{}.p/{width}", index_path(index))
    }
}

/// Frames entries into an entry bundle; `None` if an entry is longer than 65,535 bytes.
pub fn encode_bundle<'a>(entries: impl IntoIterator<Item = &'a [u8]>) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for e in entries {
        let len = u16::try_from(e.len()).ok()?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(e);
    }
    Some(out)
}

/// Splits an entry bundle into its entries. Returns the entries decoded before the first
/// framing error, and the offset of that error (a length prefix or body running past the end).
pub fn decode_bundle(bytes: &[u8]) -> (Vec<&[u8]>, Option<usize>) {
    let mut out = Vec::with_capacity(TILE_WIDTH as usize);
    let mut pos = 0;
    while pos < bytes.len() {
        if bytes.len() - pos < 2 {
            return (out, Some(pos));
        }
        let len = u16::from_be_bytes([bytes[pos], bytes[pos + 1]]) as usize;
        if bytes.len() - pos - 2 < len {
            return (out, Some(pos));
        }
        out.push(&bytes[pos + 2..pos + 2 + len]);
        pos += 2 + len;
    }
    (out, None)
}

/// Splits hash tile bytes into hashes; `None` unless the length is a multiple of 32.
pub fn tile_hashes(bytes: &[u8]) -> Option<Vec<Hash>> {
    if !bytes.len().is_multiple_of(HASH_SIZE) {
        return None;
    }
    Some(
        bytes
            .chunks_exact(HASH_SIZE)
            .map(|c| {
                let mut h = [0u8; HASH_SIZE];
                h.copy_from_slice(c);
                h
            })
            .collect(),
    )
}

/// Offset of sub-level `r` (0..=8) in [`TileHashes::nodes`]: 256 + 128 + … hashes precede it.
const fn sub_offset(r: u8) -> usize {
    512 - (512 >> r)
}

/// One tile expanded into every complete subtree hash inside it: sub-level 0 is the tile's
/// row, sub-level `r` holds `width >> r` hashes of height `8·level + r`, and sub-level 8 holds
/// the tile's root once it is full. A full tile is 511 hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TileHashes {
    width: u16,
    nodes: Vec<Hash>,
}

impl Default for TileHashes {
    fn default() -> Self {
        TileHashes::new()
    }
}

impl TileHashes {
    /// An empty tile (width 0).
    pub fn new() -> TileHashes {
        TileHashes {
            width: 0,
            nodes: vec![[0; HASH_SIZE]; sub_offset(8) + 1],
        }
    }

    /// Expands a row of at most 256 hashes.
    pub fn from_row(row: &[Hash]) -> TileHashes {
        let mut t = TileHashes::new();
        for h in row.iter().take(TILE_WIDTH as usize) {
            t.push(*h);
        }
        t
    }

    /// Number of row hashes (0..=256).
    pub fn width(&self) -> u16 {
        self.width
    }

    /// Whether the tile holds 256 hashes.
    pub fn is_full(&self) -> bool {
        self.width == TILE_WIDTH
    }

    /// Appends a row hash and every subtree it completes. Returns the tile's root when this
    /// hash fills it. Must not be called on a full tile.
    pub fn push(&mut self, h: Hash) -> Option<Hash> {
        debug_assert!(!self.is_full());
        let w = self.width as usize;
        self.nodes[w] = h;
        self.width += 1;
        let new_w = self.width as usize;
        // The node at sub-level r completes when bit r-1.. of the new width clear to a multiple.
        for r in 1..=TILE_HEIGHT {
            if !new_w.is_multiple_of(1usize << r) {
                break;
            }
            let k = (new_w >> r) - 1;
            let below = sub_offset(r - 1);
            let left = self.nodes[below + 2 * k];
            let right = self.nodes[below + 2 * k + 1];
            self.nodes[sub_offset(r) + k] = node_hash(&left, &right);
        }
        self.is_full().then(|| self.nodes[sub_offset(TILE_HEIGHT)])
    }

    /// The complete subtree hash at sub-level `r` (0..=8), index `k` within the tile.
    pub fn node(&self, r: u8, k: u64) -> Option<Hash> {
        if r > TILE_HEIGHT || k >= (u64::from(self.width) >> r) {
            return None;
        }
        Some(self.nodes[sub_offset(r) + k as usize])
    }

    /// The row (sub-level 0) hashes.
    pub fn row(&self) -> &[Hash] {
        &self.nodes[..self.width as usize]
    }

    /// The row as tile bytes.
    pub fn row_bytes(&self) -> Vec<u8> {
        self.row().concat()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::leaf_hash;

    #[test]
    fn index_paths_follow_the_spec() {
        assert_eq!(index_path(0), "000");
        assert_eq!(index_path(5), "005");
        assert_eq!(index_path(999), "999");
        assert_eq!(index_path(1000), "x001/000");
        assert_eq!(index_path(1234067), "x001/x234/067");
        assert_eq!(
            tile_path(TileKind::Hash(0), 1234067, 256),
            "tile/0/x001/x234/067"
        );
        assert_eq!(tile_path(TileKind::Hash(2), 7, 17), "tile/2/007.p/17");
        assert_eq!(
            tile_path(TileKind::Entries, 1000, 1),
            "tile/entries/x001/000.p/1"
        );
    }

    #[test]
    fn bundles_roundtrip_and_report_framing_errors() {
        let entries: Vec<&[u8]> = vec![b"", b"a", &[7u8; 300]];
        let b = encode_bundle(entries.iter().copied()).unwrap();
        assert_eq!(decode_bundle(&b), (entries.clone(), None));
        assert_eq!(encode_bundle([&[0u8; 65_536][..]]), None);
        let (got, err) = decode_bundle(&b[..b.len() - 1]);
        assert_eq!(got, entries[..2].to_vec());
        assert_eq!(err, Some(5));
    }

    #[test]
    fn expansion_matches_pairwise_hashing() {
        let row: Vec<Hash> = (0..256u32).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let mut t = TileHashes::new();
        let mut root = None;
        for h in &row {
            root = t.push(*h);
        }
        let mut level = row.clone();
        for r in 1..=8u8 {
            level = level.chunks(2).map(|p| node_hash(&p[0], &p[1])).collect();
            for (k, h) in level.iter().enumerate() {
                assert_eq!(t.node(r, k as u64), Some(*h));
            }
        }
        assert_eq!(root, Some(level[0]));
        let partial = TileHashes::from_row(&row[..5]);
        assert_eq!(partial.node(2, 0), t.node(2, 0));
        assert_eq!(partial.node(2, 1), None);
        assert_eq!(partial.node(0, 4), Some(row[4]));
    }
}
