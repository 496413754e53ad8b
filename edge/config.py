"""The station configuration: one typed YAML file (``station.yaml``), every field overridable from the CLI.

The frame source is a plugin chosen by its ``type`` (``usb``, ``gstreamer``, ``stream``, ``video``,
``folder``); each type has its own fields, and a key that belongs to another type is an error naming it.
Secrets never live in the file: the MQTT password comes from an environment variable or a file
(``password_env`` / ``password_file``), and ``${VAR}`` is substituted by :func:`inspector.config.load_yaml`.

Example:
    >>> cfg = StationConfig.model_validate({"bundle": "model.inspector",
    ...                                      "source": {"type": "folder", "path": "images"}})
    >>> cfg.source.type, cfg.mode.type, cfg.mqtt.port
    ('folder', 'continuous', 1883)
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Dict, List, Literal, Mapping, Optional, Union

from pydantic import Field, model_validator
from typing_extensions import Annotated

from edge.homeassistant import HomeAssistantConfig
from edge.outbox import DEFAULT_GROUP_COMMIT_S
from inspector.camera import CameraReference
from inspector.config import ConfigError, StrictModel, default_state_dir, load_yaml, set_dotted, validate
from inspector.decision import DecisionPolicy
from inspector.mqtt import MqttConfig
from inspector.plausibility import GateSettings


class _SourceBase(StrictModel):
    """Fields every frame source shares: how loss of frames is detected and how hard to retry."""

    stall_timeout_s: Optional[float] = Field(
        None,
        gt=0,
        description="Declare the source lost when no frame arrives for this long "
        "(default: 5 s for cameras and streams, never for files and folders)",
    )
    reconnect_min_s: float = Field(0.5, gt=0, description="First wait before reopening a lost source")
    reconnect_max_s: float = Field(30.0, gt=0, description="Longest wait between reopen attempts (backoff doubles)")
    give_up_after_s: Optional[float] = Field(
        None,
        gt=0,
        description="Stop the station (exit code 4) when the source stays lost this long; None retries forever",
    )
    read_errors_before_reconnect: int = Field(
        3, ge=1, description="Consecutive failed reads after which the source is reopened"
    )

    @property
    def live(self) -> bool:
        """Frames arrive on the camera's schedule (drop stale ones) rather than on demand (replay)."""
        return True

    def effective_stall_timeout(self) -> Optional[float]:
        return self.stall_timeout_s if self.stall_timeout_s is not None else (5.0 if self.live else None)


class UsbSource(_SourceBase):
    """A V4L2 (UVC) camera by index or device path."""

    type: Literal["usb"] = "usb"
    index: Union[int, str] = Field(0, description="Camera index (0 = /dev/video0) or a device path")
    width: Optional[int] = Field(None, gt=0, description="Requested frame width")
    height: Optional[int] = Field(None, gt=0, description="Requested frame height")
    fps: Optional[float] = Field(None, gt=0, description="Requested frame rate")
    fourcc: Optional[str] = Field(
        None, min_length=4, max_length=4, description="Pixel format, e.g. MJPG for high resolutions over USB 2"
    )


class GStreamerSource(_SourceBase):
    """A GStreamer pipeline ending in appsink; needs an OpenCV built with GStreamer (not the PyPI wheels)."""

    type: Literal["gstreamer"] = "gstreamer"
    pipeline: Optional[str] = Field(None, description="Full pipeline ending in 'appsink'; overrides preset")
    preset: Optional[Literal["jetson_csi", "rpi_libcamera"]] = Field(
        None, description="Ready-made pipeline: jetson_csi (nvarguscamerasrc) or rpi_libcamera (libcamerasrc)"
    )
    sensor_id: int = Field(0, ge=0, description="CSI sensor number (jetson_csi)")
    width: int = Field(1280, gt=0, description="Frame width (presets)")
    height: int = Field(720, gt=0, description="Frame height (presets)")
    fps: int = Field(30, gt=0, description="Frame rate (presets)")
    flip_method: int = Field(0, ge=0, le=7, description="nvvidconv flip-method (jetson_csi)")

    @model_validator(mode="after")
    def _one_of(self) -> GStreamerSource:
        if (self.pipeline is None) == (self.preset is None):
            raise ValueError("give exactly one of 'pipeline' or 'preset'")
        return self


