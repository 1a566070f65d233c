//! Signing and verification keys (PROTOCOL.md section 2, steps 4-6), `no_std` + `alloc`.
//!
//! * HMAC-SHA256, mode `digest` (the default): `HMAC(key, SHA-256(payload))`;
//! * HMAC-SHA256, mode `payload` (agents of the later protocol revision): `HMAC(key, payload)`;
//! * Ed25519: PureEd25519 over the 32-byte digest, verified with the strict rules (canonical
//!   `S`, no small-order keys), as the server does.
//!
//! HMAC keys are keyed once (the inner and outer pads hashed once) and cloned per signature,
//! which is what makes a signature cost a few SHA-256 blocks.

use alloc::string::String;
use core::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::canon::Canonical;

type HmacSha256 = Hmac<Sha256>;

/// What an HMAC key authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum HmacMode {
    /// `HMAC-SHA256(key, SHA-256(payload))`, the default.
    #[default]
    Digest,
    /// `HMAC-SHA256(key, payload)`.
    Payload,
}

impl HmacMode {
    /// `digest` or `payload`, as in the tenants file.
    pub fn as_str(self) -> &'static str {
        match self {
            HmacMode::Digest => "digest",
            HmacMode::Payload => "payload",
        }
    }

    /// Parses `digest` or `payload`.
    pub fn parse(s: &str) -> Option<HmacMode> {
        match s {
            "digest" => Some(HmacMode::Digest),
            "payload" => Some(HmacMode::Payload),
            _ => None,
        }
    }
}

/// Why key material was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyError {
    /// An HMAC secret must not be empty.
    EmptySecret,
    /// An Ed25519 seed or public key is not 32 bytes (or not valid base64 / hex).
    BadLength,
    /// An Ed25519 public key that is not a curve point.
    BadPublicKey,
    /// An Ed25519 public key of small order: it would verify forged signatures.
    WeakPublicKey,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyError::EmptySecret => "hmac secret must not be empty",
            KeyError::BadLength => "ed25519 key must be 32 bytes",
            KeyError::BadPublicKey => "ed25519 public key is not a valid point",
            KeyError::WeakPublicKey => "ed25519 public key is of small order",
        })
    }
}

#[cfg(feature = "std")]
impl std::error::Error for KeyError {}

/// A signature: 32 bytes (HMAC-SHA256) or 64 bytes (Ed25519).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature {
    bytes: [u8; 64],
    len: u8,
}

impl Signature {
    fn new(raw: &[u8]) -> Signature {
        let mut bytes = [0u8; 64];
        bytes[..raw.len()].copy_from_slice(raw);
        Signature {
            bytes,
            len: raw.len() as u8,
        }
    }

    /// The raw signature bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// Standard base64 with padding: the PCS `sig` field.
    pub fn to_base64(&self) -> String {
        B64.encode(self.as_bytes())
    }

    /// Writes the base64 form into `out` (no allocation); returns the used prefix.
    pub fn encode_base64<'a>(&self, out: &'a mut [u8; 88]) -> &'a str {
        let n = B64.encode_slice(self.as_bytes(), &mut out[..]).unwrap_or(0);
        core::str::from_utf8(&out[..n]).unwrap_or("")
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", self.to_base64())
    }
}

/// A key that signs PCS.
#[derive(Clone)]
pub enum SigningKey {
    /// HMAC-SHA256 with the raw UTF-8 bytes of the tenant's secret.
    Hmac { mode: HmacMode, mac: HmacSha256 },
    /// Ed25519 from a 32-byte seed (RFC 8032 private key).
    Ed25519(ed25519_dalek::SigningKey),
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SigningKey::Hmac { mode, .. } => {
                write!(f, "SigningKey::Hmac({}, <redacted>)", mode.as_str())
            }
            SigningKey::Ed25519(k) => write!(
                f,
                "SigningKey::Ed25519(public {})",
                B64.encode(k.verifying_key().as_bytes())
            ),
        }
    }
}

impl SigningKey {
    /// An HMAC key from the secret's raw bytes.
    pub fn hmac(secret: &[u8], mode: HmacMode) -> Result<SigningKey, KeyError> {
        if secret.is_empty() {
            return Err(KeyError::EmptySecret);
        }
        let mac = HmacSha256::new_from_slice(secret).map_err(|_| KeyError::EmptySecret)?;
        Ok(SigningKey::Hmac { mode, mac })
    }

