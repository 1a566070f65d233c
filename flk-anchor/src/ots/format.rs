//! The OpenTimestamps proof format: timestamps (trees of operations ending in attestations) and
//! the `.ots` detached-timestamp file, parsed and serialized byte for byte as the reference
//! implementation (python-opentimestamps) does.
//!
//! # Encoding
//!
//! * `varuint`: unsigned LEB128 (7 bits per byte, least significant first, high bit = more).
//! * `varbytes`: `varuint` length then the bytes.
//! * Operation: one tag byte; `append` (0xf0) and `prepend` (0xf1) are followed by their
//!   argument as `varbytes` (1..=4096 bytes); unary ops: sha1 0x02, ripemd160 0x03, sha256 0x08,
//!   keccak256 0x67, reverse 0xf2, hexlify 0xf3.
//! * Attestation: 8-byte tag then its payload as `varbytes`: pending `83dfe30d2ef90c8e` (payload:
//!   the calendar URI as `varbytes`), Bitcoin block header `0588960d73d71901` (payload: the block
//!   height as `varuint`); other tags are kept as unknown attestations.
//! * Timestamp on message `m`: its attestations and operations in sorted order, every item but
//!   the last preceded by `0xff`; an attestation item is `0x00` + attestation, an operation item
//!   is the operation then the timestamp on `op(m)`.
//! * `.ots` file: the 31-byte magic, `varuint` version 1, the file-hash op (sha256, 0x08), the
//!   32-byte digest, the timestamp on the digest. Nothing may follow.
//!
//! Only SHA-256, append, prepend, reverse and hexlify can be evaluated here (those are what
//! calendars and Bitcoin paths use); a proof with another hash op is refused as unsupported.

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};

/// The `.ots` file magic.
pub const HEADER_MAGIC: &[u8] =
    b"\x00OpenTimestamps\x00\x00Proof\x00\xbf\x89\xe2\xe8\x84\xe8\x92\x94";
/// The only major version.
pub const VERSION: u64 = 1;
/// Longest operation argument and message.
pub const MAX_MSG_LENGTH: usize = 4096;
/// Deepest timestamp tree accepted.
pub const MAX_DEPTH: usize = 256;
const MAX_PAYLOAD: usize = 8192;
const MAX_URI: usize = 1000;
const TAG_PENDING: [u8; 8] = [0x83, 0xdf, 0xe3, 0x0d, 0x2e, 0xf9, 0x0c, 0x8e];
const TAG_BITCOIN: [u8; 8] = [0x05, 0x88, 0x96, 0x0d, 0x73, 0xd7, 0x19, 0x01];

/// Why a proof could not be parsed, evaluated or serialized.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OtsFormatError {
    /// The input ended early.
    #[error("truncated at byte {0}")]
    Truncated(usize),
    /// A structural rule was broken.
    #[error("malformed at byte {at}: {what}")]
    Malformed {
        /// Byte offset.
        at: usize,
        /// What is wrong.
        what: &'static str,
    },
    /// An operation this implementation does not evaluate.
    #[error("unsupported operation tag {0:#04x}")]
    UnsupportedOp(u8),
    /// A timestamp with neither attestations nor operations cannot be serialized.
    #[error("empty timestamp")]
    Empty,
    /// Two timestamps with different messages cannot be merged.
    #[error("merging timestamps on different messages")]
    MergeMismatch,
}

/// An operation on a message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Op {
    /// `msg || arg`
    Append(Vec<u8>),
    /// `arg || msg`
    Prepend(Vec<u8>),
    /// SHA-256 of the message.
    Sha256,
    /// The bytes reversed.
    Reverse,
    /// Lowercase hex of the message.
    Hexlify,
}

impl Op {
    fn tag(&self) -> u8 {
        match self {
            Op::Sha256 => 0x08,
            Op::Append(_) => 0xf0,
            Op::Prepend(_) => 0xf1,
            Op::Reverse => 0xf2,
            Op::Hexlify => 0xf3,
        }
    }

