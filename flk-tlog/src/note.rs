//! C2SP signed notes (<https://c2sp.org/signed-note>) with Ed25519 keys: key strings, signing
//! and strict opening.
//!
//! # Format
//!
//! A note is a UTF-8 text ending in `\n`, a blank line, then one or more signature lines
//! `— <key name> <base64(key ID || signature)>\n` (U+2014 em dash, space, name, space, standard
//! padded base64, newline). The signature is Ed25519 (RFC 8032) over the text, including its
//! final newline but not the blank line. The text is separated from the signatures by the *last*
//! blank line. A note must not contain ASCII control characters other than `\n`.
//!
//! The 4-byte key ID (big-endian `u32`) is `SHA-256(name || 0x0A || 0x01 || public key)[:4]`,
//! `0x01` being the Ed25519 signature type.
//!
//! # Key strings (as golang.org/x/mod/sumdb/note)
//!
//! * verifier key: `<name>+<8 lowercase hex digits of the key ID>+<base64(0x01 || 32-byte public key)>`
//! * signer key: `PRIVATE+KEY+<name>+<key ID hex>+<base64(0x01 || 32-byte Ed25519 seed)>`
//!
//! Key names are non-empty and contain no Unicode white space and no `+`.
//!
//! # Opening
//!
//! [`LogVerifier::open`] follows the spec: signatures whose (name, key ID) is not the verifier's
//! are ignored (they may be witnesses' cosignatures or a rotated key); a signature from the
//! verifier's key that fails to verify rejects the whole note; a note without a verified
//! signature from the key is rejected.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// Signature type byte of Ed25519 in the signed-note spec.
pub const ALG_ED25519: u8 = 0x01;

/// The most signature lines [`LogVerifier::open`] accepts (the spec requires at least 16).
pub const MAX_SIGNATURES: usize = 100;

/// The em dash and space that start a signature line.
const SIG_PREFIX: &str = "\u{2014} ";

/// Why a key string or note was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// A key name is empty or contains white space or `+`.
    #[error("invalid key name {0:?}")]
    BadKeyName(String),
    /// A key string does not have the documented shape.
    #[error("malformed key string: {0}")]
    MalformedKey(&'static str),
    /// The key ID in a key string does not match the name and key.
    #[error("key id {given:08x} in key string does not match the computed {computed:08x}")]
    KeyIdMismatch {
        /// The ID written in the string.
        given: u32,
        /// The ID computed from name and key.
        computed: u32,
    },
    /// The note's text or signature block does not follow the format.
    #[error("malformed note: {0}")]
    Malformed(&'static str),
    /// A signature by the verifier's key failed to verify.
    #[error("invalid signature for key {name}+{key_id:08x}")]
    InvalidSignature {
        /// Key name.
        name: String,
        /// Key ID.
        key_id: u32,
    },
    /// No signature line is by the verifier's key.
    #[error("note has no signature by key {name}+{key_id:08x}")]
    NotSigned {
        /// Key name.
        name: String,
        /// Key ID.
        key_id: u32,
    },
}

/// Checks a key name: non-empty, no Unicode white space, no `+`.
pub fn check_key_name(name: &str) -> Result<(), NoteError> {
    if name.is_empty()
        || name
            .chars()
            .any(|c| c.is_whitespace() || c == '+' || c.is_control())
    {
        return Err(NoteError::BadKeyName(name.to_owned()));
    }
    Ok(())
}

/// `SHA-256(name || 0x0A || 0x01 || public key)[:4]` as a big-endian `u32`.
pub fn key_id(name: &str, public_key: &[u8; 32]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', ALG_ED25519]);
    h.update(public_key);
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// Parses the 8-lowercase-hex key ID of a key string.
fn parse_key_id(s: &str) -> Result<u32, NoteError> {
    if s.len() != 8
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(NoteError::MalformedKey(
            "key id must be 8 lowercase hex digits",
        ));
    }
    u32::from_str_radix(s, 16).map_err(|_| NoteError::MalformedKey("key id is not hex"))
}

/// Decodes `base64(0x01 || 32 bytes)`.
fn parse_typed_key(s: &str) -> Result<[u8; 32], NoteError> {
    let raw = B64
        .decode(s)
        .map_err(|_| NoteError::MalformedKey("key is not standard base64"))?;
    if raw.len() != 33 {
        return Err(NoteError::MalformedKey(
            "key must be 33 bytes (type byte and 32-byte key)",
        ));
    }
    if raw[0] != ALG_ED25519 {
        return Err(NoteError::MalformedKey(
            "unsupported key type (only Ed25519 0x01)",
        ));
    }
    let mut key = [0u8; 32];
    key.copy_from_slice(&raw[1..]);
    Ok(key)
}

fn typed_key_b64(key: &[u8; 32]) -> String {
    let mut raw = Vec::with_capacity(33);
    raw.push(ALG_ED25519);
    raw.extend_from_slice(key);
    B64.encode(raw)
}

/// The log's Ed25519 signing key with its note key name.
#[derive(Clone)]
pub struct LogSigner {
    name: String,
    key_id: u32,
    key: SigningKey,
}

impl std::fmt::Debug for LogSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogSigner")
            .field("name", &self.name)
            .field("key_id", &format_args!("{:08x}", self.key_id))
            .field("key", &"<redacted>")
            .finish()
    }
}

