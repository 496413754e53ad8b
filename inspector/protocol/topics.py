"""MQTT topic layout of stations and line controllers.

Topics (``prefix`` defaults to ``inspector``)::

    <prefix>/<line>/<station>/result   QoS 1, not retained   one JSON Result per inspected part
    <prefix>/<line>/<station>/status   QoS 1, retained       "online" / "offline" (last will)
    <prefix>/<line>/<station>/stats    QoS 0, retained       JSON Stats, periodic
    <prefix>/<line>/<station>/event    QoS 1, not retained   JSON Event (camera lost, reload, errors)
    <prefix>/<line>/<station>/cmd          QoS 1, subscribed  JSON operational command (trigger, pause, ...)
    <prefix>/<line>/<station>/engineering  QoS 1, subscribed  JSON engineering command (set_threshold, reload)

(commands: inspector.protocol.commands; the broker ACL gives ``engineering`` to the engineer account only)

A line controller (``<prefix>/<line>/<controller_id>/...``, ``controller_id`` defaults to ``controller``)::

    .../status     QoS 1, retained       "online" / "offline" (last will)
    .../state      QoS 1, retained       JSON ControllerState, periodic and on every change of state
    .../decision   QoS 1, not retained   JSON Decision, one per part: accept or reject, and why
    .../event      QoS 1, not retained   JSON Event (sender_mismatch: a result naming another station or line)

A controller is told apart from a station by its ``state`` leaf (stations publish ``stats``).

Example:
    >>> StationTopics("inspector", "line1", "cam1").result
    'inspector/line1/cam1/result'
    >>> ControllerTopics("inspector", "line1", "controller").decision
    'inspector/line1/controller/decision'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple


@dataclass(frozen=True)
class StationTopics:
    prefix: str
    line: str
    station: str

    def _topic(self, leaf: str) -> str:
        return f"{self.prefix}/{self.line}/{self.station}/{leaf}"

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.line}/{self.station}"

    @property
    def result(self) -> str:
        return self._topic("result")

    @property
    def status(self) -> str:
        return self._topic("status")

    @property
    def stats(self) -> str:
        return self._topic("stats")

    @property
    def event(self) -> str:
        return self._topic("event")

    @property
    def cmd(self) -> str:
        return self._topic("cmd")

    @property
    def engineering(self) -> str:
        return self._topic("engineering")

    @staticmethod
    def parse(topic: str) -> Optional[Tuple[str, ...]]:
        """``prefix/line/station/leaf`` -> (prefix, line, station, leaf), or None for other shapes."""
        parts = topic.split("/")
        return tuple(parts) if len(parts) == 4 else None


class ControllerTopics(StationTopics):
    """Same layout as a station's topics, plus the controller's own leaves."""

    @property
    def state(self) -> str:
        return self._topic("state")

    @property
    def decision(self) -> str:
        return self._topic("decision")
