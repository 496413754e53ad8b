"""A paho-mqtt 2 client built from the ``mqtt`` config section, shared by the controller, monitor and bridges.

The section is the station's own :class:`edge.config.MqttConfig`, so a line uses one set of keys everywhere.

The controller needs a *persistent* session: with clean start off and a session expiry interval, the
broker keeps its subscriptions and queues the QoS 1 results that arrive while it is down, then delivers
them when it reconnects. MQTT 5 expresses that with ``clean_start=False`` plus ``SessionExpiryInterval``;
MQTT 3.1.1 with ``clean_session=False``.
"""
from __future__ import annotations

import logging
import ssl
import threading
from dataclasses import dataclass
from typing import Optional

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge.config import MqttConfig

log = logging.getLogger(__name__)


def _path(value) -> Optional[str]:
    return None if value is None else str(value)


@dataclass(frozen=True)
class Will:
    """Last will: what the broker publishes for us when the connection dies without a DISCONNECT."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


class BrokerClient:
    """A connected paho client that remembers how to (re)connect; callbacks use the VERSION2 API."""

    def __init__(self, cfg: MqttConfig, client_id: str, *, persistent: bool = False,
                 session_expiry_s: int = 0, will: Optional[Will] = None):
        self.cfg = cfg
        self.persistent = persistent
        self.session_expiry_s = session_expiry_s
        self.v5 = cfg.protocol == "5"
        kwargs = {} if self.v5 else {"clean_session": not persistent}
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=mqtt.MQTTv5 if self.v5 else mqtt.MQTTv311, **kwargs)
        self.client.reconnect_delay_set(min_delay=max(1, round(cfg.reconnect_min_s)),
                                        max_delay=max(1, round(cfg.reconnect_max_s)))
        if cfg.username is not None:
            self.client.username_pw_set(cfg.username, cfg.password())
        if cfg.tls is not None:
            tls = cfg.tls
            self.client.tls_set(ca_certs=_path(tls.ca_file), certfile=_path(tls.cert_file),
                                keyfile=_path(tls.key_file), cert_reqs=ssl.CERT_REQUIRED)
            self.client.tls_insecure_set(cfg.tls.insecure)
        if will is not None:
            self.client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        self.connected = threading.Event()
        self.session_present = False
        self._user_on_connect = None
        self._user_on_disconnect = None
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect

    def on_connect(self, callback) -> None:
        """``callback(session_present: bool)`` after every successful (re)connection: (re)subscribe here."""
        self._user_on_connect = callback

    def on_disconnect(self, callback) -> None:
        """``callback()`` after the connection is lost or closed, before paho reconnects."""
        self._user_on_disconnect = callback

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("broker %s:%s refused the connection: %s", self.cfg.host, self.cfg.port, reason_code)
            return
        self.session_present = bool(flags.session_present)
        log.info("connected to %s:%s (session present: %s)", self.cfg.host, self.cfg.port, self.session_present)
        if self._user_on_connect is not None:
            self._user_on_connect(self.session_present)
        self.connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()
        if reason_code != 0:
            log.warning("lost the broker connection (%s); reconnecting", reason_code)
        if self._user_on_disconnect is not None:
            self._user_on_disconnect()

    def start(self, timeout: Optional[float] = 10.0) -> bool:
        """Connect in the background (paho reconnects by itself); wait up to ``timeout`` for the CONNACK."""
        properties = None
        if self.v5 and self.persistent:
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = self.session_expiry_s
        kwargs = {"clean_start": not self.persistent, "properties": properties} if self.v5 else {}
        self.client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s, **kwargs)
        self.client.loop_start()
        return self.connected.wait(timeout) if timeout else self.connected.is_set()

    def publish(self, topic: str, payload, qos: int = 1, retain: bool = False) -> mqtt.MQTTMessageInfo:
        return self.client.publish(topic, payload, qos=qos, retain=retain)

    def stop(self, final: Optional[tuple] = None) -> None:
        """Optionally publish ``(topic, payload, retain)`` and wait for it, then disconnect cleanly."""
        if final is not None and self.connected.is_set():
            topic, payload, retain = final
            info = self.client.publish(topic, payload, qos=1, retain=retain)
            try:
                info.wait_for_publish(timeout=2.0)
            except (RuntimeError, ValueError):
                pass  # not connected any more: the broker publishes the will instead
        self.client.disconnect()
        self.client.loop_stop()
