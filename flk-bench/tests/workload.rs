//! The workload generator against flk-core's own verification: every generated item gets,
//! locally, the answer it claims to expect; tampered items fail their signature; duplicates
//! repeat an earlier fresh item byte for byte; items are distinct and reproducible; and the
//! mix syntax refuses what it should.

use std::collections::{HashMap, HashSet};

use flk_bench::workload::{ESCALATIONS, REJECTIONS, TAMPERED};
use flk_bench::{Expected, Kind, Mix, MixError, Workload, WorkloadConfig};
use flk_core::{HmacMode, Outcome, SigningMaterial, parse_pcs};

fn signers() -> Vec<(&'static str, SigningMaterial)> {
    vec![
        (
            "hmac-digest",
            SigningMaterial::hmac(b"s3cret", HmacMode::Digest).unwrap(),
        ),
        (
            "hmac-payload",
            SigningMaterial::hmac(b"s3cret", HmacMode::Payload).unwrap(),
        ),
        (
            "ed25519",
            SigningMaterial::ed25519_seed(&[7u8; 32]).unwrap(),
        ),
    ]
}

fn workload(signer: SigningMaterial, mix: &str) -> Workload {
    Workload::new(WorkloadConfig::new(signer, mix.parse().unwrap())).unwrap()
}

#[test]
fn every_item_verifies_locally_as_expected() {
    let mix = "escalated=0.15,rejected=0.2,duplicate=0.1,tampered=0.1";
    for (name, signer) in signers() {
        let w = workload(signer, mix);
        let items = w.items(0..2_000, 2);
        let mut kinds: HashMap<Kind, usize> = HashMap::new();
        let mut reasons = HashSet::new();
        for item in &items {
            if let Err(e) = w.check_locally(item) {
                panic!("{name}: item {} ({}): {e}", item.index, item.kind);
            }
            *kinds.entry(item.kind).or_default() += 1;
            match item.expect {
                Expected::Decision {
                    outcome,
                    reason,
                    duplicate,
                } => {
                    assert_eq!(duplicate, item.kind == Kind::Duplicate);
                    let want = match item.kind {
                        Kind::Accepted => Outcome::Accepted,
                        Kind::Escalated => Outcome::Escalated,
                        Kind::Rejected => Outcome::Rejected,
                        Kind::Duplicate => outcome,
                        Kind::Tampered => panic!("tampered item expects a decision"),
                    };
                    assert_eq!(outcome, want, "{name}: item {}", item.index);
                    reasons.insert(reason);
                }
                Expected::Refused { .. } => {
                    assert_eq!(item.kind, Kind::Tampered);
                    assert_eq!(item.expect, TAMPERED);
                }
            }
        }
        for kind in Kind::ALL {
            assert!(
                kinds.get(&kind).copied().unwrap_or(0) > 50,
                "{name}: {kinds:?}"
            );
        }
        for r in ESCALATIONS.iter().chain(&REJECTIONS) {
            assert!(reasons.contains(r), "{name}: no {r:?}");
        }
    }
}

#[test]
fn duplicates_repeat_an_earlier_fresh_item_and_tampered_copies_change_it() {
    let w = workload(
        SigningMaterial::hmac(b"k", HmacMode::Digest).unwrap(),
        "escalated=0.1,rejected=0.1,duplicate=0.1,tampered=0.1",
    );
    let items = w.items(0..3_000, 3);
    let mut dups = 0;
    let mut copies = 0;
    let mut repeated_kinds = HashSet::new();
    for item in &items {
        match item.kind {
            Kind::Duplicate => {
                dups += 1;
                let j = item.original.expect("a duplicate names its original");
                assert!(j < item.index);
                let first = &items[j as usize];
                assert!(first.kind.is_fresh(), "original {j} is {}", first.kind);
                repeated_kinds.insert(first.kind);
                assert_eq!(item.body, first.body, "item {}", item.index);
                let Expected::Decision {
                    outcome, reason, ..
                } = first.expect
                else {
                    panic!("fresh item {j} expects a refusal");
                };
                assert_eq!(
                    item.expect,
                    Expected::Decision {
                        outcome,
                        reason,
                        duplicate: true
                    }
                );
            }
            Kind::Tampered => {
                // Same pcs_id as a known item, different signed content, the old signature.
                let Some(j) = item.original else { continue };
                copies += 1;
                let (a, b) = (
                    parse_pcs(&item.body).unwrap(),
                    parse_pcs(&items[j as usize].body).unwrap(),
                );
                assert_eq!(a.pcs_id, b.pcs_id);
                assert_eq!(a.sig, b.sig);
                assert_ne!(item.body, items[j as usize].body);
            }
            _ => assert_eq!(item.original, None),
        }
    }
    assert!(
        dups > 200 && copies > 200,
        "{dups} duplicates, {copies} tampered copies"
    );
}

