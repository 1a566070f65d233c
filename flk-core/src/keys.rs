//! Signing keys, tenant key sets with rotation, and signature creation / verification
//! (PROTOCOL.md section 2, steps 4-6).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use crate::canon::Canonical;

type HmacSha256 = Hmac<Sha256>;

/// What an HMAC key authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum HmacMode {
    /// `HMAC-SHA256(key, SHA-256(payload))` (the default).
    #[default]
    Digest,
    /// `HMAC-SHA256(key, payload)` (agents of the later protocol revision).
    Payload,
}

impl HmacMode {
    pub fn as_str(self) -> &'static str {
        match self {
            HmacMode::Digest => "digest",
            HmacMode::Payload => "payload",
        }
    }

    pub fn parse(s: &str) -> Option<HmacMode> {
        match s {
            "digest" => Some(HmacMode::Digest),
            "payload" => Some(HmacMode::Payload),
            _ => None,
        }
    }
}

/// Key material, ready to verify (the HMAC state is keyed once, then cloned per use).
#[derive(Clone)]
pub enum KeyMaterial {
    Hmac { mode: HmacMode, mac: HmacSha256 },
    Ed25519(VerifyingKey),
}

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyMaterial::Hmac { mode, .. } => write!(f, "Hmac({}, <redacted>)", mode.as_str()),
            KeyMaterial::Ed25519(vk) => write!(f, "Ed25519({})", B64.encode(vk.as_bytes())),
        }
    }
}

/// Why a key could not be built from configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("hmac secret must not be empty")]
    EmptySecret,
    #[error("ed25519 public key must be 32 bytes of standard base64")]
    BadPublicKey,
    #[error("ed25519 public key is of small order (weak) and cannot be trusted")]
    WeakPublicKey,
    #[error("ed25519 seed must be 32 bytes")]
    BadSeed,
    #[error("key validity window is empty (not_before is after not_after)")]
    EmptyWindow,
}

impl KeyMaterial {
    /// An HMAC key from the raw UTF-8 bytes of its secret.
    pub fn hmac(secret: &[u8], mode: HmacMode) -> Result<KeyMaterial, KeyError> {
        if secret.is_empty() {
            return Err(KeyError::EmptySecret);
        }
        let mac = HmacSha256::new_from_slice(secret).map_err(|_| KeyError::EmptySecret)?;
        Ok(KeyMaterial::Hmac { mode, mac })
    }

    /// An Ed25519 verifying key from 32 raw bytes; small-order keys are refused.
    pub fn ed25519(public: &[u8]) -> Result<KeyMaterial, KeyError> {
        let bytes: [u8; 32] = public.try_into().map_err(|_| KeyError::BadPublicKey)?;
        let vk = VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError::BadPublicKey)?;
        if vk.is_weak() {
            return Err(KeyError::WeakPublicKey);
        }
        Ok(KeyMaterial::Ed25519(vk))
    }

    /// An Ed25519 verifying key from standard base64.
    pub fn ed25519_b64(public_b64: &str) -> Result<KeyMaterial, KeyError> {
        let raw = B64
            .decode(public_b64.trim())
            .map_err(|_| KeyError::BadPublicKey)?;
        KeyMaterial::ed25519(&raw)
    }

    pub fn algorithm(&self) -> &'static str {
        match self {
            KeyMaterial::Hmac { .. } => "hmac",
            KeyMaterial::Ed25519(_) => "ed25519",
        }
    }

    /// Whether `sig` (raw bytes) is valid for this canonical payload.
    pub fn verify(&self, c: &Canonical, sig: &[u8]) -> bool {
        match self {
            KeyMaterial::Hmac { mode, mac } => {
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
            KeyMaterial::Ed25519(vk) => {
                let Ok(sig) = ed25519_dalek::Signature::from_slice(sig) else {
                    return false;
                };
                vk.verify_strict(&c.digest, &sig).is_ok()
            }
        }
    }
}

/// One of a tenant's keys: an id, its material and an optional validity window.
#[derive(Debug, Clone)]
pub struct TenantKey {
    pub id: String,
    pub material: KeyMaterial,
    pub not_before: Option<OffsetDateTime>,
    pub not_after: Option<OffsetDateTime>,
}

impl TenantKey {
    pub fn new(id: impl Into<String>, material: KeyMaterial) -> TenantKey {
        TenantKey {
            id: id.into(),
            material,
            not_before: None,
            not_after: None,
        }
    }

