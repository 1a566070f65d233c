"""An agent process for the crash tests: queues PCS in an outbox and drains it to a gateway.

``outbox_agent.py DIR URL SECRET [--enqueue FILE] [--hang-after K]``: with ``--enqueue``,
signs and queues every PCS of FILE (a JSON list) first. Then it drains the outbox, printing
one JSON line per answer *before* recording it; with ``--hang-after K`` it stops for good
after printing the K-th answer and before recording it (the window where a crash makes the
server's decision unknown to the agent), and prints ``HANG``.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading

from flk_sdk import Client, HmacSigner, Outbox, RetryPolicy
from flk_sdk.client import SubmitResult
from flk_sdk.outbox import Entry


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("url")
    ap.add_argument("secret")
    ap.add_argument("--enqueue")
    ap.add_argument("--hang-after", type=int)
    a = ap.parse_args()
    signer = HmacSigner(a.secret)
    with Outbox(a.dir) as ob:
        if a.enqueue:
            with open(a.enqueue, encoding="utf-8") as f:
                for pcs in json.load(f):
                    ob.put(pcs, signer)
            print(json.dumps({"queued": len(ob)}), flush=True)
        answers = 0

        def seen(entry: Entry, r: SubmitResult) -> None:
            nonlocal answers
            answers += 1
            line = {"seq": entry.seq, "pcs_id": entry.pcs_id, "http_status": r.http_status,
                    "duplicate": r.duplicate, "outcome": r.outcome}
            print(json.dumps(line), flush=True)
            if a.hang_after is not None and answers == a.hang_after:
                print("HANG", flush=True)
                threading.Event().wait()  # until SIGKILL

        client = Client(a.url, retry=RetryPolicy(max_attempts=None))
        report = ob.drain(client, on_result=seen)
        print(json.dumps({"done": report.delivered, "pending": len(ob)}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
