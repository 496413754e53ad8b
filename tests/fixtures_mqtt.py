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
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, List, Optional

import pytest

# Re-exported: tests and fixtures import the launcher's helpers from here.
from inspector.localbroker import LocalBroker, find_mosquitto, free_port  # noqa: F401


class Broker(LocalBroker):
    """:class:`inspector.localbroker.LocalBroker` plus what only tests need (ordered restarts, recorders)."""

    def start_before(self, recorders: List[Recorder], held_clients: list) -> None:
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

    def subscriber(self, topics: List[str], persistent: bool = False) -> Recorder:
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

    def wait_for(self, predicate: Callable[[Recorder], bool], timeout: float = 30.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                recent = [m for m in self.messages if not m.topic.endswith("/stats")][-12:]
                raise AssertionError(
                    f"timed out waiting for {what or predicate}; last messages (stats left out) {recent}"
                )
            with self._cond:
                self._cond.wait(min(remaining, 0.2))

    def publish(self, topic: str, payload, qos: int = 1, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def make_certificates(folder: Path) -> Path:
    """A test CA (``ca.crt``) and a server certificate for 127.0.0.1 and localhost signed by it (``server.crt``,
    ``server.key``) in ``folder``, made with the openssl command line (P-256 keys: fast to generate).

    The file names are the ones the shipped deploy/mosquitto/conf.d/tls.conf reads.
    """
    folder.mkdir(parents=True, exist_ok=True)
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    openssl("req", "-x509", *key, "-days", "2", "-subj", "/CN=test-ca", "-keyout", "ca.key", "-out", "ca.crt")
    openssl("req", *key, "-subj", "/CN=127.0.0.1", "-keyout", "server.key", "-out", "server.csr")
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    signed = "x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile san.ext"
    openssl(*signed.split(), "-out", "server.crt")
    return folder


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
