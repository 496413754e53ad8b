"""A throw-away MQTT broker on a free loopback port, for the demo, the benchmarks and the tests.

Mosquitto when it is installed (on PATH or at /usr/sbin/mosquitto, as Debian installs it), otherwise the
pure-Python amqtt broker, so everything also runs on a machine without Mosquitto. Mosquitto is set up so
that nothing is dropped on the broker side: ``max_queued_messages`` is raised (the default 1000 drops
results for a slow subscriber) and persistence is on, so a persistent-session subscriber keeps its queued
messages across a broker restart. amqtt speaks MQTT 3.1.1 only and keeps sessions in memory: ``protocol``
and ``persistent`` tell clients what to expect. ``stop()`` and ``start()`` keep the port and the data, for
broker-outage tests.

``INSPECTOR_TEST_BROKER=amqtt`` forces the fallback on a machine that has Mosquitto.

Example:
    >>> broker = LocalBroker(tempfile.mkdtemp())                 # doctest: +SKIP
    >>> broker.start(); broker.port                              # doctest: +SKIP
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional, Sequence

MOSQUITTO_PATHS = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")


def find_mosquitto() -> Optional[str]:
    found = shutil.which("mosquitto")
    if found:
        return found
    return next((p for p in MOSQUITTO_PATHS if os.access(p, os.X_OK)), None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


class LocalBroker:
    """A broker process on ``127.0.0.1:port``, configured in (and logging to) ``workdir``."""

    host = "127.0.0.1"

    def __init__(
        self, workdir: str | os.PathLike[str], kind: Optional[str] = None, mosquitto_extra: Sequence[str] = ()
    ):
        # Absolute: the broker runs with this folder as its working directory and reads paths from its config.
        self.workdir = Path(workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        kind = kind or os.environ.get("INSPECTOR_TEST_BROKER") or None
        self.mosquitto = find_mosquitto() if kind in (None, "mosquitto") else None
        self.kind = "mosquitto" if self.mosquitto else "amqtt"
        self.protocol = "5" if self.kind == "mosquitto" else "3.1.1"
        self.persistent = self.kind == "mosquitto"
        self.port = free_port()
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.log_path = self.workdir / f"{self.kind}.log"
        self._write_config(list(mosquitto_extra))

    def _write_config(self, extra: List[str]) -> None:
        if self.kind == "mosquitto":
            # Extra lines follow the listener, so TLS options apply to it and later settings win.
            lines = (
                [f"listener {self.port} 127.0.0.1", "allow_anonymous true"]
                + extra
                + [
                    "persistence true",
                    f"persistence_location {self.workdir}/",
                    "autosave_interval 1",
                    "max_queued_messages 1000000",
                    "max_inflight_messages 100",
                    "set_tcp_nodelay true",
                    "log_type error",
                    "log_type warning",
                    "log_type notice",
                    f"log_dest file {self.log_path}",
                ]
            )
            if hasattr(os, "geteuid") and os.geteuid() == 0:
                lines.append("user root")  # otherwise mosquitto switches to 'mosquitto' and cannot write here
            self.config = self.workdir / "mosquitto.conf"
            self.config.write_text("\n".join(lines) + "\n")
        else:
            self.config = self.workdir / "amqtt.yaml"
            self.config.write_text(
                "listeners:\n  default:\n    type: tcp\n"
                f"    bind: 127.0.0.1:{self.port}\n"
                "plugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n    allow_anonymous: true\n"
            )

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 20.0) -> LocalBroker:
        if self.running:
            return self
        if self.kind == "mosquitto":
            cmd = [str(self.mosquitto), "-c", str(self.config)]
        else:
            cmd = [sys.executable, "-c", "from amqtt.scripts.broker_script import main; main()", "-c", str(self.config)]
        with open(self.workdir / f"{self.kind}.stdout", "ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=self.workdir)
        deadline = time.monotonic() + timeout
        while not port_open(self.port):
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited with {self.proc.returncode}: {self.tail_log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.kind} did not listen on port {self.port}: {self.tail_log()}")
            time.sleep(0.05)
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """Graceful stop (Mosquitto saves its persistence file on SIGTERM)."""
        if not self.running or self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM if self.kind == "mosquitto" else signal.SIGINT)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def tail_log(self, chars: int = 2000) -> str:
        text = ""
        for name in (self.log_path, self.workdir / f"{self.kind}.stdout"):
            if Path(name).exists():
                text += Path(name).read_text(errors="replace")
        return text[-chars:]

    def mqtt_overrides(self) -> dict[str, str | int]:
        """The station/controller config keys that point a client at this broker."""
        return {"mqtt.host": self.host, "mqtt.port": self.port, "mqtt.protocol": self.protocol}

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
