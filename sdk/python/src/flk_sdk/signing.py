"""Signers and verifiers for PCS (PROTOCOL.md section 2, step 5).

* :class:`HmacSigner` -- HMAC-SHA256 with the raw UTF-8 bytes of the secret, over the 32-byte
  digest (``mode="digest"``, the default, older agents) or over the payload itself
  (``mode="payload"``, the later protocol revision).
* :class:`Ed25519Signer` -- PureEd25519 over the 32-byte digest (``cryptography``).

Every signer also verifies (constant-time for HMAC, strict RFC 8032 for Ed25519).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import Any, Literal, Mapping, MutableMapping, Protocol, Union

from .canonical import canonical_payload

HmacMode = Literal["digest", "payload"]

# Small-order points of edwards25519 (and their non-canonical encodings) that strict verifiers
# refuse as public keys; the list of RFC 8032 / ZIP-215 test suites.
_SMALL_ORDER = {
    bytes.fromhex(h)
    for h in (
        "0100000000000000000000000000000000000000000000000000000000000000",
        "0000000000000000000000000000000000000000000000000000000000000080",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        "0000000000000000000000000000000000000000000000000000000000000000",
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        "0100000000000000000000000000000000000000000000000000000000000080",
    )
}
_L = 2**252 + 27742317777372353535851937790883648493  # order of the prime-order subgroup


class Signer(Protocol):
    """Anything that signs a PCS: the conformance runner, clients and outbox take one."""

    def sign_payload(self, payload: bytes) -> bytes:
        """The raw signature over a canonical payload."""
        ...

    def verify_payload(self, payload: bytes, signature: bytes) -> bool:
        """Whether ``signature`` is valid for ``payload`` under this key."""
        ...


def _b64decode(sig: str) -> bytes | None:
    try:
        return base64.b64decode(sig.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return None


class HmacSigner:
    """HMAC-SHA256 with a tenant secret (the UTF-8 bytes of the configured string)."""

    def __init__(self, secret: Union[str, bytes], mode: HmacMode = "digest") -> None:
        if mode not in ("digest", "payload"):
            raise ValueError(f"unknown hmac mode {mode!r} (digest or payload)")
        self.key = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
        self.mode: HmacMode = mode

    def sign_payload(self, payload: bytes) -> bytes:
        msg = hashlib.sha256(payload).digest() if self.mode == "digest" else payload
        return hmac.new(self.key, msg, hashlib.sha256).digest()

    def verify_payload(self, payload: bytes, signature: bytes) -> bool:
        return hmac.compare_digest(self.sign_payload(payload), signature)

    def __repr__(self) -> str:  # never the secret
        return f"HmacSigner(mode={self.mode!r}, key=<redacted>)"


class Ed25519Signer:
    """PureEd25519 over the SHA-256 digest of the payload, from a 32-byte private seed."""

    def __init__(self, seed: bytes) -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        if len(seed) != 32:
            raise ValueError("an ed25519 seed is 32 bytes")
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        self._verifier: Ed25519Verifier | None = None

    @classmethod
    def from_hex(cls, seed_hex: str) -> "Ed25519Signer":
        return cls(bytes.fromhex(seed_hex))

    def public_key(self) -> bytes:
        """The 32-byte public key (base64 of it goes into the tenants file)."""
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        return self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def sign_payload(self, payload: bytes) -> bytes:
        return self._key.sign(hashlib.sha256(payload).digest())

    def verify_payload(self, payload: bytes, signature: bytes) -> bool:
        if self._verifier is None:
            self._verifier = Ed25519Verifier(self.public_key())
        return self._verifier.verify_payload(payload, signature)

    def __repr__(self) -> str:
        return f"Ed25519Signer(public_key={base64.b64encode(self.public_key()).decode()})"


class Ed25519Verifier:
    """Strict PureEd25519 verification over the digest: small-order keys and S >= L refused."""

    def __init__(self, public_key: bytes) -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        if len(public_key) != 32:
            raise ValueError("an ed25519 public key is 32 bytes")
        self.public_key = bytes(public_key)
        self._weak = self.public_key in _SMALL_ORDER
        try:
            self._key: Any = Ed25519PublicKey.from_public_bytes(self.public_key)
        except ValueError:
            self._key = None  # not a point: nothing verifies

    def verify_payload(self, payload: bytes, signature: bytes) -> bool:
        from cryptography.exceptions import InvalidSignature

        if len(signature) != 64 or self._weak or self._key is None:
            return False
        if int.from_bytes(signature[32:], "little") >= _L:
            return False  # non-canonical S
        try:
            self._key.verify(signature, hashlib.sha256(payload).digest())
        except InvalidSignature:
            return False
        return True


def sign(pcs: MutableMapping[str, Any], signer: Signer) -> str:
    """Sign ``pcs`` in place (sets ``sig``) and return the base64 signature."""
    sig = base64.b64encode(signer.sign_payload(canonical_payload(pcs))).decode("ascii")
    pcs["sig"] = sig
    return sig


def verify(pcs: Mapping[str, Any], verifier: Signer | Ed25519Verifier) -> bool:
    """Whether ``pcs["sig"]`` is a valid signature of ``pcs`` (absent or undecodable: false)."""
    sig = pcs.get("sig")
    raw = _b64decode(sig) if isinstance(sig, str) and sig else None
    if raw is None:
        return False
    return verifier.verify_payload(canonical_payload(pcs), raw)
