"""Synchronous REST client for FLK's gateway (PROTOCOL.md section 5), with retries.

Transient answers (429, 5xx other than 501, connection failures) are retried with exponential
backoff and full jitter, never sooner than the server's ``Retry-After``. Every other HTTP
answer -- acceptance (200), escalation or rejection (202), and refusals such as 400 or 401 --
is returned as a :class:`SubmitResult`; :class:`RetriesExhausted` is raised only when the
transient failures outlast the policy.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import random
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, MutableMapping
from urllib.parse import quote, urlsplit

from .signing import Signer, sign

#: Statuses worth retrying: the server may answer differently later.
TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter: attempt ``n`` waits ``U(0, min(cap, base*2^n))``.

    ``max_attempts=None`` retries for ever (the outbox's choice: delivery must happen).
    A ``Retry-After`` from the server is a floor on the wait, capped at ``max_retry_after``.
    """

    base: float = 0.05
    cap: float = 10.0
    max_attempts: int | None = 8
    max_retry_after: float = 300.0

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        jitter = rng.uniform(0.0, min(self.cap, self.base * (2.0**attempt)))
        if retry_after is not None:
            return max(jitter, min(retry_after, self.max_retry_after))
        return jitter


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


@dataclass
class SubmitResult:
    """One HTTP answer to a submission."""

    http_status: int
    body: dict[str, Any]
    retry_after: float | None = None
    attempts: int = 1

    @property
    def acknowledged(self) -> bool:
        """The server recorded a decision (accepted, escalated or rejected; maybe a duplicate)."""
        return self.http_status in (200, 202)

    @property
    def transient(self) -> bool:
        return self.http_status in TRANSIENT_STATUSES

    @property
    def permanent(self) -> bool:
        """Refused for good: sending the same bytes again cannot succeed."""
        return not self.acknowledged and not self.transient

    @property
    def outcome(self) -> str | None:
        o = self.body.get("outcome")
        return o if isinstance(o, str) else None

    @property
    def duplicate(self) -> bool:
        return self.body.get("duplicate") is True

    @property
    def pcs_id(self) -> str | None:
        p = self.body.get("pcs_id")
        return p if isinstance(p, str) else None

    @property
    def error_code(self) -> str | None:
        err = self.body.get("error")
        if isinstance(err, dict) and isinstance(err.get("code"), str):
            return str(err["code"])
        return None


class FlkError(Exception):
    """Base of the SDK's client errors."""


class RetriesExhausted(FlkError):
    """Transient failures outlasted the retry policy; ``last`` is the final answer, if any."""

    def __init__(self, message: str, last: SubmitResult | None = None) -> None:
        super().__init__(message)
        self.last = last


