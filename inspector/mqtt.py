"""The broker connection every side shares: its config section and the one way to build a paho client.

:class:`MqttConfig` is the ``mqtt`` section of a station's, the controller's and the monitor's
configuration, so a line uses one set of keys everywhere. :func:`make_client` is the only place that turns
it into a paho-mqtt 2 client (``CallbackAPIVersion.VERSION2``, MQTT 5 or 3.1.1): credentials, TLS,
reconnect backoff, last will and queue limits are set here and nowhere else. :class:`BrokerClient` adds
the (re)connect bookkeeping the controller, the Sparkplug bridge and the monitor need.

A *persistent* session (the controller) has clean start off and a session expiry interval, so the broker
keeps its subscriptions and queues the QoS 1 results that arrive while it is down. MQTT 5 expresses that
with ``clean_start=False`` plus ``SessionExpiryInterval``; MQTT 3.1.1 with ``clean_session=False``.

Example:
    >>> client = make_client(MqttConfig(host="broker"), "inspector-line1-cam1")
    >>> connect(client, MqttConfig(host="broker"))   # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Literal, Optional, Tuple, Union

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import Field, field_validator, model_validator

from inspector.config import ConfigError, StrictModel, load_yaml

log = logging.getLogger(__name__)


class TlsConfig(StrictModel):
    """TLS to the broker; enabled when this section is present."""

    ca_file: Optional[Path] = Field(None, description="CA certificates (None: the system's)")
    cert_file: Optional[Path] = Field(None, description="Client certificate for mutual TLS")
    key_file: Optional[Path] = Field(None, description="Client private key for mutual TLS")
    insecure: bool = Field(False, description="Skip host name verification (testing only)")


class MqttConfig(StrictModel):
    """The broker connection and the topic prefix."""

    host: str = Field("localhost", min_length=1, description="Broker host name or address")
    port: int = Field(1883, ge=1, le=65535, description="Broker port (8883 is usual with TLS)")
    protocol: Literal["5", "3.1.1"] = Field("5", description="MQTT protocol version")
    prefix: str = Field("inspector", min_length=1, description="First topic level")
    client_id: Optional[str] = Field(None, description="Client id (default: inspector-<line>-<station>)")
    keepalive_s: int = Field(
        30, ge=5, description="Keepalive; the last will is sent about 1.5x this after a silent death"
    )
    username: Optional[str] = Field(None, description="User name")
    password_env: Optional[str] = Field(None, description="Environment variable holding the password")
    password_file: Optional[Path] = Field(None, description="File holding the password (first line)")
    tls: Optional[TlsConfig] = Field(None, description="TLS settings; omit for plain TCP")
    reconnect_min_s: float = Field(1.0, gt=0, description="First wait before reconnecting")
    reconnect_max_s: float = Field(30.0, gt=0, description="Longest wait between reconnects")
    max_inflight: int = Field(
        20,
        ge=1,
        le=1000,
        description="QoS 1 messages sent but not yet acknowledged: a station's results, the line controller's "
        "trigger commands (one per station for every part: give it the number of stations or more)",
    )
    stats_interval_s: float = Field(10.0, gt=0, description="Period of the /stats message")

    @field_validator("host")
    @classmethod
    def _host_name(cls, value: str) -> str:
        if value != value.strip() or any(ch.isspace() for ch in value):
            raise ValueError(f"{value!r} is not a host name or address (it contains spaces)")
        return value

    @field_validator("protocol", mode="before")
    @classmethod
    def _protocol_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, (int, float)) else value  # YAML reads 5 as a number

    @model_validator(mode="after")
    def _one_password(self) -> MqttConfig:
        if self.password_env and self.password_file:
            raise ValueError("give only one of password_env or password_file")
        return self

    def password(self) -> Optional[str]:
        """Read the password from its environment variable or file; never stored in config or bundle."""
        if self.password_env:
            if self.password_env not in os.environ:
                raise ConfigError(f"mqtt.password_env: environment variable {self.password_env} is not set")
            return os.environ[self.password_env]
        if self.password_file:
            try:
                return self.password_file.read_text(encoding="utf-8").splitlines()[0].strip()
            except (OSError, IndexError) as exc:
                raise ConfigError(f"mqtt.password_file: cannot read {self.password_file}: {exc}") from None
        return None


@dataclass(frozen=True)
class Will:
    """Last will: what the broker publishes for us when the connection dies without a DISCONNECT."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