impl LogSigner {
    /// A signer from a 32-byte Ed25519 seed (RFC 8032 private key).
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<LogSigner, NoteError> {
        check_key_name(name)?;
        let key = SigningKey::from_bytes(seed);
        let key_id = key_id(name, key.verifying_key().as_bytes());
        Ok(LogSigner {
            name: name.to_owned(),
            key_id,
            key,
        })
    }

    /// A signer with a fresh key from the operating system's random generator.
    pub fn generate(name: &str) -> Result<LogSigner, NoteError> {
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        LogSigner::from_seed(name, &key.to_bytes())
    }

    /// Parses `PRIVATE+KEY+<name>+<key id hex>+<base64(0x01 || seed)>`, checking the key ID.
    pub fn from_private_key(s: &str) -> Result<LogSigner, NoteError> {
        let rest = s
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(NoteError::MalformedKey(
                "signer key must start with PRIVATE+KEY+",
            ))?;
        let mut parts = rest.splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(NoteError::MalformedKey(
                "signer key must have name, key id and key",
            ));
        };
        let given = parse_key_id(id)?;
        let seed = parse_typed_key(key)?;
        let signer = LogSigner::from_seed(name, &seed)?;
        if signer.key_id != given {
            return Err(NoteError::KeyIdMismatch {
                given,
                computed: signer.key_id,
            });
        }
        Ok(signer)
    }

    /// The signer key string. It contains the secret seed: store it like a password.
    pub fn private_key_string(&self) -> String {
        format!(
            "PRIVATE+KEY+{}+{:08x}+{}",
            self.name,
            self.key_id,
            typed_key_b64(&self.key.to_bytes())
        )
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The 4-byte key ID.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The matching verifier.
    pub fn verifier(&self) -> LogVerifier {
        LogVerifier {
            name: self.name.clone(),
            key_id: self.key_id,
            key: self.key.verifying_key(),
        }
    }

    /// The verifier key string `<name>+<key id hex>+<base64(0x01 || public key)>`.
    pub fn verifier_key_string(&self) -> String {
        self.verifier().key_string()
    }

    /// Signs `text` into a note with one signature line. `text` must be non-empty, end with
    /// `\n`, contain no blank line at its end and no control characters other than `\n`.
    pub fn sign_text(&self, text: &str) -> Result<String, NoteError> {
        check_text(text)?;
        let sig = self.key.sign(text.as_bytes());
        let mut blob = Vec::with_capacity(68);
        blob.extend_from_slice(&self.key_id.to_be_bytes());
        blob.extend_from_slice(&sig.to_bytes());
        Ok(format!(
            "{text}\n{SIG_PREFIX}{} {}\n",
            self.name,
            B64.encode(blob)
        ))
    }
}

/// A trusted Ed25519 note verifier key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogVerifier {
    name: String,
    key_id: u32,
    key: VerifyingKey,
}

