"""The station loop: capture -> model -> decision -> outbox -> MQTT, with commands, archive and camera health.

Threads and who owns what:

* main thread - the inspection loop (this module): takes frames, runs the model, writes results to the
  outbox, applies commands between inferences (so the model is never swapped mid-inference), publishes
  stats, and on SIGTERM/SIGINT finishes the inference in flight and shuts down in order;
* capture thread (:mod:`edge.capture`) - reads the source, keeps the latest frame, reconnects; it also
  preprocesses each frame the loop will inspect (every frame in continuous mode, a frame a trigger waits
  for in triggered mode), overlapping the model's work on the previous one;
* the outbox writer thread (:class:`edge.outbox.OutboxWriter`) commits results in groups, and the
  outbox's sync thread makes them survive a power cut in groups, so neither the loop nor a result waits
  for a disk sync;
* paho network thread and the outbox drain thread (:mod:`edge.publisher`);
* archive writer thread (:mod:`edge.archive`);
* a short-lived loader thread per ``reload`` command, so a new model is loaded and self-tested while the
  old one keeps inspecting; only a model that passed is swapped in.

Exit codes (for systemd ``RestartPreventExitStatus=`` and friends) are :class:`inspector.exitcodes.ExitCode`.
"""

from __future__ import annotations

import logging
import os
import queue
import stat
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional, Union

from pydantic import ValidationError

from edge.archive import Archive
from edge.capture import Capture, FrameSlot, Trigger
from edge.config import StationConfig
from edge.health import CameraHealth
from edge.homeassistant import discovery_messages
from edge.outbox import Enqueued, Outbox, OutboxError, OutboxWriter, Row
from edge.publisher import Publisher
from edge.sources import Frame, SourceConfigError, create_source
from edge.stats import StationStats
from inspector.bundle import MANIFEST_NAME, MODEL_NAME, Bundle, BundleError
from inspector.config import ConfigError
from inspector.decision import DecisionPolicy
from inspector.exitcodes import ExitCode
from inspector.fsutil import sha256_bytes
from inspector.inference import BackendError, Classifier
from inspector.inspection import bundle_gate, decide_frame
from inspector.plausibility import PlausibilityGate
from inspector.protocol.commands import (
    CommandChannel,
    CommandError,
    PauseCommand,
    ReloadCommand,
    ResumeCommand,
    SetThresholdCommand,
    SnapshotCommand,
    StationCommand,
    TriggerCommand,
    parse_command,
    resolve_bundle_path,
)
from inspector.protocol.enums import CameraState, EventType, Severity, Verdict
from inspector.protocol.payloads import Event, ModelRef, Result
from inspector.protocol.topics import StationTopics
from inspector.sdnotify import Notifier

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReloadOutcome:
    """What the loader thread hands back to the loop: the self-tested classifier, or why there is none."""

    path: Path
    classifier: Optional[Classifier]
    error: Optional[str]
    request_id: Optional[str]


@dataclass(frozen=True)
class ReloadRequest:
    """A validated ``reload`` with the one path it resolved to (never resolved again)."""

    path: Path
    sha256: Optional[str]
    request_id: Optional[str]


class StationError(RuntimeError):
    def __init__(self, code: ExitCode, message: str):
        super().__init__(message)
        self.code = code


def load_classifier(cfg: StationConfig, path: Path) -> Classifier:
    """Load and verify a bundle, build its interpreter, and run one blank frame through it."""
    return build_classifier(cfg, Bundle.load(path))


def build_classifier(cfg: StationConfig, bundle: Bundle) -> Classifier:
    """The interpreter for a loaded bundle, self-tested on one blank frame."""
    inf = cfg.inference
    clf = Classifier(
        bundle,
        backend=inf.backend,
        threads=inf.threads,
        delegates=inf.delegates,
        policy=cfg.decision,
        delegate_options=inf.delegate_options or None,
    )
    clf.warm_up()
    return clf


