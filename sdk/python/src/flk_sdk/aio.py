"""asyncio REST client for FLK's gateway: stdlib streams only, HTTP/1.1 with keep-alive.

Same behaviour as :class:`flk_sdk.client.Client` (retries with full jitter honouring
``Retry-After``; every non-transient answer returned as a :class:`SubmitResult`), with a small
pool of connections so that many submissions can be in flight at once.
"""

from __future__ import annotations

import asyncio
import random
import ssl
from typing import Any, Mapping, MutableMapping
from urllib.parse import quote, urlsplit

from .client import (
    ReadError,
    RetriesExhausted,
    RetryPolicy,
    SubmitResult,
    _decode,
    encode_pcs,
    parse_retry_after,
)
from .signing import Signer, sign

_MAX_HEADER_LINES = 100


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def close(self) -> None:
        self.writer.close()


class HttpProtocolError(ConnectionError):
    """The server's answer was not HTTP/1.1 we understand."""


class AsyncClient:
    """``async with AsyncClient(url, signer=...) as c: await c.submit(pcs)``."""

    def __init__(
        self,
        base_url: str,
        *,
        tenant: str = "default",
        signer: Signer | None = None,
        api_token: str | None = None,
        timeout: float = 10.0,
        retry: RetryPolicy = RetryPolicy(),
        max_connections: int = 8,
        rng: random.Random | None = None,
    ) -> None:
        u = urlsplit(base_url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"not an http(s) url: {base_url!r}")
        self._ssl: ssl.SSLContext | None = (
            ssl.create_default_context() if u.scheme == "https" else None
        )
        self._host = u.hostname
        self._port = u.port or (443 if self._ssl else 80)
        self._prefix = u.path.rstrip("/")
        self.tenant = tenant
        self.signer = signer
        self.api_token = api_token
        self.timeout = timeout
        self.retry = retry
        self._rng = rng or random.Random()
        self._idle: list[_Conn] = []
        self._slots = asyncio.Semaphore(max_connections)

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for c in idle:
            c.close()
        for c in idle:
            try:
                await c.writer.wait_closed()
            except OSError:
                pass

    async def _exchange(
        self, conn: _Conn, method: str, path: str, body: bytes, headers: Mapping[str, str]
    ) -> tuple[int, dict[str, str], bytes, bool]:
        lines = [f"{method} {self._prefix}{path} HTTP/1.1", f"host: {self._host}:{self._port}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        lines.append(f"content-length: {len(body)}")
        conn.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        await conn.writer.drain()
        status_line = await conn.reader.readline()
        parts = status_line.decode("latin-1").split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise HttpProtocolError(f"bad status line {status_line[:80]!r}")
        status = int(parts[1])
        hdrs: dict[str, str] = {}
        for _ in range(_MAX_HEADER_LINES):
            line = await conn.reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            k, _, v = line.decode("latin-1").partition(":")
            hdrs[k.strip().lower()] = v.strip()
        else:
            raise HttpProtocolError("too many header lines")
        if hdrs.get("transfer-encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int((await conn.reader.readline()).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while (await conn.reader.readline()) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                data += await conn.reader.readexactly(size)
                await conn.reader.readexactly(2)
        elif "content-length" in hdrs:
            data = await conn.reader.readexactly(int(hdrs["content-length"]))
        else:
            data = await conn.reader.read()
            hdrs["connection"] = "close"
        keep = hdrs.get("connection", "").lower() != "close"
        return status, hdrs, data, keep

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: Mapping[str, str] = {}
    ) -> tuple[int, dict[str, str], bytes]:
        """One HTTP exchange on a pooled connection (a stale kept-alive one is replaced once)."""
        hdrs = {"content-type": "application/json", "accept": "application/json", **headers}
        async with self._slots:
            for attempt in (0, 1):
                reused = bool(self._idle)
                if reused:
                    conn = self._idle.pop()
                else:
                    r, w = await asyncio.wait_for(
                        asyncio.open_connection(self._host, self._port, ssl=self._ssl),
                        self.timeout,
                    )
                    conn = _Conn(r, w)
                try:
                    status, h, data, keep = await asyncio.wait_for(
                        self._exchange(conn, method, path, body, hdrs), self.timeout
                    )
                except (ConnectionError, asyncio.IncompleteReadError):
                    conn.close()
                    if reused and attempt == 0:
                        continue  # the server closed an idle connection: try a fresh one
                    raise
                except BaseException:
                    conn.close()
                    raise
                if keep:
                    self._idle.append(conn)
                else:
                    conn.close()
                return status, h, data
        raise AssertionError("unreachable")

    def prepare(self, pcs: MutableMapping[str, Any]) -> bytes:
        if self.signer is not None:
            sign(pcs, self.signer)
        return encode_pcs(pcs)

    async def submit_body(self, body: bytes) -> SubmitResult:
        """Send an encoded, signed PCS, retrying transient failures per the policy."""
        attempt = 0
        last: SubmitResult | None = None
        while True:
            try:
                status, headers, data = await self.request(
                    "POST", "/v1/pcs/submit", body, {"x-tenant-id": self.tenant}
                )
                last = SubmitResult(
                    status, _decode(data), parse_retry_after(headers.get("retry-after")),
                    attempt + 1,
                )
                if not last.transient:
                    return last
                retry_after, why = last.retry_after, f"http {status}"
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as e:
                retry_after, why = None, f"{type(e).__name__}: {e}"
            attempt += 1
            if self.retry.max_attempts is not None and attempt >= self.retry.max_attempts:
                raise RetriesExhausted(f"gave up after {attempt} attempts ({why})", last)
            await asyncio.sleep(self.retry.delay(attempt - 1, retry_after, self._rng))

    async def submit(self, pcs: MutableMapping[str, Any]) -> SubmitResult:
        """Sign (if the client has a signer) and submit one PCS, with retries."""
        return await self.submit_body(self.prepare(pcs))

    async def _read(self, path: str) -> dict[str, Any] | None:
        headers = {"x-tenant-id": self.tenant}
        if self.api_token:
            headers["authorization"] = f"Bearer {self.api_token}"
        status, _, data = await self.request("GET", path, b"", headers)
        if status == 404:
            return None
        body = _decode(data)
        if status != 200:
            raise ReadError(status, body)
        return body

    async def get_outcome(self, pcs_id: str) -> dict[str, Any] | None:
        """The stored outcome of ``pcs_id`` for this tenant (``None`` if unknown)."""
        return await self._read(f"/v1/pcs/{quote(pcs_id, safe='')}")

    async def get_proof(self, pcs_id: str) -> dict[str, Any] | None:
        """The audit proof bundle of ``pcs_id`` (``None`` if not logged yet)."""
        return await self._read(f"/v1/audit/proof/{quote(pcs_id, safe='')}")
