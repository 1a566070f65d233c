//! RFC 9162 §2.1 Merkle tree hashing: the leaf and interior node hash functions.
//!
//! * leaf hash: `SHA-256(0x00 || entry)`
//! * node hash: `SHA-256(0x01 || left || right)`
//! * root of the empty tree: `SHA-256("")`
//!
//! The `0x00`/`0x01` domain separation makes a leaf hash never equal to an interior node hash
//! of the same bytes (second-preimage resistance of the tree).

use sha2::{Digest, Sha256};

/// Size in bytes of every hash in the tree.
pub const HASH_SIZE: usize = 32;

/// A SHA-256 Merkle tree hash (leaf, node or root).
pub type Hash = [u8; HASH_SIZE];

/// `SHA-256(0x00 || entry)`: the hash of a log entry as a leaf of the tree.
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(entry);
    h.finalize().into()
}

/// `SHA-256(0x01 || left || right)`: the hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut buf = [0u8; 1 + 2 * HASH_SIZE];
    buf[0] = 0x01;
    buf[1..1 + HASH_SIZE].copy_from_slice(left);
    buf[1 + HASH_SIZE..].copy_from_slice(right);
    Sha256::digest(buf).into()
}

/// `SHA-256("")`: the root hash of the empty tree (size 0).
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// Lowercase hex of a hash, for messages and logs.
pub fn to_hex(hash: &Hash) -> String {
    hex::encode(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        assert_eq!(
            to_hex(&empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn leaf_and_node_are_domain_separated() {
        // RFC 6962 test vector: the leaf hash of the empty entry.
        assert_eq!(
            to_hex(&leaf_hash(b"")),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
        let l = leaf_hash(b"a");
        let mut raw = vec![0x01];
        raw.extend_from_slice(&l);
        raw.extend_from_slice(&l);
        assert_ne!(leaf_hash(&raw[1..]), node_hash(&l, &l));
    }
}
