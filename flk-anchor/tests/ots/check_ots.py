"""Checks a `.ots` file written by flk-anchor with python-opentimestamps, an independent
implementation: deserializes it, checks the file hash op and digest, re-serializes it (must be
byte-identical) and prints every attestation with the message the commitment chain yields, as
JSON. Usage: check_ots.py FILE HEX_DIGEST. Exits 1 on any mismatch."""
import json
import sys

from opentimestamps.core.notary import BitcoinBlockHeaderAttestation, PendingAttestation
from opentimestamps.core.op import OpSHA256
from opentimestamps.core.serialize import BytesDeserializationContext, BytesSerializationContext
from opentimestamps.core.timestamp import DetachedTimestampFile


def main():
    path, digest_hex = sys.argv[1], sys.argv[2]
    data = open(path, "rb").read()
    dtf = DetachedTimestampFile.deserialize(BytesDeserializationContext(data))
    if not isinstance(dtf.file_hash_op, OpSHA256):
        print("file hash op is not sha256", file=sys.stderr)
        return 1
    if dtf.file_digest.hex() != digest_hex:
        print("digest %s != %s" % (dtf.file_digest.hex(), digest_hex), file=sys.stderr)
        return 1
    ctx = BytesSerializationContext()
    dtf.serialize(ctx)
    if ctx.getbytes() != data:
        print("re-serialization differs", file=sys.stderr)
        return 1
    attestations = []
    for msg, att in dtf.timestamp.all_attestations():
        if isinstance(att, PendingAttestation):
            attestations.append({"kind": "pending", "uri": att.uri, "msg": msg.hex()})
        elif isinstance(att, BitcoinBlockHeaderAttestation):
            attestations.append({"kind": "bitcoin", "height": att.height, "msg": msg.hex()})
        else:
            attestations.append({"kind": "other", "msg": msg.hex()})
    attestations.sort(key=lambda a: json.dumps(a, sort_keys=True))
    print(json.dumps({"digest": dtf.file_digest.hex(), "attestations": attestations}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
