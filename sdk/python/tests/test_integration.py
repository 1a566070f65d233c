"""Every vector through a real ``flk up`` (built from this workspace), in every signing mode."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
from typing import Any

import pytest
from conftest import CONSTRUCTION, SIGNING, TESTDATA, VERIFY, KeyedServer
from flkserver import FlkServer, wait_until

from flk_sdk import Client, Ed25519Signer, HmacSigner, ReadError, evaluate
from flk_sdk.aio import AsyncClient


def test_signing_vectors_are_decided_once(hmac_server: tuple[FlkServer, str]) -> None:
    server, secret = hmac_server
    with Client(server.url, signer=HmacSigner(secret), api_token=server.default_token) as c:
        first = []
        for v in SIGNING["vectors"]:
            pcs = dict(v["pcs"])
            r = c.submit(pcs)
            want = evaluate(pcs)
            assert (r.http_status, r.outcome, r.duplicate) == (want.http_status, want.outcome, False)
            assert r.body["reason_code"] == want.reason_code
            assert r.body["recomputed_budget"] == want.recomputed_budget
            first.append(r)
        for v, before in zip(SIGNING["vectors"], first):
            r = c.submit(dict(v["pcs"]))
            assert (r.http_status, r.outcome, r.duplicate) == (before.http_status, before.outcome, True)
            stored = c.get_outcome(v["pcs"]["pcs_id"])
            assert stored is not None and stored["outcome"] == before.outcome
        # The audit log records every decision (off the request path): its proof appears.
        some = SIGNING["vectors"][5]["pcs"]["pcs_id"]
        proof = wait_until(lambda: c.get_proof(some), timeout=60)
        assert proof["tree_size"] > proof["leaf_index"] >= 0 and proof["checkpoint"]["note"]
        assert some.encode() in base64.b64decode(proof["entry"])
        # A tampered copy of a known PCS is refused, never answered from the dedup store.
        tampered = dict(SIGNING["vectors"][0]["pcs"])
        body = c.prepare(tampered)
        r = c.submit_body(body.replace(b'"epoch":0', b'"epoch":1'))
        assert (r.http_status, r.error_code) == (401, "signature_invalid")
    with Client(server.url) as anonymous:
        with pytest.raises(ReadError) as e:
            anonymous.get_outcome(SIGNING["vectors"][0]["pcs"]["pcs_id"])
        assert e.value.status == 401


def test_verify_vectors_through_the_async_client(hmac_server: tuple[FlkServer, str]) -> None:
    server, secret = hmac_server

    async def go() -> list[Any]:
        async with AsyncClient(server.url, signer=HmacSigner(secret), max_connections=8) as c:
            return await asyncio.gather(*(c.submit(dict(v["pcs"])) for v in VERIFY["vectors"]))

    for v, r in zip(VERIFY["vectors"], asyncio.run(go())):
        e = v["expect"]
        assert (r.http_status, r.outcome, r.body["reason_code"]) == (
            e["http_status"], e["outcome"], e["reason_code"])
        assert r.body["recomputed_D_hat"] == e["recomputed_D_hat"]
        assert not r.duplicate


def _conformance(*args: str, stdin: bytes) -> list[dict[str, Any]]:
    out = subprocess.run([sys.executable, "-m", "flk_sdk.conformance", *args], input=stdin,
                         capture_output=True, check=True, timeout=600).stdout
    return [json.loads(line) for line in out.splitlines()]


def test_conformance_runner_submits(hmac_server: tuple[FlkServer, str]) -> None:
    server, secret = hmac_server
    data = (TESTDATA / "construction_vectors.json").read_bytes()
    args = ("--construction", "--submit", server.url, "--tenant", "default", "--hmac-key", secret)
    first = _conformance(*args, stdin=data)
    again = _conformance(*args, stdin=data)
    want_ids = [v["expected"]["pcs_id"] for v in CONSTRUCTION["vectors"]]
    assert [a["pcs_id"] for a in first] == want_ids == [a["pcs_id"] for a in again]
    for v, a, b in zip(CONSTRUCTION["vectors"], first, again):
        # What the reference agent computes, the server recomputes: accepted as it stands.
        assert (a["http_status"], a["outcome"], a["duplicate"]) == (200, "accepted", False), v["name"]
        assert (b["http_status"], b["outcome"], b["duplicate"]) == (200, "accepted", True)


def test_conformance_runner_signing_lines() -> None:
    lines = _conformance(stdin=(TESTDATA / "signing_vectors.json").read_bytes())
    keys = ("canonical_payload", "digest_sha256_hex", "sig_hmac_sha256_b64", "sig_ed25519_b64")
    assert len(lines) == len(SIGNING["vectors"])
    for v, line in zip(SIGNING["vectors"], lines):
        assert line["pcs_id"] == v["pcs"]["pcs_id"]
        assert {k: line[k] for k in keys} == {k: v[k] for k in keys}


def test_conformance_runner_construction_lines() -> None:
    lines = _conformance("--construction", stdin=(TESTDATA / "construction_vectors.json").read_bytes())
    assert [line["name"] for line in lines] == [v["name"] for v in CONSTRUCTION["vectors"]]
    for v, line in zip(CONSTRUCTION["vectors"], lines):
        e = dict(v["expected"])
        assert line.pop("v_star") == pytest.approx(e.pop("v_star"), abs=1e-12, rel=0)
        assert {k: line[k] for k in e} == e


def test_every_signing_mode_is_accepted(keyed_server: KeyedServer) -> None:
    ks = keyed_server
    signers = [
        HmacSigner(ks.digest_secret, "digest"),
        HmacSigner(ks.payload_secret, "payload"),
        Ed25519Signer(ks.ed25519_seed),
    ]
    with Client(ks.url, tenant=ks.tenant, api_token=ks.api_token) as c:
        for i, v in enumerate(SIGNING["vectors"]):
            c.signer = signers[i % 3]
            pcs = dict(v["pcs"])
            r = c.submit(pcs)
            want = evaluate(pcs)
            assert (r.http_status, r.outcome, r.duplicate) == (want.http_status, want.outcome, False), (
                type(c.signer).__name__, r.body)
            stored = c.get_outcome(pcs["pcs_id"])
            assert stored is not None and stored["tenant_id"] == ks.tenant
        # The wrong mode for a key, or an unknown key, is a signature failure.
        for wrong in (HmacSigner(ks.payload_secret, "digest"), HmacSigner(ks.digest_secret, "payload"),
                      Ed25519Signer(bytes(32))):
            c.signer = wrong
            r = c.submit(dict(SIGNING["vectors"][0]["pcs"]))
            assert (r.http_status, r.error_code) == (401, "signature_invalid")
    with Client(ks.url, tenant=ks.tenant, api_token="flk_wrong") as c:
        with pytest.raises(ReadError) as e:
            c.get_outcome(SIGNING["vectors"][0]["pcs"]["pcs_id"])
        assert e.value.status == 401


def test_conformance_runner_submits_in_every_mode(keyed_server: KeyedServer) -> None:
    ks = keyed_server
    data = (TESTDATA / "signing_vectors.json").read_bytes()
    base = ("--submit", ks.url, "--tenant", ks.tenant)
    for extra in (("--hmac-key", ks.digest_secret), ("--hmac-key", ks.payload_secret, "--hmac-mode", "payload"),
                  ("--ed25519-seed", ks.ed25519_seed.hex())):
        lines = _conformance(*base, *extra, stdin=data)
        assert len(lines) == len(SIGNING["vectors"])
        assert all(line["http_status"] in (200, 202) and line["outcome"] for line in lines), extra
    refused = subprocess.run([sys.executable, "-m", "flk_sdk.conformance", *base, "--hmac-key", "wrong"],
                             input=data, capture_output=True, timeout=600)
    assert refused.returncode == 1
    first = json.loads(refused.stdout.splitlines()[0])
    assert (first["http_status"], first["outcome"], first["duplicate"]) == (401, None, False)
