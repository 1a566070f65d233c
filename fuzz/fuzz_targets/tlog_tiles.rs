//! Fuzz target: a stored audit log (hash tiles, entry bundles, checkpoint) altered on disk.
//! A copy of a real 300-entry log built by flk-tlog is changed by the input, then checked with
//! `verify_log` (decoding every entry, as `flk audit verify` does) and reopened with
//! `Log::open` (crash recovery), whose proofs and entries are then read and which takes one
//! more batch.
//!
//! Input: byte 0 picks the resource (the checkpoint note after the tiles), byte 1 the change
//! (even: replace the resource by the rest of the input; odd: overwrite it at the offset in
//! bytes 2-3 with the rest). Nothing may panic.
#![no_main]

use flk_fuzz::{SnapStore, log_signer, log_verifier, tlog_fixture};
use flk_tlog::{Log, LogOptions, VerifyOptions, verify_log};
use libfuzzer_sys::fuzz_target;

fn change(old: &[u8], how: u8, rest: &[u8]) -> Vec<u8> {
    if how % 2 == 0 {
        return rest.to_vec();
    }
    let (at, patch) = match rest {
        [a, b, patch @ ..] => (usize::from(u16::from_le_bytes([*a, *b])), patch),
        _ => (0, rest),
    };
    let mut out = old.to_vec();
    let at = at.min(out.len());
    let end = at + patch.len();
    if end > out.len() {
        out.resize(end, 0);
    }
    out[at..end].copy_from_slice(patch);
    out
}

fuzz_target!(|data: &[u8]| {
    let [pick, how, rest @ ..] = data else {
        return;
    };
    let (_, base) = tlog_fixture();
    let mut snap = base.clone();
    let keys: Vec<_> = snap.tiles.keys().copied().collect();
    match keys.get(usize::from(*pick) % (keys.len() + 1)) {
        Some(key) => {
            let old = snap.tiles.get(key).cloned().unwrap_or_default();
            snap.tiles.insert(*key, change(&old, *how, rest));
        }
        None => {
            let old = snap.checkpoint.clone().unwrap_or_default();
            let new = change(old.as_bytes(), *how, rest);
            snap.checkpoint = Some(String::from_utf8_lossy(&new).into_owned());
        }
    }

    let store = SnapStore::from_snapshot(snap);
    let _ = verify_log(
        &store,
        log_verifier(),
        &VerifyOptions {
            entries: None,
            decode_entries: true,
        },
    );
    let Ok(mut log) = Log::open_with(
        store,
        log_signer(),
        flk_fuzz::LOG_ORIGIN,
        LogOptions::default(),
    ) else {
        return;
    };
    let size = log.size();
    for i in [0, size / 2, size.saturating_sub(1)] {
        if i < size {
            let _ = log.entry(i);
            let _ = log.inclusion_proof(i, size);
        }
    }
    let _ = log.consistency_proof(1, size);
    // The next batch after recovery from a damaged store.
    let _ = log.append_batch(&[b"after recovery"]);
});
