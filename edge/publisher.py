"""The station's MQTT side: status and last will, the command subscription, events, stats, outbox drain.

One paho-mqtt 2.x client (``CallbackAPIVersion.VERSION2``, MQTT 5 or 3.1.1) runs its network loop in a
background thread and reconnects by itself with backoff. Results never go to paho directly: the drain
thread reads them from the :class:`~edge.outbox.Outbox` in order, keeps at most ``max_inflight`` of them
unacknowledged, and deletes a row only when its PUBACK has arrived (``MQTTMessageInfo.is_published``).
A result is handed to paho as soon as its row is written, without waiting for the disk sync (the
outbox syncs in groups in the background), and the deletes of all PUBACKs harvested at one wake are one
transaction, synced with the next group.

Ordering across a reconnect: paho resends its unacknowledged QoS 1 messages by itself right after the
CONNACK (and calls ``on_connect`` *before* doing so), so after a reconnect the drain sends nothing new until
every message in flight at the disconnect has been acknowledged. Otherwise a new result could overtake
an older one being resent.

Events are kept in a bounded in-memory queue and handed to paho by the drain thread only while connected,
so :meth:`Publisher.flush` can wait for them like for results (a station that fails at start-up still gets
its ``error`` event out before it exits).

Status: ``online`` (retained) on every connect, ``offline`` (retained) as the last will and on a clean
stop. Retained commands are refused: a command must not run again at every reconnect. Under MQTT 5 the
subscription asks for Retain As Published, so a retained command is recognised when it is delivered live
too; MQTT 3.1.1 clears the flag on live deliveries, so there only the replay at subscribe is recognised.

No paho callback may raise: paho re-raises what a callback raises and its network thread dies, after which
nothing is received or acknowledged while the process looks alive. Every callback is wrapped
(:func:`_never_raises`: logged and counted in ``callback_errors``), and :attr:`Publisher.network_failed`
tells the station when the network thread has died anyway; the station then stops (the broker publishes
``offline`` as the will once the socket is closed) and systemd restarts it.

Example:
    >>> pub = Publisher(cfg.mqtt, topics, "inspector-line1-cam1", outbox, on_command=print)  # doctest: +SKIP
    >>> pub.start(); pub.notify()                                                            # doctest: +SKIP
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple, TypeVar

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from edge.outbox import Outbox, OutboxError, Row
from inspector.mqtt import MqttConfig, Will, connect, make_client
from inspector.protocol.commands import CommandChannel
from inspector.protocol.enums import Presence
from inspector.protocol.payloads import Event, Stats
from inspector.protocol.topics import StationTopics

log = logging.getLogger(__name__)

RESULT_QOS = 1
EVENT_QOS = 1
MAX_QUEUED_EVENTS = 1000  # events kept in memory while the broker is away (the oldest go first)

_Handler = TypeVar("_Handler", bound=Callable[..., None])


@dataclass
class _DrainState:
    """The drain thread's position: what it handed paho last, and whether paho's resends come first."""

    cursor: int = 0  # rowid of the last result handed to paho
    gate: bool = False  # after a reconnect: wait for paho's resends before sending anything new


def _never_raises(handler: _Handler) -> _Handler:
    """Wrap a paho callback: an exception is logged and counted, never handed back to paho's thread."""

    @functools.wraps(handler)
    def guarded(self: Publisher, *args: Any) -> None:
        try:
            handler(self, *args)
        except Exception:
            self.callback_errors += 1
            log.exception("MQTT callback %s failed (the network loop keeps running)", handler.__name__)

    return guarded  # type: ignore[return-value]


