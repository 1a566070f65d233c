//! Offline verification of the audit log's inclusion proofs, `no_std` + `alloc`: the proof
//! bundle of `GET /v1/audit/proof/{pcs_id}` checked against the log's verifier key alone (what
//! `flk audit verify --bundle` does), reimplemented here so agents need no server crate.
//!
//! * RFC 9162 hashing: leaf `SHA-256(0x00 || entry)`, node `SHA-256(0x01 || left || right)`,
//!   inclusion paths leaf to root (RFC 9162 section 2.1.3.2);
//! * checkpoints are C2SP signed notes: text `<origin>\n<size>\n<base64 root>\n`, a blank
//!   line, signature lines `— <name> <base64(key id || Ed25519 signature)>`; the verifier key
//!   is `<name>+<8 hex key id>+<base64(0x01 || public key)>`, the key id
//!   `SHA-256(name || 0x0A || 0x01 || public key)[:4]`;
//! * the entry is svc-audit's version-1 decision encoding (big-endian, `str16` strings):
//!   version, tenant, pcs_id, signed payload, outcome, reason, policy version and hash,
//!   region, decision time, request digest.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use sha2::{Digest, Sha256};

/// A 32-byte tree hash.
pub type Hash = [u8; 32];

/// `SHA-256(0x00 || entry)`.
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(entry);
    h.finalize().into()
}

