"""MQTT topics and payloads: the contract between a station, the line controller and dashboards.

Topics (``prefix`` defaults to ``inspector``)::

    <prefix>/<line>/<station>/result   QoS 1, not retained   one JSON :class:`Result` per inspected part
    <prefix>/<line>/<station>/status   QoS 1, retained       "online" / "offline" (last will)
    <prefix>/<line>/<station>/stats    QoS 0, retained       JSON :class:`Stats`, periodic
    <prefix>/<line>/<station>/event    QoS 1, not retained   JSON :class:`Event` (camera lost, reload, errors)
    <prefix>/<line>/<station>/cmd      QoS 1, subscribed     JSON command (see :mod:`edge.commands`)

Payloads are plain JSON so that Node-RED, Telegraf, Home Assistant and Ignition read them as they are.

Example:
    >>> StationTopics("inspector", "line1", "cam1").result
    'inspector/line1/cam1/result'
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

from pydantic import BaseModel, ConfigDict, Field

RESULT_SCHEMA = 1
ONLINE = "online"
OFFLINE = "offline"


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

    @staticmethod
    def parse(topic: str) -> Optional[tuple]:
        """``prefix/line/station/leaf`` -> (prefix, line, station, leaf), or None for other shapes."""
        parts = topic.split("/")
        return tuple(parts) if len(parts) == 4 else None


class _Message(BaseModel):
    # Consumers must tolerate fields added by later versions, so parsing ignores unknown keys.
    model_config = ConfigDict(extra="ignore")


class ModelRef(_Message):
    name: str
    version: str
    sha256: str = Field(description="First 12 hex digits of model.tflite's SHA-256")


class Result(_Message):
    """One inspected part. ``id`` is unique; consumers drop repeats (delivery is at-least-once)."""

    schema_: int = Field(RESULT_SCHEMA, alias="schema")
    id: str = Field(description="Unique result id (UUID4 hex)")
    seq: int = Field(description="Per-station sequence number, increasing by one per result")
    line: str
    station: str
    part_id: Optional[str] = Field(None, description="Part id from the trigger, None in continuous mode")
    verdict: str = Field(description="pass, fail or review")
    defect_score: float = Field(description="1 - p(good class)")
    threshold: float
    top_class: str
    top_score: float
    scores: Dict[str, float]
    model: ModelRef
    captured_at: str = Field(description="Capture time, ISO 8601 UTC")
    capture_ts: float = Field(description="Capture time, seconds since the epoch")
    inference_ms: float
    preprocess_ms: float = 0.0
    image: Optional[str] = Field(None, description="Archived image path on the station, if saved")
    frame: Optional[str] = Field(None, description="Source frame reference: file name (folder) or file#index (video)")

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True)


class Stats(_Message):
    ts: float
    uptime_s: float
    fps: float = Field(description="Frames inspected per second over the last interval")
    frames_captured: int
    frames_inspected: int
    frames_dropped: int = Field(description="Frames replaced by a newer one before inspection")
    inference_ms_p50: Optional[float] = None
    inference_ms_p95: Optional[float] = None
    passed: int = 0
    failed: int = 0
    review: int = 0
    yield_pct: Optional[float] = Field(None, description="passed / inspected x 100")
    outbox_depth: int = 0
    camera_state: str = "unknown"
    model_version: str = ""
    paused: bool = False


class Event(_Message):
    ts: float
    type: str = Field(description="camera_lost, camera_restored, camera_check, model_reloaded, "
                                  "outbox_full, command_rejected, error, ...")
    message: str
    details: Dict[str, object] = Field(default_factory=dict)
