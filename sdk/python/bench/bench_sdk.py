"""Benchmarks of the Python SDK (not run in CI): sign and verify per second on one core, and the
construction of a PCS from a 10,000-point cloud.

    python sdk/python/bench/bench_sdk.py [--runs 7] [--seconds 1.0] [--json]

Each figure is the median of ``--runs`` runs; a signing run signs one golden vector's PCS
(canonical payload, round9, SHA-256, MAC or signature, base64) as often as it can for
``--seconds``. Rates are given per wall-clock second and per CPU second of the process (the
per-core figure, steadier on a shared machine).
"""

from __future__ import annotations

import argparse
import base64
import json
import platform
import random
import statistics
import time
from pathlib import Path
from typing import Any, Callable

from flk_sdk import (
    Ed25519Signer,
    Ed25519Verifier,
    HmacSigner,
    build_pcs,
    sign,
    verify,
)

TESTDATA = Path(__file__).resolve().parents[2] / "testdata"


def rate(fn: Callable[[], Any], seconds: float) -> tuple[float, float]:
    """Operations per wall-clock second and per CPU second of this process."""
    n, start, cpu0 = 0, time.perf_counter(), time.process_time()
    deadline = start + seconds
    while True:
        for _ in range(200):
            fn()
        n += 200
        now = time.perf_counter()
        if now >= deadline:
            return n / (now - start), n / (time.process_time() - cpu0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()

    vectors = json.loads((TESTDATA / "signing_vectors.json").read_text())
    pcs = dict(vectors["vectors"][0]["pcs"])
    digest, payload = HmacSigner("testsecret", "digest"), HmacSigner("testsecret", "payload")
    ed = Ed25519Signer.from_hex(vectors["ed25519_seed_hex"])
    ed_verifier = Ed25519Verifier(base64.b64decode(vectors["ed25519_public_key_b64"]))
    signed = {name: dict(pcs) for name in ("digest", "payload", "ed")}
    sign(signed["digest"], digest)
    sign(signed["payload"], payload)
    sign(signed["ed"], ed)

    cases: dict[str, Callable[[], Any]] = {
        "sign hmac digest": lambda: sign(pcs, digest),
        "sign hmac payload": lambda: sign(pcs, payload),
        "sign ed25519": lambda: sign(pcs, ed),
        "verify hmac digest": lambda: verify(signed["digest"], digest),
        "verify hmac payload": lambda: verify(signed["payload"], payload),
        "verify ed25519": lambda: verify(signed["ed"], ed_verifier),
    }
    results: dict[str, Any] = {}
    for name, fn in cases.items():
        runs = [rate(fn, a.seconds) for _ in range(a.runs)]
        results[name] = {
            "per_second_median": statistics.median(r[0] for r in runs),
            "per_cpu_second_median": statistics.median(r[1] for r in runs),
            "runs": [r[0] for r in runs],
        }

    rng = random.Random(20)
    cloud = [(rng.random(), rng.random(), rng.random()) for _ in range(10_000)]
    times, cpu = [], []
    for _ in range(a.runs):
        start, cpu0 = time.perf_counter(), time.process_time()
        build_pcs(cloud, shard_id="bench", epoch=1, seed=20)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - cpu0)
    results["construct 10k points"] = {
        "seconds_median": statistics.median(times),
        "cpu_seconds_median": statistics.median(cpu),
        "runs": times,
    }

    meta = {"python": platform.python_version(), "machine": platform.machine(),
            "processor": platform.processor()}
    if a.json:
        print(json.dumps({"meta": meta, "results": results}, indent=1))
        return
    print(f"python {meta['python']} on {meta['machine']}, median of {a.runs} runs")
    for name, r in results.items():
        if "per_second_median" in r:
            print(f"{name:22s} {r['per_second_median']:>10,.0f} /s  "
                  f"{r['per_cpu_second_median']:>10,.0f} /cpu-s")
        else:
            print(f"{name:22s} {r['seconds_median'] * 1000:>10,.1f} ms  "
                  f"{r['cpu_seconds_median'] * 1000:>10,.1f} cpu-ms")


if __name__ == "__main__":
    main()
