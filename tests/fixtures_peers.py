"""Real peers written by other people, run by Node.js from tests/peers/ (installed with ``npm ci --prefix tests/peers``).

:func:`require_peer` (and the fixtures ``tahu_node``, ``node_red_node``) skips a test, with the reason, when
Node.js or the installed package is missing.
:class:`NodeProcess` runs one of the scripts there and collects the JSON lines it prints.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, List, Optional

import pytest

PEERS = Path(__file__).resolve().parent / "peers"


def require_peer(package: str) -> str:
    """The ``node`` executable; skips when Node.js or ``tests/peers/node_modules/<package>`` is absent."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed (CI installs it: apt-get install nodejs npm)")
    if not (PEERS / "node_modules" / package / "package.json").is_file():
        pytest.skip(f"tests/peers/node_modules/{package} is missing: run `npm ci --prefix tests/peers`")
    return node


@pytest.fixture(scope="session")
def tahu_node() -> str:
    """``node`` with Eclipse Tahu's payload library installed. Session-scoped, so that a test listing it first
    skips before the session fixtures it also needs (the trained bundle) are built."""
    return require_peer("sparkplug-payload")


@pytest.fixture(scope="session")
def node_red_node() -> str:
    """``node`` with Node-RED installed (session-scoped for the same reason as :func:`tahu_node`)."""
    return require_peer("node-red")


class NodeProcess:
    """A Node.js process whose stdout is JSON lines (kept in :attr:`lines`) and whose stdin takes JSON lines."""

    def __init__(self, args: List[str], log_path: Path, env: Optional[dict] = None):
        self.lines: List[dict] = []
        self.log_path = log_path
        self._cond = threading.Condition()
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            args,
            cwd=PEERS,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self._log.write(raw)
            self._log.flush()
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def events(self, event: str, **match) -> List[dict]:
        with self._cond:
            return [x for x in self.lines if x.get("event") == event and all(x.get(k) == v for k, v in match.items())]

    def wait_for(self, predicate: Callable[[NodeProcess], object], timeout: float, what: str):
        """Wait until ``predicate(self)`` is truthy and return its value; fails with the process' recent output."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                value = predicate(self)
                if value:
                    return value
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    tail = self.log_path.read_text(errors="replace")[-3000:]
                    raise AssertionError(
                        f"timed out waiting for {what} (exit code {self.proc.poll()}); output:\n{tail}"
                    )
                self._cond.wait(min(remaining, 0.5))

    def send(self, obj: dict) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(obj) + "\n").encode())
        self.proc.stdin.flush()

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._reader.join(5)
        self._log.close()