impl LogVerifier {
    /// Parses `<name>+<key id hex>+<base64(0x01 || public key)>`, checking the key ID.
    pub fn from_key_string(s: &str) -> Result<LogVerifier, NoteError> {
        let mut parts = s.splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(NoteError::MalformedKey("verifier key must be name+id+key"));
        };
        check_key_name(name)?;
        let given = parse_key_id(id)?;
        let raw = parse_typed_key(key)?;
        let computed = key_id(name, &raw);
        if computed != given {
            return Err(NoteError::KeyIdMismatch { given, computed });
        }
        let key = VerifyingKey::from_bytes(&raw)
            .map_err(|_| NoteError::MalformedKey("not a valid Ed25519 public key"))?;
        Ok(LogVerifier {
            name: name.to_owned(),
            key_id: given,
            key,
        })
    }

    /// The verifier key string.
    pub fn key_string(&self) -> String {
        format!(
            "{}+{:08x}+{}",
            self.name,
            self.key_id,
            typed_key_b64(self.key.as_bytes())
        )
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The 4-byte key ID.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// Verifies the note's signature by this key and returns its text (with final newline).
    /// See the module docs for the rules on unknown and failing signatures.
    pub fn open<'a>(&self, note: &'a str) -> Result<&'a str, NoteError> {
        if note.chars().any(|c| c < ' ' && c != '\n') {
            return Err(NoteError::Malformed("control character in note"));
        }
        let split = note
            .rfind("\n\n")
            .ok_or(NoteError::Malformed("no blank line before signatures"))?;
        let text = &note[..split + 1];
        let sigs = &note[split + 2..];
        check_text(text)?;
        if sigs.is_empty() || !sigs.ends_with('\n') {
            return Err(NoteError::Malformed(
                "signature block must be non-empty lines ending in newline",
            ));
        }
        let mut verified = false;
        for (count, line) in sigs[..sigs.len() - 1].split('\n').enumerate() {
            if count >= MAX_SIGNATURES {
                return Err(NoteError::Malformed("too many signatures"));
            }
            let (name, id, sig) = parse_sig_line(line)?;
            if name != self.name || id != self.key_id {
                continue; // unknown key: ignored, as the spec requires
            }
            let invalid = || NoteError::InvalidSignature {
                name: self.name.clone(),
                key_id: self.key_id,
            };
            let sig: [u8; 64] = sig.as_slice().try_into().map_err(|_| invalid())?;
            self.key
                .verify_strict(text.as_bytes(), &Signature::from_bytes(&sig))
                .map_err(|_| invalid())?;
            verified = true;
        }
        if !verified {
            return Err(NoteError::NotSigned {
                name: self.name.clone(),
                key_id: self.key_id,
            });
        }
        Ok(text)
    }
}

/// Parses `— <name> <base64(key id || sig)>` (without the newline) into name, key ID and
/// signature bytes.
fn parse_sig_line(line: &str) -> Result<(&str, u32, Vec<u8>), NoteError> {
    let rest = line.strip_prefix(SIG_PREFIX).ok_or(NoteError::Malformed(
        "signature line must start with an em dash and a space",
    ))?;
    let (name, b64) = rest.split_once(' ').ok_or(NoteError::Malformed(
        "signature line must be name, space, base64",
    ))?;
    check_key_name(name).map_err(|_| NoteError::Malformed("bad key name in signature line"))?;
    let mut raw = B64
        .decode(b64)
        .map_err(|_| NoteError::Malformed("signature is not standard base64"))?;
    if raw.len() < 5 {
        return Err(NoteError::Malformed(
            "signature shorter than key id plus one byte",
        ));
    }
    let id = u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]);
    raw.drain(..4);
    Ok((name, id, raw))
}

/// Checks a note text: non-empty, ends in `\n`, no blank final line, no control characters.
fn check_text(text: &str) -> Result<(), NoteError> {
    if text.is_empty() || !text.ends_with('\n') {
        return Err(NoteError::Malformed(
            "text must be non-empty and end with a newline",
        ));
    }
    if text == "\n" || text.ends_with("\n\n") {
        return Err(NoteError::Malformed("text must not end with a blank line"));
    }
    if text.chars().any(|c| c < ' ' && c != '\n') {
        return Err(NoteError::Malformed("control character in text"));
    }
    Ok(())
}