def _read_once(path: Path) -> bytes:
    """The bytes of one regular file, through one descriptor that refuses a symlink put in its place."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise BundleError(f"{path.name}: not a regular file")
        return f.read()


def load_reload_candidate(cfg: StationConfig, path: Path, sha256: Optional[str]) -> Classifier:
    """Load the bundle a ``reload`` named from a private copy made by opening it once.

    The file may be deleted or swapped at any moment after the command (an operator copying the next
    version in): its bytes are read once, the checksum is verified on exactly those bytes, and only
    they are loaded, so what was verified is what runs, and a vanished file is an ordinary failure.
    """
    with tempfile.TemporaryDirectory(prefix="inspector-reload-") as work:
        private = Path(work) / "bundle"
        if path.is_dir():  # a bundle directory: its two files, each read once
            if sha256:
                raise BundleError(f"{path.name}: sha256 applies to a bundle file, not a directory")
            private.mkdir()
            for name in (MANIFEST_NAME, MODEL_NAME):
                (private / name).write_bytes(_read_once(path / name))
        else:
            data = _read_once(path)
            if sha256 and sha256_bytes(data).lower() != sha256.lower():
                raise BundleError(f"{path.name}: SHA-256 does not match the one in the command")
            private.write_bytes(data)
        try:
            bundle = Bundle.load(private)
        except BundleError as exc:
            raise BundleError(str(exc).replace(str(private), path.name)) from None
    bundle.source = str(path)
    return build_classifier(cfg, bundle)


def iso_utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Station:
    """One inspection station; :meth:`run` blocks until stopped and returns an :class:`ExitCode`."""

    def __init__(self, cfg: StationConfig):
        self.cfg = cfg
        self.topics = StationTopics(cfg.mqtt.prefix, cfg.line, cfg.station)
        self.stats = StationStats()
        self.paused = False
        self.classifier: Optional[Classifier] = None
        self.bundle_path = Path(cfg.bundle)
        self.outbox: Optional[Outbox] = None
        self.writer: Optional[OutboxWriter] = None  # commits results off the inspection loop
        self._seq = 0  # sequence number of the newest result
        self._first_seq = 0  # ... when this run started
        self.publisher: Optional[Publisher] = None
        self.capture: Optional[Capture] = None
        self.archive: Optional[Archive] = None
        self.health: Optional[CameraHealth] = None
        self._gate: Optional[PlausibilityGate] = None
        self._gate_model: Optional[Classifier] = None  # the classifier ``_gate`` was built for
        self.slot = FrameSlot(cfg.mode.type == "triggered", cfg.source.live, cfg.mode.max_pending_triggers)
        self._stop = threading.Event()
        self._stop_reason = ""
        self._commands: queue.Queue[Union[StationCommand, ReloadRequest, ReloadOutcome]] = queue.Queue()
        self._reloading = threading.Lock()
        self._camera_lost = False
        self._outbox_full = False
        self.notifier = Notifier()  # systemd Type=notify + WatchdogSec; a no-op outside systemd
        self.exit_code = ExitCode.OK
        self.echo = False  # print a line per inspected part on stdout (``inspector run -v`` or on a terminal)

    # -- lifecycle -------------------------------------------------------------------------------------------

    def request_stop(self, reason: str) -> None:
        """Ask the loop to stop after the inference in flight (signal handlers call this)."""
        if not self._stop.is_set():
            self._stop_reason = reason
            log.info("stopping: %s", reason)
            self._stop.set()

    def run(self) -> int:
        try:
            self._setup()
        except StationError as exc:
            log.error("%s", exc)
            self._shutdown()
            return int(exc.code)
        try:
            self._loop()
            if self._stop_reason == "source ended" and self.stats.errors and not self.stats.inspected:
                log.error("every one of the %d frame(s) was skipped; nothing was inspected", self.stats.errors)
                self.exit_code = ExitCode.SOURCE
        except OutboxError as exc:
            log.error("%s", exc)
            self.exit_code = ExitCode.OUTBOX
        except Exception:
            log.exception("station loop failed")
            self.exit_code = ExitCode.ERROR
        delivered = self._shutdown()
        if self.exit_code == ExitCode.OK:
            self.exit_code = self._delivery_code(delivered)
        return int(self.exit_code)

    def _delivery_code(self, delivered: bool) -> ExitCode:
        """A run that had results refused, or produced results and got none acknowledged, did not work."""
        pub = self.publisher
        produced = self._seq - self._first_seq
        if pub is not None and pub.refused:
            log.error(
                "the broker refused %d result(s); they are kept in %s as rejected (check the ACL for %s)",
                pub.refused,
                self.cfg.outbox.path,
                self.topics.result,
            )
            return ExitCode.REFUSED
        if produced and (pub is None or pub.acknowledged == 0):
            log.error("%d result(s) produced and none acknowledged by the broker in this run", produced)
            return ExitCode.UNDELIVERED
        if self._stop_reason == "source ended" and not delivered:
            return ExitCode.UNDELIVERED
        return ExitCode.OK

    def _setup(self) -> None:
        cfg = self.cfg
        try:
            ob = cfg.outbox
            self.outbox = Outbox(ob.path, ob.max_results, ob.on_full, ob.synchronous, ob.group_commit_s)
        except OutboxError as exc:
            raise StationError(ExitCode.OUTBOX, str(exc)) from None
        try:
            self.classifier = load_classifier(cfg, self.bundle_path)
        except (BundleError, BackendError, ValueError, OSError) as exc:
            raise StationError(ExitCode.MODEL, f"cannot load model {self.bundle_path}: {exc}") from None
        try:
            source = create_source(cfg.source, state_dir=cfg.outbox.path.parent)
        except SourceConfigError as exc:
            raise StationError(ExitCode.SOURCE, str(exc)) from None
        try:
            self.publisher = Publisher(
                cfg.mqtt,
                self.topics,
                cfg.client_id,
                self.outbox,
                self._on_command,
                on_rejected=self._on_rejected,
                retained_on_connect=self._discovery,
            )
        except ConfigError as exc:
            raise StationError(ExitCode.CONFIG, str(exc)) from None
        self.publisher.start()
        self._seq = self._first_seq = self.outbox.last_seq
        self.writer = OutboxWriter(self.outbox, self._on_committed)
        self.archive = Archive(cfg.archive, cfg.station)
        self._setup_health()
        self.capture = Capture(
            source,
            cfg.source,
            self.slot,
            self._on_camera_state,
            self._on_bad_frame,
            prepare=self._prepare,
        )
        m = self.classifier.bundle.manifest
        log.info(
            "station %s/%s: model %s %s (%s), source %s, mode %s, %d result(s) queued from before",
            cfg.line,
            cfg.station,
            m.name,
            m.version,
            self.classifier.runner.backend.value,
            source.describe(),
            cfg.mode.type,
            self.outbox.depth(),
        )
        self._event(
            EventType.STARTED,
            f"station started with model {m.name} {m.version}",
            model=self.model_ref.model_dump(),
            source=source.describe(),
            mode=cfg.mode.type,
            queued=self.outbox.depth(),
        )
        self.capture.start()
        self.notifier.ready(f"inspecting with model {m.name} {m.version}")

    def _setup_health(self) -> None:
        hc = self.cfg.health
        reference = hc.reference or self.classifier.bundle.manifest.camera
        self.health = CameraHealth(reference, hc.every_n_frames) if hc.enabled and reference else None

    def _discovery(self) -> list:
        """Home Assistant discovery configs, rebuilt at each connect so they carry the current model."""
        ha = self.cfg.homeassistant
        if not ha.enabled:
            return []
        return discovery_messages(self.topics, ha, self.classifier.bundle.manifest.version)

    @property
    def model_ref(self) -> ModelRef:
        m = self.classifier.bundle.manifest
        return ModelRef(name=m.name, version=m.version, sha256=m.model_sha256[:12])

    def _shutdown(self) -> bool:
        """Stop capture, flush the archive and the outbox, say offline. True when nothing is left queued."""
        self.notifier.stopping()
        if self.capture is not None:
            self.capture.stop()
            for trigger in self.slot.drain_armed():
                self._event(
                    EventType.TRIGGER_MISSED, "stopped before a frame arrived for the trigger", part_id=trigger.part_id
                )
        if self.archive is not None:
            self.archive.close()
        if self.writer is not None:
            self.writer.close()
        delivered = self.outbox is None or self.outbox.depth() == 0
        if self.publisher is not None:
            self._publish_stats()
            self._event(
                EventType.STOPPED,
                f"station stopped: {self._stop_reason or 'error'}",
                reason=self._stop_reason,
                exit_code=int(self.exit_code),
            )
            if not self.publisher.connected and self.outbox.depth():
                log.warning(
                    "waiting for broker %s:%d up to %g s to take %d queued result(s) ...",
                    self.cfg.mqtt.host,
                    self.cfg.mqtt.port,
                    self.cfg.outbox.drain_timeout_s,
                    self.outbox.depth(),
                )
            delivered = self.publisher.flush(self.cfg.outbox.drain_timeout_s)
            if not delivered:
                log.warning(
                    "%d result(s) not yet acknowledged; they stay in %s and go out on the next start",
                    self.outbox.depth(),
                    self.cfg.outbox.path,
                )
            self.publisher.stop()
        if self.outbox is not None:
            self.outbox.close()
        return delivered

    # -- the loop --------------------------------------------------------------------------------------------

    def _loop(self) -> None:
        cfg = self.cfg
        triggered = cfg.mode.type == "triggered"
        next_stats = time.monotonic() + cfg.mqtt.stats_interval_s
        next_tick = time.monotonic() + (cfg.mode.interval_s or 0)
        while not self._stop.is_set():
            lost = self.publisher.network_failed
            if lost:  # checked before the watchdog is fed: systemd must not see a mute station as healthy
                self.exit_code = ExitCode.NETWORK
                self._stop_reason = lost
                break
            self._apply_commands()
            if self.capture.state == CameraState.FAILED:
                self.exit_code = ExitCode.SOURCE
                self._stop_reason = f"source failed: {self.capture.state_reason}"
                break
            if self.paused:
                self.slot.discard()
                self._stop.wait(0.05)
            elif triggered:
                trigger = self.slot.take_triggered(0.05)
                if trigger is not None and trigger.frame is not None:
                    self._inspect(trigger.frame, trigger)
                for late in self.slot.expire(time.time() - cfg.mode.trigger_timeout_s):
                    self._event(
                        EventType.TRIGGER_MISSED,
                        f"no frame within {cfg.mode.trigger_timeout_s:g} s of the trigger",
                        part_id=late.part_id,
                        trigger=late.source,
                    )
            else:
                frame = self.slot.take(0.05)
                if frame is not None:
                    self._inspect(frame, None)
            if self.slot.finished:
                if self.capture.state == CameraState.FAILED:
                    continue  # the capture thread failed (not ended): handled at the top of the loop
                self._stop_reason = "source ended"
                break
            now = time.monotonic()
            self.notifier.watchdog(now)
            self.capture.check_stall()
            if triggered and cfg.mode.interval_s and now >= next_tick and not self.paused:
                next_tick += cfg.mode.interval_s
                if next_tick <= now:  # the loop was held up: skip missed ticks rather than burst
                    next_tick = now + cfg.mode.interval_s
                if not self.slot.arm(Trigger(None, "interval")):
                    self._event(EventType.TRIGGER_MISSED, "interval trigger refused: too many pending triggers")
            if now >= next_stats:
                next_stats = now + cfg.mqtt.stats_interval_s
                self._publish_stats()

    def _prepare(self, frame: Frame) -> None:
        """Capture thread: make the model input while the loop runs the previous frame through the model.

        In triggered mode only frames read while a trigger is armed (most frames are never inspected), so
        a trigger waits for the next frame and the model, not also for preprocessing. With a live camera
        faster than the model in continuous mode, frames replaced before the loop takes them were prepared
        for nothing (about 2 ms of one core each for VGA to 224x224). A frame prepared for a model that a
        reload has replaced meanwhile is prepared again by the loop, and so is one whose preprocessing
        failed, so the loop reports the error as before.
        """
        if self.paused:
            return
        clf = self.classifier
        preprocessor = clf.preprocessor
        gate = self.gate_for(clf)
        start = time.perf_counter()
        try:
            frame.prepared = preprocessor.prepare(frame.image, frame.order)
        except Exception:  # the loop prepares the frame again and reports the error as before
            return
        frame.prepared_by = preprocessor
        frame.preprocess_ms = (time.perf_counter() - start) * 1000.0
        if gate is not None:
            try:
                frame.gate = gate.check(frame.prepared, frame.image)
            except Exception:  # the loop checks the frame again and reports the error
                return
            frame.gate_by = gate

    def gate_for(self, clf: Optional[Classifier]) -> Optional[PlausibilityGate]:
        """The plausibility gate of ``clf``'s bundle (built again when a reload swapped the model)."""
        if clf is not None and self._gate_model is not clf:
            m = clf.bundle.manifest
            gate = bundle_gate(m, self.cfg.gate)
            self._gate, self._gate_model = gate, clf
            if gate is not None and m.plausibility is None:
                log.warning(
                    "bundle %s %s has no plausibility reference (written before it existed): the gate only "
                    "stops blank and clipped frames%s; calibrate again for the full gate",
                    m.name,
                    m.version,
                    " and checks the camera reference" if m.camera else "",
                )
        return self._gate

    def _inspect(self, frame: Frame, trigger: Optional[Trigger]) -> None:
        clf = self.classifier
        assert clf is not None  # loaded by _setup before the loop takes a frame
        gate = self.gate_for(clf)
        try:
            if frame.prepared is None or frame.prepared_by is not clf.preprocessor:
                start = time.perf_counter()
                frame.prepared = clf.preprocessor.prepare(frame.image, frame.order)
                frame.preprocess_ms = (time.perf_counter() - start) * 1000.0
            decision = decide_frame(
                clf,
                gate,
                frame.prepared,
                frame.image,
                frame.preprocess_ms,
                findings=frame.gate if gate is not None and frame.gate_by is gate else None,
                order=frame.order,
            )
        except ValueError as exc:  # e.g. a region of interest that does not fit this camera's frames
            self.stats.record_error(str(exc))
            self._event(EventType.ERROR, f"frame {frame.ref or frame.index} cannot be inspected: {exc}")
            self.capture.source.done(frame)
            return
        self._seq += 1
        seq = self._seq
        result_id = uuid.uuid4().hex
        c, verdict, findings = decision.classification, decision.verdict, decision.findings
        if decision.gated and findings is not None:
            self.stats.record_gate(findings.codes)
        image = self.archive.reserve(verdict, c.top_class, seq, result_id, frame.captured_at)
        # Where the defect is, for the frames someone will look at (the map came with the invoke: no cost).
        heat = clf.locate(c, frame.image.shape) if verdict != Verdict.PASS else None
        result = Result(
            id=result_id,
            seq=seq,
            line=self.cfg.line,
            station=self.cfg.station,
            part_id=trigger.part_id if trigger else None,
            verdict=verdict,
            defect_score=round(c.defect_score, 6),
            threshold=clf.policy.threshold,
            top_class=c.top_class,
            top_score=round(c.top_score, 6),
            scores={k: round(v, 6) for k, v in c.scores.items()},
            model=self.model_ref,
            captured_at=iso_utc(frame.captured_at),
            capture_ts=frame.captured_at,
            inference_ms=round(c.inference_ms, 3),
            preprocess_ms=round(c.preprocess_ms, 3),
            image=str(image) if image else None,
            frame=frame.ref,
            source_key=frame.key,
            gate=None if findings is None or findings.ok else findings.reasons,
            appearance=None if findings is None or findings.appearance is None else round(findings.appearance, 3),
            where=heat.where() if heat is not None else None,
        )
        self.writer.submit(result_id, seq, self.topics.result, result.to_json())
        self.capture.source.done(frame)
        if image is not None:
            self.archive.submit(image, frame, result.model_dump(mode="json", by_alias=True), heat)
        self.stats.record(verdict, c.inference_ms)
        if self.echo:
            print(decision.line(frame.ref or str(frame.index)), flush=True)
        if self.health is not None and self.health.due():
            report = self.health.check(frame.image)
            if report.changed:
                if report.ok:
                    self._event(
                        EventType.CAMERA_OK,
                        "camera focus and exposure back within tolerance",
                        metrics=report.metrics.to_dict(),
                    )
                else:
                    self._event(
                        EventType.CAMERA_CHECK,
                        "; ".join(report.problems),
                        problems=report.problems,
                        metrics=report.metrics.to_dict(),
                    )

    def _on_committed(self, queued: Enqueued) -> None:
        """Outbox writer thread: results are written (safe from a crash), the publisher may send them."""
        self.publisher.notify()
        self._check_outbox(queued.dropped)

    def _check_outbox(self, dropped: int) -> None:
        if dropped and not self._outbox_full:
            self._outbox_full = True
            self._event(
                EventType.OUTBOX_FULL,
                f"outbox holds {self.outbox.max_results} results; policy {self.outbox.on_full}",
                policy=self.outbox.on_full,
                max_results=self.outbox.max_results,
            )
        elif self._outbox_full and self.outbox.depth() < self.outbox.max_results:
            self._outbox_full = False

    def _publish_stats(self) -> None:
        if self.publisher is None or self.classifier is None:
            return
        self.publisher.publish_stats(
            self.stats.snapshot(
                captured=self.slot.captured,
                dropped=self.slot.dropped,
                outbox_depth=self.outbox.depth(),
                camera_state=self.capture.state if self.capture else CameraState.UNKNOWN,
                model_version=self.classifier.bundle.manifest.version,
                paused=self.paused,
            )
        )

    # -- events ----------------------------------------------------------------------------------------------

    def _event(self, type_: EventType, message: str, **details: Any) -> None:
        level = logging.WARNING if type_.severity == Severity.WARNING else logging.INFO
        log.log(level, "event %s: %s", type_.value, message)
        if self.publisher is not None:
            self.publisher.publish_event(Event(ts=time.time(), type=type_, message=message, details=details))

    def _on_camera_state(self, state: CameraState, reason: str) -> None:
        if state == CameraState.LOST and not self._camera_lost:
            self._camera_lost = True
            self._event(EventType.CAMERA_LOST, reason or "source lost", source=self.capture.source.describe())
        elif state == CameraState.RUNNING and self._camera_lost:
            self._camera_lost = False
            self._event(
                EventType.CAMERA_RESTORED,
                "frames are flowing again",
                source=self.capture.source.describe(),
                reconnects=self.capture.reconnects,
            )
        elif state == CameraState.FAILED:
            self._event(EventType.ERROR, f"frame source failed: {reason}", source=self.capture.source.describe())

    def _on_bad_frame(self, reason: str) -> None:
        self.stats.record_error(f"unreadable: {reason}")
        self._event(EventType.ERROR, f"unreadable frame skipped: {reason}")

    def _on_rejected(self, row: Row, reason: str) -> None:
        self._event(EventType.ERROR, f"result seq {row.seq} refused by the broker: {reason}", result_id=row.result_id)

    # -- commands --------------------------------------------------------------------------------------------

    def _reject(self, reason: str, request_id: Optional[str] = None, payload: bytes = b"") -> None:
        details = {"reason": reason, "request_id": request_id}
        if payload:
            details["payload"] = payload[:200].decode("utf-8", "replace")
        self._event(EventType.COMMAND_REJECTED, reason, **details)

    def _on_command(self, payload: bytes, retained: bool, channel: CommandChannel) -> None:
        """paho thread: validate, handle triggers at once (their time matters), queue the rest.

        Nothing a sender writes may raise out of here: an unexpected error is answered like an invalid
        command (``command_rejected``) and logged with its traceback.
        """
        try:
            self._take_command(payload, retained, channel)
        except Exception as exc:
            log.exception("command handling failed")
            self._reject(f"command could not be handled: {type(exc).__name__}: {exc}", payload=payload)

    def _take_command(self, payload: bytes, retained: bool, channel: CommandChannel) -> None:
        if retained:
            self._reject("retained commands are ignored; publish commands with retain=false", payload=payload)
            return
        cmd: Optional[StationCommand] = None
        try:
            cmd = parse_command(payload, channel)
            if isinstance(cmd, ReloadCommand):  # resolved here, once: the loader opens exactly this path
                self._commands.put(
                    ReloadRequest(
                        resolve_bundle_path(cmd.bundle, self.cfg.allowed_models_dir), cmd.sha256, cmd.request_id
                    )
                )
                return
        except CommandError as exc:  # a valid reload of an unusable path still answers its request_id
            self._reject(str(exc), cmd.request_id if cmd is not None else None, payload=payload)
            return
        if isinstance(cmd, TriggerCommand):
            if self.cfg.mode.type != "triggered":
                self._reject("trigger ignored: the station runs in continuous mode", cmd.request_id)
            elif self.paused:
                self._reject("trigger ignored: the station is paused", cmd.request_id)
            elif not self.slot.arm(Trigger(cmd.part_id, "command")):
                self._reject("trigger refused: too many triggers waiting for frames", cmd.request_id)
            return
        self._commands.put(cmd)

    def _apply_commands(self) -> None:
        while True:
            try:
                cmd = self._commands.get_nowait()
            except queue.Empty:
                return
            try:
                if isinstance(cmd, ReloadOutcome):
                    self._finish_reload(cmd)
                elif isinstance(cmd, ReloadRequest):
                    self._start_reload(cmd)
                else:
                    self._apply(cmd)
            except Exception as exc:  # a command never stops the station
                log.exception("applying a command failed")
                self._reject(
                    f"command could not be applied: {type(exc).__name__}: {exc}", getattr(cmd, "request_id", None)
                )

    def _apply(self, cmd: StationCommand) -> None:
        rid = cmd.request_id
        if isinstance(cmd, PauseCommand):
            self.paused = True
            self.slot.set_paused(True)
            self._event(EventType.COMMAND_ACCEPTED, "paused", cmd="pause", request_id=rid)
        elif isinstance(cmd, ResumeCommand):
            self.paused = False
            self.slot.set_paused(False)
            self._event(EventType.COMMAND_ACCEPTED, "resumed", cmd="resume", request_id=rid)
        elif isinstance(cmd, SetThresholdCommand):
            current = self.classifier.policy
            low, high = cmd.review_low, cmd.review_high
            if low is None and high is None:
                low, high = current.review_low, current.review_high
            try:
                policy = DecisionPolicy(threshold=cmd.threshold, review_low=low, review_high=high)
            except ValidationError as exc:
                self._reject(f"set_threshold: {exc.errors()[0]['msg']}", rid)
                return
            supported = self._calibrated_range()
            outside = [
                v
                for v in (cmd.threshold, cmd.review_low, cmd.review_high)
                if v is not None and not supported[0] - 1e-9 <= v <= supported[1] + 1e-9
            ]
            if outside and not cmd.override:
                self._reject(
                    f"set_threshold: {outside[0]:g} is outside the range the bundle's calibration supports "
                    f'[{supported[0]:g}, {supported[1]:g}]; send "override": true to apply it anyway',
                    rid,
                )
                return
            self.classifier.policy = policy
            note = " (override: outside the calibrated range)" if outside else ""
            self._event(
                EventType.THRESHOLD_CHANGED,
                f"threshold {current.threshold:g} -> {policy.threshold:g}{note}",
                cmd="set_threshold",
                request_id=rid,
                before=current.model_dump(),
                after=policy.model_dump(),
                override=cmd.override,
                calibrated=list(supported),
            )
        elif isinstance(cmd, SnapshotCommand):
            frame = self.slot.last_frame
            if frame is None:
                self._reject("snapshot: no frame captured yet", rid)
                return
            try:
                path = self.archive.snapshot(
                    frame,
                    {
                        "station": self.cfg.station,
                        "line": self.cfg.line,
                        "captured_at": iso_utc(frame.captured_at),
                        "frame": frame.ref,
                        "model": self.model_ref.model_dump(),
                    },
                )
            except (OSError, ValueError) as exc:
                self._reject(f"snapshot: cannot save: {exc}", rid)
                return
            self._event(EventType.SNAPSHOT, f"snapshot saved to {path}", path=str(path), request_id=rid)

    def _start_reload(self, request: ReloadRequest) -> None:
        rid, path = request.request_id, request.path
        if not self._reloading.acquire(blocking=False):
            self._reject("reload: another reload is still running", rid)
            return
        try:
            threading.Thread(
                target=self._load_candidate, args=(path, request.sha256, rid), name="reload", daemon=True
            ).start()
        except BaseException:
            self._reloading.release()
            raise
        self._event(EventType.COMMAND_ACCEPTED, f"loading {path.name}", cmd="reload", request_id=rid, bundle=str(path))

    def _load_candidate(self, path: Path, sha256: Optional[str], request_id: Optional[str]) -> None:
        """Loader thread: verify and self-test the new bundle; the main loop swaps it in."""
        try:
            clf = load_reload_candidate(self.cfg, path, sha256)
            self._commands.put(ReloadOutcome(path, clf, None, request_id))
        except (BundleError, BackendError, ValueError, OSError) as exc:
            self._commands.put(ReloadOutcome(path, None, str(exc), request_id))
        except Exception as exc:  # never let a bad file kill the loader silently
            log.exception("reload failed")
            self._commands.put(ReloadOutcome(path, None, f"{type(exc).__name__}: {exc}", request_id))

    def _finish_reload(self, outcome: ReloadOutcome) -> None:
        self._reloading.release()
        path, clf, error, request_id = outcome.path, outcome.classifier, outcome.error, outcome.request_id
        old = self.model_ref
        if clf is None:
            self._event(
                EventType.MODEL_RELOAD_FAILED,
                f"reload of {path.name} failed, still running {old.version}: {error}",
                bundle=str(path),
                error=error,
                model=old.model_dump(),
                request_id=request_id,
            )
            return
        self.classifier = clf
        self.bundle_path = path
        self._setup_health()
        new = self.model_ref.model_dump()
        self._event(
            EventType.MODEL_RELOADED,
            f"model {old.version} -> {self.model_ref.version}",
            bundle=str(path),
            previous=old.model_dump(),
            model=new,
            before=old.model_dump(),
            after=new,
            request_id=request_id,
        )

    def _calibrated_range(self) -> tuple[float, float]:
        """Thresholds the bundle's calibration supports: its review band, or only its own threshold.

        Calibration measured escapes and false rejects at that operating point; a threshold elsewhere
        has no measured consequence, so a ``set_threshold`` there needs ``override``.
        """
        d = self.classifier.bundle.manifest.decision
        low = d.review_low if d.review_low is not None else d.threshold
        high = d.review_high if d.review_high is not None else d.threshold
        return low, high
