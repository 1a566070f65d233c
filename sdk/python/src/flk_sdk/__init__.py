"""FLK SDK for Python: build, sign and deliver Proof-of-Computation Summaries (PCS).

* :mod:`flk_sdk.canonical` -- the canonical signing bytes (PROTOCOL.md section 2);
* :mod:`flk_sdk.signing` -- HMAC (digest and payload modes) and Ed25519 signers;
* :mod:`flk_sdk.construction` -- a PCS from raw points, as the field's reference agent builds it;
* :mod:`flk_sdk.verification` -- the server's verification rules, to check a PCS before sending;
* :mod:`flk_sdk.client` / :mod:`flk_sdk.aio` -- sync and asyncio REST clients with retries;
* :mod:`flk_sdk.outbox` -- an fsync'd outbox for at-least-once delivery across crashes;
* ``python -m flk_sdk.conformance`` -- the cross-SDK conformance runner.
"""

from .canonical import CanonicalError, canonical_payload, digest, pcs_id, round9
from .client import Client, ReadError, RetriesExhausted, RetryPolicy, SubmitResult
from .construction import build_pcs, compute_signals
from .outbox import DrainReport, Outbox
from .signing import Ed25519Signer, Ed25519Verifier, HmacSigner, Signer, sign, verify
from .verification import Policy, Verdict, evaluate

__version__ = "0.1.0"

__all__ = [
    "CanonicalError",
    "Client",
    "DrainReport",
    "Ed25519Signer",
    "Ed25519Verifier",
    "HmacSigner",
    "Outbox",
    "Policy",
    "ReadError",
    "RetriesExhausted",
    "RetryPolicy",
    "Signer",
    "SubmitResult",
    "Verdict",
    "build_pcs",
    "canonical_payload",
    "compute_signals",
    "digest",
    "evaluate",
    "pcs_id",
    "round9",
    "sign",
    "verify",
]