    /// Applies the operation.
    pub fn apply(&self, msg: &[u8]) -> Vec<u8> {
        match self {
            Op::Append(arg) => [msg, arg].concat(),
            Op::Prepend(arg) => [arg.as_slice(), msg].concat(),
            Op::Sha256 => Sha256::digest(msg).to_vec(),
            Op::Reverse => msg.iter().rev().copied().collect(),
            Op::Hexlify => hex::encode(msg).into_bytes(),
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.push(self.tag());
        if let Op::Append(arg) | Op::Prepend(arg) = self {
            write_varbytes(out, arg);
        }
    }
}

/// Sorted as the reference implementation sorts: by tag, then argument.
impl Ord for Op {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let arg = |op: &Op| match op {
            Op::Append(a) | Op::Prepend(a) => Some(a.clone()),
            _ => None,
        };
        self.tag()
            .cmp(&other.tag())
            .then_with(|| arg(self).cmp(&arg(other)))
    }
}

impl PartialOrd for Op {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// A statement that a message existed at some time.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Attestation {
    /// Submitted to the calendar at `uri`, not yet in a block.
    Pending {
        /// The calendar's URI.
        uri: String,
    },
    /// The message is the Merkle root of Bitcoin block `height`'s header.
    Bitcoin {
        /// The block height.
        height: u64,
    },
    /// Another attestation kind, kept as is.
    Unknown {
        /// Its tag.
        tag: [u8; 8],
        /// Its payload.
        payload: Vec<u8>,
    },
}

impl Attestation {
    fn tag(&self) -> [u8; 8] {
        match self {
            Attestation::Pending { .. } => TAG_PENDING,
            Attestation::Bitcoin { .. } => TAG_BITCOIN,
            Attestation::Unknown { tag, .. } => *tag,
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.tag());
        let mut payload = Vec::new();
        match self {
            Attestation::Pending { uri } => write_varbytes(&mut payload, uri.as_bytes()),
            Attestation::Bitcoin { height } => write_varuint(&mut payload, *height),
            Attestation::Unknown { payload: p, .. } => payload.extend_from_slice(p),
        }
        write_varbytes(out, &payload);
    }
}

/// Sorted by tag, then URI, height or payload, as the reference implementation sorts.
impl Ord for Attestation {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        use Attestation::*;
        self.tag()
            .cmp(&other.tag())
            .then_with(|| match (self, other) {
                (Pending { uri: a }, Pending { uri: b }) => a.cmp(b),
                (Bitcoin { height: a }, Bitcoin { height: b }) => a.cmp(b),
                (Unknown { payload: a, .. }, Unknown { payload: b, .. }) => a.cmp(b),
                _ => std::cmp::Ordering::Equal,
            })
    }
}

impl PartialOrd for Attestation {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// A timestamp on `msg`: attestations of `msg` and operations leading to further timestamps.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Timestamp {
    /// The message this node is about.
    pub msg: Vec<u8>,
    /// Attestations of `msg`.
    pub attestations: BTreeSet<Attestation>,
    /// `op -> timestamp on op(msg)`.
    pub ops: BTreeMap<Op, Timestamp>,
}

impl Timestamp {
    /// An empty timestamp on `msg`.
    pub fn new(msg: Vec<u8>) -> Timestamp {
        Timestamp {
            msg,
            ..Timestamp::default()
        }
    }

    /// Adds `op` (or finds it) and returns the timestamp on its result.
    pub fn add_op(&mut self, op: Op) -> &mut Timestamp {
        let result = op.apply(&self.msg);
        self.ops.entry(op).or_insert_with(|| Timestamp::new(result))
    }

    /// Every attestation in the tree with the message it attests, depth first in sorted order.
    pub fn all_attestations(&self) -> Vec<(Vec<u8>, Attestation)> {
        let mut out: Vec<_> = self
            .attestations
            .iter()
            .map(|a| (self.msg.clone(), a.clone()))
            .collect();
        for stamp in self.ops.values() {
            out.extend(stamp.all_attestations());
        }
        out
    }

