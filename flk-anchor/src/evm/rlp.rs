//! Recursive Length Prefix encoding (Ethereum yellow paper, appendix B), encode-only: just what
//! a legacy transaction needs.

/// RLP of a byte string.
pub fn bytes(b: &[u8]) -> Vec<u8> {
    match b {
        [single] if *single < 0x80 => vec![*single],
        _ => [length_prefix(0x80, b.len()), b.to_vec()].concat(),
    }
}

/// RLP of an unsigned integer: its minimal big-endian bytes (zero is the empty string).
pub fn uint(n: u128) -> Vec<u8> {
    let be = n.to_be_bytes();
    let start = be.iter().position(|&x| x != 0).unwrap_or(be.len());
    bytes(&be[start..])
}

/// RLP of a list whose items are already encoded.
pub fn list(items: &[Vec<u8>]) -> Vec<u8> {
    let payload = items.concat();
    [length_prefix(0xc0, payload.len()), payload].concat()
}

fn length_prefix(offset: u8, len: usize) -> Vec<u8> {
    if len <= 55 {
        // len <= 55 fits in a u8 and offset + len <= 0xf7.
        vec![offset + len as u8]
    } else {
        let be = (len as u64).to_be_bytes();
        let start = be.iter().position(|&x| x != 0).unwrap_or(be.len() - 1);
        let len_bytes = &be[start..];
        [
            vec![offset + 55 + len_bytes.len() as u8],
            len_bytes.to_vec(),
        ]
        .concat()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yellow_paper_examples() {
        assert_eq!(bytes(b"dog"), b"\x83dog");
        assert_eq!(list(&[bytes(b"cat"), bytes(b"dog")]), b"\xc8\x83cat\x83dog");
        assert_eq!(bytes(b""), [0x80]);
        assert_eq!(list(&[]), [0xc0]);
        assert_eq!(uint(0), [0x80]);
        assert_eq!(uint(15), [0x0f]);
        assert_eq!(uint(1024), [0x82, 0x04, 0x00]);
        let lorem = b"Lorem ipsum dolor sit amet, consectetur adipisicing elit";
        assert_eq!(bytes(lorem)[..2], [0xb8, 0x38]);
        // [ [], [[]], [ [], [[]] ] ]
        let empty = list(&[]);
        let one = list(std::slice::from_ref(&empty));
        assert_eq!(
            list(&[empty.clone(), one.clone(), list(&[empty, one])]),
            [0xc7, 0xc0, 0xc1, 0xc0, 0xc3, 0xc0, 0xc1, 0xc0]
        );
    }
}
