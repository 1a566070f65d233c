#!/usr/bin/env python3
"""Independent verifier of flk-tlog proofs (Python 3 standard library only).

Usage: verify_proofs.py FILE.json

FILE.json holds "entries" (hex), "roots" ([{size, root}]), "inclusion" ([{index, size,
proof}]), "consistency" ([{first, second, proof}]) and "checkpoint_body" (the signed text of a
checkpoint, without signatures). Roots are recomputed here from the entries with the RFC 9162
section 2.1 definitions; proofs are checked with the algorithms of sections 2.1.3.2 and
2.1.4.2; the checkpoint body is parsed strictly and its root compared (no signature check:
Ed25519 is not in the standard library). Exits 0 if everything verifies, 1 otherwise.
"""

import base64
import hashlib
import json
import sys


def leaf_hash(entry):
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


class Tree:
    def __init__(self, entries):
        self.leaves = [leaf_hash(e) for e in entries]
        self.memo = {}

    def mth(self, lo, hi):
        """MTH(D[lo:hi]) by the recursive definition."""
        n = hi - lo
        if n == 0:
            return hashlib.sha256(b"").digest()
        if n == 1:
            return self.leaves[lo]
        if (lo, hi) not in self.memo:
            k = 1
            while k * 2 < n:
                k *= 2
            self.memo[(lo, hi)] = node_hash(self.mth(lo, lo + k), self.mth(lo + k, hi))
        return self.memo[(lo, hi)]


class Fail(Exception):
    pass


def verify_inclusion(leaf, index, size, proof, root):
    if index >= size:
        raise Fail("index not below size")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise Fail("proof too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise Fail("proof too short")
    if r != root:
        raise Fail("root mismatch")


def verify_consistency(first, second, proof, first_root, second_root):
    if not 0 < first <= second:
        raise Fail("bad sizes")
    if first == second:
        if proof or first_root != second_root:
            raise Fail("equal sizes need an empty proof and equal roots")
        return
    if not proof:
        raise Fail("empty proof")
    path = list(proof)
    if first & (first - 1) == 0:
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise Fail("proof too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise Fail("proof too short")
    if fr != first_root:
        raise Fail("first root mismatch")
    if sr != second_root:
        raise Fail("second root mismatch")


def parse_checkpoint(body):
    if not body.endswith("\n"):
        raise Fail("checkpoint body must end with a newline")
    lines = body[:-1].split("\n")
    if len(lines) != 3 or not lines[0]:
        raise Fail("checkpoint body must be origin, size, root")
    size = lines[1]
    if not size.isdigit() or not size.isascii() or (size != "0" and size.startswith("0")):
        raise Fail("non-canonical size")
    root = base64.b64decode(lines[2], validate=True)
    if len(root) != 32 or base64.b64encode(root).decode() != lines[2]:
        raise Fail("bad root encoding")
    return lines[0], int(size), root


def main(path):
    with open(path) as f:
        data = json.load(f)
    tree = Tree([bytes.fromhex(e) for e in data["entries"]])
    n = len(tree.leaves)
    checked = 0
    for r in data["roots"]:
        if tree.mth(0, r["size"]) != bytes.fromhex(r["root"]):
            raise Fail(f"root of size {r['size']} differs")
        checked += 1
    for p in data["inclusion"]:
        i, s = p["index"], p["size"]
        try:
            verify_inclusion(tree.leaves[i], i, s, [bytes.fromhex(h) for h in p["proof"]], tree.mth(0, s))
        except Fail as e:
            raise Fail(f"inclusion of {i} in {s}: {e}")
        checked += 1
    for p in data["consistency"]:
        m, s = p["first"], p["second"]
        try:
            verify_consistency(m, s, [bytes.fromhex(h) for h in p["proof"]], tree.mth(0, m), tree.mth(0, s))
        except Fail as e:
            raise Fail(f"consistency {m} -> {s}: {e}")
        checked += 1
    origin, size, root = parse_checkpoint(data["checkpoint_body"])
    if size != n or root != tree.mth(0, n):
        raise Fail(f"checkpoint of {origin} does not match the entries")
    print(f"ok: {checked} roots and proofs, checkpoint of size {size}")


if __name__ == "__main__":
    try:
        main(sys.argv[1])
    except Fail as e:
        print(f"FAIL: {e}", file=sys.stderr)
        sys.exit(1)
