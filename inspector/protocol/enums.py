"""Domain words carried on the wire. Each is a ``str`` enum, so its JSON is the plain string it always was.

Example:
    >>> EventType.CAMERA_LOST.severity
    <Severity.WARNING: 'warning'>
    >>> Verdict("fail") is Verdict.FAIL
    True
"""

from __future__ import annotations

from enum import Enum


class Verdict(str, Enum):
    """What a station decided about one part."""

    PASS = "pass"
    FAIL = "fail"
    REVIEW = "review"


class CameraState(str, Enum):
    """State of a station's frame source; UNKNOWN before the capture starts."""

    STARTING = "starting"
    RUNNING = "running"
    LOST = "lost"
    ENDED = "ended"
    FAILED = "failed"
    UNKNOWN = "unknown"

    @property
    def inspecting(self) -> bool:
        """False for the states in which no part can be inspected."""
        return self not in (CameraState.LOST, CameraState.FAILED)


class Severity(str, Enum):
    INFO = "info"
    WARNING = "warning"


class EventType(str, Enum):
    """Kinds of station events; the severity sets the log level the station uses for it."""

    STARTED = "started"
    STOPPED = "stopped"
    ERROR = "error"
    CAMERA_LOST = "camera_lost"
    CAMERA_RESTORED = "camera_restored"
    CAMERA_CHECK = "camera_check"
    CAMERA_OK = "camera_ok"
    TRIGGER_MISSED = "trigger_missed"
    OUTBOX_FULL = "outbox_full"
    COMMAND_ACCEPTED = "command_accepted"
    COMMAND_REJECTED = "command_rejected"
    SNAPSHOT = "snapshot"
    MODEL_RELOADED = "model_reloaded"
    MODEL_RELOAD_FAILED = "model_reload_failed"
    THRESHOLD_CHANGED = "threshold_changed"  # an engineering change of the decision: before and after
    SENDER_MISMATCH = "sender_mismatch"  # a result whose payload names another station or line than its topic

    @property
    def severity(self) -> Severity:
        return _WARNINGS.get(self, Severity.INFO)


_WARNINGS = {
    t: Severity.WARNING
    for t in (
        EventType.CAMERA_LOST,
        EventType.COMMAND_REJECTED,
        EventType.OUTBOX_FULL,
        EventType.MODEL_RELOAD_FAILED,
        EventType.THRESHOLD_CHANGED,
        EventType.ERROR,
        EventType.TRIGGER_MISSED,
        EventType.CAMERA_CHECK,
        EventType.SENDER_MISMATCH,
    )
}


class Action(str, Enum):
    """What the line controller's gate does with a part."""

    ACCEPT = "accept"
    REJECT = "reject"


class DecisionReason(str, Enum):
    """Why the gate accepted or rejected a part: the ``reason`` of a Decision and the keys of ``reject_reasons``."""

    PASS = "pass"
    FAIL = "fail"
    REVIEW = "review"
    TIMEOUT = "timeout"  # a station's result did not come before the deadline
    STATION_OFFLINE = "station_offline"
    LINE_STOPPED = "line_stopped"
    DUPLICATE_PART_ID = "duplicate_part_id"  # the part id was announced again: its results cannot be told apart


class LineState(str, Enum):
    RUNNING = "running"
    STOPPED = "stopped"


class Presence(str, Enum):
    """Payload of every ``status`` topic; OFFLINE is also the last will."""

    ONLINE = "online"
    OFFLINE = "offline"
