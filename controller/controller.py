"""The reference line controller: station results in, reject-gate commands out, fail-safe by default.

It keeps a persistent MQTT session (QoS 1, clean start off, a session expiry), so results published while it
restarts are queued by the broker and handled when it is back. Decisions come from
:class:`controller.tracker.PartTracker`; this module does the I/O around it: subscriptions, the actuator,
the controller's own ``status`` / ``state`` / ``decision`` topics, the offline policy, and triggers (its
own generator for tests and the demo, or part announcements forwarded from a PLC topic).

Duplicate ids are remembered in memory only: after a crash, a result the broker redelivers because its
acknowledgement was lost may be decided a second time (at worst a second reject command for that part).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from typing import Callable, Dict, List, Optional

import paho.mqtt.client as mqtt

from controller.actuators import Actuator, build_actuator
from controller.config import LineConfig
from controller.tracker import Outcome, PartTracker
from inspector.mqtt import BrokerClient, Will
from inspector.protocol.commands import TriggerCommand
from inspector.protocol.enums import Action, DecisionReason, EventType, LineState, Presence
from inspector.protocol.payloads import ControllerState, Decision, Event, Result
from inspector.protocol.topics import ControllerTopics, StationTopics
from inspector.sdnotify import Notifier

log = logging.getLogger(__name__)

UNKNOWN = "unknown"


def trigger_command(part_id: str) -> str:
    """The station command that inspects one part, built (and so validated) by :mod:`inspector.protocol.commands`."""
    return TriggerCommand(cmd="trigger", part_id=part_id).model_dump_json(exclude_none=True)


def parse_part_announcement(payload: bytes) -> str:
    """A PLC's part announcement: ``{"part_id": "P1"}`` or the bare id ``P1``."""
    text = payload.decode("utf-8").strip()
    if text.startswith("{"):
        part_id = json.loads(text).get("part_id")
        if not isinstance(part_id, str) or not part_id:
            raise ValueError(f"part announcement without a part_id string: {text[:80]}")
        return part_id
    if not text:
        raise ValueError("empty part announcement")
    return text


