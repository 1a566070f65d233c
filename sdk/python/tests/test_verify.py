"""The server's verification rules, reproduced: every verify vector's outcome."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import VERIFY

from flk_sdk import HmacSigner, evaluate, verify

VECTORS = VERIFY["vectors"]


@pytest.mark.parametrize("v", VECTORS, ids=[f"v{i:03d}" for i in range(len(VECTORS))])
def test_verify_vector(v: dict[str, Any]) -> None:
    got = evaluate(v["pcs"]).to_dict()
    assert {k: got[k] for k in v["expect"]} == v["expect"]
    assert verify(v["pcs"], HmacSigner(VERIFY["hmac_key_utf8"]))
