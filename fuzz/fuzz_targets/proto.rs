//! Fuzz target: protobuf bytes decoded as the `flk.v1` messages FLK reads from the network or
//! from disk (`Pcs`, `SubmitRequest`, `FeedRecord`, `Outcome`), then converted to domain types
//! the way svc-verify and the feed consumers do (`TryFrom` into `flk_core::Pcs` and
//! `OutcomeRecord`, the JSON body through the strict parser). Nothing may panic.
#![no_main]

use flk_core::{OutcomeRecord, Pcs};
use flk_proto::v1;
use libfuzzer_sys::fuzz_target;
use prost::Message as _;

fn pcs(p: v1::Pcs) {
    if let Ok(pcs) = Pcs::try_from(p) {
        let _ = flk_core::canonicalize(&pcs);
        // The domain type goes back on the wire (svc-verify's stored `request_pcs`) and must
        // convert again to the same PCS.
        let again = Pcs::try_from(v1::Pcs::from(&pcs));
        assert_eq!(
            again.as_ref().ok(),
            Some(&pcs),
            "wire round trip changed the PCS"
        );
    }
}

fn outcome(o: &v1::Outcome) {
    if let Ok(rec) = OutcomeRecord::try_from(o) {
        let _ = rec.to_json_body();
        let _ = rec.http_status();
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = v1::Pcs::decode(data) {
        pcs(p);
    }
    if let Ok(req) = v1::SubmitRequest::decode(data) {
        match req.body {
            Some(v1::submit_request::Body::Pcs(p)) => pcs(p),
            Some(v1::submit_request::Body::PcsJson(json)) => {
                let _ = flk_core::parse_pcs(&json);
            }
            None => {}
        }
    }
    if let Ok(rec) = v1::FeedRecord::decode(data) {
        if let Some(o) = &rec.outcome {
            outcome(o);
        }
        if let Some(p) = rec.request_pcs {
            pcs(p);
        }
        let _ = flk_core::parse_pcs(&rec.request_json);
    }
    if let Ok(o) = v1::Outcome::decode(data) {
        outcome(&o);
    }
});
