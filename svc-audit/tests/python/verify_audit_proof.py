#!/usr/bin/env python3
"""Independent verifier of svc-audit REST inclusion proofs (Python 3 standard library only).

Usage: verify_audit_proof.py PROOF.json [PCS_ID]

PROOF.json is the answer of `GET /v1/audit/proof/{pcs_id}`:
{"leaf_index", "tree_size", "entry" (base64), "proof" ([base64]), "checkpoint": {"note",
"size", "root_hash", "verifier_key"}}.

Checks, with the definitions of RFC 9162 section 2.1: the leaf hash SHA-256(0x00 || entry)
folded with the proof (algorithm of section 2.1.3.2) gives the checkpoint's root hash; the
checkpoint note's signed text is a strict C2SP checkpoint ("<origin>\\n<size>\\n<base64 root>\\n")
whose size and root are the JSON's; and the entry is a well-formed version-1 audit entry (the
flk-tlog encoding), naming PCS_ID when given. The note's Ed25519 signature is not checked here
(Ed25519 is not in the standard library). Exits 0 if everything verifies, 1 otherwise.
"""

import base64
import binascii
import hashlib
import json
import sys


class Fail(Exception):
    pass


def b64(s, what):
    try:
        raw = base64.b64decode(s, validate=True)
    except (binascii.Error, TypeError) as e:
        raise Fail(f"{what} is not standard base64: {e}")
    if base64.b64encode(raw).decode() != s:
        raise Fail(f"{what} is not canonical base64")
    return raw


def node_hash(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_inclusion(leaf, index, size, proof):
    if not 0 <= index < size:
        raise Fail("leaf index not below tree size")
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
    return r


def checkpoint_text(note):
    """The signed text of a C2SP signed note: everything before the last blank line."""
    if not note.endswith("\n"):
        raise Fail("note must end with a newline")
    cut = note.rfind("\n\n")
    if cut < 0:
        raise Fail("note has no signature block")
    text = note[: cut + 1]
    for line in note[cut + 2 :].splitlines():
        if not line.startswith("\u2014 "):
            raise Fail("malformed signature line")
    lines = text[:-1].split("\n")
    if len(lines) != 3 or not lines[0]:
        raise Fail("checkpoint text must be origin, size, root")
    origin, size, root = lines
    if not (size.isascii() and size.isdigit()) or (size != "0" and size.startswith("0")):
        raise Fail("non-canonical tree size")
    root = b64(root, "checkpoint root")
    if len(root) != 32:
        raise Fail("checkpoint root is not 32 bytes")
    return origin, int(size), root


def audit_entry(entry):
    """Decodes the version-1 flk-tlog audit entry strictly; returns (tenant_id, pcs_id hex)."""
    pos = 0

    def take(n, what):
        nonlocal pos
        if len(entry) - pos < n:
            raise Fail(f"entry truncated in {what}")
        out = entry[pos : pos + n]
        pos += n
        return out

    def str16(what):
        n = int.from_bytes(take(2, what), "big")
        try:
            return take(n, what).decode("utf-8")
        except UnicodeDecodeError:
            raise Fail(f"entry {what} is not UTF-8")

    if take(1, "version") != b"\x01":
        raise Fail("unknown entry version")
    tenant = str16("tenant_id")
    pcs_id = take(32, "pcs_id").hex()
    take(int.from_bytes(take(4, "signed_fields"), "big"), "signed_fields")
    if take(1, "outcome")[0] not in (1, 2, 3):
        raise Fail("unknown outcome code")
    str16("reason_code")
    str16("policy_version")
    take(32, "policy_hash")
    str16("region")
    take(8, "decided_at_unix_ms")
    take(32, "request_digest")
    if pos != len(entry):
        raise Fail("trailing bytes after the entry")
    return tenant, pcs_id


def main(path, pcs_id=None):
    with open(path) as f:
        doc = json.load(f)
    cp = doc["checkpoint"]
    index, size = doc["leaf_index"], doc["tree_size"]
    if not all(isinstance(v, int) for v in (index, size, cp["size"])):
        raise Fail("sizes must be integers")
    entry = b64(doc["entry"], "entry")
    proof = [b64(h, "proof hash") for h in doc["proof"]]
    if any(len(h) != 32 for h in proof):
        raise Fail("proof hashes must be 32 bytes")
    origin, note_size, note_root = checkpoint_text(cp["note"])
    root = b64(cp["root_hash"], "root_hash")
    if note_size != cp["size"] or note_root != root:
        raise Fail("checkpoint object disagrees with its note")
    if size != note_size:
        raise Fail("proof is not for the checkpoint's tree size")
    leaf = hashlib.sha256(b"\x00" + entry).digest()
    if root_from_inclusion(leaf, index, size, proof) != root:
        raise Fail("recomputed root does not match the checkpoint")
    tenant, entry_pcs = audit_entry(entry)
    if pcs_id is not None and entry_pcs != pcs_id:
        raise Fail(f"entry is for pcs_id {entry_pcs}, not {pcs_id}")
    print(f"ok: entry {index} ({tenant}/{entry_pcs}) is in {origin} at size {size}")


if __name__ == "__main__":
    try:
        main(*sys.argv[1:3])
    except (Fail, KeyError, TypeError, ValueError) as e:
        print(f"FAIL: {e!r}", file=sys.stderr)
        sys.exit(1)
