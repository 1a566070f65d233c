"""A durable outbox: at-least-once delivery of PCS across crashes of the agent.

Layout of the outbox directory:

* ``outbox.log`` -- append-only JSON lines, each ``fsync``'d before the call returns:
  ``{"op":"put","seq":N,"body":"<request body>"}`` (write-ahead: a PCS is on disk before the
  first byte goes to the network) and ``{"op":"ack","seq":N,...}`` once the server answered
  200/202 (a duplicate answer is an acknowledgement too) or refused it for good.
* ``dead-letter.jsonl`` -- PCS refused permanently (400, 401, 413, ...), with the status and
  error body, ``fsync``'d before the ack that retires them.
* Compaction rewrites the log with only the pending entries (temp file, ``fsync``, atomic
  rename, directory ``fsync``) once enough acks have accumulated, so the log stays small.

A crash may cut the last line short; replay ignores an incomplete final line. A crash between
the server's answer and the ack means the PCS is sent again after restart: the server's dedup
answers that copy as a duplicate of the first, so every PCS is decided exactly once.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, MutableMapping

from .client import Client, SubmitResult, encode_pcs
from .signing import Signer, sign

LOG_NAME = "outbox.log"
DEAD_LETTER_NAME = "dead-letter.jsonl"
LOCK_NAME = "outbox.lock"


@dataclass(frozen=True)
class Entry:
    """A pending PCS: its outbox sequence number and the exact request body to send."""

    seq: int
    body: bytes

    @property
    def pcs_id(self) -> str | None:
        try:
            v = json.loads(self.body).get("pcs_id")
        except (ValueError, AttributeError):
            return None
        return v if isinstance(v, str) else None


@dataclass
class DrainReport:
    """What one :meth:`Outbox.drain` did."""

    delivered: int = 0
    duplicates: int = 0
    dead_lettered: int = 0


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class OutboxLocked(RuntimeError):
    """Another process holds this outbox directory."""


class Outbox:
    """The outbox in ``directory`` (created if needed). One process at a time (a lock file)."""

    def __init__(self, directory: str | os.PathLike[str], *, compact_after: int = 1024) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.compact_after = compact_after
        self._mutex = threading.Lock()
        self._lock_fd = self._take_lock()
        self._pending: dict[int, bytes] = {}
        self._next_seq = 1
        self._acks_since_compaction = 0
        self._replay()
        created = not (self.dir / LOG_NAME).exists()
        self._log = open(self.dir / LOG_NAME, "ab", buffering=0)
        if created:
            _fsync_dir(self.dir)  # the log's directory entry must survive a crash too

    # -- files -----------------------------------------------------------------------------

    def _take_lock(self) -> int:
        import fcntl

        fd = os.open(self.dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            raise OutboxLocked(f"outbox {self.dir} is in use by another process") from e
        return fd

    def _replay(self) -> None:
        path = self.dir / LOG_NAME
        if not path.exists():
            return
        data = path.read_bytes()
        lines = data.split(b"\n")
        complete = lines[:-1]  # the part after the last newline is a torn write, if anything
        acks = 0
        for raw in complete:
            try:
                rec = json.loads(raw)
                seq = int(rec["seq"])
            except (ValueError, KeyError, TypeError):
                continue  # a torn line (crash mid-append) followed by later appends
            if rec.get("op") == "put":
                self._pending[seq] = rec["body"].encode("utf-8")
            elif rec.get("op") == "ack":
                self._pending.pop(seq, None)
                acks += 1
            self._next_seq = max(self._next_seq, seq + 1)
        if lines[-1]:
            # Drop the torn tail so that the next append starts on a line of its own.
            with open(path, "r+b") as f:
                f.truncate(len(data) - len(lines[-1]))
                os.fsync(f.fileno())
        self._acks_since_compaction = acks

    def _append(self, rec: Mapping[str, Any]) -> None:
        data = memoryview(json.dumps(rec, separators=(",", ":")).encode("utf-8") + b"\n")
        while data:  # an unbuffered write may be partial
            n = self._log.write(data)
            data = data[n or 0 :]
        os.fsync(self._log.fileno())

    def compact(self) -> None:
        """Rewrite the log with only the pending entries (crash-safe: temp file and rename)."""
        with self._mutex:
            self._compact_locked()

    def _compact_locked(self) -> None:
        tmp = self.dir / (LOG_NAME + ".tmp")
        with open(tmp, "wb") as f:
            # The highest sequence number ever used survives compaction, so numbers never repeat.
            f.write(json.dumps({"op": "seq", "seq": self._next_seq - 1}).encode() + b"\n")
            for seq, body in sorted(self._pending.items()):
                rec = {"op": "put", "seq": seq, "body": body.decode("utf-8")}
                f.write(json.dumps(rec, separators=(",", ":")).encode("utf-8") + b"\n")
            f.flush()
            os.fsync(f.fileno())
        self._log.close()
        os.replace(tmp, self.dir / LOG_NAME)
        _fsync_dir(self.dir)
        self._log = open(self.dir / LOG_NAME, "ab", buffering=0)
        self._acks_since_compaction = 0

    def close(self) -> None:
        self._log.close()
        os.close(self._lock_fd)

    def __enter__(self) -> "Outbox":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the queue -------------------------------------------------------------------------

    def put_body(self, body: bytes) -> int:
        """Durably queue an encoded, signed PCS; returns its sequence number."""
        with self._mutex:
            seq = self._next_seq
            self._append({"op": "put", "seq": seq, "body": body.decode("utf-8")})
            self._next_seq += 1
            self._pending[seq] = body
            return seq

    def put(self, pcs: MutableMapping[str, Any], signer: Signer | None = None) -> int:
        """Sign ``pcs`` (when a signer is given) and queue it durably."""
        if signer is not None:
            sign(pcs, signer)
        return self.put_body(encode_pcs(pcs))

    def pending(self) -> list[Entry]:
        """The entries not yet acknowledged, oldest first."""
        with self._mutex:
            return [Entry(s, b) for s, b in sorted(self._pending.items())]

    def __len__(self) -> int:
        return len(self._pending)

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.pending())

    def ack(self, seq: int, result: SubmitResult | None = None) -> None:
        """Retire ``seq``: the server recorded its decision."""
        with self._mutex:
            if seq not in self._pending:
                return
            rec: dict[str, Any] = {"op": "ack", "seq": seq}
            if result is not None:
                rec["status"] = result.http_status
            self._append(rec)
            del self._pending[seq]
            self._acks_since_compaction += 1
            if self._acks_since_compaction >= self.compact_after:
                self._compact_locked()

    def dead_letter(self, seq: int, result: SubmitResult) -> None:
        """Move ``seq`` to the dead-letter file (refused for good), then retire it."""
        with self._mutex:
            body = self._pending.get(seq)
            if body is None:
                return
            rec = {
                "seq": seq,
                "http_status": result.http_status,
                "answer": result.body,
                "body": body.decode("utf-8"),
            }
            with open(self.dir / DEAD_LETTER_NAME, "ab") as f:
                f.write(json.dumps(rec, separators=(",", ":")).encode("utf-8") + b"\n")
                f.flush()
                os.fsync(f.fileno())
        self.ack(seq, result)

    def dead_letters(self) -> list[dict[str, Any]]:
        """The dead-letter file's records."""
        path = self.dir / DEAD_LETTER_NAME
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_bytes().splitlines() if line.strip()]

    def settle(self, entry: Entry, result: SubmitResult, report: DrainReport) -> None:
        """Record the server's final answer to ``entry`` (acknowledged or refused for good)."""
        if result.acknowledged:
            self.ack(entry.seq, result)
            report.delivered += 1
            report.duplicates += int(result.duplicate)
        else:
            self.dead_letter(entry.seq, result)
            report.dead_lettered += 1

    def drain(
        self,
        client: Client,
        on_result: Callable[[Entry, SubmitResult], None] | None = None,
    ) -> DrainReport:
        """Send every pending entry in order until the outbox is empty.

        Transient failures are retried by the client's policy; if it gives up,
        :class:`flk_sdk.RetriesExhausted` propagates and the entry stays pending.
        """
        report = DrainReport()
        for entry in self.pending():
            result = client.submit_body(entry.body)
            if on_result is not None:
                on_result(entry, result)
            self.settle(entry, result, report)
        return report

    async def drain_async(self, client: Any, concurrency: int = 8) -> DrainReport:
        """:meth:`drain` through an :class:`flk_sdk.aio.AsyncClient`, ``concurrency`` at once."""
        import asyncio

        report = DrainReport()
        queue = self.pending()
        sem = asyncio.Semaphore(concurrency)

        async def one(entry: Entry) -> None:
            async with sem:
                result = await client.submit_body(entry.body)
            self.settle(entry, result, report)

        await asyncio.gather(*(one(e) for e in queue))
        return report
