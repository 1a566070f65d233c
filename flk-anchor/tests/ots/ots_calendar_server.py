"""A tiny OpenTimestamps calendar for flk-anchor's tests, built with python-opentimestamps.

Listens on 127.0.0.1 port 0 and prints the port on stdout. POST /digest answers a timestamp on
the digest: append a 16-byte nonce, SHA-256, a pending attestation naming this calendar.
GET /timestamp/<hex> answers 404 until POST /mine was called, then a path from the commitment
(prepend, SHA-256, append, SHA-256) ending in a Bitcoin block header attestation at HEIGHT.
"""
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentimestamps.core.notary import BitcoinBlockHeaderAttestation, PendingAttestation
from opentimestamps.core.op import OpAppend, OpPrepend, OpSHA256
from opentimestamps.core.serialize import BytesSerializationContext
from opentimestamps.core.timestamp import Timestamp

HEIGHT = 358391
COMMITMENTS = set()
MINED = {"done": False}


def serialize(ts):
    ctx = BytesSerializationContext()
    ts.serialize(ctx)
    return ctx.getbytes()


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, status, body):
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        if self.path == "/mine":
            MINED["done"] = True
            return self.answer(200, b"")
        if self.path != "/digest" or not 0 < len(body) <= 64:
            return self.answer(400, b"bad request")
        ts = Timestamp(body)
        commitment = ts.ops.add(OpAppend(os.urandom(16))).ops.add(OpSHA256())
        commitment.attestations.add(PendingAttestation(self.server.url))
        COMMITMENTS.add(commitment.msg)
        self.answer(200, serialize(ts))

    def do_GET(self):
        prefix = "/timestamp/"
        if not self.path.startswith(prefix):
            return self.answer(404, b"not found")
        try:
            msg = bytes.fromhex(self.path[len(prefix):])
        except ValueError:
            return self.answer(400, b"bad hex")
        if msg not in COMMITMENTS or not MINED["done"]:
            return self.answer(404, b"Pending confirmation in Bitcoin blockchain")
        ts = Timestamp(msg)
        leaf = ts.ops.add(OpPrepend(b"\x01" * 32)).ops.add(OpSHA256())
        leaf = leaf.ops.add(OpAppend(b"\x02" * 32)).ops.add(OpSHA256())
        leaf.attestations.add(BitcoinBlockHeaderAttestation(HEIGHT))
        self.answer(200, serialize(ts))


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.url = "http://127.0.0.1:%d" % server.server_address[1]
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