class StreamSource(_SourceBase):
    """An RTSP or HTTP (MJPEG) stream read through OpenCV's FFmpeg backend."""

    type: Literal["stream"] = "stream"
    url: str = Field(description="rtsp://, http:// or https:// address; credentials via ${ENV} substitution")
    rtsp_transport: Literal["tcp", "udp"] = Field("tcp", description="RTSP transport (tcp survives packet loss)")
    open_timeout_s: float = Field(5.0, gt=0, description="Give up opening the stream after this long")
    read_timeout_s: float = Field(3.0, gt=0, description="A read that waits longer than this fails")


class VideoSource(_SourceBase):
    """A video file, for replay and tests."""

    type: Literal["video"] = "video"
    path: Path = Field(description="Video file")
    loop: bool = Field(False, description="Start again at the end instead of ending the run")
    fps: Optional[float] = Field(
        None,
        gt=0,
        description="Pace frames like a live camera at this rate (stale frames are dropped); "
        "None inspects every frame as fast as the model allows",
    )

    @property
    def live(self) -> bool:
        return self.fps is not None


class FolderSource(_SourceBase):
    """Images in a folder, in sorted name order: replay, tests, or a hot folder a camera writes into."""

    type: Literal["folder"] = "folder"
    path: Path = Field(description="Folder of images (.png .jpg .bmp .tif)")
    recursive: bool = Field(False, description="Include sub-folders")
    loop: bool = Field(False, description="Start again at the end instead of ending the run")
    watch: bool = Field(False, description="Hot folder: never end, inspect new files as they appear")
    poll_s: float = Field(0.2, gt=0, description="How often a watched folder is listed")
    settle_s: float = Field(
        1.0,
        ge=0,
        description="Watched folder: read a file once its size and modification time have not "
        "changed for this long (a writer may pause mid-file)",
    )
    retries: int = Field(
        3,
        ge=0,
        description="Watched folder: read a file that does not decode (still being written) again "
        "this many times, after 1, 2, 4... settle periods, before reporting it unreadable",
    )
    remember: bool = Field(
        True,
        description="Watched folder: remember inspected files across restarts (hotfolder.sqlite next "
        "to the outbox), so a restart does not inspect them again",
    )
    fps: Optional[float] = Field(
        None, gt=0, description="Pace images like a live camera at this rate; None inspects every image"
    )

    @property
    def live(self) -> bool:
        return self.fps is not None

    @model_validator(mode="after")
    def _loop_or_watch(self) -> FolderSource:
        if self.loop and self.watch:
            raise ValueError("'loop' and 'watch' cannot both be set")
        return self


SourceConfig = Annotated[
    Union[UsbSource, GStreamerSource, StreamSource, VideoSource, FolderSource], Field(discriminator="type")
]


class ModeConfig(StrictModel):
    """When a frame is inspected."""

    type: Literal["continuous", "triggered"] = Field(
        "continuous", description="continuous: every fresh frame; triggered: the first frame after a trigger"
    )
    interval_s: Optional[float] = Field(
        None, gt=0, description="Triggered mode: also trigger on this fixed interval (part id None)"
    )
    max_pending_triggers: int = Field(100, ge=1, description="Triggers waiting for a frame; more are rejected")
    trigger_timeout_s: float = Field(
        5.0, gt=0, description="A trigger that gets no frame in this long is reported as an error event"
    )


class InferenceConfig(StrictModel):
    """Which TFLite runtime runs the model and how."""

    backend: Literal["auto", "ai_edge_litert", "tflite_runtime", "tensorflow"] = Field(
        "auto", description="TFLite runtime; auto tries ai_edge_litert, tflite_runtime, tensorflow.lite"
    )
    threads: Optional[int] = Field(None, ge=1, description="Interpreter threads (None: the runtime's default)")
    delegates: List[str] = Field(
        default_factory=list, description="Delegate libraries, e.g. libedgetpu.so.1 or a GPU delegate .so"
    )
    delegate_options: Dict[str, str] = Field(default_factory=dict, description="Options passed to each delegate")


