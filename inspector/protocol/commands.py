"""Commands a station accepts: JSON, validated before anything changes, each on the topic of its consequence.

Operational commands (``trigger``, ``pause``, ``resume``, ``snapshot``) go to ``<prefix>/<line>/<station>/cmd``:
operators, the line controller and SCADA send them and none of them changes what a part's verdict is.
Engineering commands (``set_threshold``, ``reload``) change the decision itself and go to
``<prefix>/<line>/<station>/engineering``, which the broker ACL opens to the ``engineer`` account only. A
command on the other topic is refused, so an ACL entry for ``cmd`` can never change a verdict. A threshold
outside the range the bundle's calibration supports (its review band, or only its own threshold without
one) needs ``"override": true``.

Every command is a JSON object with a ``cmd`` field; an optional ``request_id`` (string) is echoed in the
events the command produces, so a controller can match answers to requests. Types are strict: ``"0.4"``
is not a threshold. A command that fails validation is answered with a ``command_rejected`` event and
changes nothing.

=================  ==============================================================================
``trigger``        ``{"cmd": "trigger", "part_id": "A-1042"}`` inspect the next frame (triggered mode)
``pause``          ``{"cmd": "pause"}`` stop inspecting (capture continues, nothing is published)
``resume``         ``{"cmd": "resume"}``
``snapshot``       ``{"cmd": "snapshot"}`` save the current camera frame
``set_threshold``  ``{"cmd": "set_threshold", "threshold": 0.4}`` (optional ``review_low``/``review_high``,
                   ``override``) - engineering
``reload``         ``{"cmd": "reload", "bundle": "v7.inspector", "sha256": "<of the file, optional>"}``
                   - engineering
=================  ==============================================================================

``reload`` only loads bundles inside the station's models directory (no ``..``, no symlink escaping it).

Example:
    >>> parse_command(b'{"cmd": "trigger", "part_id": "A-1"}').part_id
    'A-1'
    >>> parse_command(b'{"cmd": "set_threshold", "threshold": "high"}', CommandChannel.ENGINEERING)
    Traceback (most recent call last):
    ...
    inspector.protocol.commands.CommandError: threshold: Input should be a valid number
"""

from __future__ import annotations

import json
import re
from enum import Enum
from pathlib import Path
from typing import Any, ClassVar, Dict, List, Literal, Optional, Tuple, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from typing_extensions import Annotated

from inspector.protocol.topics import StationTopics

MAX_COMMAND_BYTES = 16 * 1024
MAX_COMMAND_DEPTH = 8  # a command is a flat object; a little room for future structured fields
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


class CommandError(ValueError):
    """A command that is not valid JSON, not a known command, or has wrong fields; says which."""


class CommandChannel(str, Enum):
    """The topic leaf a command must arrive on, by its consequence."""

    OPERATIONAL = "cmd"  # what is inspected and when; never what a verdict is
    ENGINEERING = "engineering"  # the decision itself: threshold, model