    /// Merges `other` (a timestamp on the same message) into this one.
    pub fn merge(&mut self, other: Timestamp) -> Result<(), OtsFormatError> {
        if self.msg != other.msg {
            return Err(OtsFormatError::MergeMismatch);
        }
        self.attestations.extend(other.attestations);
        for (op, stamp) in other.ops {
            match self.ops.get_mut(&op) {
                Some(mine) => mine.merge(stamp)?,
                None => {
                    self.ops.insert(op, stamp);
                }
            }
        }
        Ok(())
    }

    /// The node whose message is `msg`, if any.
    pub fn find_mut(&mut self, msg: &[u8]) -> Option<&mut Timestamp> {
        if self.msg == msg {
            return Some(self);
        }
        self.ops.values_mut().find_map(|t| t.find_mut(msg))
    }

    /// Serializes the timestamp (without the message, which the reader knows).
    pub fn serialize(&self) -> Result<Vec<u8>, OtsFormatError> {
        let mut out = Vec::new();
        self.write(&mut out)?;
        Ok(out)
    }

    fn write(&self, out: &mut Vec<u8>) -> Result<(), OtsFormatError> {
        let atts: Vec<&Attestation> = self.attestations.iter().collect();
        let Some((last_att, first_atts)) = atts.split_last() else {
            if self.ops.is_empty() {
                return Err(OtsFormatError::Empty);
            }
            return self.write_ops(out);
        };
        for att in first_atts {
            out.extend_from_slice(&[0xff, 0x00]);
            att.write(out);
        }
        if self.ops.is_empty() {
            out.push(0x00);
            last_att.write(out);
            return Ok(());
        }
        out.extend_from_slice(&[0xff, 0x00]);
        last_att.write(out);
        self.write_ops(out)
    }

    fn write_ops(&self, out: &mut Vec<u8>) -> Result<(), OtsFormatError> {
        let n = self.ops.len();
        for (i, (op, stamp)) in self.ops.iter().enumerate() {
            if i + 1 < n {
                out.push(0xff);
            }
            op.write(out);
            stamp.write(out)?;
        }
        Ok(())
    }

    /// Parses a serialized timestamp on `msg`; the whole input must be consumed.
    pub fn deserialize(bytes: &[u8], msg: Vec<u8>) -> Result<Timestamp, OtsFormatError> {
        let mut r = Reader { buf: bytes, pos: 0 };
        let t = read_timestamp(&mut r, msg, MAX_DEPTH)?;
        r.finish()?;
        Ok(t)
    }
}

/// A detached timestamp file (`.ots`) for a SHA-256 file digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetachedTimestampFile {
    /// The timestamp on the digest (its `msg` is the digest).
    pub timestamp: Timestamp,
}

impl DetachedTimestampFile {
    /// The file digest.
    pub fn digest(&self) -> &[u8] {
        &self.timestamp.msg
    }

    /// The `.ots` bytes.
    pub fn serialize(&self) -> Result<Vec<u8>, OtsFormatError> {
        if self.timestamp.msg.len() != 32 {
            return Err(OtsFormatError::Malformed {
                at: 0,
                what: "file digest must be 32 bytes",
            });
        }
        let mut out = HEADER_MAGIC.to_vec();
        write_varuint(&mut out, VERSION);
        Op::Sha256.write(&mut out);
        out.extend_from_slice(&self.timestamp.msg);
        self.timestamp.write(&mut out)?;
        Ok(out)
    }

    /// Parses `.ots` bytes (SHA-256 file hash only).
    pub fn deserialize(bytes: &[u8]) -> Result<DetachedTimestampFile, OtsFormatError> {
        let mut r = Reader { buf: bytes, pos: 0 };
        if r.take(HEADER_MAGIC.len())? != HEADER_MAGIC {
            return Err(r.malformed("not an OpenTimestamps proof (bad magic)"));
        }
        if r.varuint()? != VERSION {
            return Err(r.malformed("unsupported major version"));
        }
        let tag = r.byte()?;
        if tag != Op::Sha256.tag() {
            return Err(OtsFormatError::UnsupportedOp(tag));
        }
        let digest = r.take(32)?.to_vec();
        let timestamp = read_timestamp(&mut r, digest, MAX_DEPTH)?;
        r.finish()?;
        Ok(DetachedTimestampFile { timestamp })
    }
}

