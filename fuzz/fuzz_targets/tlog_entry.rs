//! Fuzz target: the byte formats inside audit tiles: a log entry (`LogEntry::decode`, the
//! version-1 decision and version-2 event encodings), an entry bundle (`decode_bundle`) and a
//! hash tile (`tile_hashes`, `TileHashes`). Nothing may panic; the decoders are strict, so an
//! entry that decodes re-encodes to exactly the input, and a bundle that decodes re-frames to
//! it.
#![no_main]

use flk_tlog::LogEntry;
use flk_tlog::tile::{TileHashes, decode_bundle, encode_bundle, tile_hashes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(entry) = LogEntry::decode(data) {
        let again = entry.encode().expect("a decoded entry encodes");
        assert_eq!(again, data, "entry decoding is not strict");
    }
    let (entries, error) = decode_bundle(data);
    for e in &entries {
        let _ = LogEntry::decode(e);
    }
    if error.is_none() {
        let framed = encode_bundle(entries.iter().copied()).expect("decoded entries frame");
        assert_eq!(framed, data, "bundle framing is not strict");
    }
    if let Some(row) = tile_hashes(data)
        && row.len() <= 256
    {
        let tile = TileHashes::from_row(&row);
        assert_eq!(tile.row_bytes(), data);
        for r in 0..=8 {
            let _ = tile.node(r, 0);
        }
    }
});
