//! Proof generation from stored hashes against the literal RFC 9162 definitions, for every
//! tree size up to 1,024, and the RFC verifiers on valid and mutated proofs.

use flk_tlog::{Error, Hash, ProofError, leaf_hash, verify_consistency, verify_inclusion};
use proptest::prelude::*;

use crate::common::{Reference, entries, mem_log};

const N: u64 = 1024;

/// Every size 1..=1024: the root; every index for sizes up to 256, and for larger sizes the
/// first, last and every 7th index plus the indices around tile borders.
#[test]
fn inclusion_proofs_match_the_reference_for_every_size() {
    let log = mem_log(N, 100);
    let all = entries(0..N);
    let mut reference = Reference::new(&all);
    let mut checked = 0u64;
    for size in 1..=N {
        let root = reference.mth(0, size as usize);
        assert_eq!(log.root_at(size).unwrap(), root, "root at size {size}");
        let indices: Box<dyn Iterator<Item = u64>> =
            if size <= 256 {
                Box::new(0..size)
            } else {
                Box::new((0..size).filter(move |i| {
                    i % 7 == 0 || *i >= size - 2 || i % 256 <= 1 || i % 256 >= 254
                }))
            };
        for index in indices {
            let proof = log.inclusion_proof(index, size).unwrap();
            let expected = reference.path(index as usize, 0, size as usize);
            assert_eq!(proof, expected, "inclusion proof of {index} in {size}");
            verify_inclusion(&leaf_hash(&all[index as usize]), index, size, &proof, &root)
                .unwrap_or_else(|e| panic!("valid proof of {index} in {size} rejected: {e}"));
            checked += 1;
        }
    }
    assert!(checked > 60_000, "checked {checked}");
}

/// Every pair `0 < m <= n <= 128`.
#[test]
fn consistency_proofs_match_the_reference_for_all_small_pairs() {
    let log = mem_log(128, 13);
    let mut reference = Reference::new(&entries(0..128));
    for n in 1..=128usize {
        let root_n = reference.mth(0, n);
        for m in 1..=n {
            let proof = log.consistency_proof(m as u64, n as u64).unwrap();
            assert_eq!(proof, reference.proof(m, n), "consistency {m} -> {n}");
            let root_m = reference.mth(0, m);
            verify_consistency(m as u64, n as u64, &proof, &root_m, &root_n)
                .unwrap_or_else(|e| panic!("valid proof {m} -> {n} rejected: {e}"));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Random pairs up to 1,024.
    #[test]
    fn consistency_proofs_match_the_reference_for_random_pairs(a in 1u64..=N, b in 1u64..=N) {
        let (m, n) = (a.min(b), a.max(b));
        let log = shared_log();
        let mut reference = Reference::new(&entries(0..N));
        let proof = log.consistency_proof(m, n).unwrap();
        prop_assert_eq!(&proof, &reference.proof(m as usize, n as usize));
        let (root_m, root_n) = (reference.mth(0, m as usize), reference.mth(0, n as usize));
        prop_assert!(verify_consistency(m, n, &proof, &root_m, &root_n).is_ok());
        // A different first root fails.
        prop_assert!(verify_consistency(m, n, &proof, &root_n, &root_n).is_err() || m == n);
    }
}

/// One 1,024-entry log per test binary, shared read-only by the proptest cases.
fn shared_log() -> &'static flk_tlog::Log<flk_tlog::MemStore> {
    static LOG: std::sync::OnceLock<flk_tlog::Log<flk_tlog::MemStore>> = std::sync::OnceLock::new();
    LOG.get_or_init(|| mem_log(N, 256))
}

/// Every way to damage a proof: flip a bit in any element, drop, append or duplicate an
/// element, or swap two elements. (A claimed size is bound by the signed checkpoint, not by
/// the proof: the proof for index 0 of 3 also verifies as index 0 of 4 against the same root.)
fn mutations(proof: &[Hash]) -> Vec<Vec<Hash>> {
    let mut out = Vec::new();
    for i in 0..proof.len() {
        for bit in [0usize, 100, 255] {
            let mut p = proof.to_vec();
            p[i][bit / 8] ^= 1 << (bit % 8);
            out.push(p);
        }
        let mut p = proof.to_vec();
        p.remove(i);
        out.push(p);
        let mut p = proof.to_vec();
        p.insert(i, proof[i]);
        out.push(p);
        if i + 1 < proof.len() && proof[i] != proof[i + 1] {
            let mut p = proof.to_vec();
            p.swap(i, i + 1);
            out.push(p);
        }
    }
    let mut p = proof.to_vec();
    p.push([0; 32]);
    out.push(p);
    out
}

#[test]
fn verifiers_reject_mutated_proofs() {
    let log = mem_log(300, 300);
    let all = entries(0..300);
    for size in [1u64, 2, 3, 7, 8, 9, 100, 255, 256, 257, 300] {
        let root = log.root_at(size).unwrap();
        for index in [0, size / 2, size - 1] {
            let leaf = leaf_hash(&all[index as usize]);
            let proof = log.inclusion_proof(index, size).unwrap();
            for bad in mutations(&proof) {
                assert!(
                    verify_inclusion(&leaf, index, size, &bad, &root).is_err(),
                    "{index}/{size}"
                );
            }
            let other = (index + 1) % size;
            if other != index {
                assert!(verify_inclusion(&leaf, other, size, &proof, &root).is_err());
            }
            assert_eq!(
                verify_inclusion(&leaf, size, size, &proof, &root),
                Err(ProofError::IndexOutOfRange { index: size, size })
            );
        }
        for first in [1, size / 3 + 1, size - 1, size]
            .into_iter()
            .filter(|f| *f > 0)
        {
            let proof = log.consistency_proof(first, size).unwrap();
            let root_first = log.root_at(first).unwrap();
            for bad in mutations(&proof) {
                assert!(
                    verify_consistency(first, size, &bad, &root_first, &root).is_err(),
                    "{first} -> {size}"
                );
            }
            if first > 1 {
                assert!(verify_consistency(first - 1, size, &proof, &root_first, &root).is_err());
            }
        }
    }
}

#[test]
fn equal_sizes_and_bad_ranges() {
    let log = mem_log(10, 10);
    let root = log.root_at(10).unwrap();
    assert_eq!(log.consistency_proof(10, 10).unwrap(), Vec::<Hash>::new());
    assert!(verify_consistency(10, 10, &[], &root, &root).is_ok());
    assert_eq!(
        verify_consistency(10, 10, &[root], &root, &root),
        Err(ProofError::BadLength)
    );
    assert_eq!(
        verify_consistency(10, 10, &[], &[0; 32], &root),
        Err(ProofError::RootMismatch)
    );
    assert!(matches!(
        log.consistency_proof(0, 5),
        Err(Error::InvalidRange { .. })
    ));
    assert!(matches!(
        log.consistency_proof(6, 5),
        Err(Error::InvalidRange { .. })
    ));
    assert!(matches!(
        log.consistency_proof(5, 11),
        Err(Error::BeyondSize { .. })
    ));
    assert!(matches!(
        log.inclusion_proof(10, 10),
        Err(Error::IndexOutOfRange { .. })
    ));
    assert!(matches!(
        log.inclusion_proof(0, 11),
        Err(Error::BeyondSize { .. })
    ));
    assert_eq!(log.root_at(0).unwrap(), flk_tlog::empty_root());
    assert_eq!(
        verify_consistency(0, 5, &[], &root, &root),
        Err(ProofError::InvalidSizes {
            first: 0,
            second: 5
        })
    );
}