def parse_broker(text: str) -> Tuple[str, Optional[Union[int, str]]]:
    """``--broker HOST[:PORT]`` (every command spells the broker so) as ``(host, port or None)``; a port that is
    not a number is passed on as text for the config's validation to name."""
    host, sep, port = text.rpartition(":")
    if not sep:
        return text, None
    return host, int(port) if port.isdigit() else port


def add_broker_arguments(parser: argparse.ArgumentParser) -> None:
    """The broker options of the commands that only talk to a broker (monitor, send), spelled one way."""
    parser.add_argument("-c", "--config", help="take the broker settings (mqtt section) from a line or station config")
    parser.add_argument("--broker", metavar="HOST[:PORT]", help="MQTT broker (default localhost:1883, or the config's)")
    parser.add_argument("--username", help="broker user")
    parser.add_argument("--password-env", help="environment variable holding the password")
    parser.add_argument("--prefix", help="topic prefix (default inspector, or the config's)")
    parser.add_argument("--protocol", choices=["5", "3.1.1"], help="MQTT version (default 5, or the config's)")


def mqtt_config_from_arguments(args: argparse.Namespace) -> MqttConfig:
    """:class:`MqttConfig` from :func:`add_broker_arguments`' options over the config file's ``mqtt`` section.

    The config's ``client_id`` is dropped: a tool must never take over a station's or the controller's session.
    """
    data: Dict[str, Any] = {}
    if args.config:
        loaded = load_yaml(args.config) or {}
        data = dict(loaded.get("mqtt") or {}) if isinstance(loaded, dict) else {}
    host, port = (
        parse_broker(args.broker) if args.broker else (getattr(args, "host", None), getattr(args, "port", None))
    )
    for key, value in (
        ("host", host),
        ("port", port),
        ("username", args.username),
        ("password_env", args.password_env),
        ("prefix", args.prefix),
        ("protocol", args.protocol),
    ):
        if value is not None:
            data[key] = value
    data.pop("client_id", None)
    return MqttConfig.model_validate(data)


def _path(value: Optional[Path]) -> Optional[str]:
    return None if value is None else str(value)


def make_client(
    cfg: MqttConfig,
    client_id: str,
    *,
    persistent: bool = False,
    will: Optional[Will] = None,
    max_inflight: Optional[int] = None,
    max_queued: Optional[int] = None,
) -> mqtt.Client:
    """A paho client for ``cfg``, not yet connected (see :func:`connect`).

    ``max_inflight``/``max_queued`` override paho's limits on unacknowledged and queued QoS > 0 messages
    (None keeps paho's defaults). Callbacks are the caller's.
    """
    v5 = cfg.protocol == "5"
    kwargs: Dict[str, Any] = {} if v5 else {"clean_session": not persistent}
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311, **kwargs
    )
    # paho annotates the delays as int but computes with them as numbers: fractions of a second work.
    client.reconnect_delay_set(min_delay=cfg.reconnect_min_s, max_delay=cfg.reconnect_max_s)  # type: ignore[arg-type]
    if max_inflight is not None:
        client.max_inflight_messages_set(max_inflight)
    if max_queued is not None:
        client.max_queued_messages_set(max_queued)
    if cfg.username is not None:
        client.username_pw_set(cfg.username, cfg.password())
    if cfg.tls is not None:
        tls = cfg.tls
        for key in ("ca_file", "cert_file", "key_file"):  # checked here: the config may be written elsewhere
            path = getattr(tls, key)
            if path is not None and not path.is_file():
                raise ConfigError(f"mqtt.tls.{key}: {path} does not exist or is not a file")
        client.tls_set(
            ca_certs=_path(tls.ca_file),
            certfile=_path(tls.cert_file),
            keyfile=_path(tls.key_file),
            cert_reqs=ssl.CERT_REQUIRED,
        )
        client.tls_insecure_set(tls.insecure)
    if will is not None:
        client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
    client.on_socket_open = no_delay
    return client


