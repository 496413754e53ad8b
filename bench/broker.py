"""A Mosquitto on loopback configured like production, and a subscriber that counts what arrives.

The broker process is the product's throw-away launcher (:class:`inspector.localbroker.LocalBroker`, also
used by the tests and the demo: free loopback port, start/stop keeping port and data); only its
configuration differs: it is the production file
``deploy/mosquitto/mosquitto.conf`` (``max_queued_messages 1000000``, ``max_inflight_messages 20``,
persistence saved after every change, ...) minus what only makes sense on an installed system
(password file, ACL, TLS listener, system paths), plus a loopback listener with anonymous access.

The subscriber keeps the raw payload and the arrival time of every message and decodes them after the
measurement, so counting costs as little CPU as possible on a two-core machine.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from bench.common import REPO
from inspector.localbroker import LocalBroker

PRODUCTION_CONF = REPO / "deploy" / "mosquitto" / "mosquitto.conf"
# Keys of the production file that point at an installed system; the benchmark broker sets its own.
_SYSTEM_KEYS = {
    "password_file",
    "acl_file",
    "include_dir",
    "listener",
    "persistence_location",
    "log_dest",
    "allow_anonymous",
    "user",
}


def production_settings() -> List[str]:
    """The production Mosquitto settings that apply to a loopback benchmark broker."""
    lines = []
    for raw in PRODUCTION_CONF.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and line.split()[0] not in _SYSTEM_KEYS:
            lines.append(line)
    return lines


class ProductionBroker(LocalBroker):
    """:class:`inspector.localbroker.LocalBroker` with the production Mosquitto configuration (Mosquitto only)."""

    def __init__(self, workdir: Path):
        super().__init__(workdir, kind="mosquitto")
        if self.kind != "mosquitto":
            raise RuntimeError("the benchmarks need Mosquitto (apt-get install mosquitto)")

    def _write_config(self, extra: List[str]) -> None:
        lines = production_settings() + [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            f"persistence_location {self.workdir}/",
            f"log_dest file {self.log_path}",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            lines.append("user root")  # otherwise mosquitto switches to 'mosquitto' and cannot write here
        self.config = self.workdir / "mosquitto.conf"
        self.config.write_text("\n".join(lines) + "\n")

    @property
    def pid(self) -> Optional[int]:
        return self.proc.pid if self.proc is not None else None


class Counter:
    """A paho subscriber (MQTT 5, QoS 1) recording (arrival time, topic, payload) for every message.

    ``persistent=True`` keeps its session on the broker (clean_start False, one-hour expiry), so results
    published while it is disconnected (a broker restart) are queued for it, as for the line controller.
    """

    def __init__(self, broker: LocalBroker, topics: List[str], persistent: bool = False):
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        from inspector.mqtt import no_delay

        self.broker = broker
        self.topics = topics
        self.received: List[Tuple[float, str, bytes]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"bench-counter-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5
        )
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.max_inflight_messages_set(100)
        self.client.on_socket_open = no_delay  # as the line controller's client (inspector.mqtt.make_client)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message
        self._kwargs = {"clean_start": not persistent}
        if persistent:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 3600
            self._kwargs["properties"] = props

    def start(self, timeout: float = 10.0) -> Counter:
        self.client.connect_async(self.broker.host, self.broker.port, keepalive=30, **self._kwargs)
        self.client.loop_start()
        if not self._subscribed.wait(timeout):
            raise RuntimeError("benchmark subscriber could not subscribe")
        return self

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if not reason_code.is_failure:
            client.subscribe([(t, 1) for t in self.topics])

    def _on_message(self, client, userdata, msg):
        item = (time.time(), msg.topic, bytes(msg.payload))
        with self._lock:
            self.received.append(item)

    def count(self, topic: str) -> int:
        with self._lock:
            return sum(1 for _, t, _ in self.received if t == topic)

    def wait_count(self, topic: str, n: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.count(topic) < n:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def messages(self, topic: str, since: float = 0.0, until: float = float("inf")) -> List[Tuple[float, dict]]:
        """(arrival time, decoded JSON) of the messages on ``topic`` that arrived in [since, until)."""
        with self._lock:
            items = [(t, p) for t, name, p in self.received if name == topic and since <= t < until]
        return [(t, json.loads(p)) for t, p in items]

    def ids(self, topic: str) -> Dict[str, int]:
        """Result id -> how many times it arrived on ``topic`` (at-least-once delivery may repeat one)."""
        counts: Dict[str, int] = {}
        with self._lock:
            payloads = [p for _, name, p in self.received if name == topic]
        for payload in payloads:
            rid = json.loads(payload)["id"]
            counts[rid] = counts.get(rid, 0) + 1
        return counts

    def clear(self) -> None:
        with self._lock:
            self.received.clear()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
