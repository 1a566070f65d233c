//! Fuzz target: what svc-tiering reads back from its stores: a cold pack (the index at its end,
//! `cold::read_pack_index`, and each lz4 frame it names, decompressed as `ColdStore::get`
//! does), a record blob (`StoredRecord::decode`, its CRC, the outcome inside), a catalog entry
//! (`RecordMeta::decode`) and a record key (`Key::decode`). Nothing may panic; a catalog entry
//! that decodes re-encodes to the input.
#![no_main]

use flk_core::OutcomeRecord;
use libfuzzer_sys::fuzz_target;
use svc_tiering::cold::read_pack_index;
use svc_tiering::record::{RecordMeta, StoredRecord, check_blob};

fn blob(bytes: &[u8]) {
    let _ = check_blob(bytes);
    if let Ok(rec) = StoredRecord::decode(bytes)
        && let Ok(outcome) = rec.outcome()
    {
        let _ = OutcomeRecord::try_from(&outcome);
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(index) = read_pack_index(data) {
        for e in index {
            // In range: read_pack_index checked every location against the pack.
            let frame = &data[e.offset as usize..(e.offset + e.len) as usize];
            if let Ok(rec) = svc_tiering::cold::decode_frame(frame) {
                blob(&rec);
            }
        }
    }
    blob(data);
    if let Ok(meta) = RecordMeta::decode(data) {
        assert_eq!(meta.encode(), data, "catalog entry decoding is not strict");
    }
    let _ = svc_tiering::Key::decode(data);
});