class LineController:
    """Run with :meth:`start`, then :meth:`run` (or call :meth:`tick` from your own loop), then :meth:`stop`."""

    def __init__(
        self,
        cfg: LineConfig,
        actuator: Optional[Actuator] = None,
        notifier: Optional[Notifier] = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.cfg = cfg
        self.clock = clock
        self.topics = ControllerTopics(cfg.prefix, cfg.line, cfg.controller_id)
        self.tracker = PartTracker(cfg.result_deadline_s, cfg.review_action, cfg.dedup_size)
        self.client = BrokerClient(
            cfg.mqtt,
            cfg.mqtt_client_id,
            persistent=True,
            session_expiry_s=cfg.session_expiry_s,
            will=Will(self.topics.status, Presence.OFFLINE.value.encode()),
        )
        self.client.on_connect(self._subscribe)
        self.client.client.on_message = self._on_message
        self.actuator = actuator or build_actuator(cfg.actuator, self._publish)
        self.notifier = notifier or Notifier()
        self.stations: Dict[str, str] = {name: UNKNOWN for name in cfg.stations}
        self.state = LineState.RUNNING
        self.stop_reason: Optional[str] = None
        self.counts: Counter = Counter()
        self.reject_reasons: Counter = Counter()
        self.decisions: List[Decision] = []  # the most recent ones, for the CLI summary and tests
        self._listeners: List[Callable[[Decision], None]] = []
        self._lock = threading.RLock()
        self._started_at = time.time()
        self._next_trigger: Optional[float] = None
        self._next_number = cfg.trigger.first_number
        self._next_state = 0.0
        if cfg.offline_policy == "stop" and cfg.stations:
            self.state, self.stop_reason = LineState.STOPPED, f"stations not online: {', '.join(sorted(cfg.stations))}"
        fan_out = len(cfg.triggered_stations) if cfg.trigger.rate_hz > 0 or cfg.trigger.input_topic else 0
        if fan_out > cfg.mqtt.max_inflight:
            log.warning(
                "each part triggers %d stations but mqtt.max_inflight is %d: the other triggers of a part wait for "
                "the broker to acknowledge the first ones; set mqtt.max_inflight to %d or more",
                fan_out,
                cfg.mqtt.max_inflight,
                fan_out,
            )

    # -- lifecycle -------------------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        if not self.client.start(timeout):
            self.client.stop()
            raise RuntimeError(f"cannot connect to the broker at {self.cfg.mqtt.host}:{self.cfg.mqtt.port}")
        # Up means listening: a result published before the broker acknowledged the subscriptions would not
        # reach this controller (its part would then be decided by the result timeout).
        if not self.client.subscribed.wait(timeout):
            self.client.stop()
            raise RuntimeError(
                f"the broker at {self.cfg.mqtt.host}:{self.cfg.mqtt.port} did not acknowledge the subscriptions"
            )
        with self._lock:  # tell the gate the state we start in: a stopped line stays stopped
            self.actuator.set_line(self.state == LineState.RUNNING, self.stop_reason or "controller started")
        self.notifier.ready(f"line {self.cfg.line}: {self.state.value}")
        log.info("controller for line %s up; gate: %s", self.cfg.line, self.actuator.describe())

    def stop(self) -> None:
        self.notifier.stopping()
        with self._lock:
            self._publish_state()
        self.client.stop(final=(self.topics.status, Presence.OFFLINE.value, True))
        self.actuator.close()

    def add_listener(self, callback: Callable[[Decision], None]) -> None:
        """``callback(decision)`` for every decision, called from the MQTT thread or the caller of tick()."""
        self._listeners.append(callback)

    def run(
        self,
        duration: Optional[float] = None,
        until_done: bool = False,
        stop_event: Optional[threading.Event] = None,
        period: float = 0.02,
    ) -> None:
        """Tick until ``duration`` passes, ``stop_event`` is set, or (``until_done``) all triggers are decided."""
        end = None if duration is None else self.clock() + duration
        stop_event = stop_event or threading.Event()
        while not stop_event.is_set():
            self.tick()
            if end is not None and self.clock() >= end:
                break
            if until_done and self.triggers_done and self.tracker.pending == 0:
                break
            stop_event.wait(period)

    @property
    def triggers_done(self) -> bool:
        trig = self.cfg.trigger
        return (
            trig.rate_hz > 0
            and trig.count > 0
            and self.counts["triggers_sent"] + self.counts["triggers_refused"] >= trig.count
        )

    # -- periodic work ---------------------------------------------------------------------------------

    def tick(self, now: Optional[float] = None) -> None:
        """Expire deadlines, send due triggers, publish the state when due, ping the watchdog."""
        now = self.clock() if now is None else now
        with self._lock:
            for decision in self.tracker.expire(now):
                self._apply(decision)
            self._generate_triggers(now)
            if now >= self._next_state:
                self._publish_state()
                self._next_state = now + self.cfg.state_interval_s
        self.notifier.watchdog()

    def _generate_triggers(self, now: float) -> None:
        trig = self.cfg.trigger
        if trig.rate_hz <= 0:
            return
        if self._next_trigger is None or self.state != LineState.RUNNING:
            self._next_trigger = now  # start (or resume after a stop) without a burst of overdue triggers
            if self.state != LineState.RUNNING:
                return
        while now >= self._next_trigger and not self.triggers_done:
            part_id = f"{trig.part_prefix}{self._next_number:06d}"
            self._next_number += 1
            self._next_trigger += 1.0 / trig.rate_hz
            self.trigger(part_id, now)

    def trigger(self, part_id: str, now: Optional[float] = None) -> Optional[Decision]:
        """Track ``part_id`` and send the trigger to its stations, or reject it at once when that is not possible
        (line stopped, a station offline, an id already known); returns that reject. Never silent: every
        announced part ends in a decision."""
        now = self.clock() if now is None else now
        stations = self.cfg.triggered_stations
        with self._lock:
            if self.state != LineState.RUNNING:
                decisions = [self.tracker.refuse(part_id, DecisionReason.LINE_STOPPED, missing=stations)]
            else:
                decisions = self.tracker.expect(part_id, stations, now)
            for decision in decisions:
                self._apply(decision)
            if decisions:
                self.counts["triggers_refused"] += 1
                if decisions[-1].reason == DecisionReason.DUPLICATE_PART_ID:
                    log.warning("part id %s announced again: rejected (%s)", part_id, decisions[-1].reason)
                return decisions[-1]
            self.counts["triggers_sent"] += 1
        for station in stations:
            self._publish(StationTopics(self.cfg.prefix, self.cfg.line, station).cmd, trigger_command(part_id), 1)
        return None

    # -- MQTT ------------------------------------------------------------------------------------------

    def _publish(self, topic: str, payload: str, qos: int = 1, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=qos, retain=retain)

    def _subscribe(self, session_present: bool) -> None:
        base = f"{self.cfg.prefix}/{self.cfg.line}/+"
        subscriptions = [(f"{base}/result", 1), (f"{base}/status", 1)]
        if self.cfg.trigger.input_topic:
            subscriptions.append((self.cfg.trigger.input_topic, 1))
        self.client.subscribe(subscriptions)
        self._publish(self.topics.status, Presence.ONLINE.value, retain=True)

    def _on_message(self, client: mqtt.Client, userdata, msg: mqtt.MQTTMessage) -> None:
        try:
            self._handle(msg.topic, msg.payload)
        except Exception:  # one bad message must not kill the MQTT thread and with it the whole line
            log.exception("cannot handle message on %s: %r", msg.topic, msg.payload[:200])
            self.counts["bad_messages"] += 1

    def _handle(self, topic: str, payload: bytes) -> None:
        if topic == self.cfg.trigger.input_topic:
            self.trigger(parse_part_announcement(payload))
            return
        parsed = StationTopics.parse(topic)
        if parsed is None:
            return
        prefix, line, station, leaf = parsed
        if (prefix, line) != (self.cfg.prefix, self.cfg.line) or station == self.cfg.controller_id:
            return  # not this line's station (a broad subscription, or a misrouted message)
        if leaf == "result":
            self._on_result(topic, station, Result.model_validate_json(payload))
        elif leaf == "status":
            self._on_status(station, payload.decode("utf-8", "replace").strip())

    def _on_result(self, topic: str, station: str, result: Result) -> None:
        if result.names_other_sender(self.cfg.line, station):
            self._sender_mismatch(topic, station, result)
            return
        with self._lock:
            outcome, decision = self.tracker.on_result(result, self.clock())
            self.counts["results" if outcome != Outcome.DUPLICATE else "duplicates"] += 1
            if outcome == Outcome.LATE:
                self.counts["late"] += 1
                log.warning(
                    "late result %s for part %s from %s (already decided)", result.id, result.part_id, result.station
                )
            elif outcome == Outcome.DUPLICATE:
                log.info("dropped duplicate result %s", result.id)
            if decision is not None:
                self._apply(decision)

    def _sender_mismatch(self, topic: str, station: str, result: Result) -> None:
        """A result that names another sender than its topic: an alarm, never a decision input."""
        details = {
            "topic": topic,
            "topic_station": station,
            "payload_station": result.station,
            "payload_line": result.line,
            "result_id": result.id,
            "part_id": result.part_id,
        }
        log.warning(
            "result %s on %s names station %r of line %r: dropped, not a decision input",
            result.id,
            topic,
            result.station,
            result.line,
        )
        with self._lock:
            self.counts["sender_mismatches"] += 1
        event = Event(
            ts=time.time(),
            type=EventType.SENDER_MISMATCH,
            details=details,
            message=f"{station} published a result naming station {result.station} of line {result.line}",
        )
        self._publish(self.topics.event, event.to_json())

    def _on_status(self, station: str, status: str) -> None:
        with self._lock:
            if not self.cfg.stations or station in self.cfg.stations:
                self.stations[station] = status if status in (Presence.ONLINE, Presence.OFFLINE) else UNKNOWN
            else:
                return
            for decision in self.tracker.set_online(station, status != Presence.OFFLINE, self.clock()):
                self._apply(decision)
            self._update_line_state()
            self._publish_state()

    # -- decisions and state ---------------------------------------------------------------------------

    def _update_line_state(self) -> None:
        """Offline policy ``stop``: the line runs only while every watched station is online."""
        if self.cfg.offline_policy != "stop":
            return
        not_online = sorted(s for s, status in self.stations.items() if status != Presence.ONLINE)
        new_state = LineState.STOPPED if not_online else LineState.RUNNING
        reason = f"stations not online: {', '.join(not_online)}" if not_online else None
        if new_state == self.state and reason == self.stop_reason:
            return
        changed = new_state != self.state
        self.state, self.stop_reason = new_state, reason
        if changed:
            log.warning("line %s: %s%s", self.cfg.line, new_state.value, f" ({reason})" if reason else "")
            if new_state == LineState.STOPPED:
                for decision in self.tracker.reject_all_pending(DecisionReason.LINE_STOPPED, self.clock()):
                    self._apply(decision)
            self.actuator.set_line(new_state == LineState.RUNNING, reason or "all stations online")
            self.notifier.status(f"line {self.cfg.line}: {new_state.value}")

    def _apply(self, decision: Decision) -> None:
        self.counts["parts"] += 1
        if decision.action == Action.ACCEPT:
            self.counts["accepted"] += 1
        else:
            self.counts["rejected"] += 1
            self.reject_reasons[decision.reason] += 1
            try:
                self.actuator.reject(decision)
            except Exception:  # the decision is still published; the PLC sees it there
                log.exception("actuator failed to reject part %s", decision.part_id)
                self.counts["actuator_errors"] += 1
        self.decisions = (self.decisions + [decision])[-1000:]
        self._publish(self.topics.decision, decision.to_json())
        for listener in self._listeners:
            listener(decision)

    def snapshot(self) -> ControllerState:
        with self._lock:
            parts = self.counts["parts"]
            return ControllerState(
                ts=time.time(),
                uptime_s=round(time.time() - self._started_at, 1),
                state=self.state,
                stop_reason=self.stop_reason,
                stations=dict(self.stations),
                parts=parts,
                accepted=self.counts["accepted"],
                rejected=self.counts["rejected"],
                reject_reasons=dict(self.reject_reasons),
                yield_pct=round(100.0 * self.counts["accepted"] / parts, 2) if parts else None,
                results=self.counts["results"],
                duplicates=self.counts["duplicates"],
                late=self.counts["late"],
                sender_mismatches=self.counts["sender_mismatches"],
                pending=self.tracker.pending,
                triggers_sent=self.counts["triggers_sent"],
            )

    def _publish_state(self) -> None:
        self._publish(self.topics.state, self.snapshot().to_json(), retain=True)
