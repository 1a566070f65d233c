"""Client behaviour against a scripted HTTP peer: retries, Retry-After, refusals, reads.

The peer stands in for a gateway that answers 429/503 on demand, which a real ``flk up`` does
only under load; the integration tests run the same clients against a real one.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
from typing import Any

import pytest

from flk_sdk import Client, HmacSigner, RetriesExhausted, RetryPolicy, verify
from flk_sdk.aio import AsyncClient
from flk_sdk.client import parse_retry_after
from conftest import SIGNING
from scripted import Scripted


OUTCOME = {"pcs_id": "p", "outcome": "accepted", "accepted": True, "duplicate": False}
ERR = {"error": {"code": "rate_limited", "message": "slow down"}}


def pcs() -> dict[str, Any]:
    return dict(SIGNING["vectors"][0]["pcs"])


def test_delay_is_full_jitter_with_retry_after_floor() -> None:
    p = RetryPolicy(base=0.1, cap=1.0)
    rng = random.Random(7)
    delays = [p.delay(n, None, rng) for n in range(10) for _ in range(50)]
    assert all(0 <= d <= 1.0 for d in delays)
    assert max(delays[:50]) <= 0.1 and max(delays[-50:]) > 0.5
    assert all(p.delay(3, 2.5, rng) >= 2.5 for _ in range(20))
    assert p.delay(0, 10_000, rng) == p.max_retry_after


def test_parse_retry_after() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0


def test_retries_transient_answers_honouring_retry_after(peer: Scripted) -> None:
    peer.add(503, ERR, retry_after="1")
    peer.add(429, ERR, retry_after="2")
    peer.add(200, OUTCOME)
    slept: list[float] = []
    c = Client(peer.url, tenant="t1", signer=HmacSigner("s"), sleep=slept.append,
               retry=RetryPolicy(base=0.01, cap=0.05))
    p = pcs()
    r = c.submit(p)
    assert (r.http_status, r.outcome, r.duplicate, r.attempts) == (200, "accepted", False, 3)
    assert slept[0] >= 1.0 and slept[1] >= 2.0
    assert len(peer.requests) == 3
    first = peer.requests[0]
    assert first["path"] == "/v1/pcs/submit" and first["headers"]["x-tenant-id"] == "t1"
    assert all(q["body"] == first["body"] for q in peer.requests)  # the same bytes each time
    assert verify(json.loads(first["body"]), HmacSigner("s"))
    assert len(peer.connections) == 1  # one kept-alive connection


def test_permanent_refusal_is_returned_not_retried(peer: Scripted) -> None:
    peer.add(401, {"error": {"code": "signature_invalid", "message": "bad"}})
    r = Client(peer.url, sleep=lambda s: None).submit(pcs())
    assert (r.http_status, r.permanent, r.error_code, r.attempts) == (401, True, "signature_invalid", 1)


def test_gives_up_after_max_attempts(peer: Scripted) -> None:
    for _ in range(3):
        peer.add(503, ERR, retry_after="0")
    c = Client(peer.url, sleep=lambda s: None, retry=RetryPolicy(max_attempts=3))
    with pytest.raises(RetriesExhausted) as e:
        c.submit(pcs())
    assert e.value.last is not None and e.value.last.http_status == 503


def test_connection_refused_is_transient() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    slept: list[float] = []
    c = Client(f"http://127.0.0.1:{port}", sleep=slept.append, retry=RetryPolicy(max_attempts=4))
    with pytest.raises(RetriesExhausted):
        c.submit(pcs())
    assert len(slept) == 3


def test_reads_send_the_bearer_token(peer: Scripted) -> None:
    peer.add(200, OUTCOME)
    peer.add(404, {"error": {"code": "not_found", "message": "unknown"}})
    c = Client(peer.url, api_token="tok")
    assert c.get_outcome("p")["outcome"] == "accepted"  # type: ignore[index]
    assert c.get_outcome("q") is None
    assert peer.requests[0]["headers"]["authorization"] == "Bearer tok"
    assert peer.requests[0]["path"] == "/v1/pcs/p"


def test_async_client(peer: Scripted) -> None:
    peer.add(503, ERR, retry_after="0")
    peer.add(202, dict(OUTCOME, outcome="escalated"), transfer_encoding="chunked")
    peer.add(200, dict(OUTCOME, duplicate=True))
    peer.add(200, OUTCOME)

    async def go() -> list[Any]:
        async with AsyncClient(peer.url, signer=HmacSigner("s"), api_token="tok",
                               retry=RetryPolicy(base=0.001, cap=0.002)) as c:
            a = await c.submit(pcs())
            b = await c.submit(pcs())
            o = await c.get_outcome("p")
            return [a, b, o]

    a, b, o = asyncio.run(go())
    assert (a.http_status, a.outcome, a.attempts) == (202, "escalated", 2)
    assert (b.http_status, b.duplicate) == (200, True)
    assert o["outcome"] == "accepted"
    assert peer.requests[3]["headers"]["authorization"] == "Bearer tok"
    assert len(peer.connections) == 1