class Publisher:
    """Owns the paho client and the drain thread; thread-safe for the runtime's calls."""

    def __init__(
        self,
        cfg: MqttConfig,
        topics: StationTopics,
        client_id: str,
        outbox: Outbox,
        on_command: Callable[[bytes, bool, CommandChannel], None],
        on_rejected: Optional[Callable[[Row, str], None]] = None,
        on_connection: Optional[Callable[[bool, str], None]] = None,
        retained_on_connect: Optional[Callable[[], List[Tuple[str, str]]]] = None,
    ):
        self.cfg = cfg
        self.topics = topics
        self.outbox = outbox
        self.client_id = client_id
        self._on_command = on_command
        self._on_rejected = on_rejected
        self._on_connection = on_connection
        # (topic, payload) pairs published retained at every connect, e.g. Home Assistant discovery.
        self._retained_on_connect = retained_on_connect
        self._state = threading.Lock()
        self._connected = False
        self._reconnected = False
        self._refused: Dict[int, Tuple[str, float]] = {}
        self._events: Deque[str] = deque(maxlen=MAX_QUEUED_EVENTS)
        self._event_infos: List[mqtt.MQTTMessageInfo] = []  # sent, not yet acknowledged (drain thread)
        self.events_dropped = 0
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self.cmd_subscribed = threading.Event()  # the broker confirmed both command subscriptions
        self._drain_thread: Optional[threading.Thread] = None
        self.published = 0
        self.acknowledged = 0  # results the broker accepted (PUBACK without a failure code) in this run
        self.refused = 0  # results set aside as rejected in this run
        self.connects = 0
        self.callback_errors = 0  # exceptions the guards kept away from paho's network thread
        self._started = False
        self._network_lost: Optional[str] = None  # why the network thread is gone, once it is
        self._network_check = threading.Lock()  # the loop, the drain and flush all ask; one abandons
        # Results are bounded by our own window; the rest of paho's queue is for events while offline.
        self.client = make_client(
            cfg,
            client_id,
            will=Will(topics.status, Presence.OFFLINE.value.encode()),
            max_inflight=cfg.max_inflight + 10,
            max_queued=cfg.max_inflight + MAX_QUEUED_EVENTS + 10,
        )
        self.client.on_connect = self._handle_connect
        self.client.on_connect_fail = self._handle_connect_fail
        self.client.on_disconnect = self._handle_disconnect
        self.client.on_publish = self._handle_publish
        self.client.on_message = self._handle_message
        self.client.on_subscribe = self._handle_subscribe

    def start(self) -> None:
        """Connect in the background (retrying until the broker answers) and start draining the outbox."""
        connect(self.client, self.cfg)
        self._started = True
        self._drain_thread = threading.Thread(target=self._drain, name="outbox-drain", daemon=True)
        self._drain_thread.start()

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def network_failed(self) -> Optional[str]:
        """Why paho's network thread is gone while we did not stop it, or None while it runs.

        The first time it is seen dead, the socket is closed without a DISCONNECT so the broker
        publishes the last will (``offline``), and an explicit ``offline`` is written before that.
        """
        if self._network_lost is None and not self._stopping.is_set() and self._network_died():
            with self._network_check:
                if self._network_lost is None:
                    log.error(
                        "the MQTT network thread died: nothing is received or acknowledged any more; going offline"
                    )
                    with self._state:
                        self._connected = False
                    self.cmd_subscribed.clear()
                    self._abandon()
                    self._network_lost = "the MQTT network thread died"
        return self._network_lost

    def _network_died(self) -> bool:
        """paho's loop thread ended without ``loop_stop`` (which sets ``_thread_terminate``) or ``disconnect``.

        paho keeps the thread and the flag in private attributes (paho-mqtt 2.x); no public call tells
        a crashed loop from one that runs.
        """
        client = self.client
        return client._thread is None and not client._thread_terminate and self._started

    def _abandon(self) -> None:
        """Say ``offline`` and drop the connection without DISCONNECT (which would cancel the will)."""
        sock = self.client.socket()
        if sock is None:
            return
        try:
            # No loop thread any more: paho writes this from the calling thread, best effort.
            self.client.publish(self.topics.status, Presence.OFFLINE.value, qos=1, retain=True)
        except Exception as exc:
            log.warning("cannot publish offline on a dead connection: %s", exc)
        try:
            sock.close()
        except OSError:
            pass

    # -- paho callbacks (network thread: keep them short, never block) ---------------------------------------

    @_never_raises
    def _handle_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("broker %s:%d refused the connection: %s", self.cfg.host, self.cfg.port, reason_code)
            return
        client.publish(self.topics.status, Presence.ONLINE.value, qos=1, retain=True)
        for topic, payload in self._retained_on_connect() if self._retained_on_connect else ():
            client.publish(topic, payload, qos=1, retain=True)
        topics = (self.topics.cmd, self.topics.engineering)
        if self.cfg.protocol == "5":
            # Retain As Published: a retained command delivered live keeps its flag, so it is refused too
            # (by default the broker clears the flag on live deliveries; MQTT 3.1.1 always does).
            client.subscribe([(t, SubscribeOptions(qos=1, retainAsPublished=True)) for t in topics])
        else:
            client.subscribe([(t, 1) for t in topics])
        with self._state:
            self._connected = True
            self._reconnected = True
            self.connects += 1
        log.info("connected to %s:%d as %s", self.cfg.host, self.cfg.port, self.client_id)
        self._wake.set()
        if self._on_connection:
            self._on_connection(True, str(reason_code))

    @_never_raises
    def _handle_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        if any(code.is_failure for code in reason_codes):
            log.error(
                "the broker refused the command subscriptions %s, %s: %s",
                self.topics.cmd,
                self.topics.engineering,
                reason_codes,
            )
        else:
            self.cmd_subscribed.set()

    @_never_raises
    def _handle_connect_fail(self, client, userdata) -> None:
        log.warning("cannot reach broker %s:%d, retrying", self.cfg.host, self.cfg.port)

    @_never_raises
    def _handle_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.cmd_subscribed.clear()
        with self._state:
            was = self._connected
            self._connected = False
        if was:
            log.log(
                logging.INFO if self._stopping.is_set() else logging.WARNING,
                "disconnected from broker: %s",
                reason_code,
            )
            if self._on_connection:
                self._on_connection(False, str(reason_code))

    @_never_raises
    def _handle_publish(self, client, userdata, mid, reason_code, properties) -> None:
        if reason_code.is_failure:
            with self._state:
                self._refused[mid] = (str(reason_code), time.monotonic())
        self._wake.set()

    @_never_raises
    def _handle_message(self, client, userdata, message) -> None:
        if message.topic == self.topics.cmd:
            self._on_command(message.payload, bool(message.retain), CommandChannel.OPERATIONAL)
        elif message.topic == self.topics.engineering:
            self._on_command(message.payload, bool(message.retain), CommandChannel.ENGINEERING)

    # -- events and stats --------------------------------------------------------------------------------------

    def publish_event(self, event: Event) -> None:
        """Queue an event (QoS 1); sent at once when connected, else when the broker is back."""
        with self._state:
            if len(self._events) == self._events.maxlen:
                self.events_dropped += 1
                log.warning("event queue full while the broker is away: oldest event dropped")
            self._events.append(event.model_dump_json())
        self._wake.set()

    def publish_stats(self, stats: Stats) -> None:
        """QoS 0, retained: a dashboard opening later sees the latest figures at once."""
        if self._connected:
            self.client.publish(self.topics.stats, stats.model_dump_json(), qos=0, retain=True)

    def notify(self) -> None:
        """Wake the drain thread (called after a result was added to the outbox)."""
        self._wake.set()

    # -- the drain ---------------------------------------------------------------------------------------------

    def _drain(self) -> None:
        inflight: OrderedDict[int, Tuple[Row, mqtt.MQTTMessageInfo]] = OrderedDict()
        state = _DrainState()
        while not self._stopping.is_set():
            self._wake.wait(0.2 if inflight else 1.0)
            self._wake.clear()
            if self.network_failed:
                return
            try:
                self._drain_once(inflight, state)
            except OutboxError as exc:  # the station sees outbox.error and stops; this thread must not die
                log.error("outbox drain: %s", exc)
                self._stopping.wait(0.5)

    def _drain_once(self, inflight: OrderedDict[int, Tuple[Row, mqtt.MQTTMessageInfo]], state: _DrainState) -> None:
        """Harvest acknowledgements, send events, hand paho the results written since ``state.cursor``, then
        delete the acknowledged rows (after the publish: a new result never waits for that transaction)."""
        acked = self._harvest(inflight)
        try:
            self._send_results(inflight, state)
        finally:
            self.acknowledged += len(acked)
            # One transaction for every PUBACK harvested at this wake, made durable by the outbox's next
            # group sync; if it fails, the rows stay queued and go out again at the next start.
            self.outbox.ack(acked)

    def _send_results(self, inflight: OrderedDict[int, Tuple[Row, mqtt.MQTTMessageInfo]], state: _DrainState) -> None:
        """Connected only: queued events, then new results up to ``max_inflight`` (after paho's resends)."""
        with self._state:
            connected = self._connected
            if self._reconnected:
                self._reconnected = False
                state.gate = bool(inflight)
        if state.gate and not inflight:
            state.gate = False
        if not connected:
            return
        self._send_events()
        room = self.cfg.max_inflight - len(inflight)
        if state.gate or room <= 0:
            return
        for row in self.outbox.pending(after=state.cursor, limit=room):
            try:
                info = self.client.publish(row.topic, row.payload, qos=RESULT_QOS)
            except ValueError as exc:  # an invalid topic stored by an older configuration
                self._reject(row, f"cannot publish: {exc}")
                state.cursor = row.rowid
                continue
            if info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
                break
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                # Lost the connection between the check and the call: paho keeps the message and
                # resends it, but its info never reports it; send it again from the outbox later
                # (a possible duplicate, which the result id absorbs).
                break
            inflight[row.rowid] = (row, info)
            state.cursor = row.rowid
            self.published += 1

    def _send_events(self) -> None:
        """Hand queued events to paho (connected only, so every info reports its acknowledgement)."""
        self._event_infos = [info for info in self._event_infos if not info.is_published()]
        while True:
            with self._state:
                if not self._events:
                    return
                payload = self._events.popleft()
            info = self.client.publish(self.topics.event, payload, qos=EVENT_QOS)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                if info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
                    with self._state:
                        self._events.appendleft(payload)
                return  # NO_CONN: paho keeps it and sends it after the reconnect
            self._event_infos.append(info)

    def _pending_events(self) -> bool:
        with self._state:
            if self._events:
                return True
        return any(not info.is_published() for info in list(self._event_infos))

    def _harvest(self, inflight: OrderedDict[int, Tuple[Row, mqtt.MQTTMessageInfo]]) -> List[int]:
        """Take the results the broker answered out of ``inflight``; returns the rowids it accepted."""
        done = [rowid for rowid, (_, info) in inflight.items() if info.is_published()]
        acked: List[int] = []
        if not done:
            return acked
        now = time.monotonic()
        with self._state:
            refused = {rowid: self._refused.pop(inflight[rowid][1].mid, None) for rowid in done}
            for mid in [m for m, (_, t) in self._refused.items() if now - t > 60.0]:
                del self._refused[mid]
        for rowid in done:
            row, _ = inflight.pop(rowid)
            reason = refused[rowid]
            if reason is None:
                acked.append(rowid)
            else:
                self._reject(row, f"broker refused the result: {reason[0]}")
        return acked

    def _reject(self, row: Row, reason: str) -> None:
        log.error("result %s (seq %d) rejected: %s", row.result_id, row.seq, reason)
        self.outbox.reject(row.rowid, reason)
        self.refused += 1
        if self._on_rejected:
            self._on_rejected(row, reason)

    # -- shutdown ----------------------------------------------------------------------------------------------

    def flush(self, timeout: float) -> bool:
        """Wait until every result is acknowledged (True) or ``timeout`` passes (False); queued events
        are waited for within the same time."""
        deadline = time.monotonic() + timeout
        self._wake.set()
        while self.outbox.depth() > 0 or self._pending_events():
            if time.monotonic() >= deadline or self.network_failed:
                return self.outbox.depth() == 0
            time.sleep(0.05)
            self._wake.set()
        return True

    def stop(self, timeout: float = 3.0) -> None:
        """Publish ``offline`` (retained), disconnect cleanly, stop the threads."""
        if self.network_failed:
            self._stopping.set()
            return  # the socket is closed and the broker publishes the will
        self._stopping.set()
        self._wake.set()
        if self._drain_thread is not None:
            self._drain_thread.join(timeout)
        if self._connected:
            info = self.client.publish(self.topics.status, Presence.OFFLINE.value, qos=1, retain=True)
            deadline = time.monotonic() + timeout
            while (
                self._connected
                and info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS
                and not info.is_published()
                and time.monotonic() < deadline
            ):
                time.sleep(0.02)
        self.client.disconnect()
        self.client.loop_stop()