fn read_timestamp(
    r: &mut Reader<'_>,
    msg: Vec<u8>,
    depth: usize,
) -> Result<Timestamp, OtsFormatError> {
    if depth == 0 {
        return Err(r.malformed("timestamp nested too deeply"));
    }
    let mut t = Timestamp::new(msg);
    let mut tag = r.byte()?;
    while tag == 0xff {
        let item = r.byte()?;
        read_item(r, &mut t, item, depth)?;
        tag = r.byte()?;
    }
    read_item(r, &mut t, tag, depth)?;
    Ok(t)
}

fn read_item(
    r: &mut Reader<'_>,
    t: &mut Timestamp,
    tag: u8,
    depth: usize,
) -> Result<(), OtsFormatError> {
    if tag == 0x00 {
        let att = read_attestation(r)?;
        t.attestations.insert(att);
        return Ok(());
    }
    let op = match tag {
        0x08 => Op::Sha256,
        0xf2 => Op::Reverse,
        0xf3 => Op::Hexlify,
        0xf0 | 0xf1 => {
            let arg = r.varbytes(MAX_MSG_LENGTH)?.to_vec();
            if arg.is_empty() {
                return Err(r.malformed("empty operation argument"));
            }
            if tag == 0xf0 {
                Op::Append(arg)
            } else {
                Op::Prepend(arg)
            }
        }
        other => return Err(OtsFormatError::UnsupportedOp(other)),
    };
    let result = op.apply(&t.msg);
    if result.len() > MAX_MSG_LENGTH {
        return Err(r.malformed("operation result too long"));
    }
    let stamp = read_timestamp(r, result, depth - 1)?;
    t.ops.insert(op, stamp);
    Ok(())
}

fn read_attestation(r: &mut Reader<'_>) -> Result<Attestation, OtsFormatError> {
    let tag: [u8; 8] = r
        .take(8)?
        .try_into()
        .map_err(|_| r.malformed("attestation tag"))?;
    let payload = r.varbytes(MAX_PAYLOAD)?;
    let mut p = Reader {
        buf: payload,
        pos: 0,
    };
    let att = match tag {
        TAG_PENDING => {
            let uri = p.varbytes(MAX_URI)?;
            let ok = uri
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"._-/:".contains(b));
            if !ok {
                return Err(r.malformed("pending attestation URI has invalid characters"));
            }
            Attestation::Pending {
                uri: String::from_utf8_lossy(uri).into_owned(),
            }
        }
        TAG_BITCOIN => Attestation::Bitcoin {
            height: p.varuint()?,
        },
        tag => {
            return Ok(Attestation::Unknown {
                tag,
                payload: payload.to_vec(),
            });
        }
    };
    p.finish()?;
    Ok(att)
}