/// `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Why a proof bundle does not verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditError {
    /// The verifier key string is malformed or its key id does not match.
    BadVerifierKey(&'static str),
    /// The note is malformed (format, control characters, base64).
    MalformedNote(&'static str),
    /// The note carries no valid signature by the verifier key.
    NotSigned,
    /// A signature line by the verifier key does not verify.
    BadSignature,
    /// The note's text is not a checkpoint.
    MalformedCheckpoint(&'static str),
    /// The bundle's tree size is not its checkpoint's.
    SizeMismatch { proof: u64, checkpoint: u64 },
    /// The path does not lead from the entry to the checkpoint's root.
    ProofFailed(&'static str),
    /// The entry bytes are not a version-1 decision.
    MalformedEntry(&'static str),
    /// The bundle's JSON does not have the documented shape.
    MalformedBundle(String),
}

impl fmt::Display for AuditError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuditError::BadVerifierKey(m) => write!(f, "verifier key: {m}"),
            AuditError::MalformedNote(m) => write!(f, "checkpoint note: {m}"),
            AuditError::NotSigned => f.write_str("checkpoint note has no signature by the key"),
            AuditError::BadSignature => f.write_str("checkpoint signature does not verify"),
            AuditError::MalformedCheckpoint(m) => write!(f, "checkpoint body: {m}"),
            AuditError::SizeMismatch { proof, checkpoint } => write!(
                f,
                "proof is for tree size {proof}, the checkpoint for {checkpoint}"
            ),
            AuditError::ProofFailed(m) => write!(f, "inclusion proof: {m}"),
            AuditError::MalformedEntry(m) => write!(f, "entry: {m}"),
            AuditError::MalformedBundle(m) => write!(f, "proof bundle: {m}"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for AuditError {}

/// RFC 9162 section 2.1.3.2: the root that `proof` leads to from `leaf` at `index` of `size`.
pub fn root_from_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
) -> Result<Hash, AuditError> {
    if index >= size {
        return Err(AuditError::ProofFailed("leaf index beyond the tree size"));
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return Err(AuditError::ProofFailed("path too long"));
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(AuditError::ProofFailed("path too short"));
    }
    Ok(r)
}

/// The log's Ed25519 note verifier.
#[derive(Debug, Clone)]
pub struct LogVerifier {
    name: String,
    key_id: u32,
    key: ed25519_dalek::VerifyingKey,
}

fn key_id(name: &str, public: &[u8; 32]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', 0x01]);
    h.update(public);
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

fn bad_name(name: &str) -> bool {
    name.is_empty()
        || name
            .chars()
            .any(|c| c.is_whitespace() || c == '+' || c.is_control())
}

impl LogVerifier {
    /// Parses `<name>+<key id hex>+<base64(0x01 || public key)>`, checking the key id.
    pub fn from_key_string(s: &str) -> Result<LogVerifier, AuditError> {
        let mut parts = s.trim().splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(AuditError::BadVerifierKey("must be name+id+key"));
        };
        if bad_name(name) {
            return Err(AuditError::BadVerifierKey("bad key name"));
        }
        if id.len() != 8
            || !id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(AuditError::BadVerifierKey(
                "key id must be 8 lowercase hex digits",
            ));
        }
        let given = u32::from_str_radix(id, 16)
            .map_err(|_| AuditError::BadVerifierKey("key id is not hex"))?;
        let raw = B64
            .decode(key)
            .map_err(|_| AuditError::BadVerifierKey("key is not base64"))?;
        if raw.len() != 33 || raw[0] != 0x01 {
            return Err(AuditError::BadVerifierKey("key must be 0x01 and 32 bytes"));
        }
        let mut public = [0u8; 32];
        public.copy_from_slice(&raw[1..]);
        if key_id(name, &public) != given {
            return Err(AuditError::BadVerifierKey("key id does not match the key"));
        }
        let key = ed25519_dalek::VerifyingKey::from_bytes(&public)
            .map_err(|_| AuditError::BadVerifierKey("not an Ed25519 public key"))?;
        Ok(LogVerifier {
            name: name.into(),
            key_id: given,
            key,
        })
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Verifies the note's signature by this key; returns the signed text. Signatures by
    /// other keys (witnesses) are ignored; a failing one by this key rejects the note.
    pub fn open<'a>(&self, note: &'a str) -> Result<&'a str, AuditError> {
        if note.chars().any(|c| c < ' ' && c != '\n') {
            return Err(AuditError::MalformedNote("control character"));
        }
        let split = note.rfind("\n\n").ok_or(AuditError::MalformedNote(
            "no blank line before the signatures",
        ))?;
        let text = &note[..split + 1];
        let sigs = &note[split + 2..];
        if text == "\n" || text.ends_with("\n\n") {
            return Err(AuditError::MalformedNote("text ends with a blank line"));
        }
        if sigs.is_empty() || !sigs.ends_with('\n') {
            return Err(AuditError::MalformedNote(
                "signature block must end in a newline",
            ));
        }
        let mut verified = false;
        for line in sigs[..sigs.len() - 1].split('\n') {
            let rest = line
                .strip_prefix("\u{2014} ")
                .ok_or(AuditError::MalformedNote(
                    "signature line must start with an em dash",
                ))?;
            let (name, b64) = rest.split_once(' ').ok_or(AuditError::MalformedNote(
                "signature line must be name and base64",
            ))?;
            let raw = B64
                .decode(b64)
                .map_err(|_| AuditError::MalformedNote("signature is not base64"))?;
            if raw.len() < 5 {
                return Err(AuditError::MalformedNote("signature too short"));
            }
            let id = u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]);
            if name != self.name || id != self.key_id {
                continue;
            }
            let sig = ed25519_dalek::Signature::from_slice(&raw[4..])
                .map_err(|_| AuditError::BadSignature)?;
            self.key
                .verify_strict(text.as_bytes(), &sig)
                .map_err(|_| AuditError::BadSignature)?;
            verified = true;
        }
        if verified {
            Ok(text)
        } else {
            Err(AuditError::NotSigned)
        }
    }
}

/// A signed tree head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root_hash: Hash,
}