class ReadError(FlkError):
    """A read (outcome, proof) was refused: ``status`` and the server's error body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"read refused with http {status}: {body.get('error', body)}")
        self.status = status
        self.body = body


def _decode(data: bytes) -> dict[str, Any]:
    try:
        v = json.loads(data)
    except ValueError:
        return {"error": {"code": "non_json_answer", "message": data[:200].decode("latin-1")}}
    return v if isinstance(v, dict) else {"value": v}


def encode_pcs(pcs: Mapping[str, Any]) -> bytes:
    """The request body of a PCS (compact JSON; NaN and Infinity refused)."""
    return json.dumps(pcs, separators=(",", ":"), allow_nan=False).encode("utf-8")


class Client:
    """A gateway client over one kept-alive HTTP/1.1 connection (not thread-safe).

    ``signer`` (optional) signs each PCS before it is sent; without it the PCS is sent as it
    is. ``api_token`` authenticates reads (``Authorization: Bearer``).
    """

    def __init__(
        self,
        base_url: str,
        *,
        tenant: str = "default",
        signer: Signer | None = None,
        api_token: str | None = None,
        timeout: float = 10.0,
        retry: RetryPolicy = RetryPolicy(),
        rng: random.Random | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        u = urlsplit(base_url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"not an http(s) url: {base_url!r}")
        self._https = u.scheme == "https"
        self._host = u.hostname
        self._port = u.port or (443 if self._https else 80)
        self._prefix = u.path.rstrip("/")
        self.tenant = tenant
        self.signer = signer
        self.api_token = api_token
        self.timeout = timeout
        self.retry = retry
        self._rng = rng or random.Random()
        self._sleep = sleep
        self._conn: http.client.HTTPConnection | None = None

    # -- transport -------------------------------------------------------------------------

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._conn = cls(self._host, self._port, timeout=self.timeout)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: Mapping[str, str] = {}
    ) -> tuple[int, dict[str, str], bytes]:
        """One HTTP exchange (reconnecting once if a kept-alive connection went stale)."""
        hdrs = {"content-type": "application/json", "accept": "application/json", **headers}
        for attempt in (0, 1):
            conn = self._connection()
            try:
                conn.request(method, self._prefix + path, body=body, headers=hdrs)
                resp = conn.getresponse()
                data = resp.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()
                if attempt == 1:
                    raise
                continue
            except BaseException:
                self.close()
                raise
            if resp.will_close:
                self.close()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
        raise AssertionError("unreachable")

    # -- submissions -----------------------------------------------------------------------

    def prepare(self, pcs: MutableMapping[str, Any]) -> bytes:
        """Sign ``pcs`` (when the client has a signer) and encode it as a request body."""
        if self.signer is not None:
            sign(pcs, self.signer)
        return encode_pcs(pcs)

    def submit_body_once(self, body: bytes) -> SubmitResult:
        """One attempt, no retry; connection failures raise ``OSError``."""
        status, headers, data = self.request(
            "POST", "/v1/pcs/submit", body, {"x-tenant-id": self.tenant}
        )
        return SubmitResult(status, _decode(data), parse_retry_after(headers.get("retry-after")))

    def submit_body(self, body: bytes) -> SubmitResult:
        """Send an encoded, signed PCS, retrying transient failures per the policy."""
        attempt = 0
        last: SubmitResult | None = None
        while True:
            try:
                last = self.submit_body_once(body)
                last.attempts = attempt + 1
                if not last.transient:
                    return last
                retry_after, why = last.retry_after, f"http {last.http_status}"
            except (OSError, http.client.HTTPException) as e:  # refused, reset, timed out
                retry_after, why = None, f"{type(e).__name__}: {e}"
            attempt += 1
            if self.retry.max_attempts is not None and attempt >= self.retry.max_attempts:
                raise RetriesExhausted(f"gave up after {attempt} attempts ({why})", last)
            self._sleep(self.retry.delay(attempt - 1, retry_after, self._rng))

    def submit(self, pcs: MutableMapping[str, Any]) -> SubmitResult:
        """Sign (if the client has a signer) and submit one PCS, with retries."""
        return self.submit_body(self.prepare(pcs))

    # -- reads -----------------------------------------------------------------------------

    def _read(self, path: str) -> dict[str, Any] | None:
        headers = {"x-tenant-id": self.tenant}
        if self.api_token:
            headers["authorization"] = f"Bearer {self.api_token}"
        status, _, data = self.request("GET", path, None, headers)
        if status == 404:
            return None
        body = _decode(data)
        if status != 200:
            raise ReadError(status, body)
        return body

    def get_outcome(self, pcs_id: str) -> dict[str, Any] | None:
        """The stored outcome of ``pcs_id`` for this tenant (``None`` if unknown)."""
        return self._read(f"/v1/pcs/{quote(pcs_id, safe='')}")

    def get_proof(self, pcs_id: str) -> dict[str, Any] | None:
        """The audit proof bundle of ``pcs_id`` (``None`` if not logged yet)."""
        return self._read(f"/v1/audit/proof/{quote(pcs_id, safe='')}")

    def health(self) -> bool:
        status, _, _ = self.request("GET", "/health")
        return status == 200


__all__ = [
    "Client",
    "FlkError",
    "ReadError",
    "RetriesExhausted",
    "RetryPolicy",
    "SubmitResult",
    "TRANSIENT_STATUSES",
    "encode_pcs",
    "parse_retry_after",
]
