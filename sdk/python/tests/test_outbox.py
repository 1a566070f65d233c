"""The outbox on its own: write-ahead replay, torn tails, compaction, dead letters, locking."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from scripted import Scripted
from test_client import ERR, OUTCOME, pcs

from flk_sdk import Client, HmacSigner, Outbox, RetryPolicy
from flk_sdk.outbox import DEAD_LETTER_NAME, LOG_NAME, OutboxLocked


def test_put_survives_reopen_and_acks_retire(tmp_path: Path) -> None:
    with Outbox(tmp_path) as ob:
        seqs = [ob.put(dict(pcs(), epoch=i), HmacSigner("s")) for i in range(5)]
        ob.ack(seqs[1])
    with Outbox(tmp_path) as ob:
        assert [e.seq for e in ob.pending()] == [1, 3, 4, 5]
        assert all(json.loads(e.body)["sig"] for e in ob.pending())
        assert ob.put(pcs()) == 6  # numbers never repeat


def test_torn_tail_is_ignored_and_cut(tmp_path: Path) -> None:
    with Outbox(tmp_path) as ob:
        ob.put(pcs())
        ob.put(pcs())
    log = tmp_path / LOG_NAME
    with open(log, "ab") as f:
        f.write(b'{"op":"ack","seq":1')  # a crash in the middle of an append
    with Outbox(tmp_path) as ob:
        assert [e.seq for e in ob.pending()] == [1, 2]
        ob.ack(2)
    assert log.read_bytes().endswith(b'{"op":"ack","seq":2}\n')
    with Outbox(tmp_path) as ob:
        assert [e.seq for e in ob.pending()] == [1]


def test_compaction_keeps_only_pending(tmp_path: Path) -> None:
    with Outbox(tmp_path, compact_after=10) as ob:
        for i in range(25):
            ob.put(dict(pcs(), epoch=i))
        for seq in range(1, 21):
            ob.ack(seq)
        lines = (tmp_path / LOG_NAME).read_bytes().splitlines()
        assert len(lines) < 25  # compacted at least once
    with Outbox(tmp_path) as ob:
        assert [e.seq for e in ob.pending()] == [21, 22, 23, 24, 25]
        assert [json.loads(e.body)["epoch"] for e in ob.pending()] == [20, 21, 22, 23, 24]
        ob.compact()
        assert ob.put(pcs()) == 26
    assert not (tmp_path / (LOG_NAME + ".tmp")).exists()


def test_one_process_at_a_time(tmp_path: Path) -> None:
    with Outbox(tmp_path):
        with pytest.raises(OutboxLocked):
            Outbox(tmp_path)
    Outbox(tmp_path).close()


def test_drain_acks_answers_and_dead_letters_refusals(tmp_path: Path, peer: Scripted) -> None:
    peer.add(200, OUTCOME)
    peer.add(400, {"error": {"code": "malformed", "message": "bad"}})
    peer.add(503, ERR, retry_after="0")
    peer.add(200, dict(OUTCOME, duplicate=True))
    c = Client(peer.url, sleep=lambda s: None, retry=RetryPolicy(max_attempts=None))
    with Outbox(tmp_path) as ob:
        for i in range(3):
            ob.put(dict(pcs(), epoch=i))
        report = ob.drain(c)
        assert (report.delivered, report.duplicates, report.dead_lettered) == (2, 1, 1)
        assert len(ob) == 0
        dead = ob.dead_letters()
        assert [(d["seq"], d["http_status"]) for d in dead] == [(2, 400)]
        assert json.loads(dead[0]["body"])["epoch"] == 1
    assert (tmp_path / DEAD_LETTER_NAME).exists()
    with Outbox(tmp_path) as ob:
        assert len(ob) == 0


def test_drain_async(tmp_path: Path, peer: Scripted) -> None:
    import asyncio

    from flk_sdk.aio import AsyncClient

    for _ in range(3):
        peer.add(200, OUTCOME)
    peer.add(401, {"error": {"code": "signature_invalid", "message": "bad"}})

    async def go(ob: Outbox) -> object:
        async with AsyncClient(peer.url, retry=RetryPolicy(max_attempts=None)) as c:
            return await ob.drain_async(c, concurrency=1)

    with Outbox(tmp_path) as ob:
        for i in range(4):
            ob.put(dict(pcs(), epoch=i))
        report = asyncio.run(go(ob))
        assert (report.delivered, report.dead_lettered) == (3, 1)  # type: ignore[attr-defined]
        assert len(ob) == 0 and [d["seq"] for d in ob.dead_letters()] == [4]


def test_shared_fixture_replays_like_the_go_sdk(tmp_path: Path) -> None:
    # sdk/testdata/outbox/outbox.log: compaction marker, puts, an ack, a torn final line. The
    # Go SDK's test replays the same file to the same state (the on-disk format is shared).
    import shutil

    from conftest import TESTDATA

    shutil.copy(TESTDATA / "outbox" / LOG_NAME, tmp_path / LOG_NAME)
    with Outbox(tmp_path) as ob:
        assert [(e.seq, e.body) for e in ob.pending()] == [
            (6, b'{"pcs_id":"six","shard_id":"\\u00e9<&>"}'),
            (7, b'{"pcs_id":"seven"}'),  # its ack was torn: not acknowledged
        ]
        assert ob.put_body(b"{}") == 8