    pub fn with_window(
        mut self,
        not_before: Option<OffsetDateTime>,
        not_after: Option<OffsetDateTime>,
    ) -> Result<TenantKey, KeyError> {
        if let (Some(a), Some(b)) = (not_before, not_after)
            && a > b
        {
            return Err(KeyError::EmptyWindow);
        }
        self.not_before = not_before;
        self.not_after = not_after;
        Ok(self)
    }

    /// Whether the key may be used at `now` (both bounds inclusive).
    pub fn active_at(&self, now: OffsetDateTime) -> bool {
        self.not_before.is_none_or(|t| now >= t) && self.not_after.is_none_or(|t| now <= t)
    }
}

/// Why a signature was refused (HTTP 401 / gRPC `UNAUTHENTICATED`). A closed set: safe as a
/// metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum SignatureError {
    #[error("signature missing: field `sig` is absent or empty")]
    Missing,
    #[error("signature undecodable: field `sig` is not standard base64 with padding")]
    Undecodable,
    #[error("signature invalid for every active key of the tenant")]
    Invalid,
    #[error("tenant has no key active at this time")]
    NoActiveKey,
}

impl SignatureError {
    pub fn code(self) -> &'static str {
        match self {
            SignatureError::Missing => "signature_missing",
            SignatureError::Undecodable => "signature_undecodable",
            SignatureError::Invalid => "signature_invalid",
            SignatureError::NoActiveKey => "no_active_key",
        }
    }
}

/// A tenant's verification keys. A signature is valid if any active key verifies it.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: Vec<TenantKey>,
    /// When false the tenant has signing disabled and signatures are not checked.
    pub signing_required: bool,
}

impl KeySet {
    pub fn new(keys: Vec<TenantKey>) -> KeySet {
        KeySet {
            keys,
            signing_required: true,
        }
    }

    /// A tenant with signing disabled: every submission passes the signature step.
    pub fn disabled() -> KeySet {
        KeySet {
            keys: Vec::new(),
            signing_required: false,
        }
    }

    pub fn keys(&self) -> &[TenantKey] {
        &self.keys
    }

    /// Verifies `sig` (base64 text as in the PCS) against the active keys; returns the id of the
    /// key that verified it (`None` when signing is disabled).
    pub fn verify(
        &self,
        c: &Canonical,
        sig: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<Option<&str>, SignatureError> {
        if !self.signing_required {
            return Ok(None);
        }
        let sig = match sig {
            None | Some("") => return Err(SignatureError::Missing),
            Some(s) => s,
        };
        // A raw Ed25519 signature is 64 bytes; anything much longer cannot be valid.
        if sig.len() > 128 {
            return Err(SignatureError::Undecodable);
        }
        let mut raw = [0u8; 96];
        let n = B64
            .decode_slice(sig.as_bytes(), &mut raw)
            .map_err(|_| SignatureError::Undecodable)?;
        let raw = &raw[..n];
        let mut any_active = false;
        for key in &self.keys {
            if !key.active_at(now) {
                continue;
            }
            any_active = true;
            if key.material.verify(c, raw) {
                return Ok(Some(&key.id));
            }
        }
        Err(if any_active {
            SignatureError::Invalid
        } else {
            SignatureError::NoActiveKey
        })
    }
}

/// What signs a PCS: used by SDKs, the CLI's load generator and tests.
#[derive(Clone)]
pub enum SigningMaterial {
    Hmac { mode: HmacMode, mac: HmacSha256 },
    Ed25519(Box<SigningKey>),
}

impl std::fmt::Debug for SigningMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SigningMaterial::Hmac { mode, .. } => write!(f, "Hmac({}, <redacted>)", mode.as_str()),
            SigningMaterial::Ed25519(_) => f.write_str("Ed25519(<redacted>)"),
        }
    }
}

impl SigningMaterial {
    pub fn hmac(secret: &[u8], mode: HmacMode) -> Result<SigningMaterial, KeyError> {
        if secret.is_empty() {
            return Err(KeyError::EmptySecret);
        }
        let mac = HmacSha256::new_from_slice(secret).map_err(|_| KeyError::EmptySecret)?;
        Ok(SigningMaterial::Hmac { mode, mac })
    }

    pub fn ed25519_seed(seed: &[u8]) -> Result<SigningMaterial, KeyError> {
        let seed: [u8; 32] = seed.try_into().map_err(|_| KeyError::BadSeed)?;
        Ok(SigningMaterial::Ed25519(Box::new(SigningKey::from_bytes(
            &seed,
        ))))
    }