class OutboxConfig(StrictModel):
    """The on-disk queue every result passes through before it is published."""

    path: Path = Field(Path("outbox.sqlite"), description="SQLite file (WAL mode)")
    max_results: int = Field(100_000, ge=10, description="Results kept while the broker is away")
    on_full: Literal["drop_oldest", "drop_newest"] = Field(
        "drop_oldest", description="When full: delete the oldest queued result, or do not queue the new one"
    )
    synchronous: Literal["full", "normal"] = Field(
        "full",
        description="full: a background disk sync makes every result survive a power cut within "
        "group_commit_s; normal: only SQLite's checkpoints sync (fewer writes on SD cards). Both survive "
        "a crash of the process, and neither makes a result wait for the disk before it is published",
    )
    group_commit_s: float = Field(
        DEFAULT_GROUP_COMMIT_S,
        gt=0,
        le=10,
        description="synchronous=full: the disk sync runs at most this long after the oldest unsynced "
        "result, one sync for all written meanwhile; a power cut can lose published, unacknowledged "
        "results of about this long (plus one sync), which the line controller rejects at its deadline",
    )
    drain_timeout_s: float = Field(10.0, ge=0, description="At shutdown, wait this long for queued results to go out")
    accept_mqtt311_acks: bool = Field(
        False,
        description="Run over MQTT 3.1.1 although its PUBACK cannot say 'refused': a result the broker's "
        "ACL refuses is then acknowledged and deleted like a delivered one (MQTT 5 keeps it)",
    )


class ArchiveConfig(StrictModel):
    """Frames kept for relabeling and retraining."""

    enabled: bool = Field(True, description="Save frames at all")
    path: Path = Field(Path("archive"), description="Root: <path>/<predicted class>/<verdict>/<date>/<file>")
    save_fail: bool = Field(True, description="Save failed parts")
    save_review: bool = Field(True, description="Save parts sent to review")
    pass_every: int = Field(0, ge=0, description="Also save one passed part in N (0: none)")
    format: Literal["png", "jpg"] = Field("png", description="Image format (png is lossless)")
    max_mb: float = Field(2048.0, gt=0, description="Disk budget; the oldest files are deleted first")
    queue: int = Field(32, ge=1, description="Frames waiting to be written; more are skipped and counted")
    snapshot_dir: Path = Field(Path("snapshots"), description="Where the snapshot command writes frames")


class HealthConfig(StrictModel):
    """Camera focus and exposure checks against the commissioning reference."""

    enabled: bool = Field(True, description="Run the checks when a reference is known")
    every_n_frames: int = Field(100, ge=1, description="Measure one frame in N")
    reference: Optional[CameraReference] = Field(
        None, description="Reference measures; default: the bundle manifest's 'camera' field"
    )


class LogConfig(StrictModel):
    level: Literal["debug", "info", "warning", "error"] = Field("info", description="Log level")
    format: Literal["text", "json"] = Field("text", description="json writes one object per line (journald, Loki)")


