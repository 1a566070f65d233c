"""Build a PCS from raw 3-D points the way the field's reference agent does (``build_pcs``).

Each step follows the description in ``construction_vectors.json`` (copied to
``sdk/testdata``), which the tests reproduce exactly:

* raw bytes: rows ``f"{t:.9f},{x:.6f},{y:.6f},{z:.6f}"`` joined by ``\\n``;
* ``N_j``: distinct ``(floor(x*s), floor(y*s), floor(z*s))`` per scale;
* ``D_hat``: Theil-Sen, the upper median of the pairwise slopes of ``(log2 s, log2 N_j)``;
* ``coh_star``/``v_star``: 100 directions from numpy's legacy sampler seeded with the PCS
  seed, 20-bin histograms of the projections;
* ``r``: zlib level 6 compressed size over raw size, clamped to [0, 1];
* ``merkle_root``: SHA-256 tree over 64-byte chunks, parents hash the two hex strings;
* ``pcs_id``, ``regime`` and ``budget``.

Rounded signals use ``round(x, 9)`` like the reference agent: Python's for ``D_hat`` and ``r``
(Python floats there), numpy's for ``coh_star`` and ``budget`` (numpy floats there, see
:func:`numpy_round9`). Signing re-rounds with the protocol's ``round9``, which leaves such
values unchanged.
"""

from __future__ import annotations

import hashlib
import math
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable, Sequence

from .canonical import pcs_id as compute_pcs_id
from .mt19937 import LegacyRandomState

Point = Sequence[float]

#: The scales ``build_pcs`` hard-codes.
DEFAULT_SCALES = (2, 4, 8, 16)
#: First timestamp of the rows, and the step between rows, of ``build_pcs``'s CSV files.
DEFAULT_T0 = 1700000000.0
DEFAULT_DT = 0.25


@dataclass(frozen=True)
class BudgetParams:
    """Budget weights (the default policy's)."""

    alpha: float = 0.30
    beta: float = 0.50
    gamma: float = 0.20
    base: float = 0.10
    D0: float = 2.2


def raw_bytes(points: Iterable[Point], t0: float = DEFAULT_T0, dt: float = DEFAULT_DT) -> bytes:
    """The data bytes that feed ``r`` and the Merkle tree: one text row per point."""
    rows = [
        f"{t0 + dt * i:.9f},{p[0]:.6f},{p[1]:.6f},{p[2]:.6f}" for i, p in enumerate(points)
    ]
    return "\n".join(rows).encode("utf-8")


def voxel_counts(points: Sequence[Point], scales: Sequence[int]) -> dict[str, int]:
    """``N_j``: the number of distinct occupied voxels of side ``1/s`` for each scale ``s``."""
    out: dict[str, int] = {}
    floor = math.floor
    for s in scales:
        cells = {(floor(p[0] * s), floor(p[1] * s), floor(p[2] * s)) for p in points}
        out[str(s)] = len(cells)
    return out


