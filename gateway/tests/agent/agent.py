"""An agent written independently of the FLK code base: Python standard library only.

Builds a PCS from its own signals, signs it as PROTOCOL.md section 2 says (HMAC-SHA256 over
the SHA-256 digest of the canonical payload), POSTs it to the gateway and exits 0 only if the
PCS was accepted. Usage: agent.py GATEWAY_URL SECRET SHARD_ID
"""
import base64
import hashlib
import hmac
import json
import math
import sys
import urllib.error
import urllib.request
from decimal import ROUND_HALF_UP, Decimal


def round9(x: float) -> float:
    # Shortest round-trip decimal (repr), half-up (away from zero) at the 9th decimal.
    return float(Decimal(repr(x)).quantize(Decimal("1e-9"), rounding=ROUND_HALF_UP))


def theil_sen(scales, counts):
    pts = [(math.log2(s), math.log2(n)) for s, n in zip(scales, counts)]
    slopes = sorted(
        (pts[j][1] - pts[i][1]) / (pts[j][0] - pts[i][0])
        for i in range(len(pts))
        for j in range(i + 1, len(pts))
    )
    return round9(slopes[len(slopes) // 2])


def main() -> int:
    url, secret, shard_id = sys.argv[1], sys.argv[2].encode(), sys.argv[3]
    scales = [2, 4, 8, 16, 32]
    counts = [3, 8, 21, 55, 144]
    d_hat = theil_sen(scales, counts)
    coh_star, r = 0.8, 0.3
    if coh_star >= 0.70 and d_hat <= 1.5:
        regime = "sticky"
    elif d_hat >= 2.6:
        regime = "non_sticky"
    else:
        regime = "mixed"
    budget = round9(min(1.0, max(0.0, 0.1 + 0.3 * (1 - r) + 0.5 * max(0.0, d_hat - 2.2) + 0.2 * coh_star)))
    merkle_root = hashlib.sha256(b"independent agent work").hexdigest()
    epoch = 7
    pcs_id = hashlib.sha256(f"{merkle_root}|{epoch}|{shard_id}".encode()).hexdigest()
    pcs = {
        "pcs_id": pcs_id, "schema": "fractal-lba-kakeya", "version": "0.1",
        "shard_id": shard_id, "epoch": epoch, "attempt": 1,
        "sent_at": "2026-11-25T00:00:00Z", "seed": 42, "scales": scales,
        "N_j": {str(s): n for s, n in zip(scales, counts)},
        "coh_star": coh_star, "v_star": [0.0, 0.0, 1.0], "D_hat": d_hat, "r": r,
        "regime": regime, "budget": budget, "merkle_root": merkle_root,
    }
    signed = {k: pcs[k] for k in ("pcs_id", "merkle_root", "epoch", "shard_id")}
    for k in ("D_hat", "coh_star", "r", "budget"):
        signed[k] = round9(pcs[k])
    payload = json.dumps(signed, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    digest = hashlib.sha256(payload).digest()
    pcs["sig"] = base64.b64encode(hmac.new(secret, digest, hashlib.sha256).digest()).decode()

    req = urllib.request.Request(
        url + "/v1/pcs/submit", data=json.dumps(pcs).encode(),
        headers={"Content-Type": "application/json"}, method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            status, body = resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        status, body = e.code, e.read().decode()
    print(status, json.dumps(body))
    ok = status == 200 and body["outcome"] == "accepted" and body["pcs_id"] == pcs_id
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