class StationConfig(StrictModel):
    """Everything one inspection station needs."""

    line: str = Field("line1", min_length=1, description="Production line name (topic level)")
    station: str = Field(
        default_factory=lambda: socket.gethostname().split(".")[0] or "station",
        min_length=1,
        description="Station name (topic level); default: host name",
    )
    state_dir: Optional[Path] = Field(
        None,
        description="Folder of the station's own files (outbox, archive, snapshots, hot-folder memory); "
        "their relative paths are taken inside it. Default: $STATE_DIRECTORY (systemd StateDirectory=), "
        "else $XDG_STATE_HOME/inspector/<line>/<station> (~/.local/state/inspector/<line>/<station>)",
    )
    bundle: Path = Field(description="Model bundle (.inspector file or directory)")
    models_dir: Optional[Path] = Field(
        None, description="Folder the reload command may load bundles from (default: the bundle's folder)"
    )
    source: SourceConfig = Field(description="Frame source; 'type' selects the plugin")
    mode: ModeConfig = Field(default_factory=ModeConfig)
    inference: InferenceConfig = Field(default_factory=InferenceConfig)
    decision: Optional[DecisionPolicy] = Field(None, description="Override the bundle's pass/fail policy")
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    outbox: OutboxConfig = Field(default_factory=OutboxConfig)
    archive: ArchiveConfig = Field(default_factory=ArchiveConfig)
    health: HealthConfig = Field(default_factory=HealthConfig)
    gate: GateSettings = Field(
        default_factory=GateSettings, description="Plausibility gate: a frame that is not a part never passes"
    )
    log: LogConfig = Field(default_factory=LogConfig)
    homeassistant: HomeAssistantConfig = Field(
        default_factory=HomeAssistantConfig, description="Home Assistant MQTT discovery (off by default)"
    )

    @model_validator(mode="after")
    def _names_are_topic_levels(self) -> StationConfig:
        for key in ("line", "station"):
            value = getattr(self, key)
            if any(ch in value for ch in "/+#") or value != value.strip():
                raise ValueError(f"{key} '{value}' cannot contain '/', '+', '#' or surrounding spaces")
        if any(ch in self.mqtt.prefix for ch in "+#"):
            raise ValueError("mqtt.prefix cannot contain '+' or '#'")
        if self.mqtt.protocol == "3.1.1" and not self.outbox.accept_mqtt311_acks:
            raise ValueError(
                "mqtt.protocol 3.1.1 cannot report a result the broker refuses (its PUBACK has no "
                "reason code), so such results would be deleted as delivered; use MQTT 5, or set "
                "outbox.accept_mqtt311_acks: true to accept that"
            )
        return self

    @model_validator(mode="after")
    def _place_state_files(self) -> StationConfig:
        # Set through __dict__: assigning a field would validate the whole model (and this validator) again.
        root = (self.state_dir or default_state_dir(self.line, self.station)).expanduser()
        self.__dict__["state_dir"] = root
        for section, key in ((self.outbox, "path"), (self.archive, "path"), (self.archive, "snapshot_dir")):
            section.__dict__[key] = root / Path(getattr(section, key)).expanduser()
        return self

    @property
    def allowed_models_dir(self) -> Path:
        return (self.models_dir or self.bundle.parent).resolve()

    @property
    def client_id(self) -> str:
        return self.mqtt.client_id or f"inspector-{self.line}-{self.station}"


def source_from_text(text: str) -> Dict[str, Any]:
    """Turn a quick ``--source`` value into a source section.

    ``0`` -> USB camera 0, ``rtsp://...``/``http://...`` -> stream, a pipeline with ``!`` -> GStreamer,
    a folder -> image folder, anything else -> video file.
    """
    if text.isdigit():
        return {"type": "usb", "index": int(text)}
    if "://" in text:
        return {"type": "stream", "url": text}
    if "!" in text:
        return {"type": "gstreamer", "pipeline": text}
    if text.startswith("/dev/video"):
        return {"type": "usb", "index": text}
    return {"type": "folder" if Path(text).is_dir() else "video", "path": text}


def load_station_config(path: Optional[str | os.PathLike], overrides: Mapping[str, Any] | None = None) -> StationConfig:
    """Load ``station.yaml`` (or start from nothing) and apply dotted overrides from the command line.

    A ``source`` override (a whole mapping) replaces the file's section first, so ``--source images/`` does
    not inherit keys of the file's camera type; dotted ``source.*`` overrides then apply on top.
    """
    overrides = dict(overrides or {})
    data = load_yaml(path) if path is not None else {}
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(data).__name__}")
    if isinstance(overrides.get("source"), dict):
        data["source"] = overrides.pop("source")
    for dotted, value in overrides.items():
        set_dotted(data, dotted, value)
    return validate(StationConfig, data, str(path) if path is not None else "<command line>")