    /// An Ed25519 key from its 32-byte seed.
    pub fn ed25519_seed(seed: &[u8]) -> Result<SigningKey, KeyError> {
        let seed: [u8; 32] = seed.try_into().map_err(|_| KeyError::BadLength)?;
        Ok(SigningKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(
            &seed,
        )))
    }

    /// An Ed25519 key from the hex of its 32-byte seed (as `flk keygen` prints it).
    pub fn ed25519_seed_hex(seed_hex: &str) -> Result<SigningKey, KeyError> {
        let raw = crate::hex::decode(seed_hex.trim()).ok_or(KeyError::BadLength)?;
        SigningKey::ed25519_seed(&raw)
    }

    /// Signs a canonical payload.
    pub fn sign(&self, c: &Canonical) -> Signature {
        match self {
            SigningKey::Hmac { mode, mac } => {
                let mut m = mac.clone();
                match mode {
                    HmacMode::Digest => m.update(&c.digest),
                    HmacMode::Payload => m.update(&c.payload),
                }
                Signature::new(&m.finalize().into_bytes())
            }
            SigningKey::Ed25519(k) => {
                use ed25519_dalek::Signer as _;
                Signature::new(&k.sign(&c.digest).to_bytes())
            }
        }
    }

    /// The matching verifier (for HMAC, the same secret).
    pub fn verifying_key(&self) -> VerifyingKey {
        match self {
            SigningKey::Hmac { mode, mac } => VerifyingKey::Hmac {
                mode: *mode,
                mac: mac.clone(),
            },
            SigningKey::Ed25519(k) => VerifyingKey::Ed25519(k.verifying_key()),
        }
    }

    /// The Ed25519 public key (32 bytes); `None` for HMAC.
    pub fn public_key(&self) -> Option<[u8; 32]> {
        match self {
            SigningKey::Ed25519(k) => Some(k.verifying_key().to_bytes()),
            SigningKey::Hmac { .. } => None,
        }
    }
}

/// A key that checks PCS signatures the way the server does.
#[derive(Clone)]
pub enum VerifyingKey {
    /// HMAC-SHA256 (compared in constant time).
    Hmac { mode: HmacMode, mac: HmacSha256 },
    /// Ed25519, strict verification.
    Ed25519(ed25519_dalek::VerifyingKey),
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifyingKey::Hmac { mode, .. } => {
                write!(f, "VerifyingKey::Hmac({}, <redacted>)", mode.as_str())
            }
            VerifyingKey::Ed25519(k) => {
                write!(f, "VerifyingKey::Ed25519({})", B64.encode(k.as_bytes()))
            }
        }
    }
}

impl VerifyingKey {
    /// An HMAC verifier from the secret's raw bytes.
    pub fn hmac(secret: &[u8], mode: HmacMode) -> Result<VerifyingKey, KeyError> {
        Ok(SigningKey::hmac(secret, mode)?.verifying_key())
    }

    /// An Ed25519 verifier from 32 raw bytes; small-order keys are refused.
    pub fn ed25519(public: &[u8]) -> Result<VerifyingKey, KeyError> {
        let bytes: [u8; 32] = public.try_into().map_err(|_| KeyError::BadLength)?;
        let vk =
            ed25519_dalek::VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError::BadPublicKey)?;
        if vk.is_weak() {
            return Err(KeyError::WeakPublicKey);
        }
        Ok(VerifyingKey::Ed25519(vk))
    }

    /// An Ed25519 verifier from standard base64 (as in the tenants file).
    pub fn ed25519_b64(public_b64: &str) -> Result<VerifyingKey, KeyError> {
        let raw = B64
            .decode(public_b64.trim())
            .map_err(|_| KeyError::BadLength)?;
        VerifyingKey::ed25519(&raw)
    }

    /// Whether `sig` (raw bytes) is a valid signature of this canonical payload.
    pub fn verify(&self, c: &Canonical, sig: &[u8]) -> bool {
        match self {
            VerifyingKey::Hmac { mode, mac } => {
                if sig.len() != 32 {
                    return false;
                }
                let mut m = mac.clone();
                match mode {
                    HmacMode::Digest => m.update(&c.digest),
                    HmacMode::Payload => m.update(&c.payload),
                }
                let tag = m.finalize().into_bytes();
                bool::from(tag.as_slice().ct_eq(sig))
            }
            VerifyingKey::Ed25519(vk) => {
                let Ok(sig) = ed25519_dalek::Signature::from_slice(sig) else {
                    return false;
                };
                vk.verify_strict(&c.digest, &sig).is_ok()
            }
        }
    }

    /// [`VerifyingKey::verify`] on the PCS `sig` text (standard base64 with padding).
    pub fn verify_b64(&self, c: &Canonical, sig_b64: &str) -> bool {
        let mut raw = [0u8; 66];
        match B64.decode_slice(sig_b64.as_bytes(), &mut raw) {
            Ok(n) => self.verify(c, &raw[..n]),
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canon::SignedFields;

    fn canonical() -> Canonical {
        Canonical::of(&SignedFields {
            pcs_id: "p",
            merkle_root: "m",
            epoch: 1,
            shard_id: "s",
            d_hat: 1.0,
            coh_star: 0.5,
            r: 0.5,
            budget: 0.5,
        })
    }

    #[test]
    fn sign_then_verify_every_kind() {
        let c = canonical();
        for key in [
            SigningKey::hmac(b"k", HmacMode::Digest).unwrap(),
            SigningKey::hmac(b"k", HmacMode::Payload).unwrap(),
            SigningKey::ed25519_seed(&[7; 32]).unwrap(),
        ] {
            let sig = key.sign(&c);
            let vk = key.verifying_key();
            assert!(vk.verify(&c, sig.as_bytes()));
            assert!(vk.verify_b64(&c, &sig.to_base64()));
            let mut bad = sig.as_bytes().to_vec();
            bad[0] ^= 1;
            assert!(!vk.verify(&c, &bad));
        }
        assert_eq!(
            SigningKey::hmac(b"", HmacMode::Digest).err(),
            Some(KeyError::EmptySecret)
        );
        // The identity point is of small order.
        let mut id = [0u8; 32];
        id[0] = 1;
        assert_eq!(
            VerifyingKey::ed25519(&id).err(),
            Some(KeyError::WeakPublicKey)
        );
    }
}
