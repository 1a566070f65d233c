"""Conformance runner shared by every FLK SDK: ``python -m flk_sdk.conformance``.

Reads a vector file on standard input and writes one JSON line per vector on standard output:

* default (``signing_vectors.json`` format): ``pcs_id``, ``canonical_payload``,
  ``digest_sha256_hex``, ``sig_hmac_sha256_b64`` (digest mode, key ``hmac_key_utf8``) and
  ``sig_ed25519_b64`` (seed ``ed25519_seed_hex``), computed from each vector's ``pcs`` alone;
* ``--construction`` (``construction_vectors.json`` format): ``name`` and the ``expected``
  fields, computed from each vector's raw points;
* ``--submit URL --tenant ID --hmac-key SECRET`` (either format): signs every vector's PCS
  (built from raw points with ``--construction``) and submits it through the SDK's client,
  printing ``pcs_id``, ``http_status``, ``outcome`` and ``duplicate`` per answer. The exit
  status is 1 if any answer was not a recorded decision (200/202).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
from typing import Any, Iterable, Iterator

from .canonical import canonical_payload, pcs_id
from .client import Client
from .construction import BudgetParams, build_pcs, compute_signals
from .signing import Ed25519Signer, HmacSigner, Signer


def _vectors(doc: Any) -> list[dict[str, Any]]:
    if isinstance(doc, dict) and isinstance(doc.get("vectors"), list):
        return list(doc["vectors"])
    if isinstance(doc, list):
        return doc
    raise SystemExit("input: expected an object with \"vectors\" or a list of vectors")


def _line(obj: dict[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"))


def signing_lines(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    hmac_signer = HmacSigner(doc.get("hmac_key_utf8", ""), "digest")
    ed = Ed25519Signer.from_hex(doc["ed25519_seed_hex"]) if "ed25519_seed_hex" in doc else None
    for v in _vectors(doc):
        pcs = v["pcs"]
        payload = canonical_payload(pcs)
        b64 = base64.b64encode
        yield {
            "pcs_id": pcs_id(pcs["merkle_root"], pcs["epoch"], pcs["shard_id"]),
            "canonical_payload": payload.decode("ascii"),
            "digest_sha256_hex": hashlib.sha256(payload).hexdigest(),
            "sig_hmac_sha256_b64": b64(hmac_signer.sign_payload(payload)).decode(),
            "sig_ed25519_b64": b64(ed.sign_payload(payload)).decode() if ed else None,
        }


def _construct(v: dict[str, Any]) -> dict[str, Any]:
    p = v.get("params", {})
    bp = BudgetParams(**p["budget_params"]) if "budget_params" in p else BudgetParams()
    return build_pcs(
        v["points"],
        shard_id=p.get("shard_id", v.get("name", "shard")),
        epoch=int(p.get("epoch", 0)),
        seed=int(p.get("coherence_seed", v.get("seed", 0))),
        scales=p.get("scales", (2, 4, 8, 16)),
        attempt=int(p.get("attempt", 1)),
        chunk_size=int(p.get("merkle_chunk_size", 64)),
        budget_params=bp,
    )


def construction_lines(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for v in _vectors(doc):
        p = v.get("params", {})
        bp = BudgetParams(**p["budget_params"]) if "budget_params" in p else BudgetParams()
        s = compute_signals(
            v["points"],
            int(p.get("coherence_seed", v.get("seed", 0))),
            p.get("scales", (2, 4, 8, 16)),
            chunk_size=int(p.get("merkle_chunk_size", 64)),
            num_directions=int(p.get("num_directions", 100)),
            num_bins=int(p.get("num_bins", 20)),
            zlib_level=int(p.get("zlib_level", 6)),
            budget_params=bp,
        )
        epoch, shard = int(p.get("epoch", 0)), p.get("shard_id", "")
        signed = {
            "pcs_id": pcs_id(s.merkle_root, epoch, shard),
            "merkle_root": s.merkle_root,
            "epoch": epoch,
            "shard_id": shard,
            "D_hat": s.D_hat,
            "coh_star": s.coh_star,
            "r": s.r,
            "budget": s.budget,
        }
        payload = canonical_payload(signed)
        # The reference agent's HEAD signs the payload itself (HMAC payload mode).
        sig = HmacSigner(p.get("hmac_key", ""), "payload").sign_payload(payload)
        yield {
            "name": v.get("name"),
            "N_j": s.N_j,
            "D_hat": s.D_hat,
            "coh_star": s.coh_star,
            "v_star": s.v_star,
            "r": s.r,
            "regime": s.regime,
            "budget": s.budget,
            "merkle_n_leaves": s.merkle_n_leaves,
            "merkle_root": s.merkle_root,
            "pcs_id": signed["pcs_id"],
            "signature_payload": payload.decode("ascii"),
            "sig_hmac_sha256_b64": base64.b64encode(sig).decode(),
        }


def submit_lines(
    pcs_list: Iterable[dict[str, Any]], url: str, tenant: str, signer: Signer
) -> Iterator[dict[str, Any]]:
    with Client(url, tenant=tenant, signer=signer) as client:
        for pcs in pcs_list:
            r = client.submit(pcs)
            yield {
                "pcs_id": pcs.get("pcs_id"),
                "http_status": r.http_status,
                "outcome": r.outcome,
                "duplicate": r.duplicate,
            }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m flk_sdk.conformance", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--construction", action="store_true",
                    help="the input is in construction_vectors.json format")
    ap.add_argument("--submit", metavar="URL", help="sign and submit every vector's PCS")
    ap.add_argument("--tenant", default="default", help="tenant id for --submit")
    ap.add_argument("--hmac-key", metavar="SECRET", help="HMAC secret for --submit")
    ap.add_argument("--hmac-mode", choices=("digest", "payload"), default="digest")
    ap.add_argument("--ed25519-seed", metavar="HEX", help="sign with Ed25519 instead of HMAC")
    args = ap.parse_args(argv)

    doc = json.load(sys.stdin)
    out = sys.stdout
    if args.submit:
        signer: Signer
        if args.ed25519_seed:
            signer = Ed25519Signer.from_hex(args.ed25519_seed)
        elif args.hmac_key is not None:
            signer = HmacSigner(args.hmac_key, args.hmac_mode)
        else:
            ap.error("--submit needs --hmac-key or --ed25519-seed")
        if args.construction:
            pcs_list = [_construct(v) for v in _vectors(doc)]
        else:
            pcs_list = [dict(v["pcs"]) for v in _vectors(doc)]
        ok = True
        for line in submit_lines(pcs_list, args.submit, args.tenant, signer):
            ok &= line["http_status"] in (200, 202)
            out.write(_line(line) + "\n")
            out.flush()
        return 0 if ok else 1
    lines = construction_lines(doc) if args.construction else signing_lines(doc)
    for line in lines:
        out.write(_line(line) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
