//! Fuzz target: an RFC 3161 time-stamp response (what a TSA answers over HTTP) and a
//! time-stamp token (what svc-audit stores and re-verifies), through flk-anchor's
//! `verify_response` and `verify_token` against the trust anchor of the test TSA that made the
//! seed corpus (`fuzz/data/make_tsa.sh`). Nothing may panic; a token that verifies is for the
//! digest asked and re-verifies from its stored form.
#![no_main]

use std::sync::OnceLock;

use flk_anchor::rfc3161::{verify_response, verify_token};
use flk_anchor::{Rfc3161Anchor, TsaTrust};
use flk_fuzz::{ANCHOR_DIGEST, TSA_CA_PEM, TSA_NONCE};
use libfuzzer_sys::fuzz_target;

fn trust() -> &'static TsaTrust {
    static T: OnceLock<TsaTrust> = OnceLock::new();
    T.get_or_init(|| TsaTrust::from_pem(TSA_CA_PEM).expect("fixture CA"))
}

fuzz_target!(|data: &[u8]| {
    if let Ok(anchor) = verify_response(data, &ANCHOR_DIGEST, TSA_NONCE, trust()) {
        anchor
            .reverify(&ANCHOR_DIGEST, trust())
            .expect("an accepted token re-verifies");
    }
    if let Ok(v) = verify_token(data, &ANCHOR_DIGEST, trust()) {
        let anchor = Rfc3161Anchor::from_token(data.to_vec(), &ANCHOR_DIGEST, trust())
            .expect("a verified token makes an anchor");
        assert_eq!(anchor.serial_hex, v.serial_hex);
    }
    // The trust anchors themselves come from configuration files.
    let _ = TsaTrust::from_pem(data);
    let _ = TsaTrust::from_der_certs([data]);
});
