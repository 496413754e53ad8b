"""Frame sources: one plugin per config ``type``, all behind the small :class:`FrameSource` interface.

A source opens, reads frames and closes; it does not retry, pace a thread or decide what is stale. That
is :mod:`edge.capture`'s job, so every camera gets the same reconnect, backoff and lost/restored logic.

Failures come in three kinds, because the capture thread treats them differently:

* :class:`SourceConfigError` - this source can never work as configured (a missing video file, an OpenCV
  without GStreamer). The station stops with exit code 4 instead of retrying forever.
* :class:`SourceError` - the camera or stream is not delivering right now; reopened with backoff.
* :class:`BadFrame` - one unusable file in a folder; skipped and reported, the run goes on.

A finite source (video file, image folder) raises :class:`EndOfSource` at its end unless it loops.

Every frame of a file carries a stable ``key`` (file name, size and modification time; for a video also
the frame index), which results carry as ``source_key`` so consumers can tell a re-inspection of the same
file from a new part. A watched (hot) folder remembers the keys the station has inspected in a small SQLite
file next to the outbox (:class:`SeenFiles`), so a restart does not inspect every file again.

Adding a camera type: write a config model in :mod:`edge.config` (``type: Literal["mine"]``, added to
``SourceConfig``) and a class here decorated with ``@register("mine")``.
"""

from __future__ import annotations

import abc
import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple, Type

import cv2
import numpy as np

from edge import config as C
from inspector.imageio import ImageError, is_image_name, load_image
from inspector.plausibility import GateReport, PlausibilityGate
from inspector.preprocess import ChannelOrder

log = logging.getLogger(__name__)


class SourceError(RuntimeError):
    """The source is not delivering frames now; the capture thread reopens it with backoff."""


class SourceConfigError(SourceError):
    """The source cannot work as configured; retrying will not help."""


class EndOfSource(Exception):
    """A finite source (file, folder) has no more frames."""


class BadFrame(Exception):
    """One frame could not be read (a corrupt file in a folder); the source itself is fine."""


@dataclass
class Frame:
    """One captured image and where and when it came from."""

    image: np.ndarray
    order: ChannelOrder  # OpenCV captures are BGR, image files load as RGB
    captured_at: float  # seconds since the epoch, taken when the read returned
    index: int  # running number of frames this source delivered
    ref: Optional[str] = None  # file name (folder) or file#frame (video), for tracing replays
    key: Optional[str] = None  # stable identity of the file (name|size|mtime_ns[#frame]); None for cameras
    prepared: Optional[np.ndarray] = None  # model input, made by the capture thread in continuous mode
    prepared_by: Optional[object] = None  # the Preprocessor that made ``prepared``
    preprocess_ms: float = 0.0
    gate: Optional[GateReport] = None  # plausibility findings on ``prepared`` (capture thread, continuous mode)
    gate_by: Optional[PlausibilityGate] = None  # the gate that made ``gate``


class FrameSource(abc.ABC):
    """Interface every source plugin implements. Not thread-safe: only the capture thread calls it."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.count = 0
        self._next_due = 0.0
        self.state_dir: Optional[Path] = None

    @property
    def live(self) -> bool:
        """True when frames come on the source's own schedule (stale ones may be dropped)."""
        return self.cfg.live

    @abc.abstractmethod
    def open(self) -> None:
        """Open the device/stream/file; raise SourceError (retry) or SourceConfigError (give up)."""

    @abc.abstractmethod
    def read(self) -> Optional[Frame]:
        """The next frame, None when none is available yet, EndOfSource at the end of a finite source."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the device; safe to call twice."""

    @abc.abstractmethod
    def describe(self) -> str:
        """A short human description for logs and events (no credentials)."""

    def done(self, frame: Frame) -> None:
        """The station has queued the result of ``frame`` (any thread); sources that remember work override it."""
        return None

    def _frame(
        self, image: np.ndarray, order: ChannelOrder, ref: Optional[str] = None, key: Optional[str] = None
    ) -> Frame:
        self.count += 1
        return Frame(image, order, time.time(), self.count, ref, key)

    def _pace(self, fps: Optional[float]) -> int:
        """Sleep so that frames leave at ``fps``, simulating a camera when replaying files. Returns how many
        whole frame periods the reader is late: frames a camera would have dropped meanwhile (a replay that
        kept them would fall further behind real time with every late read on a loaded machine)."""
        if not fps:
            return 0
        now, period = time.monotonic(), 1.0 / fps
        if self._next_due > now:
            time.sleep(self._next_due - now)
        late = int((now - self._next_due) / period) if 0 < self._next_due <= now else 0
        # on the camera's own clock: a read that is late does not shift every later frame
        self._next_due = self._next_due + (late + 1) * period if self._next_due else now + period
        return late


