"""A real MQTT broker on a free loopback port, and a recording subscriber.

Mosquitto when it is installed (on PATH or at /usr/sbin/mosquitto, as in CI), otherwise the pure-Python
amqtt broker, so the edge tests also run on a machine without Mosquitto. The broker can be stopped and
started again on the same port (the broker-outage tests).

Mosquitto is configured for tests that must not lose messages on the broker side:
``max_queued_messages`` is raised (the default 1000 drops messages for a slow subscriber) and persistence
is on, so a persistent-session subscriber keeps its queued messages across a broker restart. amqtt
speaks MQTT 3.1.1 only and keeps sessions in memory; ``Broker.protocol`` tells the tests which version to
configure, and ``Broker.persistent`` whether queued messages survive a restart.

``INSPECTOR_TEST_BROKER=amqtt`` forces the fallback on a machine that has Mosquitto (to test the fallback).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, List, Optional

import pytest

MOSQUITTO_PATHS = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")


def find_mosquitto() -> Optional[str]:
    found = shutil.which("mosquitto")
    if found:
        return found
    return next((p for p in MOSQUITTO_PATHS if os.access(p, os.X_OK)), None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class Broker:
    """A broker process on ``127.0.0.1:port``; ``stop()`` and ``start()`` keep the port and the data dir."""

    host = "127.0.0.1"

    def __init__(self, workdir: Path, kind: Optional[str] = None, mosquitto_extra: List[str] = ()):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        kind = kind or os.environ.get("INSPECTOR_TEST_BROKER") or None
        self.mosquitto = find_mosquitto() if kind in (None, "mosquitto") else None
        self.kind = "mosquitto" if self.mosquitto else "amqtt"
        self.protocol = "5" if self.kind == "mosquitto" else "3.1.1"
        self.persistent = self.kind == "mosquitto"
        self.port = free_port()
        self.proc: Optional[subprocess.Popen] = None
        self.log_path = self.workdir / f"{self.kind}.log"
        self._write_config(list(mosquitto_extra))

    def _write_config(self, extra: List[str]) -> None:
        if self.kind == "mosquitto":
            # Extra lines follow the listener, so TLS options apply to it and later settings win.
            lines = [f"listener {self.port} 127.0.0.1", "allow_anonymous true"] + extra + [
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

    def start(self, timeout: float = 20.0) -> None:
        if self.running:
            return
        if self.kind == "mosquitto":
            cmd = [self.mosquitto, "-c", str(self.config)]
        else:
            cmd = [sys.executable, "-c", "from amqtt.scripts.broker_script import main; main()", "-c", str(self.config)]
        log = open(self.workdir / f"{self.kind}.stdout", "ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)
        log.close()
        deadline = time.monotonic() + timeout
        while not _port_open(self.port):
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited with {self.proc.returncode}: {self.tail_log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.kind} did not listen on port {self.port}: {self.tail_log()}")
            time.sleep(0.05)

    def stop(self, timeout: float = 15.0) -> None:
        """Graceful stop (Mosquitto saves its persistence file on SIGTERM)."""
        if not self.running:
            return
        self.proc.send_signal(signal.SIGTERM if self.kind == "mosquitto" else signal.SIGINT)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def start_before(self, recorders: List["Recorder"], held_clients: list) -> None:
        """Start again, letting ``recorders`` resubscribe before the paho ``held_clients`` may reconnect.

        Needed for a broker without persistence (amqtt): it forgets subscriptions when it stops, so a
        station that reconnects first would publish its queued results to nobody. With Mosquitto's
        persistent sessions the order does not matter and tests simply call :meth:`start`.
        """
        counts = [r.subscriptions for r in recorders]
        for client in held_clients:
            client.loop_stop()
        try:
            self.start()
            for recorder, count in zip(recorders, counts):
                recorder.wait_resubscribed(count)
        finally:
            for client in held_clients:
                client.loop_start()

    def tail_log(self, chars: int = 2000) -> str:
        text = ""
        for name in (self.log_path, self.workdir / f"{self.kind}.stdout"):
            if Path(name).exists():
                text += Path(name).read_text(errors="replace")
        return text[-chars:]

    def mqtt_overrides(self) -> dict:
        """The station config keys that point a station at this broker."""
        return {"mqtt.host": self.host, "mqtt.port": self.port, "mqtt.protocol": self.protocol}

    def subscriber(self, topics: List[str], persistent: bool = False) -> "Recorder":
        rec = Recorder(self, topics, persistent=persistent)
        rec.connect()
        return rec


class Message:
    def __init__(self, topic: str, payload: bytes, retain: bool):
        self.topic, self.payload, self.retain = topic, payload, retain

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.payload)

    def __repr__(self) -> str:
        return f"Message({self.topic!r}, {self.text[:80]!r}, retain={self.retain})"


class Recorder:
    """A real paho subscriber that records every message; reconnects and resubscribes by itself."""

    def __init__(self, broker: Broker, topics: List[str], persistent: bool = False):
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.broker = broker
        self.topics = topics
        self.messages: List[Message] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self.subscriptions = 0
        client_id = f"recorder-{uuid.uuid4().hex[:8]}"
        v5 = broker.protocol == "5"
        kwargs = {"protocol": mqtt.MQTTv5 if v5 else mqtt.MQTTv311}
        if not v5:
            kwargs["clean_session"] = not persistent
        self._clean_start = not persistent
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, **kwargs)
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self._connect_kwargs = {"clean_start": self._clean_start} if v5 else {}
        if v5 and persistent:
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties

            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 3600
            self._connect_kwargs["properties"] = props

    def connect(self, timeout: float = 10.0) -> None:
        self.client.connect_async(self.broker.host, self.broker.port, keepalive=10, **self._connect_kwargs)
        self.client.loop_start()
        if not self._subscribed.wait(timeout):
            raise RuntimeError("recorder could not subscribe")

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if not reason_code.is_failure:
            client.subscribe([(t, 1) for t in self.topics])

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        with self._cond:
            self.subscriptions += 1
            self._cond.notify_all()
        self._subscribed.set()

    def wait_resubscribed(self, count: int, timeout: float = 20.0) -> None:
        """Wait until the subscription count passes ``count`` (a reconnect resubscribed)."""
        with self._cond:
            if not self._cond.wait_for(lambda: self.subscriptions > count, timeout):
                raise RuntimeError("recorder did not resubscribe")

    def _on_message(self, client, userdata, msg):
        with self._cond:
            self.messages.append(Message(msg.topic, bytes(msg.payload), bool(msg.retain)))
            self._cond.notify_all()

    def on(self, suffix: str) -> List[Message]:
        with self._cond:
            return [m for m in self.messages if m.topic.endswith("/" + suffix)]

    def results(self) -> List[dict]:
        return [m.json() for m in self.on("result")]

    def events(self, type_: Optional[str] = None) -> List[dict]:
        events = [m.json() for m in self.on("event")]
        return [e for e in events if type_ is None or e["type"] == type_]

    def wait_for(self, predicate: Callable[["Recorder"], bool], timeout: float = 30.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                recent = [m for m in self.messages if not m.topic.endswith("/stats")][-12:]
                raise AssertionError(f"timed out waiting for {what or predicate}; last messages "
                                     f"(stats left out) {recent}")
            with self._cond:
                self._cond.wait(min(remaining, 0.2))

    def publish(self, topic: str, payload, qos: int = 1, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def mqtt_broker(tmp_path_factory) -> Broker:
    """A broker of its own for one test (the outage tests stop and start it)."""
    broker = Broker(tmp_path_factory.mktemp("broker"))
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def shared_broker(tmp_path_factory) -> Broker:
    """One broker for the tests that never stop it; each test uses its own station name."""
    broker = Broker(tmp_path_factory.mktemp("shared-broker"))
    broker.start()
    yield broker
    broker.stop()
