"""A scripted HTTP/1.1 peer standing in for a gateway that answers 429/503 on demand."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Scripted:
    """An HTTP/1.1 server answering from a script: (status, headers, body) per request."""

    def __init__(self) -> None:
        self.script: list[tuple[int, dict[str, str], bytes]] = []
        self.requests: list[dict[str, Any]] = []
        self.connections: set[int] = set()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                n = int(self.headers.get("content-length") or 0)
                outer.requests.append({
                    "method": self.command, "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": self.rfile.read(n),
                })
                outer.connections.add(id(self.connection))
                status, headers, body = outer.script.pop(0) if outer.script else (500, {}, b"{}")
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                if headers.get("transfer-encoding") == "chunked":
                    self.end_headers()
                    for i in range(0, len(body), 7):
                        part = body[i : i + 7]
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                    self.wfile.write(b"0\r\n\r\n")
                else:
                    self.send_header("content-length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

            do_POST = _answer
            do_GET = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def add(self, status: int, body: dict[str, Any], **headers: str) -> None:
        self.script.append((status, {k.replace("_", "-"): v for k, v in headers.items()},
                            json.dumps(body).encode()))
