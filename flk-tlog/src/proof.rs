//! Inclusion and consistency proofs (RFC 9162 §2.1.3 and §2.1.4): generation from stored
//! subtree hashes, and the RFC's verification algorithms.
//!
//! # Generation from stored hashes
//!
//! Proofs are generated without rehashing leaves. The tree keeps, for every height `h`, the hash
//! of every *complete* subtree of `2^h` leaves aligned at a multiple of `2^h` (a [`NodeSource`]).
//! The RFC's recursive definitions (`PATH`, `SUBPROOF`) only ever ask for `MTH(D[lo:hi])` of a
//! range whose start `lo` is a multiple of the largest power of two not above `hi - lo`; such a
//! range splits into at most 64 complete aligned subtrees (the binary decomposition of
//! `hi - lo`, largest first), so its hash is folded from those stored hashes right to left
//! ([`subtree_root`]). Only the incomplete right edge is computed; a proof costs `O(log² n)`
//! lookups and hashes in the worst case and `O(log n)` typically.
//!
//! # Verification
//!
//! [`verify_inclusion`] and [`verify_consistency`] are the step-by-step algorithms of RFC 9162
//! §2.1.3.2 and §2.1.4.2; comments carry the RFC's step numbers. They use no stored state.

use crate::error::Error;
use crate::hash::{Hash, node_hash};

/// Where proof generation reads complete subtree hashes from.
pub trait NodeSource {
    /// The hash of the complete subtree of height `height` (`2^height` leaves) with index
    /// `index` at that height, i.e. `MTH(D[index·2^height : (index+1)·2^height])`.
    ///
    /// Callers only ask for subtrees that are complete in the tree the source holds.
    fn node(&self, height: u8, index: u64) -> Result<Hash, Error>;
}

/// Why a proof did not verify. Messages name the RFC step that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The leaf index is not below the tree size (RFC 9162 §2.1.3.2 step 1).
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange {
        /// The claimed leaf index.
        index: u64,
        /// The claimed tree size.
        size: u64,
    },
    /// The sizes do not satisfy `0 < first <= second`.
    #[error("invalid consistency sizes: first {first}, second {second}")]
    InvalidSizes {
        /// Size of the older tree.
        first: u64,
        /// Size of the newer tree.
        second: u64,
    },
    /// A consistency proof between different sizes was empty (§2.1.4.2 step 1), or a proof
    /// between equal sizes was not.
    #[error("consistency proof has the wrong length for equal or different sizes")]
    BadLength,
    /// The proof had more elements than the tree shape allows (`sn` reached 0 early).
    #[error("proof is too long for the tree shape")]
    TooLong,
    /// The proof had fewer elements than the tree shape needs (`sn` not 0 at the end).
    #[error("proof is too short for the tree shape")]
    TooShort,
    /// The recomputed root differs from the expected one.
    #[error("recomputed root does not match")]
    RootMismatch,
    /// The recomputed old root differs from the expected old root (consistency only).
    #[error("recomputed first root does not match")]
    FirstRootMismatch,
}

/// The largest power of two strictly below `n` (`n >= 2`).
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// `MTH(D[lo:hi])` for a range whose start is aligned to the largest power of two not above
/// its length (every range the RFC recursions produce is), folded from complete subtrees.
pub fn subtree_root<S: NodeSource + ?Sized>(src: &S, lo: u64, hi: u64) -> Result<Hash, Error> {
    let n = hi
        .checked_sub(lo)
        .filter(|n| *n > 0)
        .ok_or(Error::InvalidRange {
            first: lo,
            second: hi,
        })?;
    let top = 63 - n.leading_zeros();
    if lo & ((1u64 << top) - 1) != 0 {
        return Err(Error::InvalidRange {
            first: lo,
            second: hi,
        });
    }
    // Binary decomposition of n, largest subtree first; fold right to left.
    let mut parts: [Hash; 64] = [[0; 32]; 64];
    let mut count = 0;
    let mut pos = lo;
    for height in (0..=top).rev() {
        if n & (1u64 << height) != 0 {
            parts[count] = src.node(height as u8, pos >> height)?;
            count += 1;
            pos += 1u64 << height;
        }
    }
    let mut acc = parts[count - 1];
    for part in parts[..count - 1].iter().rev() {
        acc = node_hash(part, &acc);
    }
    Ok(acc)
}

/// The root hash of the tree of `size` leaves (`SHA-256("")` for size 0).
pub fn tree_root<S: NodeSource + ?Sized>(src: &S, size: u64) -> Result<Hash, Error> {
    if size == 0 {
        return Ok(crate::hash::empty_root());
    }
    subtree_root(src, 0, size)
}

