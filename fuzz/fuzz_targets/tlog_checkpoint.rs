//! Fuzz target: text that flk-tlog reads as signed notes and keys: a checkpoint note
//! (`open_checkpoint` against the fixture log's key, the note's signature lines, the body's
//! origin / size / root lines), a verifier key string (the `--key` of `flk audit verify`) and
//! a private key string (svc-audit's key file). Nothing may panic; a note that opens must
//! carry the fixture log's origin.
#![no_main]

use flk_fuzz::log_verifier;
use flk_tlog::{Checkpoint, LogSigner, LogVerifier, open_checkpoint};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cp) = open_checkpoint(text, log_verifier()) {
        assert_eq!(cp.origin, flk_fuzz::LOG_ORIGIN);
        // A checkpoint that opened renders a body that parses back to itself.
        assert_eq!(Checkpoint::parse_body(&cp.body()).ok(), Some(cp));
    }
    let _ = log_verifier().open(text);
    let _ = Checkpoint::parse_body(text);
    if let Ok(v) = LogVerifier::from_key_string(text.trim()) {
        let _ = v.open(text);
        let _ = LogVerifier::from_key_string(&v.key_string());
    }
    if let Ok(s) = LogSigner::from_private_key(text.trim()) {
        let _ = s.verifier().key_string();
    }
});
