"""Canonical signing bytes of a PCS (PROTOCOL.md section 2), byte for byte.

The payload is the JSON object of the 8 signed keys, sorted, without whitespace, its floats
rounded with :func:`round9` and written in Python ``repr`` style, its strings escaped to ASCII
with lowercase ``\\uXXXX``. Python's own ``repr`` and ``json`` string encoder produce exactly
that format, which is why the field's reference agent (written in Python) defines it.
"""

from __future__ import annotations

import hashlib
import json
import math
from decimal import ROUND_HALF_UP, Context, Decimal
from typing import Any, Mapping

#: The keys the signature covers, in the order PROTOCOL.md lists them.
SIGNED_KEYS = ("pcs_id", "merkle_root", "epoch", "shard_id", "D_hat", "coh_star", "r", "budget")
#: The signed keys that are floats, rounded to 9 decimals before serialising.
ROUNDED_KEYS = ("D_hat", "coh_star", "r", "budget")

_NINE = Decimal("1e-9")
# Enough digits that quantizing any finite double to 1e-9 never overflows the context.
_CTX = Context(prec=400, Emax=999999, Emin=-999999)
_MAX_EPOCH = 2**53 - 1


class CanonicalError(ValueError):
    """The PCS cannot be put in canonical form (a missing key, a wrong type, a non-finite float)."""


def round9(x: float) -> float:
    """Round to 9 decimals: shortest round-trip decimal, half-up (away from zero) at the 9th.

    >>> round9(0.1234567885), round9(4e-10), round9(6e-10)
    (0.123456789, 0.0, 1e-09)
    """
    if not math.isfinite(x):
        raise CanonicalError(f"non-finite float {x!r}")
    text = repr(float(x))
    if "e" not in text:
        # Fixed notation, the usual case: round the digit string itself.
        whole, _, frac = text.lstrip("-").partition(".")
        if len(frac) <= 9:
            return float(x)  # nine decimals or fewer already: nothing to round
        n = int(whole + frac[:9]) + (frac[9] >= "5")
        if n < 2**53:
            # n and 1e9 are exact doubles, so the IEEE quotient is the correctly rounded
            # value of the decimal n * 10^-9, as parsing it would give.
            r = n / 1e9
        else:
            r = float(f"{n}e-9")
        return -r if text[0] == "-" else r
    d = Decimal(text)
    if d.as_tuple().exponent >= -9:  # type: ignore[operator]
        return float(x)
    return float(d.quantize(_NINE, rounding=ROUND_HALF_UP, context=_CTX))


def format_float(x: float) -> str:
    """A float the way the canonical payload writes it (Python ``repr``: ``1.0``, ``1e-05``)."""
    if not math.isfinite(x):
        raise CanonicalError(f"non-finite float {x!r}")
    return repr(float(x))


def escape_string(s: str) -> str:
    """A JSON string literal escaped to ASCII (``\\uXXXX`` lowercase, surrogate pairs)."""
    if s.isascii() and s.isprintable() and '"' not in s and "\\" not in s:
        return f'"{s}"'  # printable ASCII (0x20..0x7e) needs no escape
    return json.dumps(s, ensure_ascii=True)


def _number(pcs: Mapping[str, Any], key: str) -> float:
    v = pcs.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise CanonicalError(f"{key} must be a number")
    f = float(v)
    if not math.isfinite(f):
        raise CanonicalError(f"{key} must be finite")
    return f


def _string(pcs: Mapping[str, Any], key: str) -> str:
    v = pcs.get(key)
    if not isinstance(v, str):
        raise CanonicalError(f"{key} must be a string")
    return v


def canonical_payload(pcs: Mapping[str, Any]) -> bytes:
    """The exact bytes that are hashed and signed for ``pcs``."""
    epoch = pcs.get("epoch")
    if isinstance(epoch, bool) or not isinstance(epoch, int) or not 0 <= epoch <= _MAX_EPOCH:
        raise CanonicalError("epoch must be an integer in 0..=2^53-1")
    d_hat, budget, coh, r = (round9(_number(pcs, k)) for k in ("D_hat", "budget", "coh_star", "r"))
    # Keys in code-point order: D_hat, budget, coh_star, epoch, merkle_root, pcs_id, r, shard_id.
    text = (
        f'{{"D_hat":{format_float(d_hat)},"budget":{format_float(budget)},'
        f'"coh_star":{format_float(coh)},"epoch":{epoch},'
        f'"merkle_root":{escape_string(_string(pcs, "merkle_root"))},'
        f'"pcs_id":{escape_string(_string(pcs, "pcs_id"))},"r":{format_float(r)},'
        f'"shard_id":{escape_string(_string(pcs, "shard_id"))}}}'
    )
    return text.encode("ascii")


def digest(pcs: Mapping[str, Any]) -> bytes:
    """SHA-256 of the canonical payload (what digest-mode HMAC and Ed25519 sign)."""
    return hashlib.sha256(canonical_payload(pcs)).digest()


def pcs_id(merkle_root: str, epoch: int, shard_id: str) -> str:
    """``sha256(merkle_root + "|" + epoch + "|" + shard_id)`` in lowercase hex."""
    return hashlib.sha256(f"{merkle_root}|{epoch}|{shard_id}".encode("utf-8")).hexdigest()