/// RFC 9162 §2.1.3.1 `PATH(index, D[size])`, leaf to root, from stored hashes.
pub fn inclusion_proof<S: NodeSource + ?Sized>(
    src: &S,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, Error> {
    if index >= size {
        return Err(Error::IndexOutOfRange { index, size });
    }
    let mut out = Vec::with_capacity(64);
    path(src, index, 0, size, &mut out)?;
    Ok(out)
}

fn path<S: NodeSource + ?Sized>(
    src: &S,
    m: u64,
    lo: u64,
    hi: u64,
    out: &mut Vec<Hash>,
) -> Result<(), Error> {
    if hi - lo == 1 {
        return Ok(());
    }
    let k = split_point(hi - lo);
    if m < lo + k {
        path(src, m, lo, lo + k, out)?;
        out.push(subtree_root(src, lo + k, hi)?);
    } else {
        path(src, m, lo + k, hi, out)?;
        out.push(src.node(k.trailing_zeros() as u8, lo >> k.trailing_zeros())?);
    }
    Ok(())
}

/// RFC 9162 §2.1.4.1 `PROOF(first, D[second])` from stored hashes, for
/// `0 < first <= second`. The proof between equal sizes is empty.
pub fn consistency_proof<S: NodeSource + ?Sized>(
    src: &S,
    first: u64,
    second: u64,
) -> Result<Vec<Hash>, Error> {
    if first == 0 || first > second {
        return Err(Error::InvalidRange { first, second });
    }
    let mut out = Vec::with_capacity(64);
    subproof(src, first, 0, second, true, &mut out)?;
    Ok(out)
}

/// `SUBPROOF(m, D[lo:hi], b)` where `m` counts leaves from `lo`.
fn subproof<S: NodeSource + ?Sized>(
    src: &S,
    m: u64,
    lo: u64,
    hi: u64,
    b: bool,
    out: &mut Vec<Hash>,
) -> Result<(), Error> {
    let n = hi - lo;
    if m == n {
        if !b {
            out.push(subtree_root(src, lo, hi)?);
        }
        return Ok(());
    }
    let k = split_point(n);
    if m <= k {
        subproof(src, m, lo, lo + k, b, out)?;
        out.push(subtree_root(src, lo + k, hi)?);
    } else {
        subproof(src, m - k, lo + k, hi, false, out)?;
        out.push(src.node(k.trailing_zeros() as u8, lo >> k.trailing_zeros())?);
    }
    Ok(())
}

/// Recomputes the root from an inclusion proof: RFC 9162 §2.1.3.2 steps 1–4, plus the `sn == 0`
/// check of step 5. The caller compares the result with the trusted root.
pub fn root_from_inclusion(
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
) -> Result<Hash, ProofError> {
    // 1. leaf_index must be below tree_size.
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    // 2. fn = leaf_index, sn = tree_size - 1.
    let mut fn_ = index;
    let mut sn = size - 1;
    // 3. r = hash.
    let mut r = *leaf_hash;
    // 4. For each p in the inclusion path:
    for p in proof {
        // a. sn == 0: fail.
        if sn == 0 {
            return Err(ProofError::TooLong);
        }
        // b. LSB(fn) set, or fn == sn:
        if fn_ & 1 == 1 || fn_ == sn {
            // i. r = HASH(0x01 || p || r)
            r = node_hash(p, &r);
            // ii. if LSB(fn) is not set, shift until it is or fn is 0.
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            // Otherwise r = HASH(0x01 || r || p)
            r = node_hash(&r, p);
        }
        // c. shift both once.
        fn_ >>= 1;
        sn >>= 1;
    }
    // 5. sn must be 0.
    if sn != 0 {
        return Err(ProofError::TooShort);
    }
    Ok(r)
}

/// RFC 9162 §2.1.3.2: verifies that `leaf_hash` is at `index` in the tree of `size` leaves
/// whose root is `root`.
pub fn verify_inclusion(
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    let r = root_from_inclusion(leaf_hash, index, size, proof)?;
    if &r != root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// RFC 9162 §2.1.4.2: verifies that the tree of `second` leaves with root `second_root` extends
/// the tree of `first` leaves with root `first_root`, for `0 < first <= second`.
///
/// For `first == second` (outside the RFC's algorithm, whose step 1 rejects an empty proof) the
/// proof must be empty and the roots equal.
pub fn verify_consistency(
    first: u64,
    second: u64,
    proof: &[Hash],
    first_root: &Hash,
    second_root: &Hash,
) -> Result<(), ProofError> {
    if first == 0 || first > second {
        return Err(ProofError::InvalidSizes { first, second });
    }
    if first == second {
        if !proof.is_empty() {
            return Err(ProofError::BadLength);
        }
        if first_root != second_root {
            return Err(ProofError::RootMismatch);
        }
        return Ok(());
    }
    // 1. An empty consistency_path fails.
    if proof.is_empty() {
        return Err(ProofError::BadLength);
    }
    // 2. If first is an exact power of 2, prepend first_hash.
    let mut path = proof.iter();
    let prepended = first.is_power_of_two();
    let head = if prepended {
        *first_root
    } else {
        // (the path is non-empty: checked in step 1)
        *path.next().ok_or(ProofError::BadLength)?
    };
    // 3. fn = first - 1, sn = second - 1.
    let mut fn_ = first - 1;
    let mut sn = second - 1;
    // 4. If LSB(fn) is set, shift both until it is not.
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    // 5. fr = sr = first value of the path.
    let mut fr = head;
    let mut sr = head;
    // 6. For each subsequent value c:
    for c in path {
        // a. sn == 0: fail.
        if sn == 0 {
            return Err(ProofError::TooLong);
        }
        // b. LSB(fn) set, or fn == sn:
        if fn_ & 1 == 1 || fn_ == sn {
            // i. fr = HASH(0x01 || c || fr); ii. sr = HASH(0x01 || c || sr)
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            // iii. if LSB(fn) is not set, shift until it is or fn is 0.
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            // Otherwise sr = HASH(0x01 || sr || c)
            sr = node_hash(&sr, c);
        }
        // c. shift both once.
        fn_ >>= 1;
        sn >>= 1;
    }
    // 7. fr == first_hash, sr == second_hash, sn == 0.
    if sn != 0 {
        return Err(ProofError::TooShort);
    }
    if &fr != first_root {
        return Err(ProofError::FirstRootMismatch);
    }
    if &sr != second_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_point_is_largest_power_below() {
        assert_eq!(split_point(2), 1);
        assert_eq!(split_point(3), 2);
        assert_eq!(split_point(4), 2);
        assert_eq!(split_point(5), 4);
        assert_eq!(split_point(1 << 40), 1 << 39);
        assert_eq!(split_point((1 << 40) + 1), 1 << 40);
    }
}
