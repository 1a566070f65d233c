//! Fuzz target: an OpenTimestamps `.ots` detached timestamp file (what a calendar upgrade
//! yields and svc-audit stores), through flk-anchor's strict parser and `OtsAnchor::verify`.
//! Nothing may panic; a file that parses serializes to bytes that parse to the same file,
//! and verifies for its own digest.
#![no_main]

use flk_anchor::OtsAnchor;
use flk_anchor::ots::DetachedTimestampFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(file) = DetachedTimestampFile::deserialize(data) {
        let again = file.serialize().expect("a parsed file serializes");
        assert_eq!(
            DetachedTimestampFile::deserialize(&again).ok(),
            Some(file.clone()),
            "a serialized file parses to another file"
        );
        let _ = file.timestamp.all_attestations();
        let digest: [u8; 32] = file
            .digest()
            .try_into()
            .expect("a parsed digest is 32 bytes");
        let anchor = OtsAnchor { ots: data.to_vec() };
        anchor
            .verify(&digest)
            .expect("a parsed file verifies for its own digest");
        let _ = anchor.is_complete(&flk_fuzz::ANCHOR_DIGEST);
    }
});
