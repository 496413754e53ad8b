"""Capture in its own thread: the latest-frame slot, trigger latching, reconnect with backoff.

Cameras deliver frames at their own pace and the model may be slower. Like a good NVR, the capture thread
keeps only the newest frame in :class:`FrameSlot`; a frame replaced before the inspection loop took it is
*dropped* and counted. Replay sources (files, folders without ``fps``) are read on demand instead, so a
replay inspects every image exactly once.

Triggered mode: a trigger is *armed* the moment it arrives and the capture thread latches the first frame
captured after it onto it, so a slow inspection of the previous part cannot make the station report an
older or newer frame for this part. A frame read while a trigger is armed is also preprocessed in the
capture thread before it is latched, so a trigger waits for the next frame plus the model, not for the
loop to prepare it; frames no trigger wants are not preprocessed.

A source that fails (open error, read errors, no frame for ``stall_timeout_s``, end of a live stream) is
closed and reopened with exponential backoff (``reconnect_min_s`` doubling up to ``reconnect_max_s``);
state changes (``lost`` / ``running``) go to a callback that the station turns into events.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Deque, List, Optional

from edge.sources import BadFrame, EndOfSource, Frame, FrameSource, SourceConfigError, SourceError
from inspector.protocol.enums import CameraState

log = logging.getLogger(__name__)


@dataclass
class Trigger:
    """A request to inspect the next frame, with the part id it reports."""

    part_id: Optional[str] = None
    source: str = "command"  # command or interval
    at: float = field(default_factory=time.time)
    frame: Optional[Frame] = None


class FrameSlot:
    """Hands frames from the capture thread to the inspection loop. Thread-safe.

    Continuous mode keeps the newest untaken frame; triggered mode latches frames onto armed triggers.
    For a replay source (``live=False``) the capture thread reads only when :meth:`wants_frame` is true.
    """

    def __init__(self, triggered: bool, live: bool, max_pending: int = 100):
        self.triggered = triggered
        self.live = live
        self.max_pending = max_pending
        self._cond = threading.Condition()
        self._latest: Optional[Frame] = None
        self._armed: Deque[Trigger] = deque()
        self._ready: Deque[Trigger] = deque()
        self._spare: Optional[Frame] = None  # replay frame read for a trigger that expired meanwhile
        self._closed = False
        self.paused = False
        self.last_frame: Optional[Frame] = None
        self.captured = 0
        self.dropped = 0

    # -- capture side ---------------------------------------------------------------------------------------

    def wants_frame(self) -> bool:
        with self._cond:
            return self._wants()

    def _wants(self) -> bool:
        if self.paused or self._closed:
            return False
        if self.triggered:
            return bool(self._armed) and self._spare is None
        return self._latest is None

    def wants_prepared(self, frame: Frame) -> bool:
        """Whether ``frame``, just read, is to be inspected: every frame in continuous mode, in triggered mode
        only one that an armed trigger will take (:meth:`put` latches by the same rule)."""
        with self._cond:
            if not self.triggered:
                return True
            return any(t.at <= frame.captured_at for t in self._armed) if self.live else bool(self._armed)

    def wait_for_demand(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(self._wants, timeout)

    def put(self, frame: Frame) -> None:
        with self._cond:
            self.captured += 1
            self.last_frame = frame
            if self.triggered:
                if not self._armed:
                    if not self.live:
                        self._spare = frame
                    return
                # Live: only triggers armed before the frame was read; one armed while it was being
                # prepared waits for the next frame (its part may not have been in view yet).
                latched = [t for t in self._armed if t.at <= frame.captured_at] if self.live else [self._armed[0]]
                for trigger in latched:
                    self._armed.remove(trigger)
                    trigger.frame = frame
                    self._ready.append(trigger)
            else:
                if self._latest is not None and not self.paused:
                    self.dropped += 1
                self._latest = frame
            self._cond.notify_all()

    def close(self) -> None:
        """The source ended: the loop finishes what is ready, then sees :attr:`finished`."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    # -- inspection side ------------------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        with self._cond:
            return self._closed and self._latest is None and not self._ready

    def take(self, timeout: float) -> Optional[Frame]:
        """Continuous mode: the newest frame not yet taken, or None after ``timeout``."""
        with self._cond:
            self._cond.wait_for(lambda: self._latest is not None or self._closed, timeout)
            frame, self._latest = self._latest, None
            if frame is not None:
                self._cond.notify_all()  # a replay source may read the next one
            return frame

    def arm(self, trigger: Trigger) -> bool:
        """Register a trigger; False when too many are waiting (the trigger is refused)."""
        with self._cond:
            if len(self._armed) + len(self._ready) >= self.max_pending or self._closed:
                return False
            if self._spare is not None:
                trigger.frame, self._spare = self._spare, None
                self._ready.append(trigger)
            else:
                self._armed.append(trigger)
            self._cond.notify_all()
            return True

    def take_triggered(self, timeout: float) -> Optional[Trigger]:
        """Triggered mode: the oldest trigger that has its frame, or None after ``timeout``."""
        with self._cond:
            self._cond.wait_for(lambda: bool(self._ready) or self._closed, timeout)
            return self._ready.popleft() if self._ready else None

    def expire(self, older_than: float) -> List[Trigger]:
        """Remove and return armed triggers that arrived before ``older_than`` and still have no frame."""
        with self._cond:
            expired = [t for t in self._armed if t.at < older_than]
            for trigger in expired:
                self._armed.remove(trigger)
            return expired

    def drain_armed(self) -> List[Trigger]:
        with self._cond:
            armed, self._armed = list(self._armed), deque()
            return armed

    def set_paused(self, paused: bool) -> None:
        """While paused a replay source is not read and live frames are not counted as dropped."""
        with self._cond:
            self.paused = paused
            self._cond.notify_all()

    def discard(self) -> None:
        """Forget the untaken frame (pausing) without counting it as dropped."""
        with self._cond:
            self._latest = None


