"""At-least-once delivery across SIGKILL: every PCS decided exactly once by a real ``flk up``."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import SIGNING
from flkserver import FlkServer

from flk_sdk import Client, HmacSigner, pcs_id

AGENT = str(Path(__file__).with_name("outbox_agent.py"))


def crash_pcs() -> list[dict[str, Any]]:
    """The signing vectors under shard ids of their own (fresh pcs_ids for this test)."""
    out = []
    for i, v in enumerate(SIGNING["vectors"]):
        p = dict(v["pcs"], shard_id=f"crash-test-{i}")
        p["pcs_id"] = pcs_id(p["merkle_root"], p["epoch"], p["shard_id"])
        out.append(p)
    return out


def run_agent(*args: str, kill_when: Any = None) -> list[Any]:
    """Runs the agent; SIGKILLs it as soon as ``kill_when(lines)`` holds. Returns its lines."""
    proc = subprocess.Popen([sys.executable, AGENT, *args], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    lines: list[Any] = []
    for raw in proc.stdout:
        lines.append(raw.strip() if raw.strip() == "HANG" else json.loads(raw))
        if kill_when is not None and kill_when(lines):
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=120)
    proc.stdout.close()
    if kill_when is not None:
        assert proc.returncode == -signal.SIGKILL
    else:
        assert proc.returncode == 0
    return lines


def test_sigkill_mid_send_delivers_everything_once(
    hmac_server: tuple[FlkServer, str], tmp_path: Path
) -> None:
    server, secret = hmac_server
    items = crash_pcs()
    queue_file = tmp_path / "pcs.json"
    queue_file.write_text(json.dumps(items))
    outbox = str(tmp_path / "outbox")
    base = (outbox, server.url, secret)

    # 1. Killed after the server decided the 10th PCS, before the agent recorded it.
    first = run_agent(*base, "--enqueue", str(queue_file), "--hang-after", "10",
                      kill_when=lambda ls: ls[-1] == "HANG")
    assert first[0] == {"queued": len(items)}
    answers1 = [x for x in first[1:] if x != "HANG"]
    assert len(answers1) == 10 and not any(a["duplicate"] for a in answers1)
    hung = answers1[-1]

    # 2. Killed again at an arbitrary moment of sending (after 20 more answers arrived).
    second = run_agent(*base, kill_when=lambda ls: len(ls) >= 20)
    assert second[0]["pcs_id"] == hung["pcs_id"] and second[0]["duplicate"] is True
    assert second[0]["outcome"] == hung["outcome"]
    assert {a["pcs_id"] for a in answers1[:-1]}.isdisjoint(a["pcs_id"] for a in second)

    # 3. Runs to the end.
    third = run_agent(*base)
    assert third[-1] == {"done": len(third) - 1, "pending": 0}
    answers = answers1 + second + third[:-1]

    # Every PCS was answered; each was decided once (at most one non-duplicate answer) and
    # every repeat was answered as a duplicate of the stored decision.
    ids = [p["pcs_id"] for p in items]
    assert {a["pcs_id"] for a in answers} == set(ids)
    for i in ids:
        fresh = [a for a in answers if a["pcs_id"] == i and not a["duplicate"]]
        assert len(fresh) <= 1
    assert all(a["http_status"] in (200, 202) for a in answers)
    with Client(server.url, signer=HmacSigner(secret), api_token=server.default_token) as c:
        for p in items:
            again = c.submit(dict(p))
            assert again.duplicate is True
            stored = c.get_outcome(p["pcs_id"])
            assert stored is not None and stored["outcome"] == again.outcome
