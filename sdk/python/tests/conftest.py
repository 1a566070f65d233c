"""Shared fixtures: the golden vectors (``sdk/testdata``) and real ``flk up`` servers."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
from pathlib import Path
from typing import Any, Iterator

import pytest

from flkserver import FlkServer
from scripted import Scripted

TESTDATA = Path(os.environ.get("FLK_SDK_TESTDATA") or Path(__file__).resolve().parents[2] / "testdata")


def load(name: str) -> dict[str, Any]:
    with open(TESTDATA / name, encoding="utf-8") as f:
        return json.load(f)


SIGNING = load("signing_vectors.json")
CONSTRUCTION = load("construction_vectors.json")
VERIFY = load("verify_vectors.json")


@pytest.fixture(scope="session")
def hmac_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FlkServer, str]]:
    """``flk up --hmac-key SECRET``: tenant ``default``, one HMAC key in digest mode."""
    secret = "sdk-python-" + secrets.token_hex(8)
    server = FlkServer(tmp_path_factory.mktemp("flk-hmac"), "--hmac-key", secret)
    yield server, secret
    server.stop()


class KeyedServer:
    """A server whose tenant ``agents`` holds HMAC digest, HMAC payload and Ed25519 keys."""

    tenant = "agents"

    def __init__(self, root: Path) -> None:
        self.digest_secret = "digest-" + secrets.token_hex(8)
        self.payload_secret = "payload-" + secrets.token_hex(8)
        self.ed25519_seed = secrets.token_bytes(32)
        self.api_token = "flk_" + secrets.token_urlsafe(24)
        from flk_sdk import Ed25519Signer

        public = base64.b64encode(Ed25519Signer(self.ed25519_seed).public_key()).decode()
        token_hash = hashlib.sha256(self.api_token.encode()).hexdigest()
        tenants = root / "tenants.toml"
        tenants.write_text(
            f"""[[tenant]]
id = "{self.tenant}"

[[tenant.keys]]
id = "h-digest"
algorithm = "hmac"
mode = "digest"
secret = "{self.digest_secret}"

[[tenant.keys]]
id = "h-payload"
algorithm = "hmac"
mode = "payload"
secret = "{self.payload_secret}"

[[tenant.keys]]
id = "e-1"
algorithm = "ed25519"
public_key = "{public}"

[[tenant.api_tokens]]
id = "reader"
sha256 = "{token_hash}"
"""
        )
        self.server = FlkServer(root / "data", "--tenants", str(tenants))
        self.url = self.server.url


@pytest.fixture(scope="session")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyedServer]:
    ks = KeyedServer(tmp_path_factory.mktemp("flk-keys"))
    yield ks
    ks.server.stop()


@pytest.fixture
def peer() -> Iterator[Scripted]:
    s = Scripted()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()