fn write_varuint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn write_varbytes(out: &mut Vec<u8>, bytes: &[u8]) {
    write_varuint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn malformed(&self, what: &'static str) -> OtsFormatError {
        OtsFormatError::Malformed { at: self.pos, what }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], OtsFormatError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(OtsFormatError::Truncated(self.pos))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn byte(&mut self) -> Result<u8, OtsFormatError> {
        Ok(self.take(1)?[0])
    }

    fn varuint(&mut self) -> Result<u64, OtsFormatError> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            let bits = u64::from(b & 0x7f);
            if shift == 63 && bits > 1 {
                return Err(self.malformed("varuint overflows 64 bits"));
            }
            v |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.malformed("varuint overflows 64 bits"))
    }

    fn varbytes(&mut self, max: usize) -> Result<&'a [u8], OtsFormatError> {
        let len = self.varuint()?;
        let len = usize::try_from(len)
            .ok()
            .filter(|&l| l <= max)
            .ok_or_else(|| self.malformed("length above the limit"))?;
        self.take(len)
    }

    fn finish(&self) -> Result<(), OtsFormatError> {
        if self.pos != self.buf.len() {
            return Err(self.malformed("trailing bytes"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> DetachedTimestampFile {
        let mut t = Timestamp::new(vec![7; 32]);
        let c = t.add_op(Op::Append(vec![1, 2, 3])).add_op(Op::Sha256);
        c.attestations.insert(Attestation::Pending {
            uri: "https://a.example".into(),
        });
        c.attestations.insert(Attestation::Pending {
            uri: "https://b.example".into(),
        });
        let b = c.add_op(Op::Prepend(vec![9; 32])).add_op(Op::Sha256);
        b.attestations
            .insert(Attestation::Bitcoin { height: 358_391 });
        b.attestations.insert(Attestation::Unknown {
            tag: [1; 8],
            payload: vec![4, 5],
        });
        t.add_op(Op::Reverse)
            .attestations
            .insert(Attestation::Bitcoin { height: 1 });
        DetachedTimestampFile { timestamp: t }
    }

    #[test]
    fn roundtrip_and_layout() {
        let f = sample();
        let bytes = f.serialize().unwrap();
        assert!(bytes.starts_with(HEADER_MAGIC));
        assert_eq!(
            bytes[HEADER_MAGIC.len()..HEADER_MAGIC.len() + 2],
            [0x01, 0x08]
        );
        let back = DetachedTimestampFile::deserialize(&bytes).unwrap();
        assert_eq!(back, f);
        assert_eq!(back.serialize().unwrap(), bytes);
        let heights: Vec<_> = back
            .timestamp
            .all_attestations()
            .into_iter()
            .filter_map(|(_, a)| match a {
                Attestation::Bitcoin { height } => Some(height),
                _ => None,
            })
            .collect();
        assert_eq!(heights, vec![358_391, 1]);
    }

    #[test]
    fn varuint_encoding() {
        let mut out = Vec::new();
        write_varuint(&mut out, 358_391);
        assert_eq!(out, [0xf7, 0xef, 0x15]);
        let mut r = Reader { buf: &out, pos: 0 };
        assert_eq!(r.varuint().unwrap(), 358_391);
        let mut r = Reader {
            buf: &[0xff; 11],
            pos: 0,
        };
        assert!(r.varuint().is_err());
    }

    #[test]
    fn malformed_inputs_are_errors_not_panics() {
        let bytes = sample().serialize().unwrap();
        for len in 0..bytes.len() {
            assert!(
                DetachedTimestampFile::deserialize(&bytes[..len]).is_err(),
                "{len}"
            );
        }
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(DetachedTimestampFile::deserialize(&trailing).is_err());
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x55;
            let _ = DetachedTimestampFile::deserialize(&b);
        }
        // Unbounded nesting is refused.
        let mut deep = HEADER_MAGIC.to_vec();
        deep.extend_from_slice(&[0x01, 0x08]);
        deep.extend_from_slice(&[0; 32]);
        deep.extend(std::iter::repeat_n(0xf2, 1000));
        assert!(matches!(
            DetachedTimestampFile::deserialize(&deep),
            Err(OtsFormatError::Malformed { .. })
        ));
    }

    #[test]
    fn merge_adds_branches() {
        let mut a = Timestamp::new(vec![1]);
        a.add_op(Op::Sha256)
            .attestations
            .insert(Attestation::Pending {
                uri: "https://c".into(),
            });
        let mut b = Timestamp::new(vec![1]);
        b.add_op(Op::Sha256)
            .add_op(Op::Append(vec![2]))
            .attestations
            .insert(Attestation::Bitcoin { height: 5 });
        a.merge(b).unwrap();
        assert_eq!(a.all_attestations().len(), 2);
        assert_eq!(
            a.merge(Timestamp::new(vec![2])),
            Err(OtsFormatError::MergeMismatch)
        );
    }
}
