"""Frames kept for the retraining loop: failed and review parts (and a sample of passes), on a disk budget.

Layout: ``<archive>/<predicted class>/<verdict>/<YYYY-MM-DD>/<station>_<seq>_<id8>.png`` with a JSON
sidecar of the same name (the full result: scores, threshold, model version, capture time, ``where``).
When the result has a ``where`` (a bundle with a class map, a failed or review frame), a heatmap overlay
(:func:`inspector.localization.render_overlay`) is written beside it as ``.<name>.heatmap.png`` and named
in the sidecar's ``heatmap``: hidden, because the dataset scanner skips dot files and an overlay must never
train as a part image. The top level
is the predicted class on purpose: ``inspector train`` reads ``root/<class>/**`` images, so relabeling is
moving a file into the right class folder, and the archive (or a copy of it) trains as it is. Sidecars are
not images and are ignored by the dataset scanner.

Writes happen in a background thread so a slow SD card never delays a verdict; when the write queue is
full the frame is not archived (counted in ``skipped``) and the result says so (``image`` is null). When
the files under the root exceed ``max_mb``, the oldest are deleted first.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from datetime import datetime, timezone
from pathlib import Path
from typing import Deque, Optional, Tuple

import numpy as np

from edge.config import ArchiveConfig
from edge.sources import Frame
from inspector.fsutil import atomic_write_json
from inspector.imageio import save_image
from inspector.localization import Heatmap, render_overlay
from inspector.preprocess import ChannelOrder
from inspector.protocol.enums import Verdict

log = logging.getLogger(__name__)


def to_rgb(frame: Frame) -> np.ndarray:
    image = frame.image
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    return np.ascontiguousarray(image[:, :, ::-1]) if frame.order == ChannelOrder.BGR else image


def overlay_path(image: Path) -> Path:
    """Where the heatmap overlay of an archived image goes: a hidden PNG beside it."""
    return image.with_name(f".{image.stem}.heatmap.png")


class Archive:
    """Decides what to keep, writes it in a thread, and keeps the folder within its budget."""

    def __init__(self, cfg: ArchiveConfig, station: str):
        self.cfg = cfg
        self.station = station
        self.root = Path(cfg.path)
        self.max_bytes = int(cfg.max_mb * 1024 * 1024)
        self.saved = 0
        self.skipped = 0
        self.deleted = 0
        self._passes = 0
        self._files: Deque[Tuple[Path, int]] = deque()
        self._total = 0
        self._queue: queue.Queue = queue.Queue(maxsize=cfg.queue)
        self._thread: Optional[threading.Thread] = None
        if cfg.enabled:
            self._index()
            self._thread = threading.Thread(target=self._writer, name="archive", daemon=True)
            self._thread.start()

    def _index(self) -> None:
        """Existing files, oldest first, so the budget holds across restarts."""
        if not self.root.is_dir():
            return
        files = []
        for path in self.root.rglob("*"):
            try:
                if path.is_file():
                    st = path.stat()
                    files.append((st.st_mtime, path, st.st_size))
            except OSError:
                continue
        for _, path, size in sorted(files):
            self._files.append((path, size))
            self._total += size

    def wants(self, verdict: Verdict) -> bool:
        """Whether a part with this verdict is archived (passes: one in ``pass_every``)."""
        if not self.cfg.enabled:
            return False
        if verdict == Verdict.FAIL:
            return self.cfg.save_fail
        if verdict == Verdict.REVIEW:
            return self.cfg.save_review
        if self.cfg.pass_every <= 0:
            return False
        self._passes += 1
        return self._passes % self.cfg.pass_every == 0

    def reserve(self, verdict: Verdict, top_class: str, seq: int, result_id: str, captured_at: float) -> Optional[Path]:
        """The image path for a part to archive, or None (not wanted, or the writer is behind)."""
        if not self.wants(verdict):
            return None
        if self._queue.full():
            self.skipped += 1
            return None
        day = datetime.fromtimestamp(captured_at, timezone.utc).strftime("%Y-%m-%d")
        name = f"{self.station}_{seq:08d}_{result_id[:8]}.{self.cfg.format}"
        return self.root / top_class / verdict.value / day / name

    def submit(self, path: Path, frame: Frame, sidecar: dict, heat: Optional[Heatmap] = None) -> None:
        """Queue a reserved write (only the inspection loop submits, so reserve() guaranteed room); with
        ``heat``, the heatmap overlay is rendered in the writer thread, off the inspection loop."""
        self._queue.put_nowait((path, frame, sidecar, heat))

    def _writer(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            path, frame, sidecar, heat = item
            try:
                self.write(path, frame, sidecar, heat)
            except Exception as exc:  # disk full, permissions: keep inspecting, report in the log
                self.skipped += 1
                log.error("cannot archive %s: %s", path, exc)

    def write(self, path: Path, frame: Frame, sidecar: dict, heat: Optional[Heatmap] = None) -> None:
        """Write the image, its heatmap overlay (with ``heat``) and its sidecar (last, so a reader that finds
        the sidecar finds the rest) now, then enforce the budget."""
        rgb = to_rgb(frame)
        save_image(path, rgb)
        written = [path]
        if heat is not None:
            overlay = overlay_path(path)
            save_image(overlay, render_overlay(rgb, heat))
            sidecar = {**sidecar, "heatmap": overlay.name}
            written.append(overlay)
        side = path.with_suffix(".json")
        atomic_write_json(side, sidecar, default=str)
        for p in (*written, side):
            size = p.stat().st_size
            self._files.append((p, size))
            self._total += size
        self.saved += 1
        self._enforce_budget()

    def _enforce_budget(self) -> None:
        while self._total > self.max_bytes and self._files:
            path, size = self._files.popleft()
            self._total -= size
            try:
                path.unlink()
                self.deleted += 1
            except FileNotFoundError:
                pass  # moved away by someone relabeling: fine
            except OSError as exc:
                log.warning("cannot delete %s: %s", path, exc)
                continue
            parent = path.parent
            while parent != self.root and self.root in parent.parents:
                try:
                    parent.rmdir()  # only succeeds when empty
                except OSError:
                    break
                parent = parent.parent

    def snapshot(self, frame: Frame, details: dict) -> Path:
        """Save a frame to the snapshot folder right away (outside the archive budget)."""
        stamp = datetime.fromtimestamp(frame.captured_at, timezone.utc).strftime("%Y%m%dT%H%M%S_%fZ")
        path = Path(self.cfg.snapshot_dir) / f"{self.station}_{stamp}.{self.cfg.format}"
        save_image(path, to_rgb(frame))
        atomic_write_json(path.with_suffix(".json"), details, default=str)
        return path

    def close(self, timeout: float = 10.0) -> None:
        """Finish queued writes (up to ``timeout``) and stop the writer."""
        if self._thread is None:
            return
        deadline = time.monotonic() + timeout
        while not self._queue.empty() and time.monotonic() < deadline:
            time.sleep(0.02)
        try:
            self._queue.put(None, timeout=max(0.0, deadline - time.monotonic()) or 0.1)
        except queue.Full:
            pass
        self._thread.join(max(0.1, deadline - time.monotonic()))