class StationCommand(BaseModel):
    """Base of every command; ``request_id`` is echoed in the events it produces."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    channel: ClassVar[CommandChannel] = CommandChannel.OPERATIONAL

    request_id: Optional[str] = Field(None, max_length=128, description="Echoed in the resulting events")


class TriggerCommand(StationCommand):
    cmd: Literal["trigger"]
    part_id: Optional[str] = Field(None, min_length=1, max_length=256, description="Part id reported in the result")


class PauseCommand(StationCommand):
    cmd: Literal["pause"]


class ResumeCommand(StationCommand):
    cmd: Literal["resume"]


class SetThresholdCommand(StationCommand):
    channel: ClassVar[CommandChannel] = CommandChannel.ENGINEERING
    cmd: Literal["set_threshold"]
    threshold: float = Field(ge=0.0, le=1.0, description="New fail threshold on the defect score")
    review_low: Optional[float] = Field(None, ge=0.0, le=1.0, description="New review band start")
    review_high: Optional[float] = Field(None, ge=0.0, le=1.0, description="New review band end")
    override: bool = Field(False, description="Accept values outside the range the bundle's calibration supports")


class ReloadCommand(StationCommand):
    channel: ClassVar[CommandChannel] = CommandChannel.ENGINEERING
    cmd: Literal["reload"]
    bundle: str = Field(min_length=1, max_length=1024, description="Bundle path inside the models directory")
    sha256: Optional[str] = Field(None, pattern=r"^[0-9a-fA-F]{64}$", description="Expected SHA-256 of the file")


class SnapshotCommand(StationCommand):
    cmd: Literal["snapshot"]


Command = Annotated[
    Union[TriggerCommand, PauseCommand, ResumeCommand, SetThresholdCommand, ReloadCommand, SnapshotCommand],
    Field(discriminator="cmd"),
]
COMMAND_NAMES = ("trigger", "pause", "resume", "set_threshold", "reload", "snapshot")
_ADAPTER = TypeAdapter(Command)


def _refuse_duplicates(pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
    """``object_pairs_hook``: a key given twice is ambiguous (which one did the sender mean?), never "last wins"."""
    data: Dict[str, Any] = {}
    for key, value in pairs:
        if key in data:
            raise CommandError(f"duplicate key {key!r}")
        data[key] = value
    return data


def _refuse_constant(name: str) -> Any:
    raise CommandError(f"not valid JSON: {name} is not a number")


def _check_depth(text: str) -> None:
    """Refuse deep nesting before ``json.loads`` recurses into it (depth ~1000 exhausts the C stack guard)."""
    outside = _JSON_STRING.sub('""', text)
    depth = 0
    for char in outside:
        if char in "[{":
            depth += 1
            if depth > MAX_COMMAND_DEPTH:
                raise CommandError(f"command nested deeper than {MAX_COMMAND_DEPTH} levels")
        elif char in "]}":
            depth -= 1


def command_topic(topics: StationTopics, command: StationCommand) -> str:
    """The topic a sender publishes ``command`` on (``cmd`` or ``engineering``)."""
    return topics.engineering if command.channel is CommandChannel.ENGINEERING else topics.cmd


def parse_command(payload: bytes | str, channel: CommandChannel = CommandChannel.OPERATIONAL) -> StationCommand:
    """Validate one command payload that arrived on ``channel``; raises :class:`CommandError` with a one-line
    reason, and nothing else."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8", "surrogatepass")
    if len(payload) > MAX_COMMAND_BYTES:
        raise CommandError(f"command larger than {MAX_COMMAND_BYTES} bytes")
    try:
        text = payload.decode("utf-8")  # strict: json.loads(bytes) would also guess UTF-16 and UTF-32
    except UnicodeDecodeError as exc:
        raise CommandError(f"not valid JSON (not UTF-8: {exc.reason} at byte {exc.start})") from None
    _check_depth(text)
    try:
        data = json.loads(text, object_pairs_hook=_refuse_duplicates, parse_constant=_refuse_constant)
    except CommandError:
        raise
    except (ValueError, RecursionError) as exc:  # ValueError includes JSONDecodeError and too-long integers
        raise CommandError(f"not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise CommandError(f"a command must be a JSON object, got {type(data).__name__}")
    name = data.get("cmd")
    if name not in COMMAND_NAMES:
        raise CommandError(f"unknown command {name!r:.40}; known: {', '.join(COMMAND_NAMES)}")
    try:
        command: StationCommand = _ADAPTER.validate_python(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"][1:]) or "command"
        if first["type"] == "extra_forbidden":
            raise CommandError(f"{loc:.60}: unknown field") from None
        raise CommandError(f"{loc:.60}: {first['msg']}") from None
    if command.channel is not channel:
        raise CommandError(
            f"{name} is an {command.channel.name.lower()} command: publish it on "
            f"<station>/{command.channel.value}, not <station>/{channel.value}"
        )
    return command


def resolve_bundle_path(requested: str, models_dir: Path) -> Path:
    """The bundle path a reload may load: inside ``models_dir`` after resolving ``..`` and symlinks.

    Any name that is no usable path (a NUL byte, too long, an unencodable character) is a
    :class:`CommandError` like a path outside the directory.
    """
    try:
        root = models_dir.resolve()
        candidate = Path(requested)
        path = (candidate if candidate.is_absolute() else root / candidate).resolve()
        path.relative_to(root)
        exists = path.exists()
    except (OSError, ValueError, RuntimeError) as exc:  # RuntimeError: a symlink loop (before Python 3.13)
        if isinstance(exc, ValueError) and "relative" in str(exc):
            raise CommandError(f"bundle {requested!r:.200} is outside the models directory {models_dir}") from None
        raise CommandError(f"bundle {requested!r:.200} is not a usable path: {exc}") from None
    if not exists:
        raise CommandError(f"bundle {requested!r:.200} does not exist in {root}")
    return path
