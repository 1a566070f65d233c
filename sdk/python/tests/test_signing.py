"""Every golden signing vector, byte for byte, in every mode; strict verification."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest
from conftest import CONSTRUCTION, SIGNING

from flk_sdk import (
    CanonicalError,
    Ed25519Signer,
    Ed25519Verifier,
    HmacSigner,
    canonical_payload,
    pcs_id,
    round9,
    sign,
    verify,
)
from flk_sdk.canonical import format_float

VECTORS = SIGNING["vectors"]
HMAC = HmacSigner(SIGNING["hmac_key_utf8"])
ED = Ed25519Signer.from_hex(SIGNING["ed25519_seed_hex"])


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@pytest.mark.parametrize("v", VECTORS, ids=[f"v{i:02d}" for i in range(len(VECTORS))])
def test_signing_vector(v: dict[str, Any]) -> None:
    pcs = v["pcs"]
    payload = canonical_payload(pcs)
    assert payload.decode("ascii") == v["canonical_payload"]
    assert hashlib.sha256(payload).hexdigest() == v["digest_sha256_hex"]
    assert pcs_id(pcs["merkle_root"], pcs["epoch"], pcs["shard_id"]) == pcs["pcs_id"]
    assert b64(HMAC.sign_payload(payload)) == v["sig_hmac_sha256_b64"]
    assert b64(ED.sign_payload(payload)) == v["sig_ed25519_b64"]

    signed = dict(pcs)
    assert sign(signed, HMAC) == v["sig_hmac_sha256_b64"] == signed["sig"]
    assert verify(signed, HMAC)
    signed["sig"] = v["sig_ed25519_b64"]
    assert verify(signed, Ed25519Verifier(base64.b64decode(SIGNING["ed25519_public_key_b64"])))
    assert not verify(signed, HMAC)


def test_public_key_matches_the_vectors() -> None:
    assert b64(ED.public_key()) == SIGNING["ed25519_public_key_b64"]


@pytest.mark.parametrize("v", CONSTRUCTION["vectors"], ids=lambda v: v["name"])
def test_payload_mode_matches_the_reference_agent(v: dict[str, Any]) -> None:
    # The reference agent's HEAD signs in payload mode: its signatures are payload-mode vectors.
    e = v["expected"]
    signer = HmacSigner(v["params"]["hmac_key"], "payload")
    assert b64(signer.sign_payload(e["signature_payload"].encode())) == e["sig_hmac_sha256_b64"]
    digest_mode = HmacSigner(v["params"]["hmac_key"], "digest")
    assert b64(digest_mode.sign_payload(e["signature_payload"].encode())) != e["sig_hmac_sha256_b64"]


@pytest.mark.parametrize(
    ("x", "want"),
    [(0.1234567885, 0.123456789), (4e-10, 0.0), (6e-10, 1e-09), (-0.1234567885, -0.123456789),
     (0.5, 0.5), (2.5e16, 2.5e16), (1e300, 1e300), (-0.0, -0.0), (0.9999999995, 1.0)],
)
def test_round9(x: float, want: float) -> None:
    assert round9(x) == want


@pytest.mark.parametrize(
    ("x", "text"),
    [(0.5, "0.5"), (1.0, "1.0"), (0.0001, "0.0001"), (1e15, "1000000000000000.0"),
     (-0.0, "-0.0"), (1e-05, "1e-05"), (1.5e-07, "1.5e-07"), (2.5e16, "2.5e+16")],
)
def test_float_format(x: float, text: str) -> None:
    assert format_float(x) == text


def test_strings_escape_to_ascii() -> None:
    pcs = dict(VECTORS[0]["pcs"], shard_id='a"\\/\n\x7f\u00e9\U0001f600')
    text = canonical_payload(pcs).decode("ascii")
    assert '"shard_id":"a\\"\\\\/\\n\\u007f\\u00e9\\ud83d\\ude00"' in text


@pytest.mark.parametrize("bad", [{"D_hat": float("nan")}, {"r": float("inf")}, {"epoch": -1},
                                 {"epoch": 2**53}, {"epoch": 1.0}, {"shard_id": 3}, {"budget": True}])
def test_uncanonicalisable(bad: dict[str, Any]) -> None:
    with pytest.raises(CanonicalError):
        canonical_payload(dict(VECTORS[0]["pcs"], **bad))


def test_tampering_and_bad_encodings_fail() -> None:
    pcs = dict(VECTORS[0]["pcs"])
    sign(pcs, HMAC)
    assert verify(pcs, HMAC)
    assert not verify(dict(pcs, D_hat=pcs["D_hat"] + 0.01), HMAC)
    assert not verify(dict(pcs, sig=""), HMAC)
    assert not verify(dict(pcs, sig="not base64!"), HMAC)
    assert not verify({k: v for k, v in pcs.items() if k != "sig"}, HMAC)
    assert not verify(pcs, HmacSigner(SIGNING["hmac_key_utf8"], "payload"))


def test_ed25519_strict_rules() -> None:
    payload = canonical_payload(VECTORS[0]["pcs"])
    sig = ED.sign_payload(payload)
    verifier = Ed25519Verifier(ED.public_key())
    assert verifier.verify_payload(payload, sig)
    # S + L is the same signature to a lax verifier; strict verification refuses it.
    L = 2**252 + 27742317777372353535851937790883648493
    s = int.from_bytes(sig[32:], "little") + L
    assert s < 2**256
    assert not verifier.verify_payload(payload, sig[:32] + s.to_bytes(32, "little"))
    # A small-order public key (the identity) with the identity R and S = 0 verifies under
    # cofactored rules for every message; strict verification refuses it.
    identity = bytes.fromhex("01" + "00" * 31)
    assert not Ed25519Verifier(identity).verify_payload(payload, identity + bytes(32))


def test_round9_fast_path_equals_the_decimal_rule() -> None:
    # The fixed-notation fast path against the rule as written: Decimal(repr(x)), half-up.
    import math
    import random
    from decimal import ROUND_HALF_UP, Context, Decimal

    ctx = Context(prec=400)

    def rule(x: float) -> float:
        return float(Decimal(repr(x)).quantize(Decimal("1e-9"), ROUND_HALF_UP, ctx))

    rng = random.Random(9)
    values = [rng.random() * 10 ** rng.randint(-12, 18) * rng.choice((1, -1)) for _ in range(20000)]
    values += [int(rng.random() * 1e10) / 1e10 + 5e-11 for _ in range(5000)]  # near ties
    values += [-4e-10, 4e-10, 5e-10, -5e-10, 9007199.2547409915, 123456789.1234567895]
    for x in values:
        got, want = round9(x), rule(x)
        assert got == want and math.copysign(1, got) == math.copysign(1, want), x