impl Checkpoint {
    /// Parses a checkpoint note text strictly (three lines, canonical decimal and base64).
    pub fn parse_body(text: &str) -> Result<Checkpoint, AuditError> {
        let body = text
            .strip_suffix('\n')
            .ok_or(AuditError::MalformedCheckpoint("must end with a newline"))?;
        let mut lines = body.split('\n');
        let origin = lines.next().unwrap_or_default();
        let (Some(size), Some(root), None) = (lines.next(), lines.next(), lines.next()) else {
            return Err(AuditError::MalformedCheckpoint(
                "need exactly origin, size and root",
            ));
        };
        if origin.is_empty() {
            return Err(AuditError::MalformedCheckpoint("empty origin"));
        }
        let canonical = !size.is_empty()
            && size.bytes().all(|b| b.is_ascii_digit())
            && (size == "0" || !size.starts_with('0'));
        let size = size.parse::<u64>().ok().filter(|_| canonical).ok_or(
            AuditError::MalformedCheckpoint("size is not canonical decimal"),
        )?;
        let raw = B64
            .decode(root)
            .map_err(|_| AuditError::MalformedCheckpoint("root is not base64"))?;
        let root_hash: Hash = raw
            .as_slice()
            .try_into()
            .map_err(|_| AuditError::MalformedCheckpoint("root must be 32 bytes"))?;
        if B64.encode(root_hash) != root {
            return Err(AuditError::MalformedCheckpoint(
                "root base64 is not canonical",
            ));
        }
        Ok(Checkpoint {
            origin: origin.into(),
            size,
            root_hash,
        })
    }
}

/// One decision as the audit log records it (entry version 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub tenant_id: String,
    /// Lowercase hex.
    pub pcs_id: String,
    /// The canonical signing payload svc-verify verified.
    pub signed_fields: Vec<u8>,
    /// `accepted`, `escalated` or `rejected`.
    pub outcome: &'static str,
    pub reason_code: String,
    pub policy_version: String,
    pub policy_hash: Hash,
    pub region: String,
    pub decided_at_unix_ms: u64,
    pub request_digest: Hash,
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], AuditError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.b.len())
            .ok_or(AuditError::MalformedEntry(what))?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn str16(&mut self, what: &'static str) -> Result<String, AuditError> {
        let l = self.take(2, what)?;
        let n = usize::from(u16::from_be_bytes([l[0], l[1]]));
        let s = self.take(n, what)?;
        core::str::from_utf8(s)
            .map(String::from)
            .map_err(|_| AuditError::MalformedEntry(what))
    }
    fn arr32(&mut self, what: &'static str) -> Result<Hash, AuditError> {
        let mut h = [0u8; 32];
        h.copy_from_slice(self.take(32, what)?);
        Ok(h)
    }
}

impl AuditEntry {
    /// Decodes a version-1 entry (strict: no trailing bytes).
    pub fn decode(b: &[u8]) -> Result<AuditEntry, AuditError> {
        let mut r = Reader { b, pos: 0 };
        if r.take(1, "version")?[0] != 1 {
            return Err(AuditError::MalformedEntry("not a version-1 decision"));
        }
        let tenant_id = r.str16("tenant_id")?;
        let pcs_id = crate::hex::encode(&r.arr32("pcs_id")?);
        let l = r.take(4, "signed_fields")?;
        let n = u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize;
        let signed_fields = r.take(n, "signed_fields")?.to_vec();
        let outcome = match r.take(1, "outcome")?[0] {
            1 => "accepted",
            2 => "escalated",
            3 => "rejected",
            _ => return Err(AuditError::MalformedEntry("unknown outcome")),
        };
        let reason_code = r.str16("reason_code")?;
        let policy_version = r.str16("policy_version")?;
        let policy_hash = r.arr32("policy_hash")?;
        let region = r.str16("region")?;
        let t = r.take(8, "decided_at_unix_ms")?;
        let mut ms = [0u8; 8];
        ms.copy_from_slice(t);
        let request_digest = r.arr32("request_digest")?;
        if r.pos != b.len() {
            return Err(AuditError::MalformedEntry("trailing bytes"));
        }
        Ok(AuditEntry {
            tenant_id,
            pcs_id,
            signed_fields,
            outcome,
            reason_code,
            policy_version,
            policy_hash,
            region,
            decided_at_unix_ms: u64::from_be_bytes(ms),
            request_digest,
        })
    }
}

/// A proof bundle: the answer of `GET /v1/audit/proof/{pcs_id}`, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InclusionBundle {
    pub leaf_index: u64,
    pub tree_size: u64,
    pub entry: Vec<u8>,
    pub proof: Vec<Hash>,
    /// The signed note.
    pub note: String,
    /// The unsigned copies beside the note (must agree with it).
    pub checkpoint_size: u64,
    pub checkpoint_root: Vec<u8>,
}

