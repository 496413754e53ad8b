"""JSON payloads of the station and controller topics (see :mod:`inspector.protocol.topics`).

Payloads are plain JSON so that Node-RED, Telegraf, Home Assistant and Ignition read them as they are;
enum fields serialize to the same strings they always carried.
"""

from __future__ import annotations

from typing import Dict, List, Optional

from pydantic import BaseModel, ConfigDict, Field

from inspector.protocol.enums import Action, CameraState, EventType, LineState, Verdict

RESULT_SCHEMA = 1


class _Message(BaseModel):
    # Consumers must tolerate fields added by later versions, so parsing ignores unknown keys.
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True)


class ModelRef(_Message):
    name: str
    version: str
    sha256: str = Field(description="First 12 hex digits of model.tflite's SHA-256")


class Where(_Message):
    """Where the defect evidence of a frame is, in frame pixels, from the model's class activation map.

    The map has one cell per 32 model-input pixels, so ``box`` is a coarse region (whole cells), not an
    outline; see :mod:`inspector.localization`.
    """

    label: str = Field(description="Defect class the map is for: the most probable defect class")
    x: int = Field(description="Centre of the peak cell, frame pixels")
    y: int = Field(description="Centre of the peak cell, frame pixels")
    box: List[int] = Field(
        description="x, y, width, height in frame pixels: the cells joined to the peak whose evidence is at "
        "least halfway from the map's median to the peak"
    )
    strength: float = Field(
        description="Defect evidence of the peak cell in logits: the log-odds of label against the good class "
        "for a part that looked like that cell everywhere (the cells' mean is the frame's log-odds)"
    )


class Result(_Message):
    """One inspected part. ``id`` is unique; consumers drop repeats (delivery is at-least-once)."""

    schema_: int = Field(RESULT_SCHEMA, alias="schema")
    id: str = Field(description="Unique result id (UUID4 hex)")
    seq: int = Field(description="Per-station sequence number, increasing by one per result")
    line: str
    station: str
    part_id: Optional[str] = Field(None, description="Part id from the trigger, None in continuous mode")
    verdict: Verdict
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
    source_key: Optional[str] = Field(
        None,
        description="Stable identity of the source file: name|size|mtime_ns, plus #index for a video frame; "
        "the same for a re-inspection of the same file (unlike id). None for cameras",
    )
    gate: Optional[List[str]] = Field(
        None,
        description="Why the plausibility gate stopped this frame (then the verdict is never pass); "
        "None when the frame looked like a part",
    )
    appearance: Optional[float] = Field(
        None, description="Appearance distance to the calibration images / the bundle's threshold (gate)"
    )
    where: Optional[Where] = Field(
        None,
        description="Where the defect is (failed and review frames of a bundle with a class map); None for "
        "passes, older bundles, flip averaging and tiling",
    )

    def names_other_sender(self, line: str, station: str) -> bool:
        """True when the payload claims another line or station than the topic it came on (``line``, ``station``).

        The broker's ACL checks the topic, not the payload, so only the topic says who sent a result; a
        result that names someone else is an alarm, never a decision input.
        """
        return (self.line, self.station) != (line, station)


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
    gated: int = Field(0, description="Frames the plausibility gate kept from passing")
    gate_reasons: Dict[str, int] = Field(default_factory=dict, description="Gate findings by code")
    yield_pct: Optional[float] = Field(None, description="passed / inspected x 100")
    outbox_depth: int = 0
    camera_state: CameraState = CameraState.UNKNOWN
    model_version: str = ""
    paused: bool = False


class Event(_Message):
    ts: float
    type: EventType
    message: str
    details: Dict[str, object] = Field(default_factory=dict)


class Decision(_Message):
    """What the gate did with one part. ``reason`` is a :class:`DecisionReason` value, kept a plain string on the
    wire so that a consumer parses decisions of a later version that adds a reason."""

    ts: float = Field(description="Decision time, seconds since the epoch")
    part_id: Optional[str] = Field(None, description="Part id, None for results of continuous mode")
    action: Action
    reason: str
    verdicts: Dict[str, Verdict] = Field(default_factory=dict, description="Verdict per station that reported")
    result_ids: List[str] = Field(default_factory=list)
    missing: List[str] = Field(default_factory=list, description="Stations whose result did not come in time")
    wait_ms: Optional[float] = Field(None, description="Trigger to decision, for triggered parts")


class ControllerState(_Message):
    """Counts and state of the line, retained so a dashboard shows them as soon as it subscribes."""

    ts: float
    uptime_s: float
    state: LineState
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
    sender_mismatches: int = Field(
        0,
        description="Results whose payload names another station or line than "
        "their topic: dropped with a sender_mismatch event",
    )
    pending: int = Field(0, description="Triggered parts waiting for results")
    triggers_sent: int = 0
