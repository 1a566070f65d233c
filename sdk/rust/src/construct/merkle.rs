//! The field agents' Merkle root over data chunks (their `merkle.py`): leaves are the hex
//! SHA-256 of each chunk, a parent is the SHA-256 of the two children's hex strings
//! concatenated (128 ASCII characters), an odd last node is paired with itself, one leaf is
//! its own root, and no data gives 64 zeros. (Not RFC 6962: no domain separation; this is
//! the format the protocol's `merkle_root` carries.)

use std::string::String;
use std::vec::Vec;

use sha2::{Digest, Sha256};

use crate::hex;

/// The root (64 lowercase hex characters) and the number of leaves.
pub fn merkle_root(data: &[u8], chunk_size: usize) -> (String, usize) {
    let mut level: Vec<[u8; 64]> = data
        .chunks(chunk_size.max(1))
        .map(|c| hex_digest(&[c]))
        .collect();
    let leaves = level.len();
    if leaves == 0 {
        return ("0".repeat(64), 0);
    }
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| {
                let right = pair.get(1).unwrap_or(&pair[0]);
                hex_digest(&[&pair[0], right])
            })
            .collect();
    }
    (String::from_utf8_lossy(&level[0]).into_owned(), leaves)
}

fn hex_digest(parts: &[&[u8]]) -> [u8; 64] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    let text = hex::encode(&h.finalize());
    let mut out = [0u8; 64];
    out.copy_from_slice(text.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_trees() {
        assert_eq!(merkle_root(b"", 64), ("0".repeat(64), 0));
        let one = hex::encode(&Sha256::digest(b"abc"));
        assert_eq!(merkle_root(b"abc", 64), (one.clone(), 1));
        let two = hex::encode(&Sha256::digest(std::format!("{one}{one}").as_bytes()));
        assert_eq!(merkle_root(b"abcabc", 3), (two, 2));
    }
}