/// What a verified bundle proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedInclusion {
    pub checkpoint: Checkpoint,
    pub entry: AuditEntry,
}

impl InclusionBundle {
    /// Verifies the bundle against the log's verifier key: the note is signed by it, the
    /// unsigned copies agree with the note, the path leads from the entry to the signed root,
    /// and the entry is a decision.
    pub fn verify(&self, verifier: &LogVerifier) -> Result<VerifiedInclusion, AuditError> {
        let checkpoint = Checkpoint::parse_body(verifier.open(&self.note)?)?;
        if checkpoint.size != self.tree_size {
            return Err(AuditError::SizeMismatch {
                proof: self.tree_size,
                checkpoint: checkpoint.size,
            });
        }
        if self.checkpoint_size != checkpoint.size
            || self.checkpoint_root.as_slice() != checkpoint.root_hash.as_slice()
        {
            return Err(AuditError::MalformedBundle(
                "checkpoint fields differ from the signed note".into(),
            ));
        }
        let root = root_from_inclusion(
            &leaf_hash(&self.entry),
            self.leaf_index,
            self.tree_size,
            &self.proof,
        )?;
        if root != checkpoint.root_hash {
            return Err(AuditError::ProofFailed("root mismatch"));
        }
        let entry = AuditEntry::decode(&self.entry)?;
        Ok(VerifiedInclusion { checkpoint, entry })
    }
}

#[cfg(feature = "std")]
impl InclusionBundle {
    /// Reads the JSON of `GET /v1/audit/proof/{pcs_id}` (hashes and entry in base64).
    pub fn from_json(v: &serde_json::Value) -> Result<InclusionBundle, AuditError> {
        use alloc::format;
        let bad = |m: &str| AuditError::MalformedBundle(m.into());
        let u = |v: &serde_json::Value, k: &str| {
            v.get(k)
                .and_then(serde_json::Value::as_u64)
                .ok_or_else(|| AuditError::MalformedBundle(format!("`{k}` is not an integer")))
        };
        let b64 = |v: &serde_json::Value, k: &str| {
            v.get(k)
                .and_then(serde_json::Value::as_str)
                .and_then(|s| B64.decode(s).ok())
                .ok_or_else(|| AuditError::MalformedBundle(format!("`{k}` is not base64")))
        };
        let proof = v
            .get("proof")
            .and_then(serde_json::Value::as_array)
            .ok_or_else(|| bad("`proof` is not an array"))?
            .iter()
            .map(|h| {
                h.as_str()
                    .and_then(|s| B64.decode(s).ok())
                    .and_then(|raw| Hash::try_from(raw.as_slice()).ok())
                    .ok_or_else(|| bad("a proof hash is not 32 bytes of base64"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let cp = v.get("checkpoint").ok_or_else(|| bad("no checkpoint"))?;
        Ok(InclusionBundle {
            leaf_index: u(v, "leaf_index")?,
            tree_size: u(v, "tree_size")?,
            entry: b64(v, "entry")?,
            proof,
            note: cp
                .get("note")
                .and_then(serde_json::Value::as_str)
                .ok_or_else(|| bad("`checkpoint.note` is not a string"))?
                .into(),
            checkpoint_size: u(cp, "size")?,
            checkpoint_root: b64(cp, "root_hash")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn rfc6962_vectors() {
        assert_eq!(
            crate::hex::encode(&leaf_hash(b"")),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
        // A tree of 3 leaves: root = node(node(l0, l1), l2).
        let l: Vec<Hash> = (0u8..3).map(|i| leaf_hash(&[i])).collect();
        let root = node_hash(&node_hash(&l[0], &l[1]), &l[2]);
        assert_eq!(root_from_inclusion(&l[0], 0, 3, &[l[1], l[2]]), Ok(root));
        assert_eq!(
            root_from_inclusion(&l[2], 2, 3, &[node_hash(&l[0], &l[1])]),
            Ok(root)
        );
        assert!(root_from_inclusion(&l[2], 2, 3, &[]).is_err());
        assert!(root_from_inclusion(&l[2], 3, 3, &[]).is_err());
        let _ = vec![0u8];
    }
}