    /// The raw signature bytes for a canonical payload.
    pub fn sign_raw(&self, c: &Canonical) -> Vec<u8> {
        match self {
            SigningMaterial::Hmac { mode, mac } => {
                let mut m = mac.clone();
                match mode {
                    HmacMode::Digest => m.update(&c.digest),
                    HmacMode::Payload => m.update(&c.payload),
                }
                m.finalize().into_bytes().to_vec()
            }
            SigningMaterial::Ed25519(sk) => sk.sign(&c.digest).to_bytes().to_vec(),
        }
    }

    /// The signature as it goes into the PCS `sig` field.
    pub fn sign_b64(&self, c: &Canonical) -> String {
        B64.encode(self.sign_raw(c))
    }

    /// The matching verification material.
    pub fn verifying(&self) -> KeyMaterial {
        match self {
            SigningMaterial::Hmac { mode, mac } => KeyMaterial::Hmac {
                mode: *mode,
                mac: mac.clone(),
            },
            SigningMaterial::Ed25519(sk) => KeyMaterial::Ed25519(sk.verifying_key()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canon::{Canonical, SignedFields};
    use time::macros::datetime;

    fn canonical() -> Canonical {
        Canonical::of(&SignedFields {
            pcs_id: "p",
            merkle_root: "m",
            epoch: 1,
            shard_id: "s",
            d_hat: 1.0,
            coh_star: 0.5,
            r: 0.5,
            budget: 0.4,
        })
    }

    #[test]
    fn rotation_accepts_any_active_key() {
        let c = canonical();
        let old = SigningMaterial::hmac(b"old", HmacMode::Digest).unwrap();
        let new = SigningMaterial::hmac(b"new", HmacMode::Payload).unwrap();
        let now = datetime!(2026-06-01 0:00 UTC);
        let set = KeySet::new(vec![
            TenantKey::new("old", old.verifying())
                .with_window(None, Some(datetime!(2026-07-01 0:00 UTC)))
                .unwrap(),
            TenantKey::new("new", new.verifying()),
        ]);
        assert_eq!(
            set.verify(&c, Some(&old.sign_b64(&c)), now),
            Ok(Some("old"))
        );
        assert_eq!(
            set.verify(&c, Some(&new.sign_b64(&c)), now),
            Ok(Some("new"))
        );
        let later = datetime!(2026-08-01 0:00 UTC);
        assert_eq!(
            set.verify(&c, Some(&old.sign_b64(&c)), later),
            Err(SignatureError::Invalid)
        );
    }

    #[test]
    fn refuses_missing_undecodable_and_expired() {
        let c = canonical();
        let k = SigningMaterial::hmac(b"k", HmacMode::Digest).unwrap();
        let now = datetime!(2026-06-01 0:00 UTC);
        let set = KeySet::new(vec![TenantKey::new("k", k.verifying())]);
        assert_eq!(set.verify(&c, None, now), Err(SignatureError::Missing));
        assert_eq!(set.verify(&c, Some(""), now), Err(SignatureError::Missing));
        assert_eq!(
            set.verify(&c, Some("!!!"), now),
            Err(SignatureError::Undecodable)
        );
        // Missing padding is not standard base64 with padding.
        let sig = k.sign_b64(&c);
        assert_eq!(
            set.verify(&c, Some(sig.trim_end_matches('=')), now),
            Err(SignatureError::Undecodable)
        );
        let expired = KeySet::new(vec![
            TenantKey::new("k", k.verifying())
                .with_window(Some(datetime!(2027-01-01 0:00 UTC)), None)
                .unwrap(),
        ]);
        assert_eq!(
            expired.verify(&c, Some(&sig), now),
            Err(SignatureError::NoActiveKey)
        );
        assert_eq!(KeySet::disabled().verify(&c, None, now), Ok(None));
    }

    #[test]
    fn ed25519_is_strict() {
        // The identity point (small order) must be refused as a key.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(
            KeyMaterial::ed25519(&identity).unwrap_err(),
            KeyError::WeakPublicKey
        );
        let c = canonical();
        let sk = SigningMaterial::ed25519_seed(&[7u8; 32]).unwrap();
        let vk = sk.verifying();
        let mut sig = sk.sign_raw(&c);
        assert!(vk.verify(&c, &sig));
        // Non-canonical S: add the group order L to S; strict verification refuses it.
        const L: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut carry = 0u16;
        for i in 0..32 {
            let v = u16::from(sig[32 + i]) + u16::from(L[i]) + carry;
            sig[32 + i] = v as u8;
            carry = v >> 8;
        }
        assert!(!vk.verify(&c, &sig));
    }
}