def theil_sen_slope(scales: Sequence[int], n_j: dict[str, int]) -> float:
    """Unrounded ``D_hat``: upper median of the pairwise slopes (0.0 when there are none)."""
    pts = [(math.log2(s), math.log2(n_j[str(s)])) for s in scales if n_j.get(str(s), 0) > 0]
    slopes = []
    for i in range(len(pts)):
        for j in range(i + 1, len(pts)):
            dx = pts[j][0] - pts[i][0]
            if abs(dx) >= 1e-9:
                slopes.append((pts[j][1] - pts[i][1]) / dx)
    if not slopes:
        return 0.0
    slopes.sort()
    return slopes[len(slopes) // 2]


def _histogram_max(proj: list[float], lo: float, hi: float, bins: int) -> int:
    """Largest bin count of ``np.histogram(proj, bins, range=(lo, hi))``, same edge rules."""
    step = (hi - lo) / bins
    edges = [k * step + lo for k in range(bins)] + [hi]  # np.linspace(lo, hi, bins + 1)
    norm = hi - lo
    counts = [0] * bins
    last = bins - 1
    for p in proj:
        k = int((p - lo) / norm * bins)
        if k == bins:
            k -= 1
        if p < edges[k]:
            k -= 1
        elif p >= edges[k + 1] and k != last:
            k += 1
        counts[k] += 1
    return max(counts)


def coherence(
    points: Sequence[Point], seed: int, num_directions: int = 100, num_bins: int = 20
) -> tuple[float, list[float]]:
    """Unrounded ``(coh_star, v_star)``: best histogram concentration over random directions."""
    rng = LegacyRandomState(seed)
    n = len(points)
    best, best_v = 0.0, [0.0, 0.0, 1.0]
    xs = [float(p[0]) for p in points]
    ys = [float(p[1]) for p in points]
    zs = [float(p[2]) for p in points]
    for _ in range(num_directions):
        g = rng.randn(3)
        norm = math.sqrt(g[0] * g[0] + g[1] * g[1] + g[2] * g[2])
        v0, v1, v2 = g[0] / norm, g[1] / norm, g[2] / norm
        proj = [x * v0 + y * v1 + z * v2 for x, y, z in zip(xs, ys, zs)]
        if not proj:
            continue
        lo, hi = min(proj), max(proj)
        if hi - lo < 1e-9:
            coh = 1.0
        else:
            coh = _histogram_max(proj, lo, hi, num_bins) / n
        if coh > best:
            best, best_v = coh, [v0, v1, v2]
    return best, best_v


def compressibility(data: bytes, level: int = 6) -> float:
    """Unrounded ``r``: zlib-compressed size over raw size, clamped to [0, 1] (empty: 1.0)."""
    if not data:
        return 1.0
    return min(1.0, max(0.0, len(zlib.compress(data, level)) / len(data)))


def merkle_root(data: bytes, chunk_size: int = 64) -> tuple[str, int]:
    """Root and leaf count of the tree over ``chunk_size``-byte chunks (no leaves: zeros)."""
    level = [
        hashlib.sha256(data[i : i + chunk_size]).hexdigest()
        for i in range(0, len(data), chunk_size)
    ]
    leaves = len(level)
    if not level:
        return "0" * 64, 0
    while len(level) > 1:
        if len(level) % 2:
            level.append(level[-1])
        level = [
            hashlib.sha256((level[i] + level[i + 1]).encode("ascii")).hexdigest()
            for i in range(0, len(level), 2)
        ]
    return level[0], leaves


def classify_regime(d_hat: float, coh_star: float) -> str:
    """``sticky``, ``non_sticky`` or ``mixed`` (PROTOCOL.md section 3)."""
    if coh_star >= 0.70 and d_hat <= 1.5:
        return "sticky"
    if d_hat >= 2.6:
        return "non_sticky"
    return "mixed"


def compute_budget(
    d_hat: float, coh_star: float, r: float, params: BudgetParams = BudgetParams()
) -> float:
    """``clamp01(base + alpha(1-r) + beta max(0, D_hat-D0) + gamma coh_star)``, rounded."""
    b = (
        params.base
        + params.alpha * (1 - r)
        + params.beta * max(0, d_hat - params.D0)
        + params.gamma * coh_star
    )
    return numpy_round9(min(1.0, max(0.0, b)))


def numpy_round9(x: float) -> float:
    """``round(np.float64(x), 9)``: ``rint(x * 1e9) / 1e9`` (half-even on the scaled product).

    The reference agent's ``coh_star`` and ``budget`` are numpy floats (``max(hist) / N``
    makes them so), and numpy rounds this way, not like Python's correctly rounded ``round``.
    """
    if not math.isfinite(x):
        return x
    return float(round(x * 1e9)) / 1e9


@dataclass
class Signals:
    """Everything computed from the raw points (the ``expected`` of a construction vector)."""

    N_j: dict[str, int]
    D_hat: float
    coh_star: float
    v_star: list[float]
    r: float
    regime: str
    budget: float
    merkle_root: str
    merkle_n_leaves: int
    raw_bytes_len: int
    raw_bytes_sha256: str = field(repr=False)


def compute_signals(
    points: Sequence[Point],
    seed: int,
    scales: Sequence[int] = DEFAULT_SCALES,
    *,
    chunk_size: int = 64,
    num_directions: int = 100,
    num_bins: int = 20,
    zlib_level: int = 6,
    budget_params: BudgetParams = BudgetParams(),
    t0: float = DEFAULT_T0,
    dt: float = DEFAULT_DT,
) -> Signals:
    """All signals of a point cloud, as the reference agent computes them.

    The coordinates are taken as written in the raw rows (6 decimals), as the reference agent
    reads them back from its CSV file.
    """
    points = [(float(f"{p[0]:.6f}"), float(f"{p[1]:.6f}"), float(f"{p[2]:.6f}")) for p in points]
    data = raw_bytes(points, t0, dt)
    n_j = voxel_counts(points, scales)
    d_hat = round(theil_sen_slope(scales, n_j), 9)
    coh, v_star = coherence(points, seed, num_directions, num_bins)
    coh = numpy_round9(coh)
    r = round(compressibility(data, zlib_level), 9)
    root, leaves = merkle_root(data, chunk_size)
    return Signals(
        N_j=n_j,
        D_hat=d_hat,
        coh_star=coh,
        v_star=v_star,
        r=r,
        regime=classify_regime(d_hat, coh),
        budget=compute_budget(d_hat, coh, r, budget_params),
        merkle_root=root,
        merkle_n_leaves=leaves,
        raw_bytes_len=len(data),
        raw_bytes_sha256=hashlib.sha256(data).hexdigest(),
    )


def build_pcs(
    points: Sequence[Point],
    *,
    shard_id: str,
    epoch: int,
    seed: int,
    scales: Sequence[int] = DEFAULT_SCALES,
    attempt: int = 1,
    sent_at: str | None = None,
    chunk_size: int = 64,
    budget_params: BudgetParams = BudgetParams(),
) -> dict[str, Any]:
    """An unsigned PCS for ``points`` (sign it with :func:`flk_sdk.sign`)."""
    s = compute_signals(
        points, seed, scales, chunk_size=chunk_size, budget_params=budget_params
    )
    if sent_at is None:
        sent_at = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {
        "pcs_id": compute_pcs_id(s.merkle_root, epoch, shard_id),
        "schema": "fractal-lba-kakeya",
        "version": "0.1",
        "shard_id": shard_id,
        "epoch": epoch,
        "attempt": attempt,
        "sent_at": sent_at,
        "seed": seed,
        "scales": list(scales),
        "N_j": s.N_j,
        "coh_star": s.coh_star,
        "v_star": s.v_star,
        "D_hat": s.D_hat,
        "r": s.r,
        "regime": s.regime,
        "budget": s.budget,
        "merkle_root": s.merkle_root,
    }