_REGISTRY: Dict[str, Type[FrameSource]] = {}


def register(type_name: str) -> Callable[[Type[FrameSource]], Type[FrameSource]]:
    """Class decorator: make a source plugin available under its config ``type``."""

    def deco(cls: Type[FrameSource]) -> Type[FrameSource]:
        _REGISTRY[type_name] = cls
        return cls

    return deco


def source_types() -> List[str]:
    return sorted(_REGISTRY)


def create_source(cfg, state_dir: Optional[Path] = None) -> FrameSource:
    """Build the plugin registered for ``cfg.type``; ``state_dir`` is where a source may keep what it has done
    (the station passes the outbox's folder)."""
    try:
        cls = _REGISTRY[cfg.type]
    except KeyError:
        raise SourceConfigError(f"unknown source type '{cfg.type}' (known: {', '.join(source_types())})") from None
    source = cls(cfg)
    source.state_dir = state_dir
    return source


def file_key(ref: str, stat: os.stat_result) -> str:
    """Stable identity of a file's content as far as a listing can tell: name, size, modification time."""
    return f"{ref}|{stat.st_size}|{stat.st_mtime_ns}"


class _OpenCvSource(FrameSource):
    """Shared path of every source read through ``cv2.VideoCapture`` (frames in BGR order)."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self.cap: Optional[cv2.VideoCapture] = None

    @abc.abstractmethod
    def _capture(self) -> cv2.VideoCapture:
        """Create the VideoCapture for this source."""

    def open(self) -> None:
        self.close()
        cap = self._capture()
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open {self.describe()}")
        self.cap = cap

    def read(self) -> Optional[Frame]:
        if self.cap is None:
            raise SourceError(f"{self.describe()} is not open")
        ok, image = self.cap.read()
        if not ok or image is None:
            raise SourceError(f"no frame from {self.describe()}")
        return self._frame(image, ChannelOrder.BGR)

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None


@register("usb")
class UsbCamera(_OpenCvSource):
    """A UVC camera through V4L2 (Linux) or the platform default backend."""

    cfg: C.UsbSource

    def _capture(self) -> cv2.VideoCapture:
        backend = cv2.CAP_V4L2 if os.name == "posix" and hasattr(cv2, "CAP_V4L2") else cv2.CAP_ANY
        cap = cv2.VideoCapture(self.cfg.index, backend)
        if cap.isOpened():
            if self.cfg.fourcc:
                cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*self.cfg.fourcc))
            if self.cfg.width:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.cfg.width)
            if self.cfg.height:
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.cfg.height)
            if self.cfg.fps:
                cap.set(cv2.CAP_PROP_FPS, self.cfg.fps)
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # keep the driver from queueing old frames
        return cap

    def describe(self) -> str:
        return f"USB camera {self.cfg.index}"


def gstreamer_available() -> bool:
    """Whether this OpenCV build can open GStreamer pipelines (the PyPI wheels cannot)."""
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GStreamer:"):
            return "YES" in line.split(":", 1)[1]
    return False


def gstreamer_pipeline(cfg: C.GStreamerSource) -> str:
    """The configured pipeline, or the preset for a Jetson CSI or Raspberry Pi camera."""
    if cfg.pipeline:
        return cfg.pipeline
    caps = f"width={cfg.width}, height={cfg.height}, framerate={cfg.fps}/1"
    sink = "videoconvert ! video/x-raw, format=BGR ! appsink drop=true max-buffers=1 sync=false"
    if cfg.preset == "jetson_csi":
        return (
            f"nvarguscamerasrc sensor-id={cfg.sensor_id} ! video/x-raw(memory:NVMM), {caps}, format=NV12 ! "
            f"nvvidconv flip-method={cfg.flip_method} ! video/x-raw, format=BGRx ! {sink}"
        )
    return f"libcamerasrc ! video/x-raw, {caps} ! {sink}"


@register("gstreamer")
class GStreamerCamera(_OpenCvSource):
    """A GStreamer pipeline (Jetson CSI, Raspberry Pi camera, anything ending in appsink)."""

    cfg: C.GStreamerSource

    def open(self) -> None:
        if not gstreamer_available():
            raise SourceConfigError(
                f"this OpenCV ({cv2.__version__}, {Path(cv2.__file__).parent}) was built without GStreamer, so "
                "the 'gstreamer' source cannot work; the opencv-python wheels from PyPI never include it. Use "
                "the system OpenCV: on a Jetson the one JetPack installs, on Raspberry Pi OS "
                "'sudo apt install python3-opencv'; create the virtualenv with --system-site-packages and "
                "'pip uninstall opencv-python opencv-python-headless' inside it. Check with: python3 -c "
                '"import cv2; print(cv2.getBuildInformation())" | grep GStreamer'
            )
        super().open()

    def _capture(self) -> cv2.VideoCapture:
        return cv2.VideoCapture(gstreamer_pipeline(self.cfg), cv2.CAP_GSTREAMER)

    def describe(self) -> str:
        return f"GStreamer pipeline ({self.cfg.preset or 'custom'})"


_FFMPEG_OPTIONS_LOCK = threading.Lock()


@register("stream")
class NetworkStream(_OpenCvSource):
    """RTSP or HTTP/MJPEG through FFmpeg, with open and read timeouts so a dead camera cannot hang us."""

    cfg: C.StreamSource

    def _capture(self) -> cv2.VideoCapture:
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            int(self.cfg.open_timeout_s * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            int(self.cfg.read_timeout_s * 1000),
        ]
        # FFmpeg reads its RTSP options from this process-wide variable at open time.
        with _FFMPEG_OPTIONS_LOCK:
            previous = os.environ.get("OPENCV_FFMPEG_CAPTURE_OPTIONS")
            if self.cfg.url.startswith("rtsp"):
                os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = f"rtsp_transport;{self.cfg.rtsp_transport}"
            try:
                return cv2.VideoCapture(self.cfg.url, cv2.CAP_FFMPEG, params)
            finally:
                if previous is None:
                    os.environ.pop("OPENCV_FFMPEG_CAPTURE_OPTIONS", None)
                else:
                    os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = previous

    def describe(self) -> str:
        url = self.cfg.url
        scheme, _, rest = url.partition("://")
        host = rest.split("@")[-1].split("/")[0]  # never log user:password@
        return f"{scheme} stream {host}"


@register("video")
class VideoFile(_OpenCvSource):
    """A video file, every frame in order (or paced at ``fps`` like a camera), looping if asked."""

    cfg: C.VideoSource

    def open(self) -> None:
        if not self.cfg.path.is_file():
            raise SourceConfigError(f"video file {self.cfg.path} does not exist")
        try:
            super().open()
        except SourceError:  # a file that is there but no decoder opens will not open on a retry either
            raise SourceConfigError(
                f"{self.describe()} cannot be opened as a video (not a video file, or a codec this OpenCV lacks)"
            ) from None
        self._position = 0
        self._key = file_key(self.cfg.path.name, self.cfg.path.stat())

    def _capture(self) -> cv2.VideoCapture:
        return cv2.VideoCapture(str(self.cfg.path))

    def read(self) -> Optional[Frame]:
        if self.cap is None:
            raise SourceError(f"{self.describe()} is not open")
        for _ in range(self._pace(self.cfg.fps)):  # frames the camera showed while the reader was late
            if not self.cap.grab():
                break
            self._position += 1
        ok, image = self.cap.read()
        if not ok or image is None:
            if self._position == 0:
                raise SourceConfigError(f"{self.describe()}: no frame can be decoded")
            if not self.cfg.loop:
                raise EndOfSource(self.describe())
            self.open()
            ok, image = self.cap.read()
            if not ok:
                raise SourceError(f"{self.describe()}: cannot restart at the beginning")
        self._position += 1
        index = self._position - 1
        return self._frame(image, ChannelOrder.BGR, f"{self.cfg.path.name}#{index}", f"{self._key}#{index}")

    def describe(self) -> str:
        return f"video file {self.cfg.path.name}"


class SeenFiles:
    """Keys of the files a watched folder is done with, in SQLite, so a restart does not inspect them again.

    A key is marked when the station has queued the file's result (or the file proved unreadable), not when
    it is read: a file read but not yet inspected when the station stops is inspected after the restart.
    The window that remains is the outbox writer's group commit (a few milliseconds) at a process crash.
    WAL with ``synchronous=NORMAL``: a power cut may forget the last marks (the files are inspected again,
    with the same ``source_key``), never records a mark that did not happen. Rows of files that have left
    the folder are deleted after ``keep_days``, so the table stays as small as the folder.
    """

    FILE_NAME = "hotfolder.sqlite"

    def __init__(self, path: Path, folder: Path, keep_days: float = 7.0):
        self.path = path
        self.folder = str(folder.resolve())
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=10)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS seen (folder TEXT NOT NULL, key TEXT NOT NULL, "
            "ref TEXT NOT NULL, ts REAL NOT NULL, PRIMARY KEY (folder, key))"
        )
        cutoff = time.time() - keep_days * 86400
        rows = self._db.execute("SELECT key, ref, ts FROM seen WHERE folder = ?", (self.folder,)).fetchall()
        gone = [(self.folder, key) for key, ref, ts in rows if ts < cutoff and not (folder / ref).exists()]
        if gone:
            self._db.executemany("DELETE FROM seen WHERE folder = ? AND key = ?", gone)
        self._keys = {key for key, _, _ in rows} - {key for _, key in gone}

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._keys

    def __len__(self) -> int:
        with self._lock:
            return len(self._keys)

    def add(self, key: str, ref: str) -> None:
        with self._lock:
            if key in self._keys:
                return
            self._db.execute("INSERT OR IGNORE INTO seen VALUES (?, ?, ?, ?)", (self.folder, key, ref, time.time()))
            self._keys.add(key)

    def close(self) -> None:
        with self._lock:
            self._db.close()


@dataclass
class _Watched:
    """A file of a watched folder as last listed: its (size, mtime), since when it is unchanged, and the failed
    reads of this content (a change starts again: the writer made progress)."""

    signature: Tuple[int, int]
    since: float
    attempts: int = 0


@register("folder")
class ImageFolder(FrameSource):
    """Images in sorted name order; a watched (hot) folder also takes files that appear later.

    A watched file is read only once its size and modification time have stayed the same for ``settle_s``
    (a camera or a copy may pause mid-write), and a file that still fails to decode is read again after
    1, 2, 4... settle periods, ``retries`` times, before it is reported unreadable; a change to the file
    starts the count again.
    """

    cfg: C.FolderSource

    def __init__(self, cfg):
        super().__init__(cfg)
        self._queue: List[Tuple[Path, Optional[str]]] = []
        self._watched: Dict[Path, _Watched] = {}
        self._taken: set = set()  # keys read this run (the station has not necessarily finished them)
        self.seen: Optional[SeenFiles] = None
        self._last_poll = 0.0

    def _list(self) -> List[Path]:
        pattern = "**/*" if self.cfg.recursive else "*"
        return sorted(
            p for p in self.cfg.path.glob(pattern) if p.is_file() and is_image_name(p) and not p.name.startswith(".")
        )

    def _ref(self, path: Path) -> str:
        return path.relative_to(self.cfg.path).as_posix()

    def open(self) -> None:
        if not self.cfg.path.is_dir():
            raise SourceConfigError(f"image folder {self.cfg.path} does not exist")
        if self.cfg.watch:
            if self.seen is None and self.cfg.remember and self.state_dir is not None:
                try:
                    self.seen = SeenFiles(self.state_dir / SeenFiles.FILE_NAME, self.cfg.path)
                except sqlite3.Error as exc:
                    raise SourceConfigError(f"cannot open {self.state_dir / SeenFiles.FILE_NAME}: {exc}") from None
                log.info("%s: %d file(s) already inspected before this start", self.describe(), len(self.seen))
            self._queue = []
            return
        self._queue = [(p, None) for p in self._list()]
        if not self._queue:
            raise SourceConfigError(f"image folder {self.cfg.path} holds no images")

    def _done(self, key: str) -> bool:
        return key in self._taken or (self.seen is not None and key in self.seen)

    def _poll(self) -> None:
        """Queue files that have stopped changing for ``settle_s`` and are not done yet."""
        now = time.monotonic()
        self._last_poll = now
        queued = {path for path, _ in self._queue}
        listed = self._list()
        for path in listed:
            try:
                st = path.stat()
            except OSError:
                continue
            signature = (st.st_size, st.st_mtime_ns)
            watched = self._watched.get(path)
            if watched is None or watched.signature != signature:  # new or still growing: wait for it again
                self._watched[path] = watched = _Watched(signature, now)
            if path in queued or st.st_size == 0 or now - watched.since < self.cfg.settle_s:
                continue
            key = file_key(self._ref(path), st)
            if not self._done(key):
                self._queue.append((path, key))
        for path in set(self._watched) - set(listed):
            del self._watched[path]
        if len(self._taken) > len(listed):  # forget files that have left the folder (memory stays bounded)
            refs = {self._ref(p) for p in listed}
            self._taken = {key for key in self._taken if key.rsplit("|", 2)[0] in refs}

    def read(self) -> Optional[Frame]:
        if self.cfg.watch:
            return self._read_watched()
        if not self._queue:
            if not self.cfg.loop:
                raise EndOfSource(self.describe())
            self._queue = [(p, None) for p in self._list()]
            if not self._queue:
                raise SourceError(f"{self.describe()} became empty")
        self._pace(self.cfg.fps)
        path, _ = self._queue.pop(0)
        ref = self._ref(path)
        try:
            image = load_image(path)
            key = file_key(ref, path.stat())
        except ImageError as exc:
            raise BadFrame(f"{ref}: {exc.reason}") from None
        except OSError as exc:
            raise BadFrame(f"{ref}: {exc.strerror or exc}") from None
        return self._frame(image, ChannelOrder.RGB, ref, key)

    def _read_watched(self) -> Optional[Frame]:
        if not self._queue:
            wait = self._last_poll + self.cfg.poll_s - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self._poll()
            if not self._queue:
                return None
        self._pace(self.cfg.fps)
        path, key = self._queue.pop(0)
        ref = self._ref(path)
        watched = self._watched.get(path)
        try:
            st = path.stat()
            changed = watched is None or watched.signature != (st.st_size, st.st_mtime_ns)
            image = None if changed else load_image(path)
        except (ImageError, OSError) as exc:
            reason = exc.reason if isinstance(exc, ImageError) else (exc.strerror or str(exc))
            if watched is not None and watched.attempts < self.cfg.retries and path.exists():
                delay = self.cfg.settle_s * 2**watched.attempts  # 1, 2, 4... settle periods
                watched.attempts += 1
                watched.since = time.monotonic() + delay - self.cfg.settle_s
                log.info(
                    "%s: %s; reading it again in %.1f s (attempt %d of %d)",
                    self.describe(),
                    reason,
                    delay,
                    watched.attempts + 1,
                    self.cfg.retries + 1,
                )
                return None
            self._finish(key, ref)  # remembered, so a restart does not report it again
            raise BadFrame(f"{ref}: {reason}") from None
        if image is None:
            return None  # it changed since it was queued: the next listings see it settle again
        self._taken.add(key)
        return self._frame(image, ChannelOrder.RGB, ref, key)

    def _finish(self, key: Optional[str], ref: str) -> None:
        if key is None:
            return
        self._taken.add(key)
        if self.seen is not None:
            self.seen.add(key, ref)

    def done(self, frame: Frame) -> None:
        if self.cfg.watch and frame.key is not None and frame.ref is not None:
            self._finish(frame.key, frame.ref)

    def close(self) -> None:
        pass

    def describe(self) -> str:
        return f"image folder {self.cfg.path}"
