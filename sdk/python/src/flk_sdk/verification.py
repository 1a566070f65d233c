"""The server's verification rules (PROTOCOL.md section 3), for agents that check before sending.

:func:`evaluate` is pure and deterministic: it gives the outcome, reason code, recomputed
``D_hat`` and budget that FLK will answer for a well-formed, correctly signed PCS under a
policy. The tests hold it to ``verify_vectors.json`` and to a running ``flk up``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping

from .canonical import pcs_id as compute_pcs_id
from .canonical import round9


@dataclass(frozen=True)
class Policy:
    """Verification policy (the defaults are the protocol's)."""

    tol_D: float = 0.15
    tol_coh: float = 0.05
    tol_budget: float = 0.01
    alpha: float = 0.30
    beta: float = 0.50
    gamma: float = 0.20
    base: float = 0.10
    D0: float = 2.2


@dataclass(frozen=True)
class Verdict:
    """What the server decides: ``outcome`` is ``accepted``, ``escalated`` or ``rejected``."""

    outcome: str
    reason_code: str
    recomputed_D_hat: float | None
    recomputed_budget: float

    @property
    def accepted(self) -> bool:
        return self.outcome != "rejected"

    @property
    def escalated(self) -> bool:
        return self.outcome != "accepted"

    @property
    def http_status(self) -> int:
        return 200 if self.outcome == "accepted" else 202

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(accepted=self.accepted, escalated=self.escalated, http_status=self.http_status)
        return d


def recompute_d_hat(scales: list[int], n_j: Mapping[str, Any]) -> float | None:
    """Theil-Sen over ``(log2 scale, log2 N_j)``; ``None`` when an entry is missing or <= 0."""
    pts = []
    for s in scales:
        n = n_j.get(str(s))
        if isinstance(n, bool) or not isinstance(n, (int, float)) or n <= 0:
            return None
        pts.append((math.log2(s), math.log2(n)))
    slopes = [
        (pts[j][1] - pts[i][1]) / (pts[j][0] - pts[i][0])
        for i in range(len(pts))
        for j in range(i + 1, len(pts))
        if abs(pts[j][0] - pts[i][0]) >= 1e-9
    ]
    if not slopes:
        return None
    slopes.sort()
    return round9(slopes[len(slopes) // 2])


def classify(d_hat: float, coh_star: float) -> str:
    if coh_star >= 0.70 and d_hat <= 1.5:
        return "sticky"
    if d_hat >= 2.6:
        return "non_sticky"
    return "mixed"


def evaluate(pcs: Mapping[str, Any], policy: Policy = Policy()) -> Verdict:
    """The verification outcome of ``pcs`` (its signature and structure assumed valid)."""
    d_hat, coh, r = float(pcs["D_hat"]), float(pcs["coh_star"]), float(pcs["r"])
    p = policy
    budget = round9(
        min(
            1.0,
            max(
                0.0,
                p.base + p.alpha * (1 - r) + p.beta * max(0.0, d_hat - p.D0) + p.gamma * coh,
            ),
        )
    )
    recomputed = recompute_d_hat(list(pcs["scales"]), pcs["N_j"])

    def verdict(outcome: str, reason: str) -> Verdict:
        return Verdict(outcome, reason, recomputed, budget)

    if pcs["pcs_id"] != compute_pcs_id(pcs["merkle_root"], pcs["epoch"], pcs["shard_id"]):
        # The first check decides before D_hat is recomputed: the answer carries null.
        return Verdict("rejected", "pcs_id_mismatch", None, budget)
    if recomputed is None:
        return verdict("rejected", "d_hat_recompute_failed")
    if abs(d_hat - recomputed) > p.tol_D:
        return verdict("rejected", "d_hat_out_of_tolerance")
    if not 0 <= coh <= 1 + p.tol_coh:
        return verdict("rejected", "coh_star_out_of_bounds")
    if not 0 <= r <= 1:
        return verdict("rejected", "r_out_of_bounds")
    if pcs["regime"] != classify(d_hat, coh):
        return verdict("escalated", "regime_mismatch")
    if abs(float(pcs["budget"]) - budget) > p.tol_budget:
        return verdict("escalated", "budget_deviation")
    ft = pcs.get("ft")
    if isinstance(ft, Mapping) and ft.get("degraded") is True:
        return verdict("escalated", "degraded_agent")
    return verdict("accepted", "ok")
