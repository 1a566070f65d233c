"""A real ``flk up`` for the tests: port 0, a private data directory, the address from stdout."""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

_LISTENING = re.compile(r"gateway listening on (http://\S+)")
_REPO = Path(__file__).resolve().parents[3]


def flk_binary() -> str:
    """``$FLK_BIN``, else the workspace's debug build (``$CARGO_TARGET_DIR`` or ``target``)."""
    env = os.environ.get("FLK_BIN")
    if env:
        return env
    target = Path(os.environ.get("CARGO_TARGET_DIR") or _REPO / "target")
    candidate = target / "debug" / "flk"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("flk")
    if found:
        return found
    raise RuntimeError(
        "no flk binary: build it with `cargo build -p flk` and set FLK_BIN to its path"
    )


class FlkServer:
    """``flk up --data-dir DIR --listen 127.0.0.1:0`` plus ``extra`` arguments."""

    def __init__(self, data_dir: Path, *extra: str, startup_timeout: float = 120.0) -> None:
        self.data_dir = data_dir
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [flk_binary(), "up", "--data-dir", str(data_dir), "--listen", "127.0.0.1:0", *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
        )
        found: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, args=(found,), daemon=True).start()
        try:
            url = found.get(timeout=startup_timeout)
        except queue.Empty:
            url = None
        if url is None:
            self.stop()
            raise RuntimeError("flk up did not start:\n" + "\n".join(self.lines[-40:]))
        self.url: str = url

    def _pump(self, found: "queue.Queue[str | None]") -> None:
        # Reads stdout to the end so the pipe never fills; reports the address once.
        assert self.proc.stdout is not None
        reported = False
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            m = _LISTENING.search(line)
            if m and not reported:
                found.put(m.group(1))
                reported = True
        if not reported:
            found.put(None)

    @property
    def default_token(self) -> str:
        """The ``default`` tenant's API token (made by ``flk up`` without a tenants file)."""
        return (self.data_dir / "default.token").read_text().strip()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.05):  # type: ignore[no-untyped-def]
    """Polls ``predicate`` until it returns a truthy value (a condition, not a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        v = predicate()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(interval)