def no_delay(client: mqtt.Client, userdata: Any, sock: Any) -> None:
    """Turn Nagle's algorithm off on the client's socket (paho leaves it on).

    With it on, a small packet waits for the ACK of the previous one, and the broker's kernel delays that
    ACK by 40 ms: a triggered station answered a trigger 41-47 ms after it arrived, whatever the frame rate
    (bench pipeline, 30 fps). The broker side is ``set_tcp_nodelay true`` in deploy/mosquitto. Called by
    paho's network thread: never raises (a websocket wrapper has no ``setsockopt``).
    """
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (AttributeError, OSError) as exc:
        log.debug("TCP_NODELAY not set on the MQTT socket: %s", exc)


def connect(client: mqtt.Client, cfg: MqttConfig, *, persistent: bool = False, session_expiry_s: int = 0) -> None:
    """Connect in the background and start paho's network thread; paho retries and reconnects by itself."""
    kwargs: Dict[str, Any] = {}
    if cfg.protocol == "5":
        properties = None
        if persistent:
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = session_expiry_s
        kwargs = {"clean_start": not persistent, "properties": properties}
    client.connect_async(cfg.host, cfg.port, keepalive=cfg.keepalive_s, **kwargs)
    client.loop_start()


class BrokerClient:
    """A connected paho client that remembers how to (re)connect; callbacks use the VERSION2 API.

    At most ``cfg.max_inflight`` of its QoS 1 messages wait for their acknowledgement at a time (paho's own
    default is 20), so the key means the same for every client built from a config.
    """

    def __init__(
        self,
        cfg: MqttConfig,
        client_id: str,
        *,
        persistent: bool = False,
        session_expiry_s: int = 0,
        will: Optional[Will] = None,
    ):
        self.cfg = cfg
        self.persistent = persistent
        self.session_expiry_s = session_expiry_s
        self.client = make_client(cfg, client_id, persistent=persistent, will=will, max_inflight=cfg.max_inflight)
        self.connected = threading.Event()
        self.subscribed = threading.Event()  # the broker acknowledged the latest subscribe()
        self._subscribe_mid: Optional[int] = None
        self._subscribe_lock = threading.Lock()  # the SUBACK's callback waits until its mid is known
        self.session_present = False
        self._user_on_connect: Optional[Callable[[bool], None]] = None
        self._user_on_disconnect: Optional[Callable[[], None]] = None
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe

    def on_connect(self, callback: Callable[[bool], None]) -> None:
        """``callback(session_present: bool)`` after every successful (re)connection: (re)subscribe here."""
        self._user_on_connect = callback

    def on_disconnect(self, callback: Callable[[], None]) -> None:
        """``callback()`` after the connection is lost or closed, before paho reconnects."""
        self._user_on_disconnect = callback

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            log.error("broker %s:%s refused the connection: %s", self.cfg.host, self.cfg.port, reason_code)
            return
        self.session_present = bool(flags.session_present)
        log.info("connected to %s:%s (session present: %s)", self.cfg.host, self.cfg.port, self.session_present)
        if self._user_on_connect is not None:
            self._user_on_connect(self.session_present)
        self.connected.set()

    def subscribe(self, subscriptions: List[Tuple[str, int]]) -> None:
        """Subscribe to ``(topic, qos)`` pairs; :attr:`subscribed` is set when the broker acknowledges them
        (messages published by others before that are not delivered to this client)."""
        with self._subscribe_lock:
            self.subscribed.clear()
            self._subscribe_mid = self.client.subscribe(subscriptions)[1]

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: Any, properties: Any) -> None:
        with self._subscribe_lock:
            if mid == self._subscribe_mid:
                self.subscribed.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        self.connected.clear()
        if reason_code != 0:
            log.warning("lost the broker connection (%s); reconnecting", reason_code)
        if self._user_on_disconnect is not None:
            self._user_on_disconnect()

    def start(self, timeout: Optional[float] = 10.0) -> bool:
        """Connect in the background (paho reconnects by itself); wait up to ``timeout`` for the CONNACK."""
        connect(self.client, self.cfg, persistent=self.persistent, session_expiry_s=self.session_expiry_s)
        return self.connected.wait(timeout) if timeout else self.connected.is_set()

    def publish(
        self, topic: str, payload: Union[str, bytes], qos: int = 1, retain: bool = False
    ) -> mqtt.MQTTMessageInfo:
        return self.client.publish(topic, payload, qos=qos, retain=retain)

    def stop(self, final: Optional[Tuple[str, Union[str, bytes], bool]] = None) -> None:
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
