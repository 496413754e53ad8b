"""Topics and payloads the line controller publishes, next to the stations' (:mod:`inspector.messages`).

Topics (``<prefix>/<line>/<controller_id>/...``, ``controller_id`` defaults to ``controller``)::

    .../status     QoS 1, retained       "online" / "offline" (last will)
    .../state      QoS 1, retained       JSON :class:`ControllerState`, periodic and on every change of state
    .../decision   QoS 1, not retained   JSON :class:`Decision`, one per part: accept or reject, and why

A controller is told apart from a station by its ``state`` leaf (stations publish ``stats``).

Example:
    >>> ControllerTopics("inspector", "line1", "controller").decision
    'inspector/line1/controller/decision'
"""
from __future__ import annotations

from typing import Dict, List, Optional

from pydantic import BaseModel, ConfigDict, Field

from inspector.messages import StationTopics

ACCEPT = "accept"
REJECT = "reject"
RUNNING = "running"
STOPPED = "stopped"


class ControllerTopics(StationTopics):
    """Same layout as a station's topics, plus the controller's own leaves."""

    @property
    def state(self) -> str:
        return self._topic("state")

    @property
    def decision(self) -> str:
        return self._topic("decision")


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    def to_json(self) -> str:
        return self.model_dump_json()


class Decision(_Message):
    """What the gate did with one part. ``reason``: pass, fail, review, timeout, station_offline."""

    ts: float = Field(description="Decision time, seconds since the epoch")
    part_id: Optional[str] = Field(None, description="Part id, None for results of continuous mode")
    action: str = Field(description="accept or reject")
    reason: str
    verdicts: Dict[str, str] = Field(default_factory=dict, description="Verdict per station that reported")
    result_ids: List[str] = Field(default_factory=list)
    missing: List[str] = Field(default_factory=list, description="Stations whose result did not come in time")
    wait_ms: Optional[float] = Field(None, description="Trigger to decision, for triggered parts")


class ControllerState(_Message):
    """Counts and state of the line, retained so a dashboard shows them as soon as it subscribes."""

    ts: float
    uptime_s: float
    state: str = Field(description="running or stopped")
    stop_reason: Optional[str] = None
    stations: Dict[str, str] = Field(default_factory=dict, description="online / offline / unknown per station")
    parts: int = Field(0, description="Parts decided")
    accepted: int = 0
    rejected: int = 0
    reject_reasons: Dict[str, int] = Field(default_factory=dict)
    yield_pct: Optional[float] = Field(None, description="accepted / parts x 100")
    results: int = Field(0, description="Results received, duplicates excluded")
    duplicates: int = Field(0, description="Results dropped because their id was already seen")
    late: int = Field(0, description="Results for parts already decided (e.g. after their deadline)")
    pending: int = Field(0, description="Triggered parts waiting for results")
    triggers_sent: int = 0