StateCallback = Callable[[CameraState, str], None]
BadFrameCallback = Callable[[str], None]


class Capture:
    """Runs a :class:`FrameSource` in a daemon thread, feeding a :class:`FrameSlot`."""

    def __init__(
        self,
        source: FrameSource,
        cfg,
        slot: FrameSlot,
        on_state: StateCallback,
        on_bad_frame: Optional[BadFrameCallback] = None,
        prepare: Optional[Callable[[Frame], None]] = None,
    ):
        self.source = source
        self.cfg = cfg
        self.slot = slot
        self._on_state = on_state
        self._on_bad_frame = on_bad_frame
        self._prepare = prepare  # called on each frame before it is handed over (preprocessing)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.state = CameraState.STARTING
        self.state_reason = ""
        self.last_frame_at = time.monotonic()
        self.lost_since: Optional[float] = None
        self.reconnects = 0
        self.read_errors = 0
        self._thread = threading.Thread(target=self._run, name="capture", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self.slot.close()
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self.source.close()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _set_state(self, state: CameraState, reason: str) -> None:
        with self._lock:
            if state == self.state:
                return
            previous, self.state, self.state_reason = self.state, state, reason
            if state == CameraState.LOST:
                self.lost_since = time.monotonic()
            elif state == CameraState.RUNNING:
                self.lost_since = None
        log.log(
            logging.WARNING if state in (CameraState.LOST, CameraState.FAILED) else logging.INFO,
            "%s: %s -> %s %s",
            self.source.describe(),
            previous.value,
            state.value,
            reason,
        )
        self._on_state(state, reason)

    def check_stall(self) -> None:
        """Called periodically from outside: flags a source whose read is blocked past the stall timeout."""
        timeout = self.cfg.effective_stall_timeout()
        if timeout and self.state == CameraState.RUNNING and not self.slot.paused:
            idle = time.monotonic() - self.last_frame_at
            if idle > timeout and (self.source.live or self.slot.wants_frame()):
                self._set_state(CameraState.LOST, f"no frame for {idle:.1f} s")

    def _gave_up(self) -> bool:
        limit = self.cfg.give_up_after_s
        if limit and self.lost_since is not None and time.monotonic() - self.lost_since > limit:
            self._set_state(CameraState.FAILED, f"lost for more than {limit:g} s")
            return True
        return False

    def _run(self) -> None:
        backoff = self.cfg.reconnect_min_s
        opened = False
        errors = 0
        while not self._stop.is_set():
            if not opened:
                try:
                    self.source.open()
                    opened, errors = True, 0
                    self.last_frame_at = time.monotonic()
                except SourceConfigError as exc:
                    self._set_state(CameraState.FAILED, str(exc))
                    break
                except SourceError as exc:
                    self._set_state(CameraState.LOST, str(exc))
                    if self._gave_up():
                        break
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, self.cfg.reconnect_max_s)
                    self.reconnects += 1
                    continue
            if not self.source.live and not self.slot.wait_for_demand(0.2):
                continue
            try:
                frame = self.source.read()
            except EndOfSource:
                self._set_state(CameraState.ENDED, "end of source")
                break
            except BadFrame as exc:
                log.warning("skipped unreadable frame %s", exc)
                if self._on_bad_frame:
                    self._on_bad_frame(str(exc))
                continue
            except SourceConfigError as exc:
                self._set_state(CameraState.FAILED, str(exc))
                break
            except SourceError as exc:
                errors += 1
                self.read_errors += 1
                if errors >= self.cfg.read_errors_before_reconnect:
                    self._set_state(CameraState.LOST, str(exc))
                    self.source.close()
                    opened = False
                continue
            if frame is None:
                self.check_stall()
                if self.state == CameraState.LOST:
                    self.source.close()
                    opened = False
                continue
            errors = 0
            backoff = self.cfg.reconnect_min_s
            self.last_frame_at = time.monotonic()
            self._set_state(CameraState.RUNNING, "")
            if self._prepare is not None and self.slot.wants_prepared(frame):
                self._prepare(frame)
            self.slot.put(frame)
        self.source.close()
        self.slot.close()