#[test]
fn fresh_items_are_distinct_and_reproducible() {
    let signer = SigningMaterial::hmac(b"k", HmacMode::Digest).unwrap();
    let w = workload(signer.clone(), "escalated=0.1,rejected=0.1,duplicate=0.05");
    let items = w.items(0..5_000, 4);
    let mut ids = HashSet::new();
    for item in items.iter().filter(|i| i.kind.is_fresh()) {
        let pcs = parse_pcs(&item.body).unwrap();
        assert!(
            ids.insert(pcs.pcs_id),
            "item {} repeats a pcs_id",
            item.index
        );
    }
    // Built one by one or in parallel: the same bytes.
    for i in [0u64, 1, 2, 977, 4_999] {
        assert_eq!(w.item(i).body, items[i as usize].body);
    }
    // Another run (another random tag) makes other items.
    let other = workload(signer, "escalated=0.1,rejected=0.1,duplicate=0.05");
    assert_ne!(w.tag(), other.tag());
    assert_ne!(other.item(0).body, items[0].body);
}

#[test]
fn accepted_only_is_what_loadgen_sends() {
    let w = workload(
        SigningMaterial::hmac(b"k", HmacMode::Digest).unwrap(),
        "accepted=1",
    );
    for item in w.items(0..500, 2) {
        assert_eq!(item.kind, Kind::Accepted);
        w.check_locally(&item).unwrap();
    }
}

#[test]
fn mix_errors_name_the_problem() {
    let err = |s: &str| s.parse::<Mix>().unwrap_err();
    assert_eq!(err("escalated"), MixError::Syntax("escalated".into()));
    assert_eq!(err("bogus=0.1"), MixError::UnknownKind("bogus".into()));
    assert_eq!(
        err("tampered=0.1,tampered=0.2"),
        MixError::Repeated(Kind::Tampered)
    );
    assert!(matches!(
        err("rejected=abc"),
        MixError::NotANumber {
            kind: Kind::Rejected,
            ..
        }
    ));
    assert!(matches!(
        err("rejected=1.5"),
        MixError::OutOfRange {
            kind: Kind::Rejected,
            ..
        }
    ));
    assert!(matches!(err("rejected=-0.1"), MixError::OutOfRange { .. }));
    assert!(matches!(err("rejected=150%"), MixError::OutOfRange { .. }));
    assert!(matches!(err("rejected=NaN"), MixError::OutOfRange { .. }));
    assert!(matches!(
        err("escalated=0.6,rejected=0.5"),
        MixError::OverOne(_)
    ));
    assert!(matches!(
        err("accepted=0.5,rejected=0.2"),
        MixError::NotOne { .. }
    ));
    assert_eq!(err("duplicate=1"), MixError::NothingToDuplicate);
    assert_eq!(
        err("accepted=0,duplicate=0.5,tampered=0.5"),
        MixError::NothingToDuplicate
    );
    // Messages say what to do.
    assert!(
        err("bogus=1")
            .to_string()
            .contains("kinds: accepted, escalated")
    );

    let ok: Mix = "accepted=90%, escalated=10%".parse().unwrap();
    assert_eq!(ok.to_string(), "accepted=0.9,escalated=0.1");
    let empty: Mix = "".parse().unwrap();
    assert_eq!(empty, Mix::accepted_only());
}
